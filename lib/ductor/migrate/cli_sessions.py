"""The CLIs' own session files, carried to the new workspace so conversations continue.

Claude Code finds a session by its id *and* the working directory: it keeps each
conversation in ``~/.claude/projects/<slug of the cwd>/<id>.jsonl`` (the slug is the
path with every character that is not a letter or digit replaced by ``-``) and
``--resume <id>`` looks only in the slug of the directory it runs in. The agent's
workspace moves, so each session file (and the folder of the same name beside it, which
holds a session's tool results) is copied to the new workspace's slug. The copy leaves
the original untouched, so going back to the original continues there.

Codex keeps rollouts under ``~/.codex/sessions/`` and resumes them by id from any
directory: nothing to carry. Gemini keeps its chats per project directory: see below.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def claude_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".claude"


def project_slug(cwd: Path) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


@dataclass(frozen=True)
class Carry:
    """One file or folder to copy (``source`` is never written)."""

    source: Path
    dest: Path


def find_claude_session(projects: Path, session_id: str, old_cwds: list[Path]) -> Path | None:
    """The session file of ``session_id``: under the old workspace's slug first, else
    under any project (a topic that ran in a project root)."""
    if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", session_id):
        return None
    for cwd in old_cwds:
        candidate = projects / project_slug(cwd) / f"{session_id}.jsonl"
        if candidate.is_file():
            return candidate
    try:
        return next(iter(sorted(projects.glob(f"*/{session_id}.jsonl"))), None)
    except OSError:
        return None


def claude_carries(
    session_ids: list[str], *, old_workspace: Path, new_workspace: Path, env: Mapping[str, str]
) -> tuple[list[Carry], list[str]]:
    """What to copy for these Claude sessions, and the ids whose file was not found."""
    projects = claude_dir(env) / "projects"
    target = projects / project_slug(new_workspace)
    old_cwds = [old_workspace]
    real = Path(os.path.realpath(old_workspace))
    if real != old_workspace:
        old_cwds.append(real)
    carries: list[Carry] = []
    missing: list[str] = []
    for session_id in dict.fromkeys(session_ids):
        found = find_claude_session(projects, session_id, old_cwds)
        if found is None:
            missing.append(session_id)
            continue
        carries.append(Carry(found, target / found.name))
        folder = found.with_suffix("")
        if folder.is_dir():
            carries.append(Carry(folder, target / folder.name))
    return carries, missing


# -- Gemini -------------------------------------------------------------------------
# The Gemini CLI (0.61) names each working directory a project in
# ``~/.gemini/projects.json`` (``{"projects": {cwd: name}}``) and keeps its chats in
# ``~/.gemini/tmp/<name>/chats/session-<date>-<first 8 of the id>.jsonl``; ``--resume``
# looks only in the project of the directory it runs in. The new workspace is registered
# as a project of its own (unless Gemini knows it already) and the chats are copied in.

GEMINI_REGISTRY = "projects.json"


def gemini_dir(env: Mapping[str, str]) -> Path:
    base = env.get("GEMINI_CLI_HOME") or env.get("HOME") or str(Path.home())
    return Path(base) / ".gemini"


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.readline(64 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""


def find_gemini_session(gemini: Path, session_id: str) -> Path | None:
    if not re.fullmatch(r"[A-Za-z0-9-]{8,100}", session_id):
        return None
    for path in sorted((gemini / "tmp").glob(f"*/chats/*{session_id[:8]}.jsonl")):
        if f'"sessionId":"{session_id}"' in _first_line(path).replace(" ", ""):
            return path
    return None


def gemini_projects(gemini: Path) -> dict[str, str]:
    import json

    try:
        data = json.loads((gemini / GEMINI_REGISTRY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, dict):
        return {}
    return {str(k): str(v) for k, v in projects.items()}


def gemini_project(gemini: Path, workspace: Path, agent: str) -> tuple[str, bool]:
    """The project name of ``workspace``, and whether it still has to be registered."""
    projects = gemini_projects(gemini)
    if str(workspace) in projects:
        return projects[str(workspace)], False
    taken = set(projects.values())
    name, number = f"ductor-{agent}", 1
    while name in taken or (gemini / "tmp" / name).exists():
        number += 1
        name = f"ductor-{agent}-{number}"
    return name, True


def gemini_carries(
    session_ids: list[str], *, new_workspace: Path, agent: str, env: Mapping[str, str]
) -> tuple[list[Carry], list[str], str | None]:
    """What to copy for these Gemini sessions, the ids not found, and the project name
    to register for the new workspace (None when Gemini knows it already)."""
    gemini = gemini_dir(env)
    name, register = gemini_project(gemini, new_workspace, agent)
    carries: list[Carry] = []
    missing: list[str] = []
    for session_id in dict.fromkeys(session_ids):
        found = find_gemini_session(gemini, session_id)
        if found is None:
            missing.append(session_id)
        else:
            carries.append(Carry(found, gemini / "tmp" / name / "chats" / found.name))
    return carries, missing, (name if register and carries else None)


def register_gemini_project(env: Mapping[str, str], workspace: Path, name: str) -> bool:
    """Add ``workspace`` → ``name`` to Gemini's project registry (re-read now, every
    other entry kept) and mark the project's folder as Gemini does; False when Gemini
    knows the workspace already."""
    import json

    from ductor import atomic

    gemini = gemini_dir(env)
    projects = gemini_projects(gemini)
    if str(workspace) in projects:
        return False
    projects[str(workspace)] = name
    atomic.make_directories(gemini / "tmp" / name, mode=0o700)
    marker = gemini / "tmp" / name / ".project_root"
    if not marker.exists():
        atomic.write_text(marker, str(workspace))
    atomic.write_text(
        gemini / GEMINI_REGISTRY, json.dumps({"projects": projects}, indent=2), mode=0o600
    )
    return True

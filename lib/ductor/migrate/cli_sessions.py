"""The CLIs' own session files, carried to the new workspace so conversations continue.

Claude Code finds a session by its id *and* the working directory: it keeps each
conversation in ``~/.claude/projects/<slug of the cwd>/<id>.jsonl`` (the slug is the
path with every character that is not a letter or digit replaced by ``-``) and
``--resume <id>`` looks only in the slug of the directory it runs in. The agent's
workspace moves, so each session file (and the folder of the same name beside it, which
holds a session's tool results) is copied to the new workspace's slug. The copy leaves
the original untouched, so going back to the original continues there.

Codex keeps rollouts under ``~/.codex/sessions/`` and resumes them by id from any
directory: nothing to carry. Gemini keeps chats per project under ``~/.gemini/tmp/``;
they are not carried (see docs/migrate.md).
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

"""Skills shared between the workspace and the CLIs' own skill folders.

A skill is a folder holding a ``SKILL.md`` whose front matter names it (``name:``) and
says what it is for (``description:``). The agent's ``workspace/skills/`` and the skill
folders of the CLIs (``~/.claude/skills``, ``$CODEX_HOME/skills`` (``~/.codex``),
``~/.gemini/skills``; only for a CLI whose home folder exists, and as ``skills.sync.*``
allows) are kept showing the same skills: a skill that is a real folder in one of them
appears in the others as a symbolic link to that one folder, so an edit anywhere is an
edit everywhere. Where a skill is a real folder in more than one place, the first of
workspace, claude, codex, gemini is the one linked to.

Nothing that is not ours is touched: real folders and files stay, a link that someone
else made stays, and only a link into one of these folders whose target is gone is
removed. The agent syncs at start and on reload; ``ductor-skills@NAME.path`` reloads it
when one of the folders changes, so a new skill shows up without polling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ductor.config.schema import SkillsConfig

log = logging.getLogger(__name__)

SKILL_FILE = "SKILL.md"
FRONT_MATTER = "---"
FRONT_MATTER_LINES = 50


@dataclass(frozen=True)
class SkillFolder:
    owner: str  # "workspace", "claude", "codex", "gemini"
    path: Path


@dataclass
class SyncReport:
    linked: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def skill_folders(
    workspace: Path, env: Mapping[str, str], config: SkillsConfig
) -> list[SkillFolder]:
    """The folders to keep in sync, in priority order; empty when sync is off."""
    if not config.sync_enabled:
        return []
    home = Path(env.get("HOME") or Path.home())
    codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
    folders = [SkillFolder("workspace", workspace / "skills")]
    for owner, cli_home, wanted in (
        ("claude", home / ".claude", config.sync.claude),
        ("codex", codex_home, config.sync.codex),
        ("gemini", home / ".gemini", config.sync.gemini),
    ):
        if wanted and cli_home.is_dir():
            folders.append(SkillFolder(owner, cli_home / "skills"))
    return folders


def front_matter(file: Path) -> dict[str, str]:
    """The ``key: value`` lines between the leading ``---`` lines of ``file``."""
    try:
        with file.open(encoding="utf-8", errors="replace") as stream:
            lines = [stream.readline() for _ in range(FRONT_MATTER_LINES)]
    except OSError:
        return {}
    if not lines or lines[0].strip() != FRONT_MATTER:
        return {}
    found: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == FRONT_MATTER:
            return found
        key, colon, value = line.partition(":")
        if colon and key.strip() and not key.startswith((" ", "\t")):
            found[key.strip()] = value.strip().strip("\"'")
    return {}  # never closed: not front matter


def is_skill(folder: Path) -> bool:
    """A real folder (not a link) with a SKILL.md naming and describing it."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    meta = front_matter(folder / SKILL_FILE)
    return bool(meta.get("name")) and bool(meta.get("description"))


def _points_into(link: Path, folders: list[SkillFolder]) -> bool:
    try:
        target = link.readlink()
    except OSError:
        return False
    if not target.is_absolute():
        target = link.parent / target
    target = Path(os.path.normpath(target))
    return any(target.is_relative_to(folder.path) for folder in folders)


def sync(folders: list[SkillFolder]) -> SyncReport:
    """Link every skill into every folder that lacks it; remove our broken links."""
    report = SyncReport()
    if len(folders) < 2:
        return report
    for folder in folders:
        folder.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    canonical: dict[str, Path] = {}
    for folder in folders:
        for entry in sorted(folder.path.iterdir()):
            if entry.is_symlink():
                if not entry.exists() and _points_into(entry, folders):
                    entry.unlink()
                    report.removed.append(entry)
                continue
            if entry.name not in canonical and is_skill(entry):
                canonical[entry.name] = entry
    for name, source in canonical.items():
        for folder in folders:
            target = folder.path / name
            if target.exists() or target.is_symlink():
                continue  # ours already, the canonical folder itself, or someone else's
            target.symlink_to(source, target_is_directory=True)
            report.linked.append(target)
    return report


def sync_skills(workspace: Path, env: Mapping[str, str], config: SkillsConfig) -> SyncReport:
    """:func:`sync` for an agent, logging what changed; a failure is logged, not raised."""
    try:
        report = sync(skill_folders(workspace, env, config))
    except OSError as exc:
        log.warning("skills not synced: %s: %s", exc.filename or "", exc.strerror or exc)
        return SyncReport()
    for path in report.linked:
        log.info("skills: linked %s", path)
    for path in report.removed:
        log.info("skills: removed the broken link %s", path)
    return report

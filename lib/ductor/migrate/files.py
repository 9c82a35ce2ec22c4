"""Which files of the original's workspace come across, and where they go.

Everything the user or the agent made comes: memory, files received and sent, cron task
folders (renamed with their job; their rule files are this product's, and the notes of
earlier runs become ``MEMORY.md``), background task folders, tools in
``tools/user_tools/``, skills, anything else. What the original generates on every start
stays behind, because this product writes its own: the rule files (``CLAUDE.md``,
``AGENTS.md``, ``GEMINI.md``, ``RULES*.md``) of its seeded folders, its bundled tool
scripts and its bundled skill. Python virtual environments stay too (they hold absolute
paths and break when moved; recreate them), and so do symbolic links (the original's
skill links into the CLIs' directories).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ductor.migrate.cli_sessions import Carry

RULE_FILES = frozenset({"CLAUDE.md", "AGENTS.md", "GEMINI.md"})
# Folders the original seeds; a rule file directly inside one is the original's.
SEEDED = frozenset(
    {
        "",
        "memory_system",
        "output_to_user",
        "telegram_files",
        "matrix_files",
        "api_files",
        "cron_tasks",
        "tasks",
        "skills",
        "tools",
        "tools/user_tools",
    }
)
BUNDLED_TOOLS = frozenset(
    {"cron_tools", "webhook_tools", "agent_tools", "task_tools", "media_tools"}
)
BUNDLED_SKILLS = frozenset({"skill-creator"})
SKIPPED_DIRS = frozenset({"__pycache__", ".venv", "venv", "node_modules", ".git"})


@dataclass
class FilePlan:
    carries: list[Carry] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=dict)  # reason → relative paths

    def leave(self, path: str, reason: str) -> None:
        self.left.setdefault(reason, []).append(path)


def _left_behind(rel: PurePosixPath, is_dir: bool) -> str | None:
    parts = rel.parts
    if is_dir and rel.name in SKIPPED_DIRS:
        if rel.name == "__pycache__":
            return "caches"
        return "virtual environments and checkouts (recreate them in the new workspace)"
    if parts[:1] == ("tools",) and len(parts) >= 2 and parts[1] in BUNDLED_TOOLS:
        return "the original's bundled tool scripts (this product ships its own)"
    if parts == ("tools", "_tool_shared.py"):
        return "the original's bundled tool scripts (this product ships its own)"
    if parts[:1] == ("skills",) and len(parts) >= 2 and parts[1] in BUNDLED_SKILLS:
        return "the original's bundled skill"
    in_task = len(parts) == 3 and parts[0] in ("cron_tasks", "tasks")
    seeded = str(rel.parent) in SEEDED | {"."} or in_task
    is_rule = rel.name in RULE_FILES or (rel.name.startswith("RULES") and rel.suffix == ".md")
    if not is_dir and seeded and is_rule:
        return "the original's rule files (this product writes its own)"
    return None


def workspace_files(old: Path, new: Path, *, renamed: Mapping[str, str] | None = None) -> FilePlan:
    """The files under ``old`` to copy to ``new``; ``renamed`` maps a cron task folder
    of the original to its job's name here."""
    renamed = renamed or {}
    plan = FilePlan()
    if not old.is_dir():
        return plan
    for directory, dirnames, filenames in os.walk(old, followlinks=False):
        base = Path(directory)
        for name in sorted(dirnames):
            path = base / name
            rel = PurePosixPath(path.relative_to(old).as_posix())
            if path.is_symlink():
                plan.leave(str(rel), "symbolic links (the original's skill links)")
                dirnames.remove(name)
                continue
            reason = _left_behind(rel, is_dir=True)
            if reason is not None:
                plan.leave(str(rel), reason)
                dirnames.remove(name)
        for name in sorted(filenames):
            path = base / name
            rel = PurePosixPath(path.relative_to(old).as_posix())
            if path.is_symlink():
                plan.leave(str(rel), "symbolic links (the original's skill links)")
                continue
            reason = _left_behind(rel, is_dir=False)
            if reason is not None:
                plan.leave(str(rel), reason)
                continue
            plan.carries.append(Carry(path, new / _renamed(rel, renamed)))
    return plan


def _renamed(rel: PurePosixPath, renamed: Mapping[str, str]) -> str:
    parts = rel.parts
    if len(parts) >= 2 and parts[0] == "cron_tasks" and parts[1] in renamed:
        return str(PurePosixPath("cron_tasks", renamed[parts[1]], *parts[2:]))
    return str(rel)

"""Topics as projects: which folder a forum topic or a Matrix room works in.

``project_roots`` maps a topic to a directory that becomes the CLI's working directory
for that topic instead of the workspace, so the project's own rule files (CLAUDE.md,
AGENTS.md, GEMINI.md) apply. A Telegram topic is found by its name, then
``"CHAT:TOPIC"``, then ``"TOPIC"``; a Matrix room by its name, then its room id. The
agent, the sandbox, ``/status`` and ``/where`` all ask this module, so they agree on the
folder. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectRoot:
    """The folder a session works in, and the ``project_roots`` entry that named it."""

    entry: str
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_dir()


def root_path(value: str, home: Path) -> Path:
    """A ``project_roots`` value as a path: ``~`` is the account's home."""
    if value == "~" or value.startswith("~/"):
        return home / value[2:]
    return Path(value)


def _candidates(session_key: str, topic_name: str) -> list[str]:
    transport, _, rest = session_key.partition(":")
    names = [topic_name] if topic_name else []
    if transport == "tg":
        chat, _, topic = rest.partition(":")
        if not topic:
            return []  # a private chat or a group without topics is no project
        return [*names, f"{chat}:{topic}", topic]
    if transport == "mx" and rest:
        return [*names, rest]
    return []


def project_root(
    roots: Mapping[str, str], session_key: str, topic_name: str, home: Path
) -> ProjectRoot | None:
    """The project folder of ``session_key`` (a topic named ``topic_name``), or None when
    it works in the workspace. Named sessions and other transports never have one."""
    if not roots:
        return None
    for entry in _candidates(session_key, topic_name):
        if entry in roots:
            return ProjectRoot(entry, root_path(roots[entry], home))
    return None


def missing_text(root: ProjectRoot) -> str:
    """What the user reads when a topic's project folder is not there."""
    return (
        f"**Project folder missing** ─── This topic works in {root.path}"
        f' (project_roots."{root.entry}"), which is not a directory. Create it, or change'
        " or remove that entry in the agent's config."
    )


def workspace_note(workspace: Path) -> str:
    """The system-prompt note that keeps the agent's own workspace reachable from a
    project folder (its rule file there is not read: the project's is)."""
    return (
        "## Project folder\n"
        "This conversation works in a project folder (the current directory), not in your"
        f" ductor workspace. Your workspace is still yours, at absolute paths: {workspace}."
        f" Its rules (how to use the tools, memory and files): {workspace}/CLAUDE.md"
        " (AGENTS.md, GEMINI.md). Long-term memory:"
        f" {workspace}/memory_system/MAINMEMORY.md. Tools: {workspace}/tools/ (cron_tools,"
        f" task_tools, media_tools, ...). Files for the user go to {workspace}/output_to_user/"
        " and are sent with <file:ABSOLUTE_PATH>."
    )

"""The ``/showfiles`` browser and its ``sf:`` button callbacks.

A chat's view of the workspace folders that hold files for the user: ``output_to_user/``
(the agent's deliverables) and the files users sent (``telegram_files/``,
``matrix_files/``). Buttons enter a folder, go up, page through a long folder and send a
file. Hidden entries, ``__pycache__`` and ``.git`` are never listed, and nothing outside
these folders can be reached, whatever the callback data says. Sending goes through
:func:`ductor.agent.markup.check_file`, like a ``<file:...>`` tag: ``file_access`` and
the rule that ductor's credentials and state never leave apply alike.

Callback data (at most 64 bytes; a path that does not fit is named by ``#`` and 12 hex
digits of its blake2s, found again by walking the folders):

- ``sf:d:<page>:<path>``: show a folder (``<path>`` relative to the workspace; empty =
  the list of folders);
- ``sf:f:<path>``: send a file.

Each page holds :data:`PAGE_SIZE` entries, so with Up, Previous and Next a page never
has more than the ten buttons a Matrix room can offer as numbered reactions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ductor import protocol
from ductor.agent import markup
from ductor.agent.execute import SEP
from ductor.agent.prompt import human_size

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

PREFIX = "sf:"
ROOTS = ("output_to_user", "telegram_files", "matrix_files")
PAGE_SIZE = 6
CALLBACK_DATA_BYTES = 64
LABEL_CHARS = 40
SKIPPED = frozenset({"__pycache__", ".git", "node_modules"})
WALK_LIMIT = 20_000  # entries looked at to find a path named by its hash
INVALID = "This button is no longer valid. Send /showfiles again."

Rows = list[list[dict[str, str]]]


def _result(
    text: str, buttons: Rows | None = None, files: list[str] | None = None
) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text, buttons or [], files or [])


def _button(label: str, data: str) -> dict[str, str]:
    return {"label": label, "data": data}


@dataclass(frozen=True)
class Entry:
    name: str
    relative: str  # from the workspace, with "/"
    is_dir: bool
    size: int
    mtime: float


def fingerprint(relative: str) -> str:
    return hashlib.blake2s(relative.encode()).hexdigest()[:12]


def _data(head: str, relative: str) -> str:
    data = head + relative
    if len(data.encode()) <= CALLBACK_DATA_BYTES:
        return data
    return f"{head}#{fingerprint(relative)}"


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in SKIPPED and not name.startswith("_index.")


def _allowed(relative: str) -> bool:
    """``relative`` names a root folder or something below one, in plain components."""
    parts = PurePosixPath(relative).parts
    return (
        bool(parts)
        and parts[0] in ROOTS
        and not PurePosixPath(relative).is_absolute()
        and all(_visible(part) and part not in (".", "..") for part in parts)
    )


def _inside_workspace(workspace: Path, relative: str) -> Path | None:
    """The real path of ``relative``, or None when a link leads out of its root folder."""
    root = workspace / PurePosixPath(relative).parts[0]
    try:
        resolved = (workspace / relative).resolve()
        if resolved.is_relative_to(root.resolve()):
            return resolved
    except (OSError, RuntimeError):
        pass
    return None


def entries(workspace: Path, relative: str) -> list[Entry]:
    """What ``relative`` holds (the root folders for ""): folders first, newest first."""
    if not relative:
        found = []
        for name in ROOTS:
            path = workspace / name
            if path.is_dir():
                found.append(Entry(name, name, True, 0, path.stat().st_mtime))
        return found
    folder = _inside_workspace(workspace, relative)
    if folder is None or not folder.is_dir():
        return []
    listed: list[Entry] = []
    with os.scandir(folder) as scan:
        for item in scan:
            if not _visible(item.name):
                continue
            try:
                info = item.stat()
                is_dir = item.is_dir()
            except OSError:
                continue
            if not is_dir and not item.is_file():
                continue
            listed.append(
                Entry(item.name, f"{relative}/{item.name}", is_dir, info.st_size, info.st_mtime)
            )
    listed.sort(key=lambda e: (not e.is_dir, -e.mtime, e.name))
    return listed


def _find(workspace: Path, wanted: str) -> str | None:
    """The visible path (relative) whose fingerprint is ``wanted``, by a bounded walk."""
    seen = 0
    for root in ROOTS:
        pending = [root]
        while pending:
            relative = pending.pop()
            if fingerprint(relative) == wanted:
                return relative
            for entry in entries(workspace, relative):
                seen += 1
                if seen > WALK_LIMIT:
                    return None
                if entry.is_dir:
                    pending.append(entry.relative)
                elif fingerprint(entry.relative) == wanted:
                    return entry.relative
    return None


def _target(workspace: Path, value: str) -> str | None:
    if value.startswith("#"):
        return _find(workspace, value[1:])
    return value


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def menu(
    agent: Agent, request: protocol.Request, relative: str = "", page: int = 0
) -> CommandResult:
    """One page of folder ``relative`` ("" = the list of folders) with its buttons."""
    workspace = agent.workspace
    relative = relative.strip().strip("/")
    if relative and not _allowed(relative):
        folders = ", ".join(f"{root}/" for root in ROOTS)
        return _result(f"`/showfiles` shows only {folders} of the workspace.")
    if relative:
        folder = _inside_workspace(workspace, relative)
        if folder is None or not folder.is_dir():
            up = [[_button("⬆ Up", "sf:d:0:")]]
            return _result(f"There is no folder {relative}/ (any more).", up)
    listed = entries(workspace, relative)
    pages = max(1, -(-len(listed) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    shown = listed[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    title = f"{relative}/" if relative else "workspace"
    lines = [f"**Files** {SEP} {title}" + (f" · page {page + 1}/{pages}" if pages > 1 else "")]
    if not listed:
        lines.append(
            "Nothing here yet."
            if relative
            else "No folders yet: the agent puts files for you in output_to_user/."
        )
    rows: Rows = []
    for entry in shown:
        if entry.is_dir:
            lines.append(f"📁 {entry.name}/")
            rows.append([_button(_label(f"📁 {entry.name}"), _data("sf:d:0:", entry.relative))])
        else:
            lines.append(f"📄 {entry.name} · {human_size(entry.size).split(' (')[0]}")
            rows.append([_button(_label(f"📄 {entry.name}"), _data("sf:f:", entry.relative))])
    navigation: list[dict[str, str]] = []
    if relative:
        parent = str(PurePosixPath(relative).parent)
        navigation.append(_button("⬆ Up", _data("sf:d:0:", "" if parent == "." else parent)))
    if page > 0:
        navigation.append(_button("◀ Previous", _data(f"sf:d:{page - 1}:", relative)))
    if page + 1 < pages:
        navigation.append(_button("Next ▶", _data(f"sf:d:{page + 1}:", relative)))
    if navigation:
        rows.append(navigation)
    return _result("\n".join(lines), rows)


def send(agent: Agent, request: protocol.Request, relative: str) -> CommandResult:
    """Send one file (checked as a ``<file:...>`` tag is) and show its folder again."""
    parent = str(PurePosixPath(relative).parent)
    folder = "" if parent == "." else parent
    again = menu(agent, request, folder)
    try:
        checked = markup.check_file(
            str(agent.workspace / relative),
            paths=agent.paths,
            workspace=agent.workspace,
            home=Path(agent.env.get("HOME") or Path.home()),
            file_access=agent.config.file_access,
        )
    except markup.FileRefused as exc:
        return _result(f"Not sent: {relative}: {exc.reason}.\n\n{again.text}", again.buttons)
    log.info("showfiles: sending %s", checked)
    return _result(f"Sending {relative}.\n\n{again.text}", again.buttons, [str(checked)])


def answer(agent: Agent, request: protocol.Request) -> CommandResult:
    """What an ``sf:`` button does, blocking (see :func:`handle_button`)."""
    action, _, rest = request.data.removeprefix(PREFIX).partition(":")
    if action == "d":
        page_text, _, value = rest.partition(":")
        relative = _target(agent.workspace, value) if value else ""
        if not page_text.isdigit() or relative is None:
            return _result(INVALID)
        return menu(agent, request, relative, int(page_text))
    if action == "f" and rest:
        relative = _target(agent.workspace, rest)
        if relative is None or not _allowed(relative):
            return _result(INVALID)
        return send(agent, request, relative)
    return _result(INVALID)


async def handle_button(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The result of an ``sf:`` callback, or None when the data is not ours."""
    if not request.data.startswith(PREFIX):
        return None
    return await asyncio.to_thread(answer, agent, request)


async def cmd_showfiles(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    """``/showfiles [folder]``: the browser, at the folder when one is given."""
    return await asyncio.to_thread(menu, agent, request, args)

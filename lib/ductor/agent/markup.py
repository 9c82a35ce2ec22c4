"""The markup an agent writes into its answers for ductor, not for the user.

- ``[button:Label]`` offers a quick-reply button: markers on one line form a row, each
  new line starts a new row;
- ``<file:/absolute/path>`` asks ductor to send that file after the text (also a
  ``file://`` URI, or a path relative to the workspace).

Markup inside fenced code blocks or inline code is left alone: an agent explaining the
syntax must be able to show it. The transports remove the markup from the text and turn
it into keyboards and uploads; :func:`check_file` decides whether a file may leave.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import urllib.parse
from pathlib import Path

from ductor.errors import DuctorError
from ductor.paths import Paths

MAX_FILE_BYTES = 50 * 1024 * 1024
CALLBACK_DATA_BYTES = 64  # Telegram's limit for an inline button's callback data

BUTTON = re.compile(r"[ \t]*\[button:([^\]\n]*)\]")
FILE_TAG = re.compile(r"[ \t]*<file:([^>\n]+)>")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")


class FileRefused(DuctorError):
    """A file the agent asked to send that may not (or cannot) be sent."""

    def __init__(self, reason: str, *, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"cannot send {path}: {reason}" if path else reason)


def _replace_outside_code(line: str, pattern: re.Pattern[str]) -> tuple[str, list[str]]:
    """Remove ``pattern`` from ``line`` except inside inline code; returns the new line
    and the first group of every match removed."""
    found: list[str] = []

    def take(match: re.Match[str]) -> str:
        found.append(match.group(1))
        return ""

    pieces: list[str] = []
    position = 0
    for span in CODE_SPAN.finditer(line):
        pieces.append(pattern.sub(take, line[position : span.start()]))
        pieces.append(span.group(0))
        position = span.end()
    pieces.append(pattern.sub(take, line[position:]))
    return "".join(pieces), found


def _extract(text: str, pattern: re.Pattern[str]) -> tuple[str, list[list[str]]]:
    """Remove ``pattern`` outside code; returns the text and the matches per line.

    A line left empty by the removal disappears, and so does a blank line that would
    otherwise double the one before it.
    """
    lines_out: list[str] = []
    found: list[list[str]] = []
    fence: str | None = None
    after_removed_line = False
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1) == fence:
                fence = None
            lines_out.append(line)
            after_removed_line = False
            continue
        if opening and line.count(opening.group(1)) == 1:
            fence = opening.group(1)
            lines_out.append(line)
            after_removed_line = False
            continue
        new_line, matches = _replace_outside_code(line, pattern)
        if matches:
            found.append(matches)
            indent = line[: len(line) - len(line.lstrip())]
            new_line = indent + new_line.strip() if new_line.strip() else ""
            if not new_line:
                after_removed_line = True
                continue
        blank = not new_line.strip()
        if blank and after_removed_line and (not lines_out or not lines_out[-1].strip()):
            continue
        lines_out.append(new_line)
        after_removed_line = False
    if not found:
        return text, []
    return "\n".join(lines_out).rstrip(), found


def extract_buttons(text: str) -> tuple[str, list[list[str]]]:
    """Remove ``[button:Label]`` markers; returns the text and the rows of labels."""
    cleaned, found = _extract(text, BUTTON)
    rows = [[label.strip() for label in row if label.strip()] for row in found]
    return cleaned, [row for row in rows if row]


def button_data(label: str) -> str:
    """Callback data for a button: the label cut to 64 UTF-8 bytes, whole characters only."""
    return label.encode()[:CALLBACK_DATA_BYTES].decode("utf-8", errors="ignore")


def _tag_path(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("file://"):
        parsed = urllib.parse.urlsplit(value)
        if parsed.netloc in ("", "localhost"):
            return urllib.parse.unquote(parsed.path)
    return value


def extract_files(text: str) -> tuple[str, list[str]]:
    """Remove ``<file:/path>`` tags; returns the text and the paths, first mention first."""
    cleaned, found = _extract(text, FILE_TAG)
    paths = [_tag_path(value) for row in found for value in row]
    return cleaned, list(dict.fromkeys(path for path in paths if path))


def strip_markup(text: str) -> str:
    """The answer as the user should read it: without buttons and file tags."""
    return extract_files(extract_buttons(text)[0])[0]


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


#: Kernel interfaces: ``/proc/self/environ`` holds the agent's API keys, and none of
#: these is a file a user wants.
KERNEL_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))


def credential_dirs(paths: Paths) -> tuple[Path, ...]:
    """Where ductor keeps secrets: every agent's credentials (tokens, ``.env``) and the
    unit's ``$CREDENTIALS_DIRECTORY``."""
    found = [paths.config_dir / "credentials"]
    if paths.credentials_dir is not None:
        found.append(paths.credentials_dir)
    return tuple(found)


def _credential_inodes(directories: tuple[Path, ...]) -> set[tuple[int, int]]:
    """(device, inode) of every secret file, so a hard link to one is known for what it is."""
    inodes: set[tuple[int, int]] = set()
    for directory in directories:
        for root, _dirs, files in os.walk(directory):
            for name in files:
                with contextlib.suppress(OSError):
                    info = (Path(root) / name).lstat()
                    inodes.add((info.st_dev, info.st_ino))
    return inodes


def _private_reason(resolved: Path, *, paths: Paths, workspace: Path) -> str | None:
    """Why ``resolved`` is ductor's own and never leaves, whatever ``file_access`` says."""
    if any(_inside(resolved, root) for root in KERNEL_DIRS):
        return "files under /proc, /sys and /dev are never sent"
    if any(_inside(resolved, root) for root in credential_dirs(paths)):
        return "ductor's credentials are never sent"
    if _inside(resolved, workspace):
        return None
    if _inside(resolved, paths.state_dir) or _inside(resolved, paths.runtime_dir):
        return "ductor's state is never sent (only files in the workspace are)"
    return None


def check_file(path: str, *, paths: Paths, workspace: Path, home: Path, file_access: str) -> Path:
    """The resolved path of a file the agent may send, or :class:`FileRefused`.

    ``path`` is absolute or relative to ``workspace`` (the CLI's working directory).

    ``file_access`` is ``"workspace"`` (only under ``workspace``; also for unknown
    values), ``"home"`` (only under ``home``) or ``"all"`` (any regular file we can
    read). Whatever it says, ductor's own credentials and state (``paths``, except the
    workspace) and the kernel's ``/proc``, ``/sys`` and ``/dev`` never leave. Symlinks
    are followed before every check, so a link cannot point out of the root or into a
    secret; a hard link to a secret is recognised by its inode.
    """
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise FileRefused("the path contains control characters", path=repr(path))
    try:
        resolved = (workspace / path).resolve()  # a relative path is from the workspace
    except (OSError, RuntimeError) as exc:
        raise FileRefused(f"cannot resolve the path ({exc})", path=path) from None
    private = _private_reason(resolved, paths=paths, workspace=workspace)
    if private is not None:
        raise FileRefused(private, path=path)
    if file_access == "home":
        if not _inside(resolved, home):
            raise FileRefused("outside the home directory", path=path)
    elif file_access != "all" and not _inside(resolved, workspace):
        raise FileRefused("outside the workspace", path=path)
    try:
        info = resolved.stat()
    except FileNotFoundError:
        raise FileRefused("no such file", path=path) from None
    except OSError as exc:
        raise FileRefused(f"cannot read it ({exc.strerror})", path=path) from None
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused("not a regular file", path=path)
    if info.st_nlink > 1 and (info.st_dev, info.st_ino) in _credential_inodes(
        credential_dirs(paths)
    ):
        raise FileRefused("ductor's credentials are never sent", path=path)
    if not os.access(resolved, os.R_OK):
        raise FileRefused("not readable", path=path)
    if info.st_size > MAX_FILE_BYTES:
        raise FileRefused(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB", path=path)
    return resolved

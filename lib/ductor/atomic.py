"""Atomic file writes: a reader sees the old content or the new one, never a mix.

The recipe, used for every state file ductor writes: write a temporary file in the
same directory (or another directory on the same filesystem), fsync it, rename it over
the target, then fsync the directory so that the rename itself survives a power cut.
A crash at any step leaves either the old file or the new one, plus at most a stray
temporary file that :func:`remove_stale_temp_files` can clean up later.

Files and directories root creates in a directory another account owns are given to
that account (:func:`adopted_owner`): ``ductor --system`` runs as root and writes into the
state of the ``ductor`` account, whose units must be able to read and replace them.

Stdlib only: the spool and the oneshots import this module.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ductor.errors import DuctorError

DEFAULT_MODE = 0o600
TEMP_SUFFIX = ".tmp"


class CorruptFileError(DuctorError):
    """A file exists but does not hold what it should (bad UTF-8, bad JSON)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def fsync_directory(directory: Path) -> None:
    """Make renames, links and unlinks inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def adopted_owner(directory: Path) -> tuple[int, int] | None:
    """The (uid, gid) a new entry of ``directory`` gets, when it is not the writer's.

    Only root is concerned: what root creates in a directory owned by another account
    belongs to that account (the agent's state in system mode, written by ``ductor
    --system`` commands), so the account's units never meet a file they cannot open.
    Everyone else creates files as themselves.
    """
    if os.geteuid() != 0:
        return None
    try:
        st = directory.stat()
    except OSError:
        return None
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def make_directories(path: Path, *, mode: int = 0o700) -> None:
    """``mkdir -p`` where every directory created is made durable in its parent."""
    if path.is_dir():
        return
    make_directories(path.parent, mode=mode)
    try:
        path.mkdir(mode)
    except FileExistsError:
        return
    path.chmod(mode)  # mkdir applies the umask; the caller asked for this mode
    owner = adopted_owner(path.parent)
    if owner is not None:
        os.chown(path, *owner)
    fsync_directory(path.parent)


def open_lock_file(path: Path, *, mode: int = DEFAULT_MODE) -> int:
    """Open (creating it if needed) a file that exists to be ``flock``ed; an fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        owner = adopted_owner(path.parent)
        if owner is not None and os.fstat(fd).st_uid != owner[0]:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk (any descriptor of the inode will do)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp_file(
    directory: Path, data: bytes, *, name: str, mode: int = DEFAULT_MODE, sync: bool = True
) -> Path:
    """Create a new temporary file in ``directory`` holding ``data``, fsynced.

    The file is named ``.NAME.PID.RANDOM.tmp`` so that concurrent writers of the same
    target never share a temporary file. The caller renames it into place (or unlinks it).
    ``sync=False`` skips the fsync for callers that rename first and fsync afterwards.
    """
    path = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not change the mode the caller asked for
        owner = adopted_owner(directory)
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def replace_file(temp: Path, path: Path) -> None:
    """Rename ``temp`` over ``path`` and make the rename durable."""
    try:
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_bytes(
    path: Path, data: bytes, *, mode: int = DEFAULT_MODE, temp_dir: Path | None = None
) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    ``temp_dir`` must be on the same filesystem as ``path``; by default the temporary
    file is created next to the target.
    """
    temp = write_temp_file(temp_dir or path.parent, data, name=path.name, mode=mode)
    replace_file(temp, path)


def write_text(
    path: Path, text: str, *, mode: int = DEFAULT_MODE, temp_dir: Path | None = None
) -> None:
    write_bytes(path, text.encode("utf-8"), mode=mode, temp_dir=temp_dir)


def dumps_json(value: object, *, indent: int | None = 2) -> str:
    """JSON as ductor writes it: UTF-8 kept readable, one trailing newline."""
    return json.dumps(value, ensure_ascii=False, indent=indent) + "\n"


def write_json(
    path: Path,
    value: object,
    *,
    mode: int = DEFAULT_MODE,
    indent: int | None = 2,
    temp_dir: Path | None = None,
) -> None:
    write_text(path, dumps_json(value, indent=indent), mode=mode, temp_dir=temp_dir)


def loads_json(text: str | bytes, *, source: Path) -> object:
    """Parse JSON; errors name ``source`` and the line and column."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            detail = f"not UTF-8 text (bad byte at offset {exc.start})"
            raise CorruptFileError(source, detail) from None
    try:
        value: object = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFileError(
            source, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    return value


def read_json(path: Path) -> object:
    """Read a JSON file. Raises OSError when it cannot be read, CorruptFileError when bad."""
    return loads_json(path.read_bytes(), source=path)


def remove_stale_temp_files(
    directory: Path, older_than: float, *, now: float | None = None, all_files: bool = False
) -> list[Path]:
    """Remove temporary files left by crashed writers, returning what was removed.

    Only files whose modification time is more than ``older_than`` seconds in the past
    are removed, so that a writer still at work keeps its file. By default only files
    named like :func:`write_temp_file`'s are considered; ``all_files`` considers every
    regular file (for directories that hold nothing but temporary files).
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not all_files and not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime <= older_than:
                continue
            Path(entry.path).unlink()
        except FileNotFoundError:
            continue
        removed.append(Path(entry.path))
    return removed

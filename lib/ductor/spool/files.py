"""A queue directory as files: where each state lives, reading and listing envelopes.

:class:`QueueDirectory` only reads, moves unreadable files aside to ``bad/`` and prunes
``done/``; the state machine is :class:`ductor.spool.queue.Queue`. ``ductor outbox``
lists through this class.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from ductor.atomic import make_directories, write_text
from ductor.spool.envelope import Envelope, now_utc, validate_envelope_id
from ductor.spool.errors import EnvelopeError, SpoolError
from ductor.spool.states import DONE_RETENTION, Entry, State
from ductor.spool.wake import WAKE_SOCKET_NAME

logger = logging.getLogger("ductor.spool")

TMP_DIR_NAME = "tmp"
REASON_SUFFIX = ".reason"
DIRECTORY_MODE = 0o700
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
"""Larger files are not envelopes (text is split by transports, files go by path)."""
MAX_REASON_BYTES = 64 * 1024


class QueueDirectory:
    """``tmp/ new/ cur/ done/ failed/ bad/`` under one path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._directories_ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def directory(self, state: State) -> Path:
        return self.path / state.value

    @property
    def tmp_dir(self) -> Path:
        return self.path / TMP_DIR_NAME

    @property
    def wake_socket(self) -> Path:
        return self.path / WAKE_SOCKET_NAME

    def ensure_directories(self) -> None:
        if self._directories_ready:
            return
        for name in (TMP_DIR_NAME, *(state.value for state in State)):
            make_directories(self.path / name, mode=DIRECTORY_MODE)
        self._directories_ready = True

    def get(self, envelope_id: str) -> Entry | None:
        validate_envelope_id(envelope_id)
        state = self._locate(envelope_id)
        return None if state is None else self._entry(state, envelope_id)

    def counts(self) -> dict[State, int]:
        return {state: len(self._names(state)) for state in State}

    def prune_done(
        self, older_than: timedelta = DONE_RETENTION, *, now: datetime | None = None
    ) -> int:
        """Delete envelopes finished more than ``older_than`` ago; returns how many."""
        cutoff = (now or now_utc()).timestamp() - older_than.total_seconds()
        removed = 0
        for name in self._names(State.DONE):
            path = self.directory(State.DONE) / name
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def list(self, states: Iterable[State] = tuple(State)) -> builtins.list[Entry]:
        """Every envelope in ``states``, oldest first. Read-only: bad files stay put."""
        entries = [self._entry(state, name) for state in states for name in self._names(state)]
        return sorted(entries, key=lambda entry: (entry.id, entry.state))

    def _names(self, state: State) -> builtins.list[str]:
        try:
            names = [path.name for path in self.directory(state).iterdir()]
        except FileNotFoundError:
            return []
        if state is State.BAD:
            names = [name for name in names if not name.endswith(REASON_SUFFIX)]
        return sorted(names)

    def _locate(self, envelope_id: str) -> State | None:
        for state in State:
            if os.path.lexists(self.directory(state) / envelope_id):
                return state
        return None

    def _read(self, path: Path) -> Envelope:
        data = read_regular_file(path, MAX_ENVELOPE_BYTES)
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError("(document)", f"larger than {MAX_ENVELOPE_BYTES} bytes")
        envelope = Envelope.from_json(data)
        if envelope.id != path.name:
            raise EnvelopeError("id", f"{envelope.id!r} does not match the file name")
        return envelope

    def _load(self, path: Path) -> Envelope | None:
        """Read an envelope the reader is about to act on; bad files go to bad/."""
        try:
            return self._read(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EnvelopeError) as exc:
            # Whatever is wrong with one file must not stop the delivery of the others.
            self._move_aside(path, unreadable_reason(exc))
            return None

    def _entry(self, state: State, name: str) -> Entry:
        path = self.directory(state) / name
        problem = None
        envelope = None
        try:
            envelope = self._read(path)
        except (OSError, SpoolError) as exc:
            problem = str(exc)
        if state is State.BAD:
            reason = path.with_name(name + REASON_SUFFIX)
            with contextlib.suppress(OSError, SpoolError):
                note = read_regular_file(reason, MAX_REASON_BYTES)[:MAX_REASON_BYTES]
                problem = note.decode("utf-8", errors="replace").strip()
        return Entry(name, state, path, envelope, problem)

    def _move_aside(self, path: Path, reason: str) -> Path:
        """Move a file that is not a valid envelope to bad/, with its reason, never delete;
        returns where it went."""
        bad = self.directory(State.BAD)
        target = bad / path.name
        if os.path.lexists(target):
            target = bad / f"{path.name}-{os.urandom(4).hex()}"
        try:
            path.rename(target)
        except FileNotFoundError:
            return target  # another reader got there first
        note = f"{now_utc().isoformat(timespec='seconds')} from {path.parent.name}/: {reason}\n"
        write_text(target.with_name(target.name + REASON_SUFFIX), note, temp_dir=self.tmp_dir)
        logger.warning(
            "%s: moved %s/%s aside to %s: %s",
            self.path,
            path.parent.name,
            path.name,
            target.relative_to(self.path),
            reason,
        )
        return target


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return name
    return "a special file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``path`` if it is a regular file, else EnvelopeError.

    Without this a FIFO in ``new/`` would block the reader forever on open(2) (and with
    it every delivery and ``ductor outbox list``): a non-regular file is never opened,
    a symlink is not followed, and the open itself cannot block (O_NONBLOCK) should the
    file be swapped between the check and the open.
    """
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise EnvelopeError("(file)", f"{_kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise EnvelopeError("(file)", f"{_kind(mode)}, not a regular file")
        return file.read(limit + 1)


def unreadable_reason(exc: Exception) -> str:
    """What went wrong reading a file, as the ``bad/ID.reason`` line says it."""
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return str(exc)

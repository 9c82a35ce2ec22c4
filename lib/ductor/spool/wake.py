"""Waking a queue's reader without polling: one datagram on ``wake.sock``.

The reader binds a Unix datagram socket in the queue directory (mode 0600) and waits on
it; a writer sends one empty datagram after its envelope is in ``new/``. A datagram
carries no data, it only means "rescan". Nobody listening, a full socket buffer or a
stale socket file are all fine for the writer: the reader rescans on start and
periodically, so a lost wake-up delays an envelope, it never loses it.

Unix socket paths are limited to 107 bytes; longer queue paths are reached through
``/proc/self/fd/N/wake.sock`` with N an ``O_PATH`` descriptor of the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

from ductor.spool.errors import WakeSocketBusyError

WAKE_SOCKET_NAME = "wake.sock"
_MAX_SUN_PATH = 107


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits in ``sockaddr_un``."""
    if len(os.fsencode(path)) <= _MAX_SUN_PATH:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def send_wake(path: Path) -> bool:
    """Wake whoever listens on ``path``. Never raises; True when a datagram was sent."""
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            _address(path) as address,
        ):
            sock.setblocking(False)
            sock.sendto(b"", address)
    except OSError:
        # ENOENT/ECONNREFUSED: no reader; EAGAIN: the reader has wake-ups pending already.
        return False
    return True


def _is_alive(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as probe:
        try:
            probe.connect(address)
        except OSError:
            return False
    return True


class WakeListener:
    """The reader's end of ``wake.sock``.

    Synchronous readers call :meth:`wait`; asyncio readers either ``await
    wait_async(timeout)`` or register :meth:`fileno` with ``loop.add_reader`` and call
    :meth:`drain` in the callback.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._bind()
        except BaseException:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self._inode = path.stat().st_ino

    def _bind(self) -> None:
        with _address(self.path) as address:
            try:
                self._sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                if _is_alive(address):
                    raise WakeSocketBusyError(
                        f"{self.path}: another reader is already waiting on this queue"
                    ) from None
                # Left behind by a reader that was killed: take it over.
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                self._sock.bind(address)
        self.path.chmod(0o600)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> int:
        """Consume every pending wake-up; returns how many there were."""
        count = 0
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return count
            count += 1

    def wait(self, timeout: float | None) -> bool:
        """Block until a writer wakes us (True) or ``timeout`` seconds pass (False)."""
        if self.drain():
            return True
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
        return bool(ready) and self.drain() > 0

    async def wait_async(self, timeout: float | None) -> bool:
        """The same as :meth:`wait` without blocking the event loop."""
        import asyncio  # only asyncio readers pay for importing it

        if self.drain():
            return True
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not woken.done():
                woken.set_result(None)

        loop.add_reader(self.fileno(), on_readable)
        try:
            await asyncio.wait_for(woken, timeout)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(self.fileno())
        return self.drain() > 0

    def close(self) -> None:
        """Stop listening; the socket file goes unless another reader took it over."""
        if self._sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._sock.close()

    def __enter__(self) -> WakeListener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

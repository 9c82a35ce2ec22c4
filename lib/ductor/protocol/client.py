"""The blocking client: one request on one connection, its events, then the ack.

For the ``ductor`` command, the oneshots (cron, heartbeat) and the workspace's tool
scripts: stdlib sockets only, nothing asyncio, so importing it stays cheap.

    with connect(paths.agent_socket("main"), request) as exchange:
        for event in exchange.events():
            ...
        if final.get_str("turn"):
            exchange.ack(final.get_str("turn"))
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from ductor.errors import DuctorError, TemporaryError
from ductor.protocol.events import Event, is_known_event
from ductor.protocol.framing import decode_line, too_large
from ductor.protocol.messages import (
    DEFAULT_FRAME_MAX,
    Request,
    RequestType,
    new_request_id,
)

log = logging.getLogger("ductor.protocol")

_RECV_SIZE = 65536


class AgentUnavailable(TemporaryError):
    """Nobody answers on the agent's socket: it does not exist or refuses connections."""

    def __init__(self, socket_path: Path, reason: str = "not running") -> None:
        self.socket_path = socket_path
        self.agent = socket_path.parent.name or "NAME"
        super().__init__(
            f"cannot reach agent {self.agent!r} at {socket_path} ({reason}); start it with"
            f" `systemctl --user start ductor-agent@{self.agent}.socket`"
            f" (or `ductor agent start {self.agent}`)"
        )


class AgentDisconnected(TemporaryError):
    """The agent closed the connection before the request's terminal event."""

    def __init__(self, socket_path: Path, request_id: str, reason: str = "") -> None:
        self.socket_path = socket_path
        self.request_id = request_id
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"the agent at {socket_path} closed the connection before answering request"
            f" {request_id}{detail}; a turn that had started still finishes and its answer"
            " goes to the outbox"
        )


class AgentTimeout(TemporaryError):
    """The agent sent nothing for longer than the client's timeout."""


class AgentRefused(DuctorError):
    """The socket exists but this user may not connect to it."""


def open_socket(socket_path: Path, timeout: float | None) -> socket.socket:
    """A connected Unix stream socket, or the error that says what to do."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
        sock.close()
        raise AgentUnavailable(socket_path, exc.strerror or str(exc)) from None
    except PermissionError as exc:
        sock.close()
        raise AgentRefused(
            f"permission denied connecting to {socket_path} ({exc.strerror}); the agent"
            " accepts only the user it runs as (and root)"
        ) from None
    except TimeoutError:
        sock.close()
        raise AgentTimeout(f"connecting to {socket_path} timed out after {timeout} s") from None
    except OSError as exc:
        sock.close()
        raise AgentUnavailable(socket_path, exc.strerror or str(exc)) from None
    return sock


class _LineReader:
    """Lines from a blocking socket with the frame limit; blank lines skipped."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self._sock = sock
        self._max = max_bytes
        self._buffer = bytearray()
        self._discarding = False

    def readline(self) -> bytes | None:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[: newline + 1])
                del self._buffer[: newline + 1]
                if self._discarding or len(line.rstrip(b"\r\n")) > self._max:
                    self._discarding = False
                    raise too_large(self._max)
                if line.strip():
                    return line
                continue
            if len(self._buffer) > self._max + 1:
                self._discarding = True
                self._buffer.clear()
            chunk = self._sock.recv(_RECV_SIZE)
            if not chunk:
                if self._discarding:
                    self._discarding = False
                    raise too_large(self._max)
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest if rest.strip() else None
            self._buffer += chunk


class Exchange:
    """A request sent on its own connection, and the events that answer it."""

    def __init__(
        self,
        sock: socket.socket,
        socket_path: Path,
        request: Request,
        *,
        timeout: float | None = None,
        max_bytes: int = DEFAULT_FRAME_MAX,
    ) -> None:
        self.socket_path = socket_path
        self.request = request
        self.terminal: Event | None = None
        """The ``final`` or ``error`` event, once it has been read."""
        self._sock = sock
        self._timeout = timeout
        self._max = max_bytes
        self._reader = _LineReader(sock, max_bytes)

    def __enter__(self) -> Exchange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def next_event(self) -> Event | None:
        """The next event; ``None`` once the terminal event has been returned.

        Safe to call again after a signal handler raised out of it: the bytes read so
        far stay in the buffer.
        """
        if self.terminal is not None:
            return None
        while True:
            try:
                line = self._reader.readline()
            except TimeoutError:
                raise AgentTimeout(
                    f"the agent at {self.socket_path} sent nothing for {self._timeout} s"
                    f" (request {self.request.id})"
                ) from None
            except ConnectionError as exc:
                raise AgentDisconnected(self.socket_path, self.request.id, str(exc)) from None
            if line is None:
                raise AgentDisconnected(self.socket_path, self.request.id)
            data = decode_line(line, max_bytes=self._max)
            if not is_known_event(data):
                log.debug("skipping an event of a type this client does not know: %r", data)
                continue
            event = Event.from_dict(data)
            if event.is_terminal:
                self.terminal = event
            return event

    def events(self) -> Iterator[Event]:
        """Every event up to and including the terminal one."""
        while (event := self.next_event()) is not None:
            yield event

    def ack(self, turn: str) -> None:
        """Tell the agent the final answer of ``turn`` arrived (for ``want_ack``)."""
        ack = Request(type=RequestType.ACK, id=new_request_id(), entry=turn)
        try:
            self._sock.sendall(ack.encode())
        except OSError as exc:
            raise AgentDisconnected(self.socket_path, self.request.id, str(exc)) from None

    def close(self) -> None:
        self._sock.close()


def connect(
    socket_path: Path,
    request: Request,
    *,
    timeout: float | None = None,
    max_bytes: int = DEFAULT_FRAME_MAX,
) -> Exchange:
    """Connect to the agent and send ``request``; ``timeout`` bounds every wait."""
    line = request.encode()
    if len(line) - 1 > max_bytes:
        raise too_large(max_bytes)
    sock = open_socket(socket_path, timeout)
    try:
        sock.sendall(line)
    except TimeoutError:
        sock.close()
        raise AgentTimeout(f"sending to {socket_path} timed out after {timeout} s") from None
    except OSError as exc:
        sock.close()
        raise AgentDisconnected(socket_path, request.id, str(exc)) from None
    return Exchange(sock, socket_path, request, timeout=timeout, max_bytes=max_bytes)


def call(
    socket_path: Path,
    request: Request,
    *,
    timeout: float | None = None,
    max_bytes: int = DEFAULT_FRAME_MAX,
) -> list[Event]:
    """Send ``request`` and return all its events; acks the final when ``want_ack``."""
    with connect(socket_path, request, timeout=timeout, max_bytes=max_bytes) as exchange:
        events = list(exchange.events())
        final = exchange.terminal
        if request.want_ack and final is not None and final.get_str("turn"):
            try:
                exchange.ack(final.get_str("turn"))
            except AgentDisconnected:
                log.warning("could not ack turn %s: the agent went away", final.get_str("turn"))
        return events

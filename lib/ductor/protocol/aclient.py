"""The asyncio client, for the transports: many chats share one event loop.

    exchange = await open_exchange(socket_path, request)
    async with exchange:
        async for event in exchange:
            ...
        if request.want_ack and exchange.terminal is not None:
            await exchange.ack(exchange.terminal.get_str("turn"))

Bound waits with ``asyncio.timeout()`` around the loop; a slow agent never blocks
other tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType

from ductor.protocol.client import AgentDisconnected, AgentRefused, AgentUnavailable
from ductor.protocol.events import Event, is_known_event
from ductor.protocol.framing import decode_line, read_line, too_large
from ductor.protocol.messages import DEFAULT_FRAME_MAX, Request, RequestType, new_request_id

log = logging.getLogger("ductor.protocol")


class AsyncExchange:
    """A request sent on its own connection; iterate it for the events that answer it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        socket_path: Path,
        request: Request,
        *,
        max_bytes: int = DEFAULT_FRAME_MAX,
    ) -> None:
        self.socket_path = socket_path
        self.request = request
        self.terminal: Event | None = None
        """The ``final`` or ``error`` event, once it has been read."""
        self._reader = reader
        self._writer = writer
        self._max = max_bytes

    async def __aenter__(self) -> AsyncExchange:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncExchange:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next_event(self) -> Event | None:
        """The next event; ``None`` once the terminal event has been returned."""
        if self.terminal is not None:
            return None
        while True:
            try:
                line = await read_line(self._reader, self._max)
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

    async def ack(self, turn: str) -> None:
        """Tell the agent the final answer of ``turn`` arrived (for ``want_ack``)."""
        ack = Request(type=RequestType.ACK, id=new_request_id(), entry=turn)
        try:
            self._writer.write(ack.encode())
            await self._writer.drain()
        except OSError as exc:
            raise AgentDisconnected(self.socket_path, self.request.id, str(exc)) from None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def open_exchange(
    socket_path: Path, request: Request, *, max_bytes: int = DEFAULT_FRAME_MAX
) -> AsyncExchange:
    """Connect to the agent and send ``request``."""
    line = request.encode()
    if len(line) - 1 > max_bytes:
        raise too_large(max_bytes)
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=max_bytes + 1)
    except PermissionError as exc:
        raise AgentRefused(
            f"permission denied connecting to {socket_path} ({exc.strerror}); the agent"
            " accepts only the user it runs as (and root)"
        ) from None
    except OSError as exc:
        raise AgentUnavailable(socket_path, exc.strerror or str(exc)) from None
    try:
        writer.write(line)
        await writer.drain()
    except OSError as exc:
        writer.close()
        raise AgentDisconnected(socket_path, request.id, str(exc)) from None
    return AsyncExchange(reader, writer, socket_path, request, max_bytes=max_bytes)

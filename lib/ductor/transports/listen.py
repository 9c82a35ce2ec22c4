"""A transport's ``listen`` connection: the turns the agent starts itself (a background
task's result injected into a chat's session) are shown live, like the answer to a
message, while the transport is connected (docs/protocol.md, "Listen").

The transport keeps one connection open with a ``listen`` request for its sessions. The
agent pushes each injected turn on it under the turn's own id: ``accepted``, the deltas,
the ``final``; :func:`listen` hands each turn to ``show`` as a :class:`TurnStream`, which
reads like an exchange (``next_event``, ``ack``). An answer the transport never
acknowledges (it went away) goes to the outbox: shown once either way.

With socket activation a connection starts the agent, and the agent exits when idle
(the listen connection does not keep it up). So the connection is opened only while
the agent is known to run: once this transport has handed it a request, and again after
a drop only once it has answered another one (:func:`agentlink.agent_answered_since`).
Until then an injected turn's answer takes the outbox, which the transport drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ductor.protocol import Event, EventType, Request, RequestType, new_request_id
from ductor.protocol.aclient import AsyncExchange, open_exchange
from ductor.protocol.client import AgentDisconnected, AgentUnavailable
from ductor.protocol.messages import DEFAULT_FRAME_MAX
from ductor.transports import agentlink

log = logging.getLogger(__name__)

RECONNECT = (1.0, 2.0, 5.0, 10.0, 30.0)  # pauses before opening the connection again
AGENT_CHECK_EVERY = 1.0  # seconds between looks at whether the agent answered meanwhile


class TurnStream(AsyncExchange):
    """The events of one turn pushed on the listen connection, read like the exchange of
    a request; the connection stays the listener's (``close`` leaves it open)."""

    def __init__(self, listener: AsyncExchange, turn: str) -> None:
        super().__init__(
            listener._reader,
            listener._writer,
            listener.socket_path,
            Request(type=RequestType.LISTEN, id=turn, text=listener.request.text),
            max_bytes=listener._max,
        )
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()

    def put(self, event: Event | None) -> None:
        """The next event of the turn; ``None``: the connection dropped."""
        self._events.put_nowait(event)

    async def next_event(self) -> Event | None:
        if self.terminal is not None:
            return None
        event = await self._events.get()
        if event is None:
            raise AgentDisconnected(self.socket_path, self.request.id, "the listener closed")
        if event.is_terminal:
            self.terminal = event
        return event

    async def close(self) -> None:
        return None


Show = Callable[[Event, TurnStream], Coroutine[Any, Any, None]]


async def listen(
    socket: Path,
    transport: str,
    stop: asyncio.Event,
    show: Show,
    *,
    tasks: set[asyncio.Task[None]],
    max_bytes: int = DEFAULT_FRAME_MAX,
) -> None:
    """Keep the listen connection of ``transport`` open until ``stop``; each pushed turn
    is shown by ``show(first_event, stream)`` in a task kept in ``tasks``."""
    attempt = 0
    ended = float("-inf")  # when the last connection ended: the agent may have exited
    while not stop.is_set():
        while not agentlink.agent_answered_since(socket, ended):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), AGENT_CHECK_EVERY)
            if stop.is_set():
                return
        try:
            await _session(socket, transport, show, tasks=tasks, max_bytes=max_bytes)
            attempt = 0
        except (AgentUnavailable, AgentDisconnected, ConnectionError, OSError) as exc:
            log.debug("listen connection to %s: %s", socket, exc)
        except Exception:
            log.exception("the listen connection to %s failed", socket)
        ended = time.monotonic()
        wait = RECONNECT[min(attempt, len(RECONNECT) - 1)]
        attempt += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)


async def _session(
    socket: Path,
    transport: str,
    show: Show,
    *,
    tasks: set[asyncio.Task[None]],
    max_bytes: int,
) -> None:
    request = Request(type=RequestType.LISTEN, id=new_request_id(), text=transport)
    listener = await open_exchange(socket, request, max_bytes=max_bytes)
    streams: dict[str, TurnStream] = {}
    try:
        while True:
            event = await listener.next_event()
            if event is None:
                return  # the agent ended the listen request (it never does today)
            if event.request_id == request.id:
                continue  # "listening"
            listener.terminal = None  # a turn's final ends the turn, not the listening
            stream = streams.get(event.request_id)
            if stream is None:
                if event.type is not EventType.ACCEPTED:
                    continue  # the rest of a turn that began before this connection
                stream = streams[event.request_id] = TurnStream(listener, event.request_id)
                task = asyncio.create_task(show(event, stream))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                continue
            stream.put(event)
            if event.is_terminal:
                del streams[event.request_id]
    finally:
        for stream in streams.values():
            stream.put(None)  # its answer takes the outbox
        await listener.close()

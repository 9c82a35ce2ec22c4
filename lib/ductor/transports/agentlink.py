"""What every transport does with the agent socket: hand a request over (waiting while
the agent cannot be reached, so nothing is dropped), acknowledge a shown answer, and
check a file before it goes out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from ductor.agent import markup
from ductor.errors import DuctorError
from ductor.paths import Paths
from ductor.protocol import Event, Request
from ductor.protocol.aclient import AsyncExchange, open_exchange
from ductor.protocol.client import AgentUnavailable

log = logging.getLogger(__name__)

AGENT_RETRY = (0.5, 1.0, 2.0, 5.0, 10.0)  # waits while the agent cannot be reached

#: socket -> time.monotonic() of the last request the agent answered there.
_last_answer: dict[Path, float] = {}


def agent_answered_since(socket: Path, moment: float) -> bool:
    """True when the agent behind ``socket`` answered a request of this process after
    ``moment`` (a ``time.monotonic()`` value): it is running, so a connection to it
    starts nothing."""
    return _last_answer.get(socket, float("-inf")) > moment


async def hand_over(
    socket: Path, request: Request, stop: asyncio.Event, *, agent: str
) -> tuple[AsyncExchange, Event] | None:
    """Send ``request`` and return the open exchange with its first event (``accepted``,
    ``queued`` or a terminal one). Retries until the agent answers; None when ``stop``
    is set meanwhile or the agent closed without a word."""
    attempt = 0
    while True:
        try:
            exchange = await open_exchange(socket, request)
            first = await exchange.next_event()
            break
        except (AgentUnavailable, ConnectionError, OSError) as exc:
            if stop.is_set():
                return None
            wait = AGENT_RETRY[min(attempt, len(AGENT_RETRY) - 1)]
            attempt += 1
            log.warning("agent %s unavailable (%s); retrying in %.1f s", agent, exc, wait)
            await asyncio.sleep(wait)
    if first is None:
        await exchange.close()
        return None
    _last_answer[socket] = time.monotonic()
    return exchange, first


async def start_turn(
    socket: Path,
    request: Awaitable[Request | None],
    stop: asyncio.Event,
    *,
    agent: str,
    follow: Callable[[AsyncExchange, Event], Coroutine[Any, Any, None]],
    tasks: set[asyncio.Task[None]],
    not_followed: Callable[[], None] | None = None,
) -> asyncio.Task[None] | None:
    """Hand ``request`` over (see :func:`hand_over`) and ``follow`` the answer in a task
    kept in ``tasks`` until it ends; returns the task. When there is nothing to follow (no
    request, ``stop`` set, the agent closed, an error), ``not_followed`` is called: it
    releases what was held for the answer (a typing notice)."""
    task: asyncio.Task[None] | None = None
    try:
        ready = await request
        handed = None
        if ready is not None:
            handed = await hand_over(socket, ready, stop, agent=agent)
        if handed is not None:
            task = asyncio.create_task(follow(*handed))
    finally:
        if task is None and not_followed is not None:
            not_followed()
    if task is not None:
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return task


async def ack(exchange: AsyncExchange, event: Event) -> None:
    """Tell the agent the answer of ``event``'s turn is shown (so it leaves the outbox)."""
    turn = event.get_str("turn")
    if turn:
        with contextlib.suppress(DuctorError, OSError, ConnectionError):
            await exchange.ack(turn)


def file_allowed(path: Path, *, paths: Paths, workspace: Path, file_access: str) -> bool:
    """The path check of every file a transport sends out (``file_access``; ductor's
    own credentials and state and /proc never leave, see :func:`markup.check_file`)."""
    try:
        markup.check_file(
            str(path), paths=paths, workspace=workspace, home=Path.home(), file_access=file_access
        )
    except markup.FileRefused as exc:
        log.warning("not sending %s: %s", path, exc)
        return False
    return True


async def repeat(
    stop: asyncio.Event,
    every: float,
    job: Callable[[], Awaitable[object]],
    what: str,
    *,
    now: bool = False,
) -> None:
    """Run ``job`` every ``every`` seconds (first at once when ``now``) until ``stop``;
    a failure is logged (``what`` failed) and the next round still comes."""
    if not now:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
            return
    while True:
        try:
            await job()
        except Exception:
            log.exception("%s failed", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
            return

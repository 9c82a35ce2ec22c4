"""How a transport takes incoming updates in: concurrently across chats, in order within
one, with a commit point that never passes an update the agent has not got.

A messenger hands updates over in one sequence (Telegram's ``update_id``, the events of
a Matrix sync). Handing one to the agent can take a while (a download, an image, an
agent that is restarting), and a chat that waits must not hold up another chat, a
command or a stop word. So each update goes to its *lane* (its chat, or its chat's
control lane for stop words), each lane works through its updates in order in a task of
its own, and the lanes run side by side.

What may be forgotten is decided by the *commit point*: the lowest sequence number not
yet done. Everything below it was handed over (or refused, or failed for good and was
reported), so the transport may confirm it to the messenger; everything from it on is
fetched again after a crash. :class:`Intake` never lets one update stop the others: an
exception while handling one is logged with its number, ``on_failure`` tells the user,
and the update counts as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Intake"]


@dataclass
class _Lane(Generic[T]):
    items: deque[tuple[int, T]]
    task: asyncio.Task[None] | None = None


class Intake(Generic[T]):
    """Updates ``T`` numbered by the messenger, handled by ``handle`` lane by lane.

    ``handle(item)`` returns True once the item is safe (handed to the agent, or nothing
    to do), False when it must be fetched again (the transport is stopping). Exceptions
    are caught: logged with ``describe(item)``, reported with ``on_failure(item, exc)``,
    and the item counts as done, so no single update can stop the loop. ``on_done()``
    runs right after each item is done, to persist the new commit point at once (a kill
    between the agent's acceptance and the commit would hand the update over twice).
    """

    def __init__(
        self,
        handle: Callable[[T], Awaitable[bool]],
        *,
        on_failure: Callable[[T, Exception], Awaitable[None]] | None = None,
        describe: Callable[[T], str] = str,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._handle = handle
        self._on_done = on_done
        self._on_failure = on_failure
        self._describe = describe
        self._lanes: dict[str, _Lane[T]] = {}
        self._open: set[int] = set()  # submitted, not done
        self._kept: set[int] = set()  # not safe: to be fetched again
        self._done: set[int] = set()  # done, but above the commit point
        self._after_last: int | None = None  # the number after the last one submitted
        self._progress = asyncio.Event()

    @property
    def busy(self) -> bool:
        """Whether an update is still being handed over."""
        return bool(self._open)

    def seen(self, number: int) -> bool:
        """Whether ``number`` was submitted already: the messenger sends it again until
        it is asked for what comes after the commit point; it must not be handled twice."""
        return number in self._open or number in self._kept or number in self._done

    def commit_point(self, default: int) -> int:
        """The lowest number not yet done (``default`` before anything was submitted)."""
        pending = self._open | self._kept
        if pending:
            return min(pending)
        return default if self._after_last is None else self._after_last

    def forget_below(self, number: int) -> None:
        """The messenger is asked for updates from ``number`` on: it sends nothing below
        it again, so what is done below it need not be remembered."""
        self._done = {done for done in self._done if done >= number}

    def submit(self, lane: str, number: int, item: T) -> None:
        """Queue ``item`` (number ``number``) at the end of ``lane``."""
        self._after_last = number + 1
        self._open.add(number)
        entry = self._lanes.get(lane)
        if entry is None:
            entry = self._lanes[lane] = _Lane(deque())
        entry.items.append((number, item))
        if entry.task is None:
            entry.task = asyncio.create_task(self._work(lane, entry), name=f"intake {lane}")

    def skip(self, number: int) -> None:
        """``number`` needs no handling (it could not even be read): count it as done."""
        self._after_last = number + 1
        self._done.add(number)

    async def progressed(self, timeout: float) -> None:
        """Wait until some update is done, at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)
        self._progress.clear()

    async def close(self) -> None:
        """Cancel every lane (the transport is stopping); what was not done stays open."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, name: str, lane: _Lane[T]) -> None:
        try:
            while lane.items:
                number, item = lane.items[0]
                safe = await self._one(item)
                lane.items.popleft()
                self._open.discard(number)
                (self._done if safe else self._kept).add(number)
                self._progress.set()
                if self._on_done is not None:
                    try:
                        self._on_done()
                    except Exception:
                        log.exception("cannot record the progress of the intake")
        finally:
            lane.task = None
            if self._lanes.get(name) is lane and not lane.items:
                del self._lanes[name]

    async def _one(self, item: T) -> bool:
        try:
            return await self._handle(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s failed; skipping it", self._describe(item))
            if self._on_failure is not None:
                try:
                    await self._on_failure(item, exc)
                except asyncio.CancelledError:
                    raise
                except Exception as again:
                    what = self._describe(item)
                    log.warning("could not report the failure of %s: %s", what, again)
            return True

"""The "typing…" indicator of a chat: one loop per chat, however many of its messages
wait or run, so 200 queued messages cost one chat action every few seconds, not 200."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

__all__ = ["Typing"]


class Typing(Generic[K]):
    """``send(key)`` every ``every`` seconds while at least one holder holds ``key``."""

    def __init__(self, send: Callable[[K], Awaitable[object]], every: float) -> None:
        self._send = send
        self._every = every
        self._holders: dict[K, int] = {}
        self._loops: dict[K, asyncio.Task[None]] = {}

    def hold(self, key: K) -> None:
        """One more reason to show typing in ``key`` (starts the loop for the first)."""
        self._holders[key] = self._holders.get(key, 0) + 1
        if key not in self._loops:
            self._loops[key] = asyncio.create_task(self._loop(key), name=f"typing {key}")

    def release(self, key: K) -> None:
        """One reason fewer; the loop ends with the last one."""
        count = self._holders.get(key, 0) - 1
        if count > 0:
            self._holders[key] = count
            return
        self._holders.pop(key, None)
        loop = self._loops.pop(key, None)
        if loop is not None:
            loop.cancel()

    def holders(self, key: K) -> int:
        return self._holders.get(key, 0)

    def close(self) -> None:
        for loop in self._loops.values():
            loop.cancel()
        self._loops.clear()
        self._holders.clear()

    async def _loop(self, key: K) -> None:
        while True:
            try:
                await self._send(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a chat action is cosmetic: never worth a crash
                log.debug("typing in %s failed: %s", key, exc)
            await asyncio.sleep(self._every)

"""The loop every transport's outbox reader shares: wait for a wake-up or the next
retry, deliver what is due, until told to stop (see docs/spool.md, the reader)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from ductor.spool import MEANT_FOR, Envelope, Queue, Spool, WakeListener, WakeSocketBusyError

log = logging.getLogger(__name__)

TRANSPORT_NAMES = {"tg": "Telegram", "mx": "Matrix"}
RETRY_AFTER_FAILURE = 5.0  # seconds before a drain whose queue failed tries again


def rerouted_reason(envelope: Envelope) -> str | None:
    """Why ``envelope`` is here although it was meant for another transport's chat (the
    spool moved it: that transport is not run by this agent), or None."""
    meant = str(envelope.payload.metadata.get(MEANT_FOR) or "")
    if not meant:
        return None
    transport, _, chat = meant.partition(":")
    name = TRANSPORT_NAMES.get(transport, transport)
    where = f"{name} chat {chat}" if chat and chat != "broadcast" else name
    return f"meant for {where}, but this agent does not run {name}"


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def refused_note(envelope: Envelope, reason: str) -> str:
    """What the main user reads about an envelope that was not delivered: ``reason``."""
    origin = envelope.routing.origin.strip()
    what = f"{envelope.kind} message" + (f" ({origin})" if origin else "")
    return (
        f"A {what} was not delivered: {reason}. It waits in the outbox as {envelope.id};"
        " once that chat is allowed, `ductor outbox resend` delivers it."
    )


class DrainLoop(ABC):
    """Subclasses set ``self.queue`` (and ``self.spool`` to adopt what waits in the
    outboxes of transports the agent no longer runs) and implement :meth:`_handle`.

    A drain survives any one envelope: one whose handling raises what the subclass did
    not expect goes to ``bad/`` with the reason (``ductor outbox`` lists it, ``resend``
    retries it), and the drain goes on with the next.

    Deny by default, as for incoming messages: a drain delivers only to the users,
    groups and rooms the allowlists name (:meth:`refusal` says why not); an envelope for
    any other chat goes to ``bad/`` with the reason and the main user is told
    (:meth:`refused`). Broadcasts go to allowed users only anyway.
    """

    queue: Queue
    spool: Spool | None = None

    @abstractmethod
    async def _handle(self, envelope: Envelope) -> None:
        """Deliver (or retry later, or refuse) one claimed ``envelope``."""

    async def process_due(self, stop: asyncio.Event | None = None) -> int:
        """Claim and handle every envelope that is due now; returns how many.

        :meth:`run` calls this after each wake-up; a caller that runs its own loop must
        call :meth:`~ductor.spool.Queue.recover` once before the first call.
        """
        handled = 0
        while stop is None or not stop.is_set():
            envelope = await asyncio.to_thread(self.queue.claim_next)
            if envelope is None:
                break
            try:
                await self._handle(envelope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("envelope %s could not be handled; moving it to bad/", envelope.id)
                await self._set_aside(envelope, f"could not be handled: {_describe(exc)}")
            handled += 1
        return handled

    async def _set_aside(self, envelope: Envelope, reason: str) -> None:
        try:
            await asyncio.to_thread(self.queue.reject, envelope, reason)
        except Exception as exc:  # not in cur/ any more, or the disk failed: logged
            log.warning("envelope %s could not be moved to bad/: %s", envelope.id, exc)

    @abstractmethod
    def refusal(self, envelope: Envelope) -> str | None:
        """Why ``envelope`` may not go to the chat it names (not in the allowlists), or
        None when it may (or goes to the main user anyway)."""

    @abstractmethod
    async def tell_main_user(self, text: str) -> None:
        """Send ``text`` (plain) to the main user's private chat; raises if it cannot."""

    async def refused(self, envelope: Envelope) -> bool:
        """Reject a claimed ``envelope`` whose chat is not allowed: to ``bad/`` with the
        reason, and a note to the main user. False (nothing done) when it may go."""
        reason = self.refusal(envelope)
        if reason is None:
            return False
        log.warning("envelope %s is not delivered: %s", envelope.id, reason)
        await asyncio.to_thread(self.queue.reject, envelope, reason)
        try:
            await self.tell_main_user(refused_note(envelope, reason))
        except Exception as exc:  # the envelope is safe in bad/; the note is a courtesy
            log.warning("could not tell the main user about envelope %s: %s", envelope.id, exc)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; the queue is closed (lock, socket) on return."""
        try:
            listener: WakeListener | None = self.queue.listen()
        except WakeSocketBusyError as exc:
            log.warning("%s; delivering on rescans only", exc)
            listener = None
        try:
            await asyncio.to_thread(self.queue.recover)
            if self.spool is not None and self.spool.served[:1] == (self.queue.path.name,):
                moved = await asyncio.to_thread(self.spool.adopt_orphans)
                if moved:
                    log.warning("%d envelope(s) adopted from other outboxes", moved)
            while not stop.is_set():
                try:
                    await self.process_due(stop)
                    if stop.is_set():
                        break
                    await self._wait(listener, stop)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the queue itself (a directory, the disk): try again
                    log.exception("the outbox %s failed; trying again", self.queue.path)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RETRY_AFTER_FAILURE)
        finally:
            self.queue.close()

    async def _wait(self, listener: WakeListener | None, stop: asyncio.Event) -> None:
        timeout = await asyncio.to_thread(self.queue.next_wait)
        if timeout <= 0:
            return
        if listener is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            return
        woken = asyncio.ensure_future(listener.wait_async(timeout))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, stopped):
                task.cancel()
            await asyncio.gather(woken, stopped, return_exceptions=True)

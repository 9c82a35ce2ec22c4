"""One compact notice per room for the messages waiting in the agent's queue.

A message sent while the room's previous one is being answered is ``queued`` by the
agent (with a ``reason``, the words to show in ``text`` and a ``position``). Matrix
clients show every event, and a deleted one as "Message deleted", so a notice, a
reaction and a redaction per queued message would bury a burst of messages under
three times as many events. Instead each room has at most one notice: sent for the
first queued message of a burst (as a reply to it, with one 1️⃣ reaction: cancel what
waits), edited in place (``m.replace``, at most once per :data:`EDIT_EVERY`) while the
burst grows or drains, and removed once, when nothing waits any more.

The notice ids are kept in ``matrix/queue_notices.json``: a notice left behind by a
transport that was killed is removed at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ductor import atomic

__all__ = ["CANCEL_ALL", "EDIT_EVERY", "QueueNotices", "notice_text"]

log = logging.getLogger("ductor.matrix")

EDIT_EVERY = 1.5  # seconds between two edits of one notice
CANCEL_ALL = "mq:*"  # the data of the notice's button: cancel every waiting message
LABEL = "Cancel"

SendNotice = Callable[[str, str, str, str], Awaitable[str]]  # room, body, html, reply_to
EditNotice = Callable[[str, str, str, str], Awaitable[None]]  # room, event id, body, html
Redact = Callable[[str, str], Awaitable[None]]  # room, event id
OfferCancel = Callable[[str, str], Awaitable[None]]  # room, event id


@dataclass
class _Board:
    notice: str = ""  # the notice's event id ("" while it is being sent)
    waiting: dict[str, str] = field(default_factory=dict)  # entry -> the agent's words
    shown: tuple[int, str] = (0, "")  # what the notice says now: (count, words)
    refresh: asyncio.Task[None] | None = None
    sending: asyncio.Task[str] | None = None


def notice_text(count: int, words: str) -> tuple[str, str]:
    """The notice's body and HTML for ``count`` waiting messages."""
    head = "[Message in queue...]" if count == 1 else f"[Message in queue: {count} waiting...]"
    them = "it" if count == 1 else "them"
    body = f"{head} {words}".rstrip() + f"\nReact 1️⃣ to cancel {them}."
    words_html = f" {html.escape(words)}" if words else ""
    return body, f"<i>{html.escape(head)}</i>{words_html}<br>1️⃣ {LABEL} {them}"


class QueueNotices:
    def __init__(
        self,
        file: Path,
        *,
        send: SendNotice,
        edit: EditNotice,
        redact: Redact,
        offer_cancel: OfferCancel,
    ) -> None:
        self.file = file
        self.send, self.edit, self.redact, self.offer_cancel = send, edit, redact, offer_cancel
        self.boards: dict[str, _Board] = {}

    # -- what the agent says -----------------------------------------------------------------

    async def queued(self, room: str, reply_to: str, entry: str, words: str) -> None:
        """A message of ``room`` waits (its ``queued`` event)."""
        board = self.boards.setdefault(room, _Board())
        board.waiting[entry] = words
        if not board.notice and board.sending is None:
            body, text = notice_text(1, words)
            board.shown = (1, words)
            board.sending = asyncio.ensure_future(self.send(room, body, text, reply_to))
            try:
                board.notice = await board.sending
            except Exception as exc:  # a notice is a courtesy: it never fails a turn
                log.info("could not show the queue notice in %s: %s", room, exc)
                self.boards.pop(room, None)
                return
            finally:
                board.sending = None
            self._save()
            with contextlib.suppress(Exception):
                await self.offer_cancel(room, board.notice)
        self._schedule(room)

    def done(self, room: str, entry: str) -> None:
        """``entry`` of ``room`` waits no more (its turn started, or it was dropped)."""
        board = self.boards.get(room)
        if board is not None and board.waiting.pop(entry, None) is not None:
            self._schedule(room)

    def waiting(self, room: str) -> list[str]:
        board = self.boards.get(room)
        return list(board.waiting) if board else []

    # -- the notice ----------------------------------------------------------------------------

    def _schedule(self, room: str) -> None:
        board = self.boards.get(room)
        if board is None or (board.refresh is not None and not board.refresh.done()):
            return
        board.refresh = asyncio.ensure_future(self._refresh(room, board))

    async def _refresh(self, room: str, board: _Board) -> None:
        try:
            await self._bring_up_to_date(room, board)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a notice is a courtesy: it never fails a turn
            log.info("could not update the queue notice in %s: %s", room, exc)

    async def _bring_up_to_date(self, room: str, board: _Board) -> None:
        """Bring the notice up to date, then wait before the next edit (a burst of
        queued messages is one edit, not one each)."""
        while True:
            if board.sending is not None:
                with contextlib.suppress(Exception):
                    await board.sending
            if not board.notice:
                return
            if not board.waiting:
                if self.boards.get(room) is board:
                    del self.boards[room]
                    self._save()
                await self.redact(room, board.notice)
                return
            wanted = (len(board.waiting), list(board.waiting.values())[-1])
            if wanted == board.shown:
                return
            board.shown = wanted
            await self.edit(room, board.notice, *notice_text(*wanted))
            await asyncio.sleep(EDIT_EVERY)

    # -- across restarts ---------------------------------------------------------------------

    def _save(self) -> None:
        notices = {room: board.notice for room, board in self.boards.items() if board.notice}
        with contextlib.suppress(OSError):
            atomic.write_json(self.file, notices, mode=0o600)

    def left_behind(self) -> dict[str, str]:
        """The notices a previous run of the transport left (room -> event id)."""
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v}

    async def clean_up(self) -> None:
        """Remove the notices a killed transport left behind (nothing of it waits now:
        the agent's answers to those messages come through the outbox)."""
        stale = self.left_behind()
        for room, event_id in stale.items():
            log.info("removing the queue notice %s a previous run left in %s", event_id, room)
            with contextlib.suppress(Exception):
                await self.redact(room, event_id)
        if stale:
            self._save()

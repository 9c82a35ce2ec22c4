"""The outbox drain: delivers the agent's envelopes (``spool/outbox/tg``) to Telegram.

The loop is the spool's reader loop (docs/spool.md): bind ``wake.sock`` before the first
scan, :meth:`~ductor.spool.Queue.recover`, then claim, send, record, finish, and wait
for a wake-up, the next retry or the 30 s rescan. A failed send goes back to the queue
with :meth:`~ductor.spool.Queue.fail`; the queue's retry policy spaces the attempts.

Where an envelope goes:

- unicast: ``routing.chat_id``, in forum topic ``routing.topic_id`` when set;
- broadcast: the private chat of every allowed user. A user who cannot be reached right
  now gets a unicast copy ``ID-to-USER`` in the same queue, retried on its own, so the
  others do not get the message twice; a user who blocked the bot is skipped;
- a chat the bot can no longer reach (``known_chat`` says so, or Telegram answers "chat
  not found", "bot was kicked", "not a member", "bot was blocked", "message thread not
  found") makes it go to the main chat instead, under a one-line explanation, and the
  delivery is recorded with ``fallback_used`` and the reason.

What is sent: a bold header for kinds that arrive unasked (``Cron``, ``Heartbeat``,
``Task``, ``Notice``, followed by ``routing.origin``) unless the text already opens with
bold Markdown, since most writers title their own messages; then ``payload.text`` as
HTML, split to Telegram's size, with the inline buttons under the last piece; then each
file of ``payload.files``, as a photo where Telegram takes it as one. A file that is
missing, not allowed (``file_allowed``) or too big to upload is replaced by a short
note instead of failing the envelope, because retrying would not change that.

A text that would need more than ``streaming.max_messages`` messages is sent as a short
summary plus the whole Markdown as a ``.md`` document, as a live answer is
(:class:`~ductor.transports.telegram.answer.LongAnswers`).

The answer of a turn (``metadata.turn``, ``metadata.reply_to``) is a reply to the user's
message, as a live one is. When the transport or the agent died while that turn was
shown (:mod:`~ductor.transports.telegram.inflight`), the complete answer is sent and
the partial messages left in the chat are deleted; when the answer was shown in full and
only its acknowledgement was lost, nothing is sent again.

Exactly once: an envelope whose delivery is already recorded is finished without being
sent again, whether :meth:`~ductor.spool.Queue.recover` finds it in ``cur/`` after a
crash or it comes up in ``new/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ductor.errors import DuctorError
from ductor.spool import Delivery, Envelope, Kind, Queue, Routing
from ductor.transports.drain import DrainLoop, rerouted_reason
from ductor.transports.telegram.answer import LongAnswers, summarise
from ductor.transports.telegram.formatting import markdown_to_html, split_html
from ductor.transports.telegram.inflight import InflightTurn, InflightTurns
from ductor.transports.telegram.media import is_photo

if TYPE_CHECKING:
    from ductor.transports.telegram.sender import Rows, Sender

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the Bot API's limit for files a bot sends
# What Telegram says when a chat (or topic) is gone for this bot, lower case.
GONE_MARKERS = (
    "chat not found",
    "bot was kicked",
    "not a member",
    "bot was blocked",
    "user is deactivated",
    "message thread not found",
)
HEADERS = {
    Kind.CRON: "Cron",
    Kind.HEARTBEAT: "Heartbeat",
    Kind.TASK: "Task",
    Kind.NOTICE: "Notice",
}
EMPTY_TEXT_WITH_BUTTONS = "…"  # Telegram needs some text to hang buttons on


class TargetGone(DuctorError):
    """The chat an envelope is for cannot be reached by the bot any more."""


@dataclass(frozen=True)
class Sent:
    """What one delivery produced: the message ids, and why it went elsewhere if it did."""

    message_ids: list[int]
    fallback_reason: str | None = None


def is_gone(error: BaseException) -> bool:
    """Whether Telegram's answer means the bot cannot reach that chat any more."""
    if isinstance(error, TargetGone):
        return True
    if not isinstance(error, DuctorError):
        return False
    text = str(error).lower()
    return any(marker in text for marker in GONE_MARKERS)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _as_int(value: int | str | None) -> int | None:
    if isinstance(value, int) or value is None:
        return value
    try:
        return int(value)
    except ValueError:
        return None


def _where(routing: Routing) -> str:
    where = f"chat {routing.chat_id}"
    return where if routing.topic_id is None else f"{where} (topic {routing.topic_id})"


class OutboxDrain(DrainLoop):
    """Delivers one outbox queue to Telegram until ``stop`` is set."""

    def __init__(
        self,
        queue: Queue,
        sender: Sender,
        *,
        allowed_user_ids: Sequence[int],
        main_chat: int | None,
        known_chat: Callable[[int], bool] = lambda chat: True,
        chat_allowed: Callable[[int], bool] | None = None,
        file_allowed: Callable[[Path], bool] = lambda path: True,
        inflight: InflightTurns | None = None,
        long_answers: LongAnswers | None = None,
    ) -> None:
        self.queue = queue
        self.sender = sender
        self.allowed_user_ids = list(allowed_user_ids)
        self.main_chat = main_chat if main_chat is not None else next(iter(allowed_user_ids), None)
        self.known_chat = known_chat
        # The live allowlists (a reload changes them); by default the allowed users' chats.
        self.chat_allowed = chat_allowed or (lambda chat: chat in self.allowed_user_ids)
        self.file_allowed = file_allowed
        self.inflight = inflight
        self.long_answers = long_answers

    # -- one envelope of a pass (the pass and the loop are DrainLoop's) --------------

    async def _handle(self, envelope: Envelope) -> None:
        if envelope.delivery.delivered:
            log.info("envelope %s was delivered before; not sending it again", envelope.id)
            await asyncio.to_thread(self.queue.finish, envelope)
            return
        if await self.refused(envelope):
            return
        try:
            sent = await self._deliver(envelope)
        except TargetGone as exc:
            log.warning("envelope %s: %s", envelope.id, exc)
            await asyncio.to_thread(self.queue.fail, envelope, str(exc), permanent=True)
            return
        except Exception as exc:  # anything the sender raises: retried after a backoff
            log.warning("envelope %s: delivery failed, will retry: %s", envelope.id, exc)
            await asyncio.to_thread(self.queue.fail, envelope, str(exc) or type(exc).__name__)
            return
        await asyncio.to_thread(
            self.queue.record_delivery,
            envelope,
            sent.message_ids,
            fallback_reason=sent.fallback_reason,
        )
        await asyncio.to_thread(self.queue.finish, envelope)

    def refusal(self, envelope: Envelope) -> str | None:
        routing = envelope.routing
        chat = _as_int(routing.chat_id)
        if routing.broadcast or chat is None or rerouted_reason(envelope) is not None:
            return None  # allowed users only, or the main user's chat with a note
        if self.chat_allowed(chat):
            return None
        lists = "allowed_user_ids, allowed_group_ids or allowed_channel_ids"
        return f"{_where(routing)} is not in {lists}"

    async def tell_main_user(self, text: str) -> None:
        if self.main_chat is None:
            raise TargetGone("no allowed user to tell")
        await self.sender.send_text(self.main_chat, f"<i>{html.escape(text, quote=False)}</i>")

    # -- one envelope -----------------------------------------------------------------

    async def deliver(self, envelope: Envelope) -> list[int]:
        """Send ``envelope`` where it belongs; returns the ids of the messages sent."""
        return (await self._deliver(envelope)).message_ids

    async def _deliver(self, envelope: Envelope) -> Sent:
        if envelope.routing.broadcast:
            return Sent(await self._broadcast(envelope))
        routing = envelope.routing
        chat, thread = _as_int(routing.chat_id), _as_int(routing.topic_id)
        rerouted = rerouted_reason(envelope)
        if rerouted is not None:
            return Sent(
                await self._fallback(envelope, rerouted, note=f"(This was {rerouted}.)"), rerouted
            )
        if chat is None or (routing.topic_id is not None and thread is None):
            reason = f"{_where(routing)} is not a Telegram chat"
        elif not self.known_chat(chat):
            reason = f"{_where(routing)} is unknown to the bot or was left"
        else:
            try:
                return Sent(await self._answer(envelope, chat, thread))
            except DuctorError as exc:
                if not is_gone(exc):
                    raise
                reason = f"{_where(routing)} is unreachable: {exc}"
        return Sent(await self._fallback(envelope, reason), reason)

    async def _fallback(self, envelope: Envelope, reason: str, *, note: str = "") -> list[int]:
        routing = envelope.routing
        target = self.main_chat
        if target is None or target == _as_int(routing.chat_id):
            raise TargetGone(f"{reason}, and there is no other chat to deliver it to")
        log.warning("envelope %s: %s; delivering it to chat %s", envelope.id, reason, target)
        note = note or f"(This was meant for {_where(routing)}, which I can no longer reach.)"
        return await self._send(envelope, target, None, note=note)

    async def _broadcast(self, envelope: Envelope) -> list[int]:
        message_ids: list[int] = []
        reached = 0
        unreached: list[tuple[int, Exception]] = []
        for user in self.allowed_user_ids:
            try:
                message_ids += await self._send(envelope, user, None)
                reached += 1
            except Exception as exc:
                if is_gone(exc):
                    log.warning("envelope %s: skipping user %s: %s", envelope.id, user, exc)
                else:
                    unreached.append((user, exc))
        if not reached:
            if unreached:
                raise unreached[0][1]
            raise TargetGone("a broadcast, but no allowed user can be reached")
        for user, error in unreached:
            copy = replace(
                envelope,
                id=f"{envelope.id}-to-{user}"[:128],
                routing=Routing(
                    transport=envelope.routing.transport,
                    chat_id=user,
                    origin=envelope.routing.origin,
                ),
                # The copy's first attempt is the one that just failed: retry it later.
                delivery=Delivery(
                    attempts=1,
                    next_attempt_at=now_utc() + timedelta(seconds=self.queue.retry_policy.delay(1)),
                    last_error=str(error) or type(error).__name__,
                ),
            )
            await asyncio.to_thread(self.queue.put, copy)
            log.warning("envelope %s: user %s gets a copy later: %s", envelope.id, user, error)
        return message_ids

    async def _answer(self, envelope: Envelope, chat: int, thread: int | None) -> list[int]:
        """Send ``envelope`` to the chat it was meant for: a turn's answer replies to the
        user's message and takes the place of what a dead stream left of it."""
        metadata = envelope.payload.metadata
        turn = metadata.get("turn")
        left = self._left_behind(turn, chat) if isinstance(turn, str) else None
        if left is not None and left.shown and self.inflight is not None:
            log.info("envelope %s: its answer is in the chat already", envelope.id)
            self.inflight.end(left.turn)
            return list(left.messages)
        reply_to = _as_int(metadata.get("reply_to") or None)
        if reply_to is None and left is not None:
            reply_to = left.user_message
        message_ids = await self._send(envelope, chat, thread, reply_to=reply_to)
        if left is not None and self.inflight is not None:
            for message_id in left.messages:
                if message_id not in message_ids:
                    with contextlib.suppress(DuctorError):
                        await self.sender.delete(chat, message_id)
            self.inflight.end(left.turn)
        return message_ids

    def _left_behind(self, turn: str, chat: int) -> InflightTurn | None:
        left = self.inflight.get(turn) if self.inflight is not None and turn else None
        return left if left is not None and left.chat_id == chat else None

    async def _send(
        self,
        envelope: Envelope,
        chat: int,
        thread: int | None,
        *,
        note: str = "",
        reply_to: int | None = None,
    ) -> list[int]:
        payload = envelope.payload
        text = payload.text
        long_answers = self.long_answers
        whole = long_answers is not None and long_answers.too_long(text)
        if whole:
            text = summarise(text)
        message_ids = await self._send_text(
            envelope, chat, thread, text, note=note, reply_to=reply_to
        )
        if whole and long_answers is not None:
            turn = payload.metadata.get("turn")
            name = f"answer-{turn}.md" if isinstance(turn, str) and turn else f"{envelope.id}.md"
            document = await long_answers.send_document(
                self.sender, chat, payload.text, name=name, thread_id=thread
            )
            if document is None:  # the whole text as messages after all: nothing is lost
                message_ids += await self._send_text(envelope, chat, thread, payload.text)
            else:
                message_ids.append(document)
        for path in payload.files:
            message_ids.append(await self._send_file(chat, thread, Path(path)))
        if not message_ids:
            log.warning("envelope %s has nothing to send", envelope.id)
        return message_ids

    async def _send_text(
        self,
        envelope: Envelope,
        chat: int,
        thread: int | None,
        text: str,
        *,
        note: str = "",
        reply_to: int | None = None,
    ) -> list[int]:
        """``text`` (Markdown) under the note and header, the buttons on its last piece."""
        parts = []
        if note:
            parts.append(f"<i>{html.escape(note, quote=False)}</i>")
        header = self._header(envelope)
        if header:
            parts.append(f"<b>{html.escape(header, quote=False)}</b>")
        if text.strip():
            parts.append(markdown_to_html(text))
        chunks = split_html("\n\n".join(parts)) if parts else []
        payload = envelope.payload
        rows: Rows = [[(button.label, button.data) for button in row] for row in payload.buttons]
        if rows and not chunks:
            chunks = [EMPTY_TEXT_WITH_BUTTONS]
        message_ids: list[int] = []
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            message_ids.append(
                await self.sender.send_text(
                    chat,
                    chunk,
                    thread_id=thread,
                    reply_to=reply_to if index == 0 else None,
                    buttons=rows if last and rows else None,
                )
            )
        return message_ids

    def _header(self, envelope: Envelope) -> str:
        label = HEADERS.get(envelope.kind)
        if label is None or envelope.payload.text.lstrip().startswith("**"):
            return ""
        origin = envelope.routing.origin.strip()
        return f"{label}: {origin}" if origin else label

    async def _send_file(self, chat: int, thread: int | None, path: Path) -> int:
        problem = self._file_problem(path)
        if problem:
            log.warning("not sending %s to chat %s: %s", path, chat, problem)
            text = f"<i>{html.escape(problem, quote=False)}</i>"
            return await self.sender.send_text(chat, text, thread_id=thread)
        if is_photo(path):
            try:
                return await self.sender.send_file(chat, path, thread_id=thread, as_photo=True)
            except DuctorError as exc:
                if is_gone(exc):
                    raise
                # Telegram refuses some images as photos (dimensions, encoding).
                log.info("%s refused as a photo (%s); sending it as a document", path, exc)
        return await self.sender.send_file(chat, path, thread_id=thread)

    def _file_problem(self, path: Path) -> str:
        if not self.file_allowed(path):
            return f"Could not send {path.name}: it is outside the allowed directories."
        try:
            size = path.stat().st_size
        except OSError:
            return f"Could not send {path.name}: the file is gone."
        if size > MAX_UPLOAD_BYTES:
            return f"Could not send {path.name}: {size // 2**20} MB is over Telegram's 50 MB."
        return ""

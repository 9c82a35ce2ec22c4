"""Bot API calls the Telegram transport makes, with Telegram's limits kept.

:class:`Sender` is the small surface the stream editor and the outbox drain need;
:class:`BotSender` implements it over python-telegram-bot's ``Bot``:

- text goes out with ``parse_mode=HTML``; when Telegram refuses the markup ("can't parse
  entities") the same content is sent again as plain text, with a warning in the log;
- an edit that changes nothing ("message is not modified") counts as done;
- ``RetryAfter`` (429) waits as long as Telegram asks, network errors and 5xx answers
  back off 0.5, 1, 2, 4 s (at most 10 s); after ``max_retries`` retries the call raises
  :class:`SendFailed`, a temporary error the caller may retry later;
- edits of one chat are spaced ``per_chat_interval`` apart and every call takes a token
  from one bucket refilled at ``global_per_second``, so a storm stays inside Telegram's
  flood limits instead of collecting 429s.

Why a timeout does not resend a message: a ``TimedOut`` after the request went out says
nothing about whether Telegram created the message. Resending could show it twice, so
``sendMessage`` and the media sends are retried only when the failure provably happened
before the request reached the server (no connection, or no free connection in the pool);
otherwise :class:`SendFailed` is raised at once and the caller decides (the stream editor
sends one final message; the outbox drain keeps the envelope for a later delivery, whose
dedup is by envelope id). Edits, deletes, chat actions and reactions are idempotent and
always retried.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

import httpx
import telegram
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from ductor.errors import DuctorError, TemporaryError
from ductor.transports.telegram.formatting import html_to_plain

__all__ = ["BotSender", "Rows", "SendError", "SendFailed", "SendRefused", "Sender"]

log = logging.getLogger(__name__)

Rows = list[list[tuple[str, str]]]  # (label, callback_data)
T = TypeVar("T")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
_PARSE_ERROR = "can't parse entities"
_NOT_MODIFIED = "message is not modified"
# httpx failures that happen before a single byte of the request is sent.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class SendError(DuctorError):
    """A Bot API call did not succeed."""


class SendFailed(SendError, TemporaryError):
    """Telegram could not be reached, or kept refusing for now: try again later."""


class SendRefused(SendError):
    """Telegram refused the call for good (message gone, chat not found, bot blocked)."""


class Sender(Protocol):
    """What the stream editor and the outbox drain need from a messenger."""

    async def send_text(
        self,
        chat_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        buttons: Rows | None = None,
    ) -> int: ...

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        html: str,
        *,
        buttons: Rows | None = None,
        final: bool = False,
    ) -> None:
        """``final``: the last edit of an answer, not held back by the per-chat spacing
        of streaming edits (Telegram's 429 ``retry_after`` still applies)."""

    async def delete(self, chat_id: int, message_id: int) -> None: ...

    async def send_file(
        self,
        chat_id: int,
        path: Path,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        caption: str = "",
        as_photo: bool = False,
    ) -> int: ...

    async def chat_action(self, chat_id: int, thread_id: int | None = None) -> None: ...

    async def react(self, chat_id: int, message_id: int, emoji: str | None) -> None: ...


def _keyboard(buttons: Rows | None) -> telegram.InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return telegram.InlineKeyboardMarkup(
        [
            [telegram.InlineKeyboardButton(label, callback_data=data) for label, data in row]
            for row in buttons
        ]
    )


def _reply(reply_to: int | None) -> telegram.ReplyParameters | None:
    if reply_to is None:
        return None
    return telegram.ReplyParameters(reply_to, allow_sending_without_reply=True)


def _seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that an int becomes a timedelta later
        warnings.simplefilter("ignore")
        value: int | datetime.timedelta = error.retry_after
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


def _never_sent(error: NetworkError) -> bool:
    """Whether the request provably never reached Telegram."""
    cause = error.__cause__
    if isinstance(cause, httpx.HTTPError):
        return isinstance(cause, _NEVER_SENT)
    # A timeout without an httpx cause proves nothing; an error answer (5xx) says the
    # server answered without doing it.
    return not isinstance(error, TimedOut)


class _Pacer:
    """A token bucket for every call plus a minimum spacing of edits per chat."""

    def __init__(self, per_chat_interval: float, global_per_second: float) -> None:
        self.per_chat_interval = per_chat_interval
        self.rate = global_per_second
        self.capacity = max(1.0, global_per_second)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.next_edit: dict[int, float] = {}
        self.lock = asyncio.Lock()

    async def wait(self, chat_id: int, edit: bool) -> None:
        async with self.lock:
            now = time.monotonic()
            delay = 0.0
            if edit:
                delay = max(0.0, self.next_edit.get(chat_id, 0.0) - now)
            if self.rate > 0:
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                self.tokens -= 1
                if self.tokens < 0:
                    delay = max(delay, -self.tokens / self.rate)
            if edit:
                self.next_edit[chat_id] = now + delay + self.per_chat_interval
        if delay > 0:
            await asyncio.sleep(delay)


class BotSender:
    """:class:`Sender` over a ``telegram.Bot``, with retries, fallbacks and pacing."""

    def __init__(
        self,
        bot: telegram.Bot,
        *,
        per_chat_interval: float = 1.0,
        global_per_second: float = 25.0,
        max_retries: int = 5,
    ) -> None:
        self.bot = bot
        self.max_retries = max_retries
        self._pacer = _Pacer(per_chat_interval, global_per_second)

    async def send_text(
        self,
        chat_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        buttons: Rows | None = None,
    ) -> int:
        async def once(text: str, parse_mode: str | None) -> int:
            message = await self.bot.send_message(
                chat_id,
                text,
                parse_mode=parse_mode,
                message_thread_id=thread_id,
                reply_parameters=_reply(reply_to),
                reply_markup=_keyboard(buttons),
            )
            return message.message_id

        what = f"sending a message to chat {chat_id}"
        return await self._call(what, chat_id, self._html_or_plain(what, html, once))

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        html: str,
        *,
        buttons: Rows | None = None,
        final: bool = False,
    ) -> None:
        async def once(text: str, parse_mode: str | None) -> None:
            try:
                await self.bot.edit_message_text(
                    text,
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode=parse_mode,
                    reply_markup=_keyboard(buttons),
                )
            except BadRequest as error:
                if _NOT_MODIFIED not in error.message.lower():
                    raise

        what = f"editing message {message_id} in chat {chat_id}"
        await self._call(
            what, chat_id, self._html_or_plain(what, html, once), edit=not final, idempotent=True
        )

    async def delete(self, chat_id: int, message_id: int) -> None:
        what = f"deleting message {message_id} in chat {chat_id}"
        await self._call(
            what, chat_id, lambda: self.bot.delete_message(chat_id, message_id), idempotent=True
        )

    async def send_file(
        self,
        chat_id: int,
        path: Path,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        caption: str = "",
        as_photo: bool = False,
    ) -> int:
        async def once(text: str, parse_mode: str | None) -> int:
            send = self.bot.send_photo if as_photo else self.bot.send_document
            message = await send(
                chat_id,
                path.read_bytes(),
                filename=path.name,
                caption=text or None,
                parse_mode=parse_mode if text else None,
                message_thread_id=thread_id,
                reply_parameters=_reply(reply_to),
            )
            return message.message_id

        what = f"sending {path.name} to chat {chat_id}"
        return await self._call(what, chat_id, self._html_or_plain(what, caption, once))

    async def chat_action(self, chat_id: int, thread_id: int | None = None) -> None:
        await self._call(
            f"showing typing in chat {chat_id}",
            chat_id,
            lambda: self.bot.send_chat_action(
                chat_id, ChatAction.TYPING, message_thread_id=thread_id
            ),
            idempotent=True,
        )

    async def react(self, chat_id: int, message_id: int, emoji: str | None) -> None:
        await self._call(
            f"reacting to message {message_id} in chat {chat_id}",
            chat_id,
            lambda: self.bot.set_message_reaction(
                chat_id, message_id, reaction=[emoji] if emoji else []
            ),
            idempotent=True,
        )

    @staticmethod
    def _html_or_plain(
        what: str, html: str, once: Callable[[str, str | None], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """One attempt: as HTML, and as plain text when Telegram cannot parse the HTML."""

        async def attempt() -> T:
            try:
                return await once(html, ParseMode.HTML)
            except BadRequest as error:
                if _PARSE_ERROR not in error.message.lower():
                    raise
                log.warning("%s: Telegram refused the HTML (%s); sending plain text", what, error)
            return await once(html_to_plain(html), None)

        return attempt

    async def _call(
        self,
        what: str,
        chat_id: int,
        attempt: Callable[[], Awaitable[T]],
        *,
        edit: bool = False,
        idempotent: bool = False,
    ) -> T:
        backoff = BACKOFF_FIRST
        retries = 0
        while True:
            await self._pacer.wait(chat_id, edit)
            try:
                return await attempt()
            except RetryAfter as error:
                wait = _seconds(error)
                reason = f"Telegram asked to wait {wait:g} s"
            except BadRequest as error:  # a subclass of NetworkError, but never worth a retry
                raise SendRefused(f"{what}: Telegram refused: {error}") from error
            except NetworkError as error:  # TimedOut, connection errors and 5xx answers
                if not idempotent and not _never_sent(error):
                    raise SendFailed(
                        f"{what}: {error}; not resent, since Telegram may have received it"
                    ) from error
                wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
                reason = str(error)
            except TelegramError as error:
                raise SendRefused(f"{what}: Telegram refused: {error}") from error
            retries += 1
            if retries > self.max_retries:
                raise SendFailed(f"{what}: gave up after {self.max_retries} retries ({reason})")
            log.info("%s: %s; retry %d in %.1f s", what, reason, retries, wait)
            await asyncio.sleep(wait)

"""The join notification: when the bot is added to an allowed group, the workspace's
``JOIN_NOTIFICATION.md`` (if there is one) is posted there and pinned silently where the
bot may pin; a group that does not let it pin still gets the message."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Protocol

import telegram

from ductor.errors import DuctorError
from ductor.transports.telegram.formatting import markdown_to_html

log = logging.getLogger(__name__)

JOIN_FILE = "JOIN_NOTIFICATION.md"


class _Sender(Protocol):
    async def send_text(self, chat_id: int, html: str) -> int: ...


def join_text(workspace: Path) -> str:
    """The notification's Markdown; "" when the file is missing, unreadable or empty."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (workspace / JOIN_FILE).read_text(encoding="utf-8").strip()
    return ""


async def post_join_notification(
    bot: telegram.Bot, sender: _Sender, workspace: Path, chat_id: int
) -> None:
    text = join_text(workspace)
    if not text:
        return
    try:
        message_id = await sender.send_text(chat_id, markdown_to_html(text))
    except DuctorError as exc:
        log.warning("could not post %s in group %s: %s", JOIN_FILE, chat_id, exc)
        return
    try:
        await bot.pin_chat_message(chat_id, message_id, disable_notification=True)
    except telegram.error.TelegramError as exc:
        log.info("posted %s in group %s; not pinned: %s", JOIN_FILE, chat_id, exc)
    else:
        log.info("posted and pinned %s in group %s", JOIN_FILE, chat_id)

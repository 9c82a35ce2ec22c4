"""ductor.transports.telegram.join: JOIN_NOTIFICATION.md posted, pinned where allowed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import telegram

from ductor.transports.telegram.join import JOIN_FILE, post_join_notification


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send_text(self, chat_id: int, html: str) -> int:
        self.sent.append((chat_id, html))
        return 41


class FakeBot:
    def __init__(self, *, may_pin: bool) -> None:
        self.may_pin = may_pin
        self.pins: list[tuple[int, int, bool]] = []

    async def pin_chat_message(
        self, chat_id: int, message_id: int, *, disable_notification: bool
    ) -> bool:
        if not self.may_pin:
            raise telegram.error.BadRequest("not enough rights to manage pinned messages")
        self.pins.append((chat_id, message_id, disable_notification))
        return True


def post(workspace: Path, bot: FakeBot, sender: FakeSender) -> None:
    asyncio.run(post_join_notification(cast(Any, bot), sender, workspace, -100))


def test_the_notification_is_posted_and_pinned_silently(tmp_path: Path) -> None:
    (tmp_path / JOIN_FILE).write_text("**Hello** group\n")
    bot, sender = FakeBot(may_pin=True), FakeSender()

    post(tmp_path, bot, sender)

    assert sender.sent == [(-100, "<b>Hello</b> group")]
    assert bot.pins == [(-100, 41, True)]


def test_a_group_that_refuses_the_pin_still_gets_the_notification(tmp_path: Path) -> None:
    (tmp_path / JOIN_FILE).write_text("Hello\n")
    bot, sender = FakeBot(may_pin=False), FakeSender()

    post(tmp_path, bot, sender)

    assert len(sender.sent) == 1
    assert bot.pins == []


def test_without_the_file_nothing_is_posted(tmp_path: Path) -> None:
    bot, sender = FakeBot(may_pin=True), FakeSender()
    (tmp_path / JOIN_FILE).write_text("  \n")

    post(tmp_path, bot, sender)
    (tmp_path / JOIN_FILE).unlink()
    post(tmp_path, bot, sender)

    assert sender.sent == [] and bot.pins == []

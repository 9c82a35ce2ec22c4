"""BotSender against the fake Bot API, through python-telegram-bot's real Bot."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import telegram
from tests.stubs.telegram_api import TelegramStub

from ductor.errors import TemporaryError
from ductor.transports.telegram.sender import BotSender, SendFailed, SendRefused

T = TypeVar("T")
CHAT = 5151
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as stub:
        stub.add_chat(CHAT)
        yield stub


def run(stub: TelegramStub, scenario: Callable[[BotSender], Awaitable[T]], **options: float) -> T:
    async def main() -> T:
        bot = telegram.Bot(stub.token, base_url=stub.base_url, base_file_url=stub.base_file_url)
        async with bot:
            return await scenario(BotSender(bot, **options))  # type: ignore[arg-type]

    return asyncio.run(main())


def test_send_text_goes_out_as_html_replying_with_buttons(stub: TelegramStub) -> None:
    user_message = stub.user_sends(CHAT, "hi", user_id=CHAT)

    async def scenario(sender: BotSender) -> int:
        return await sender.send_text(
            CHAT, "<b>Hello</b> &amp; bye", reply_to=user_message, buttons=[[("Yes", "ok:yes")]]
        )

    message_id = run(stub, scenario)
    [sent] = stub.bot_messages(CHAT)
    assert sent["message_id"] == message_id
    assert sent["parse_mode"] == "HTML"
    assert sent["plain_text"] == "Hello & bye"
    assert sent["reply_to_message_id"] == user_message
    keyboard = sent["reply_markup"]["inline_keyboard"]
    assert keyboard == [[{"text": "Yes", "callback_data": "ok:yes"}]]


def test_a_429_waits_as_long_as_telegram_asks_then_sends_once(stub: TelegramStub) -> None:
    stub.fail_next("sendMessage", 429, retry_after=1)

    async def scenario(sender: BotSender) -> float:
        started = time.monotonic()
        await sender.send_text(CHAT, "after the flood")
        return time.monotonic() - started

    waited = run(stub, scenario)
    assert waited >= 1.0
    assert [m["plain_text"] for m in stub.bot_messages(CHAT)] == ["after the flood"]
    assert [c.status for c in stub.calls_to("sendMessage")] == [429, 200]


def test_server_errors_are_retried_with_backoff(stub: TelegramStub) -> None:
    stub.fail_next("sendMessage", 500, times=1)
    stub.fail_next("sendMessage", 502, times=1)

    async def scenario(sender: BotSender) -> int:
        return await sender.send_text(CHAT, "eventually")

    run(stub, scenario)
    calls = stub.calls_to("sendMessage")
    assert [c.status for c in calls] == [500, 502, 200]
    assert calls[1].at - calls[0].at >= 0.45  # 0.5 s, then 1 s
    assert calls[2].at - calls[1].at >= 0.95
    assert [m["plain_text"] for m in stub.bot_messages(CHAT)] == ["eventually"]


def test_after_max_retries_send_failed_is_a_temporary_error(stub: TelegramStub) -> None:
    stub.fail_next("editMessageText", 500, times=10)

    async def scenario(sender: BotSender) -> BaseException | None:
        message_id = await sender.send_text(CHAT, "first")
        try:
            await sender.edit_text(CHAT, message_id, "second")
        except SendFailed as error:
            return error
        return None

    error = run(stub, scenario, max_retries=2, per_chat_interval=0)
    assert isinstance(error, TemporaryError)
    assert "gave up after 2 retries" in str(error)
    assert len(stub.calls_to("editMessageText")) == 3


def test_html_telegram_cannot_parse_is_sent_as_plain_text(stub: TelegramStub) -> None:
    async def scenario(sender: BotSender) -> None:
        await sender.send_text(CHAT, "<b>unclosed & odd")

    run(stub, scenario)
    [sent] = stub.bot_messages(CHAT)
    assert sent["parse_mode"] is None
    assert sent["plain_text"] == "unclosed & odd"


def test_an_edit_that_changes_nothing_counts_as_done(stub: TelegramStub) -> None:
    async def scenario(sender: BotSender) -> None:
        message_id = await sender.send_text(CHAT, "same")
        await sender.edit_text(CHAT, message_id, "same")

    run(stub, scenario)
    assert [c.status for c in stub.calls_to("editMessageText")] == [400]
    assert stub.bot_messages(CHAT)[0]["plain_text"] == "same"


def test_an_edit_of_a_missing_message_is_refused_for_good(stub: TelegramStub) -> None:
    async def scenario(sender: BotSender) -> BaseException | None:
        try:
            await sender.edit_text(CHAT, 999, "nothing there")
        except SendRefused as error:
            return error
        return None

    error = run(stub, scenario)
    assert error is not None and "message to edit not found" in str(error).lower()
    assert len(stub.calls_to("editMessageText")) == 1


def test_edits_of_one_chat_are_spaced_by_the_per_chat_interval(stub: TelegramStub) -> None:
    async def scenario(sender: BotSender) -> None:
        message_id = await sender.send_text(CHAT, "v0")
        for version in range(1, 5):
            await sender.edit_text(CHAT, message_id, f"v{version}")

    run(stub, scenario, per_chat_interval=0.3)
    times = [c.at for c in stub.calls_to("editMessageText")]
    assert len(times) == 4
    assert all(b - a >= 0.28 for a, b in itertools.pairwise(times))
    assert stub.bot_messages(CHAT)[0]["plain_text"] == "v4"


def test_the_global_bucket_spreads_a_storm_of_sends(stub: TelegramStub) -> None:
    async def scenario(sender: BotSender) -> None:
        await asyncio.gather(*(sender.send_text(CHAT, f"m{n}") for n in range(12)))

    run(stub, scenario, global_per_second=10)
    times = sorted(c.at for c in stub.calls_to("sendMessage"))
    assert len(stub.bot_messages(CHAT)) == 12
    assert times[-1] - times[0] >= 0.15  # 10 tokens at once, then one per 0.1 s


def test_send_file_as_photo_and_as_document(stub: TelegramStub, tmp_path: Path) -> None:
    picture = tmp_path / "dot.png"
    picture.write_bytes(PNG)
    report = tmp_path / "report.txt"
    report.write_text("all fine\n")

    async def scenario(sender: BotSender) -> tuple[int, int]:
        photo = await sender.send_file(CHAT, picture, as_photo=True, caption="<b>a dot</b>")
        document = await sender.send_file(CHAT, report)
        return photo, document

    run(stub, scenario)
    photo, document = stub.bot_messages(CHAT)
    assert photo["file"].kind == "photo"
    assert photo["plain_text"] == "a dot"
    assert document["file"].kind == "document"
    assert document["file"].name == "report.txt"
    assert document["file"].content == b"all fine\n"


def test_delete_chat_action_and_reaction_reach_telegram(stub: TelegramStub) -> None:
    user_message = stub.user_sends(CHAT, "hi", user_id=CHAT)

    async def scenario(sender: BotSender) -> None:
        message_id = await sender.send_text(CHAT, "gone soon")
        await sender.delete(CHAT, message_id)
        await sender.chat_action(CHAT)
        await sender.react(CHAT, user_message, "👀")

    run(stub, scenario)
    assert stub.bot_messages(CHAT) == []
    assert stub.calls_to("sendChatAction")[0].params["action"] == "typing"
    assert stub.reactions(CHAT, user_message)[-1]["emoji"] == "👀"

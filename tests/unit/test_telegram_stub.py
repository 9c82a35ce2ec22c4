"""The Telegram Bot API stub, driven by python-telegram-bot's own Bot as the transport will."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Conflict, InvalidToken, RetryAfter
from tests.stubs.telegram_api import TelegramStub

T = TypeVar("T")
CHAT = 4242
USER = 4242


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as stub:
        yield stub


def with_bot(
    stub: TelegramStub, scenario: Callable[[telegram.Bot], Awaitable[T]], token: str = ""
) -> T:
    async def run() -> T:
        bot = telegram.Bot(
            token or stub.token, base_url=stub.base_url, base_file_url=stub.base_file_url
        )
        async with bot:
            return await scenario(bot)

    return asyncio.run(run())


def test_get_me_returns_the_stub_bot(stub: TelegramStub) -> None:
    me = with_bot(stub, lambda bot: bot.get_me())
    assert me.is_bot
    assert me.username == "stub_bot"
    assert me.id == int(stub.token.split(":")[0])


def test_get_updates_blocks_until_a_user_writes_and_offset_drops_what_was_read(
    stub: TelegramStub,
) -> None:
    def user_writes_while_the_bot_polls() -> None:
        stub.wait_for(lambda: stub.calls_to("getUpdates"))
        time.sleep(0.3)
        stub.user_sends(CHAT, "/start now", user_id=USER)

    threading.Thread(target=user_writes_while_the_bot_polls, daemon=True).start()

    async def scenario(bot: telegram.Bot) -> tuple[float, tuple[telegram.Update, ...], int]:
        started = time.monotonic()
        updates = await bot.get_updates(timeout=3)
        waited = time.monotonic() - started
        again = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
        return waited, updates, len(again)

    waited, updates, left = with_bot(stub, scenario)
    assert 0.25 < waited < 2.5
    message = updates[0].message
    assert message is not None
    assert message.text == "/start now"
    assert message.chat.id == CHAT
    assert message.from_user is not None and message.from_user.id == USER
    assert message.entities[0].type == "bot_command"  # what CommandHandler looks for
    assert left == 0
    assert stub.pending_updates == []


def test_a_second_long_poll_ends_the_first_with_conflict(stub: TelegramStub) -> None:
    async def scenario(bot: telegram.Bot) -> BaseException | None:
        first = asyncio.create_task(bot.get_updates(timeout=3))
        await asyncio.to_thread(stub.wait_for, lambda: stub.calls_to("getUpdates"))
        async with telegram.Bot(stub.token, base_url=stub.base_url) as second_instance:
            await second_instance.get_updates(timeout=0)
        [outcome] = await asyncio.gather(first, return_exceptions=True)
        return outcome if isinstance(outcome, BaseException) else None

    assert isinstance(with_bot(stub, scenario), Conflict)


def test_sent_and_edited_messages_show_in_bot_messages_with_their_history(
    stub: TelegramStub,
) -> None:
    stub.user_sends(CHAT, "hello", user_id=USER)

    async def scenario(bot: telegram.Bot) -> telegram.Message:
        sent = await bot.send_message(
            CHAT, "<b>Thinking</b>…", parse_mode="HTML", reply_to_message_id=1
        )
        await bot.edit_message_text("Done: <i>42</i>", CHAT, sent.message_id, parse_mode="HTML")
        return sent

    sent = with_bot(stub, scenario)
    assert sent.text == "Thinking…"  # Telegram answers with the parsed text
    [message] = stub.bot_messages(CHAT)
    assert message["message_id"] == sent.message_id == 2
    assert message["text"] == "Done: <i>42</i>"
    assert message["plain_text"] == "Done: 42"
    assert message["parse_mode"] == "HTML"
    assert message["history"] == ["<b>Thinking</b>…"]
    assert message["reply_to_message_id"] == 1


def test_editing_to_the_same_text_raises_message_is_not_modified(stub: TelegramStub) -> None:
    stub.add_chat(CHAT)

    async def scenario(bot: telegram.Bot) -> None:
        sent = await bot.send_message(CHAT, "same")
        await bot.edit_message_text("same", CHAT, sent.message_id)

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        with_bot(stub, scenario)


def test_unbalanced_html_is_refused_as_unparsable_entities(stub: TelegramStub) -> None:
    stub.add_chat(CHAT)
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        with_bot(stub, lambda bot: bot.send_message(CHAT, "<b>open", parse_mode="HTML"))
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        with_bot(stub, lambda bot: bot.send_message(CHAT, "<blink>x</blink>", parse_mode="HTML"))
    assert stub.bot_messages(CHAT) == []


def test_fail_next_429_raises_retry_after_with_its_delay_then_works_again(
    stub: TelegramStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # retry_after as a timedelta, without a warning
    stub.add_chat(CHAT)
    stub.fail_next("sendMessage", 429, retry_after=7)

    with pytest.raises(RetryAfter) as raised:
        with_bot(stub, lambda bot: bot.send_message(CHAT, "hi"))
    assert raised.value.retry_after == datetime.timedelta(seconds=7)
    with_bot(stub, lambda bot: bot.send_message(CHAT, "hi"))
    assert [c.status for c in stub.calls_to("sendMessage")] == [429, 200]
    assert [m["text"] for m in stub.bot_messages(CHAT)] == ["hi"]


def test_text_longer_than_4096_utf16_units_is_refused(stub: TelegramStub) -> None:
    stub.add_chat(CHAT)
    with_bot(stub, lambda bot: bot.send_message(CHAT, "x" * 4096))
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        # 2 UTF-16 units each: 4098 in all, though only 2049 code points
        with_bot(stub, lambda bot: bot.send_message(CHAT, "😀" * 2049))


def test_an_uploaded_document_is_stored_with_its_name_and_bytes(stub: TelegramStub) -> None:
    stub.add_chat(CHAT)

    async def scenario(bot: telegram.Bot) -> telegram.Message:
        return await bot.send_document(
            CHAT, b"%PDF-1.4 fake", filename="report.pdf", caption="your report"
        )

    sent = with_bot(stub, scenario)
    assert sent.document is not None
    assert sent.document.file_name == "report.pdf"
    [message] = stub.bot_messages(CHAT)
    assert message["text"] == "your report"
    assert message["file"].name == "report.pdf"
    assert message["file"].content == b"%PDF-1.4 fake"


def test_a_user_photo_can_be_fetched_with_get_file_and_downloaded(stub: TelegramStub) -> None:
    file_id = stub.add_file(b"\x89PNG fake image", "cat.png", kind="photo")
    stub.user_sends(CHAT, user_id=USER, photo=file_id, caption="look")

    async def scenario(bot: telegram.Bot) -> bytes:
        [update] = await bot.get_updates()
        assert update.message is not None
        assert update.message.caption == "look"
        photo = await bot.get_file(update.message.photo[-1].file_id)
        return bytes(await photo.download_as_bytearray())

    assert with_bot(stub, scenario) == b"\x89PNG fake image"


def test_a_button_press_arrives_as_a_callback_query_and_is_answered(
    stub: TelegramStub,
) -> None:
    stub.add_chat(CHAT)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="answer:yes")]])
    sent = with_bot(stub, lambda bot: bot.send_message(CHAT, "Sure?", reply_markup=keyboard))
    assert stub.bot_messages(CHAT)[0]["reply_markup"] == keyboard.to_dict()
    query_id = stub.user_presses(CHAT, sent.message_id, "answer:yes", user_id=USER)

    async def scenario(bot: telegram.Bot) -> telegram.CallbackQuery:
        [update] = await bot.get_updates()
        assert update.callback_query is not None
        await update.callback_query.answer("Noted")
        return update.callback_query

    query = with_bot(stub, scenario)
    assert query.id == query_id
    assert query.data == "answer:yes"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert stub.callback_answer(query_id) == {"text": "Noted"}


def test_another_token_is_refused_as_an_invalid_token(stub: TelegramStub) -> None:
    with pytest.raises(InvalidToken):
        with_bot(stub, lambda bot: bot.get_me(), token="999:wrong")
    assert stub.calls == []

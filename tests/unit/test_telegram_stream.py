"""StreamEditor: a turn's events as Telegram messages, edited live, clean at the end."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import telegram
from tests.stubs.telegram_api import TelegramStub

from ductor.config import SceneConfig, StreamingConfig
from ductor.protocol import Event, Events
from ductor.transports.telegram.formatting import MESSAGE_LIMIT, html_to_plain, utf16_len
from ductor.transports.telegram.sender import BotSender, Rows, SendRefused
from ductor.transports.telegram.stream import StreamEditor, StreamOptions, technical_footer

T = TypeVar("T")
CHAT = 777
USER_MESSAGE = 41
FAST = StreamOptions(edit_interval=0.05)


@dataclass
class Message:
    html: str
    reply_to: int | None
    buttons: Rows | None
    edits: int = 0
    deleted: bool = False


@dataclass
class FakeSender:
    """Keeps messages in memory and records every call with its time."""

    messages: dict[int, Message] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)
    refuse_edits: bool = False

    async def send_text(
        self,
        chat_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        buttons: Rows | None = None,
    ) -> int:
        self.calls.append(("send", time.monotonic()))
        message_id = len(self.messages) + 100
        self.messages[message_id] = Message(html, reply_to, buttons)
        return message_id

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        html: str,
        *,
        buttons: Rows | None = None,
        final: bool = False,
    ) -> None:
        self.calls.append(("edit", time.monotonic()))
        if self.refuse_edits:
            raise SendRefused("editing: Telegram refused: message can't be edited")
        message = self.messages[message_id]
        message.html, message.buttons, message.edits = html, buttons, message.edits + 1

    async def delete(self, chat_id: int, message_id: int) -> None:
        self.calls.append(("delete", time.monotonic()))
        self.messages[message_id].deleted = True

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
        raise NotImplementedError

    async def chat_action(self, chat_id: int, thread_id: int | None = None) -> None:
        self.calls.append(("action", time.monotonic()))

    async def react(self, chat_id: int, message_id: int, emoji: str | None) -> None:
        raise NotImplementedError

    def visible(self) -> list[Message]:
        return [m for m in self.messages.values() if not m.deleted]

    def texts(self) -> list[str]:
        return [html_to_plain(m.html) for m in self.visible()]

    def count(self, kind: str) -> int:
        return sum(1 for name, _ in self.calls if name == kind)


def editor(sender: FakeSender, options: StreamOptions = FAST) -> StreamEditor:
    return StreamEditor(sender, CHAT, thread_id=None, reply_to=USER_MESSAGE, options=options)


def final(text: str, **fields: object) -> Event:
    return Events.final("r", text=text, turn="t-1", model="opus", **fields)


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def test_streamed_deltas_edit_one_message_that_replies_to_the_user() -> None:
    sender = FakeSender()

    async def scenario() -> list[int]:
        stream = editor(sender)
        for word in ("The ", "deploy ", "changed ", "**two** ", "files."):
            await stream.on_event(Events.text("r", word))
            await asyncio.sleep(0.06)
        return await stream.finish(final("The deploy changed **two** files."))

    ids = run(scenario)
    [message] = sender.visible()
    assert ids == [100]
    assert message.reply_to == USER_MESSAGE
    assert message.html == "The deploy changed <b>two</b> files."
    assert message.edits >= 3


def test_the_first_text_is_sent_at_once() -> None:
    sender = FakeSender()

    async def scenario() -> None:
        stream = editor(sender, StreamOptions(edit_interval=10))
        await stream.on_event(Events.accepted("r", "t-1", "tg:777"))
        await stream.on_event(Events.text("r", "Hi"))
        assert sender.texts() == ["Hi"]
        await stream.finish(final("Hi there"))

    run(scenario)
    assert sender.texts() == ["Hi there"]


def test_indicators_show_while_streaming_and_are_gone_at_the_end() -> None:
    sender = FakeSender()
    seen: list[str] = []

    async def scenario() -> None:
        stream = editor(sender, replace(FAST, edit_interval=0))
        await stream.on_event(Events.thinking("r", "hmm"))
        await stream.on_event(Events.thinking("r", " more"))
        seen.append(sender.visible()[0].html)
        await stream.on_event(Events.text("r", "Looking."))
        for _ in range(3):
            await stream.on_event(Events.tool("r", "bash", "ls"))
        await stream.on_event(Events.status("r", "compacting", "Compacting…"))
        await stream.on_event(Events.status("r", "timeout_warning", "Timeout in 1 min"))
        seen.append(sender.visible()[0].html)
        await stream.finish(final("Looking. Done."))

    run(scenario)
    assert seen[0] == "<i>[THINKING]</i>"
    assert seen[1] == (
        "<i>[THINKING]</i>\nLooking.\n<b>[TOOL: Shell]</b> x3\n<i>[COMPACTING]</i>\n"
        "<i>[TIMEOUT APPROACHING: Timeout in 1 min]</i>"
    )
    assert [m.html for m in sender.visible()] == ["Looking. Done."]


def test_tool_progress_and_thinking_indicator_can_be_turned_off() -> None:
    sender = FakeSender()
    options = replace(FAST, show_tool_progress=False, show_thinking_indicator=False)

    async def scenario() -> None:
        stream = editor(sender, options)
        await stream.on_event(Events.thinking("r", "hmm"))
        await stream.on_event(Events.tool("r", "Read", "x"))
        assert sender.messages == {}
        await stream.finish(final("ok"))

    run(scenario)
    assert sender.texts() == ["ok"]


def test_a_long_answer_ends_as_three_messages_within_the_limit_nothing_lost() -> None:
    answer = " ".join(f"word{n:04d}" for n in range(1112))  # 10 000 characters
    assert len(answer) > 9990
    sender = FakeSender()

    async def scenario() -> list[int]:
        stream = editor(sender, replace(FAST, edit_interval=0))
        for start in range(0, len(answer), 500):
            await stream.on_event(Events.text("r", answer[start : start + 500]))
            await stream.on_event(Events.tool("r", "Read"))
            assert all(utf16_len(m.html) <= MESSAGE_LIMIT for m in sender.visible())
        return await stream.finish(final(answer, buttons=[[{"label": "More", "data": "m"}]]))

    ids = run(scenario)
    visible = sender.visible()
    assert len(visible) == 3
    assert ids == [m for m, message in sender.messages.items() if not message.deleted]
    assert all(utf16_len(m.html) <= MESSAGE_LIMIT for m in visible)
    assert " ".join(sender.texts()).split() == answer.split()
    assert "[TOOL" not in "".join(m.html for m in visible)
    assert [m.buttons for m in visible] == [None, None, [[("More", "m")]]]
    assert visible[0].reply_to == USER_MESSAGE
    assert visible[1].reply_to is None


def test_fifty_deltas_in_one_second_are_throttled_to_the_edit_interval() -> None:
    sender = FakeSender()
    interval = 0.25

    async def scenario() -> None:
        stream = editor(sender, StreamOptions(edit_interval=interval))
        for n in range(50):
            await stream.on_event(Events.text("r", f"part {n}. "))
            await asyncio.sleep(0.02)
        await asyncio.sleep(interval)  # the deferred edit shows the latest text
        assert sender.texts()[0].rstrip().endswith("part 49.")
        await stream.finish(final("".join(f"part {n}. " for n in range(50))))

    run(scenario)
    edits = [at for name, at in sender.calls if name == "edit"]
    assert sender.count("send") == 1
    assert len(edits) <= math.ceil(1 / interval) + 2
    assert all(b - a >= interval - 0.02 for a, b in itertools.pairwise(edits[:-1]))


def test_buttons_and_technical_footer_go_on_the_last_message() -> None:
    sender = FakeSender()
    event = final(
        "Pick one.",
        input_tokens=1000,
        output_tokens=234,
        cost_usd=0.0123,
        duration_ms=12300,
        buttons=[[{"label": "Yes", "data": "y"}, {"label": "No", "data": "n"}]],
        notice="Service restarted: resuming your last request",
    )

    async def scenario() -> None:
        stream = editor(sender, replace(FAST, technical_footer=True))
        await stream.on_event(Events.text("r", "Pick"))
        await stream.finish(event)

    run(scenario)
    [message] = sender.visible()
    assert message.html == (
        "<i>Service restarted: resuming your last request</i>\n\nPick one.\n---\n"
        "Model: opus | Tokens: 1234 (in: 1000, out: 234) | Cost: $0.0123 | Time: 12.3s"
    )
    assert message.buttons == [[("Yes", "y"), ("No", "n")]]


def test_the_footer_leaves_out_a_zero_cost_and_an_unknown_time() -> None:
    event = final("x", input_tokens=5, output_tokens=2, cost_usd=0.0)
    assert technical_footer(event) == "Model: opus | Tokens: 7 (in: 5, out: 2)"


def test_a_stopped_turn_keeps_what_was_streamed_without_indicators() -> None:
    sender = FakeSender()

    async def scenario() -> None:
        stream = editor(sender, replace(FAST, edit_interval=0))
        await stream.on_event(Events.text("r", "Half an answer"))
        await stream.on_event(Events.tool("r", "Shell"))
        await stream.finish(final(""))

    run(scenario)
    assert [m.html for m in sender.visible()] == ["Half an answer"]


def test_an_error_final_shows_its_explanation_after_the_streamed_text() -> None:
    sender = FakeSender()

    async def scenario() -> None:
        stream = editor(sender)
        await stream.on_event(Events.text("r", "Started"))
        await stream.finish(final("The CLI crashed.", is_error=True))

    run(scenario)
    assert sender.texts() == ["Started\n\nThe CLI crashed."]


def test_an_error_event_shows_its_text() -> None:
    sender = FakeSender()

    async def scenario() -> list[int]:
        stream = editor(sender)
        await stream.on_event(Events.tool("r", "Shell"))
        return await stream.fail(Events.error("r", "rate_limit", "Try again in a minute."))

    ids = run(scenario)
    assert ids == [100]
    assert [m.html for m in sender.visible()] == ["<i>Try again in a minute.</i>"]


def test_when_edits_fail_for_good_the_answer_arrives_as_new_messages() -> None:
    sender = FakeSender()
    answer = "First part. " * 20 + "The end."

    async def scenario() -> list[int]:
        stream = editor(sender, replace(FAST, edit_interval=0))
        await stream.on_event(Events.text("r", answer[:30]))
        sender.refuse_edits = True
        await stream.on_event(Events.text("r", answer[30:]))
        return await stream.finish(final(answer))

    ids = run(scenario)
    assert sender.texts() == [answer.strip()]
    assert ids == [101]
    assert sender.messages[100].deleted


def test_append_mode_sends_each_chunk_and_indicator_as_a_new_message() -> None:
    sender = FakeSender()
    options = StreamOptions(append_mode=True, min_chars=20, idle_ms=50)
    first = "This is the first paragraph.\n\n"
    second = "A second one that ends mid"

    async def scenario() -> list[int]:
        stream = editor(sender, options)
        await stream.on_event(Events.text("r", first))
        await stream.on_event(Events.tool("r", "Shell"))
        await stream.on_event(Events.tool("r", "Shell"))
        await stream.on_event(Events.text("r", second))
        await asyncio.sleep(0.1)  # idle: flushed
        await stream.on_event(Events.text("r", " sentence"))
        return await stream.finish(final(first + second + " sentence and more."))

    ids = run(scenario)
    assert [m.html for m in sender.visible()] == [
        "This is the first paragraph.",
        "<b>[TOOL: Shell]</b> x2",
        "A second one that ends mid",
        "sentence and more.",
    ]
    assert sender.visible()[0].reply_to == USER_MESSAGE
    assert all(m.reply_to is None for m in sender.visible()[1:])
    assert ids == [100, 102, 103]


def test_streaming_off_sends_only_the_final_answer_split() -> None:
    sender = FakeSender()
    answer = "\n\n".join("paragraph " * 60 for _ in range(12))

    async def scenario() -> list[int]:
        stream = editor(sender, StreamOptions(enabled=False))
        await stream.on_event(Events.text("r", answer[:100]))
        await stream.on_event(Events.tool("r", "Shell"))
        assert sender.messages == {}
        return await stream.finish(final(answer, buttons=[[{"label": "Ok", "data": "ok"}]]))

    ids = run(scenario)
    visible = sender.visible()
    assert len(ids) == len(visible) == 2
    assert visible[0].reply_to == USER_MESSAGE
    assert visible[-1].buttons == [[("Ok", "ok")]]
    assert " ".join(sender.texts()).split() == answer.split()


def test_options_come_from_the_streaming_and_scene_config() -> None:
    options = StreamOptions.from_config(
        StreamingConfig(append_mode=True, edit_interval_seconds=1.5, min_chars=50),
        SceneConfig(technical_footer=True),
    )
    assert options.append_mode and options.technical_footer
    assert (options.edit_interval, options.min_chars) == (1.5, 50)


# -- against the fake Bot API --------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as stub:
        yield stub


def test_streaming_through_the_bot_api_edits_one_message_in_place(stub: TelegramStub) -> None:
    user_message = stub.user_sends(CHAT, "explain", user_id=CHAT)
    deltas = ["Here ", "is ", "the ", "`answer` ", "you ", "asked ", "for."]

    async def scenario() -> list[int]:
        bot = telegram.Bot(stub.token, base_url=stub.base_url, base_file_url=stub.base_file_url)
        async with bot:
            sender = BotSender(bot, per_chat_interval=0.05)
            stream = StreamEditor(
                sender,
                CHAT,
                thread_id=None,
                reply_to=user_message,
                options=StreamOptions(edit_interval=0.1),
            )
            for delta in deltas:
                await stream.on_event(Events.text("r", delta))
                await stream.on_event(Events.tool("r", "Shell"))
                await asyncio.sleep(0.12)
            return await stream.finish(final("".join(deltas)))

    ids = run(scenario)
    [message] = stub.bot_messages(CHAT)
    assert ids == [message["message_id"]]
    assert message["reply_to_message_id"] == user_message
    assert message["text"] == "Here is the <code>answer</code> you asked for."
    assert message["parse_mode"] == "HTML"
    assert len(message["history"]) >= 3
    assert any("[TOOL: Shell]" in earlier for earlier in message["history"])

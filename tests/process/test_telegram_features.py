"""What a Telegram user sees of the transport's features, end to end: the transport and
a real agent daemon as processes, the fake Bot API in between, the fake CLIs answering
(a scenario is a copied fixture whose "ECHO: hello" is replaced by the answer wanted)."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from tests.process.agent_proc import REPO
from tests.process.test_telegram_transport import USER, Transport, answer_texts, setup_agent
from tests.stubs.telegram_api import TelegramStub

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


class Bot:
    """An agent and its Telegram transport, started for one test and stopped after it."""

    def __init__(self, root: Path, stub: TelegramStub, extra: str = "", **env: str) -> None:
        self.root = root
        self.stub = stub
        self.agent = setup_agent(root, stub, extra, FAKECLI_RECORD=str(root / "record"), **env)
        self.transport = Transport(self.agent)

    def start(self) -> Bot:
        self.agent.start()
        self.transport.start()
        self.stub.wait_for(lambda: self.stub.calls_to("getUpdates"), timeout=20)
        return self

    def stop(self) -> None:
        self.transport.stop()
        self.agent.stop()

    def prompts(self) -> list[str]:
        """What the CLI was asked, one prompt per run (on stdin; argv's last element for
        a CLI that takes it there)."""
        file = self.root / "record"
        if not file.exists():
            return []
        runs = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        return [str(run["stdin"] if run.get("stdin") else run["argv"][-1]) for run in runs]


@pytest.fixture
def bot_for(tmp_path: Path, stub: TelegramStub) -> Iterator[object]:
    started: list[Bot] = []

    def make(extra: str = "", **env: str) -> Bot:
        bot = Bot(tmp_path, stub, extra, **env).start()
        started.append(bot)
        return bot

    yield make
    for bot in started:
        bot.stop()


def scenario(directory: Path, answer: str, base: str = "claude-new") -> str:
    """A fake CLI run that answers ``answer``; its path, for FAKECLI_SCENARIO."""
    fixture = FIXTURES / "cli" / base
    encoded = json.dumps(answer)[1:-1]
    target = directory / "answer.jsonl"
    target.write_text(fixture.with_suffix(".jsonl").read_text().replace("ECHO: hello", encoded))
    for suffix in (".meta.json", ".stderr"):
        (directory / f"answer{suffix}").write_bytes(fixture.with_suffix(suffix).read_bytes())
    return str(target)


def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``predicate`` (stub.wait_for only looks again when the stub is called)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.05)


def emojis(stub: TelegramStub, message_id: int) -> list[list[str]]:
    """The reactions the bot set on a message, call by call (an empty list clears)."""
    return [
        [reaction["emoji"] for reaction in call.params.get("reaction") or []]
        for call in stub.calls_to("setMessageReaction")
        if call.params.get("message_id") == message_id and call.status == 200
    ]


def test_a_markdown_answer_arrives_as_telegram_html(
    tmp_path: Path, stub: TelegramStub, bot_for: object
) -> None:
    answer = (
        "Here is **the fix**:\n\n```python\nprint('hi')\n```\n\n"
        "| name | size |\n|---|---|\n| a.txt | 3 |\n| b.txt | 12 |"
    )
    bot_for(FAKECLI_SCENARIO=scenario(tmp_path, answer))  # type: ignore[operator]
    stub.user_sends(USER, "fix it", user_id=USER)
    stub.wait_for(lambda: any("b.txt" in t for t in answer_texts(stub, USER)), timeout=10)
    (message,) = stub.bot_messages(USER)
    assert message["parse_mode"] == "HTML"
    assert "<b>the fix</b>" in message["text"]
    assert '<pre><code class="language-python">print(' in message["text"]
    assert "**" not in message["plain_text"] and "|---|" not in message["plain_text"]
    assert "a.txt" in message["plain_text"]


def test_a_photo_is_saved_converted_in_the_workspace_and_named_in_the_prompt(
    stub: TelegramStub, bot_for: object
) -> None:
    bot: Bot = bot_for()  # type: ignore[operator]
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(png, "PNG")
    photo = stub.add_file(png.getvalue(), "cat.png", kind="photo")
    stub.user_sends(USER, user_id=USER, photo=photo, caption="what is this?")
    stub.wait_for(lambda: answer_texts(stub, USER), timeout=10)
    day = bot.agent.workspace / "telegram_files" / f"{datetime.now(UTC):%Y-%m-%d}"
    (saved,) = list(day.iterdir())
    assert saved.suffix == ".webp"  # [image] output_format's default
    with Image.open(saved) as image:
        assert image.format == "WEBP" and image.size == (64, 48)
    (prompt,) = bot.prompts()
    assert str(saved) in prompt and "what is this?" in prompt


def test_a_file_named_in_the_answer_arrives_as_a_document(
    tmp_path: Path, stub: TelegramStub, bot_for: object
) -> None:
    report = tmp_path / "state" / "main" / "workspace" / "output_to_user" / "report.txt"
    report.parent.mkdir(parents=True)
    report.write_text("all green\n")
    bot_for(FAKECLI_SCENARIO=scenario(tmp_path, f"The report: <file:{report}>"))  # type: ignore[operator]
    stub.user_sends(USER, "report please", user_id=USER)
    stub.wait_for(lambda: any(m["file"] for m in stub.bot_messages(USER)), timeout=10)
    (document,) = [m for m in stub.bot_messages(USER) if m["file"]]
    assert document["file"].kind == "document" and document["file"].name == "report.txt"
    assert document["file"].content == b"all green\n"
    assert "The report:" in answer_texts(stub, USER)


def test_buttons_in_the_answer_are_pressed_and_the_label_is_the_next_prompt(
    tmp_path: Path, stub: TelegramStub, bot_for: object
) -> None:
    answer = "Deploy now? [button:Yes] [button:No]"
    bot: Bot = bot_for(FAKECLI_SCENARIO=scenario(tmp_path, answer))  # type: ignore[operator]
    stub.user_sends(USER, "deploy?", user_id=USER)
    stub.wait_for(lambda: any(m["reply_markup"] for m in stub.bot_messages(USER)), timeout=10)
    (question,) = stub.bot_messages(USER)
    keyboard = question["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in keyboard] == [["Yes", "No"]]
    assert question["plain_text"] == "Deploy now?"
    query = stub.user_presses(
        USER, question["message_id"], keyboard[0][0]["callback_data"], user_id=USER
    )
    marked_text = "Deploy now?\n\n[USER ANSWER] Yes"
    stub.wait_for(lambda: stub.bot_messages(USER)[0]["plain_text"] == marked_text)
    eventually(lambda: len(bot.prompts()) == 2)
    assert stub.callback_answer(query) is not None  # the button stops spinning
    marked = stub.bot_messages(USER)[0]
    assert marked["reply_markup"] is None
    assert bot.prompts()[1].split("\n\n")[0] == "Yes"


def test_stop_ends_a_streaming_turn_at_once(stub: TelegramStub, bot_for: object) -> None:
    bot: Bot = bot_for(FAKECLI_SCENARIO="claude-interrupt")  # type: ignore[operator]
    message = stub.user_sends(USER, "stream slowly", user_id=USER)
    eventually(bot.prompts)
    time.sleep(0.3)
    started = time.monotonic()
    stub.user_sends(USER, "/stop", user_id=USER)
    stub.wait_for(lambda: any("Stopped 1 process" in t for t in answer_texts(stub, USER)))
    assert time.monotonic() - started < 3
    # The turn is over: its reaction is gone and "typing…" is no longer sent.
    stub.wait_for(lambda: emojis(stub, message) and emojis(stub, message)[-1] == [], timeout=5)
    typing = len(stub.calls_to("sendChatAction"))
    time.sleep(4.5)
    assert len(stub.calls_to("sendChatAction")) == typing


def test_an_answer_survives_a_storm_of_telegram_errors_complete_and_once(
    stub: TelegramStub, bot_for: object
) -> None:
    # claude-partial streams "ECHO: One two ... ten" in small deltas: a message, then edits.
    answer = "ECHO: One two three four five six seven eight nine ten"
    bot_for(FAKECLI_SCENARIO="claude-partial", FAKECLI_DELAY_MS="20")  # type: ignore[operator]
    stub.fail_next("editMessageText", 429, retry_after=1, times=3)
    stub.fail_next("sendMessage", 502, times=2)
    stub.user_sends(USER, "write", user_id=USER)
    stub.wait_for(lambda: answer in answer_texts(stub, USER), timeout=12)
    time.sleep(1)  # a late edit or a duplicate would show up by now
    assert answer_texts(stub, USER) == [answer]
    failed = [c.status for c in stub.calls if c.status not in (200, None)]
    assert sorted(failed) == [429, 429, 429, 502, 502]  # the storm did happen


def test_status_reactions_follow_a_tool_turn_and_are_cleared_at_its_end(
    stub: TelegramStub, bot_for: object
) -> None:
    bot_for(FAKECLI_SCENARIO="claude-tool", FAKECLI_DELAY_MS="200")  # type: ignore[operator]
    message = stub.user_sends(USER, "run something", user_id=USER)
    stub.wait_for(lambda: "Tool said: hi" in answer_texts(stub, USER), timeout=10)
    stub.wait_for(lambda: emojis(stub, message)[-1:] == [[]], timeout=5)
    seen = emojis(stub, message)
    assert seen[0] == ["🤔"]
    assert ["👨\u200d💻"] in seen
    assert all(a != b for a, b in itertools.pairwise(seen)), seen  # deduped
    assert stub.reactions(USER, message) == []


def test_the_seen_reaction_stays_when_status_reactions_are_off(
    stub: TelegramStub, bot_for: object
) -> None:
    bot_for("[scene]\nstatus_reaction = false\nseen_reaction = true\n")  # type: ignore[operator]
    message = stub.user_sends(USER, "hello", user_id=USER)
    stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=10)
    assert emojis(stub, message) == [["👀"]]
    assert [r["emoji"] for r in stub.reactions(USER, message)] == ["👀"]


def test_a_very_long_answer_arrives_as_a_summary_and_a_markdown_document(
    tmp_path: Path, stub: TelegramStub, bot_for: object
) -> None:
    first = "The short version: everything works."
    answer = first + "\n\n" + " ".join(f"detail{i}" for i in range(2600))  # > 4 x 4096
    bot: Bot = bot_for(FAKECLI_SCENARIO=scenario(tmp_path, answer))  # type: ignore[operator]
    stub.user_sends(USER, "tell me everything", user_id=USER)
    stub.wait_for(lambda: any(m["file"] for m in stub.bot_messages(USER)), timeout=12)
    summary, document = stub.bot_messages(USER)
    assert summary["plain_text"] == f"{first}\n\nFull answer attached ({len(answer)} characters)."
    assert document["file"].name.startswith("answer-") and document["file"].name.endswith(".md")
    assert document["file"].content.decode() == answer
    eventually(lambda: not list((bot.agent.state / "telegram" / "tmp").iterdir()), 5)


def test_a_queued_message_can_be_cancelled_with_its_button(
    stub: TelegramStub, bot_for: object
) -> None:
    bot: Bot = bot_for(FAKECLI_DELAY_MS="400")  # type: ignore[operator]
    stub.user_sends(USER, "first", user_id=USER)
    eventually(bot.prompts)
    stub.user_sends(USER, "second", user_id=USER)
    stub.wait_for(
        lambda: any(t == "[Message in queue...]" for t in answer_texts(stub, USER)), timeout=5
    )
    (queued,) = [m for m in stub.bot_messages(USER) if m["plain_text"] == "[Message in queue...]"]
    (row,) = queued["reply_markup"]["inline_keyboard"]
    assert row[0]["text"].startswith("Cancel")
    stub.user_presses(USER, queued["message_id"], row[0]["callback_data"], user_id=USER)
    stub.wait_for(lambda: "[Message cancelled.]" in answer_texts(stub, USER), timeout=5)
    stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=10)
    time.sleep(1)
    assert len(bot.prompts()) == 1  # "second" never reached the CLI
    cancelled = next(m for m in stub.bot_messages(USER) if m["message_id"] == queued["message_id"])
    assert cancelled["reply_markup"] is None

"""A bare stop word typed in Telegram: it stops a running turn, and with nothing to stop
it is an ordinary message the CLI answers (the transport, a real agent and the fake
CLIs as processes, the fake Bot API in between)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.test_telegram_transport import USER, Transport, answer_texts, setup_agent
from tests.stubs.telegram_api import TelegramStub


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


def prompts(root: Path) -> list[str]:
    """The user's words of every CLI run: on stdin, else the last argument."""
    file = root / "record"
    if not file.exists():
        return []
    runs = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return [str(run.get("stdin") or run["argv"][-1]).split("\n\n")[0] for run in runs]


@pytest.fixture
def bot(tmp_path: Path, stub: TelegramStub) -> Iterator[Path]:
    agent = setup_agent(tmp_path, stub, FAKECLI_RECORD=str(tmp_path / "record"))
    transport = Transport(agent)
    agent.start()
    transport.start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        yield tmp_path
    finally:
        transport.stop()
        agent.stop()


def test_wait_in_an_idle_chat_is_a_message_and_gets_the_clis_answer(
    stub: TelegramStub, bot: Path
) -> None:
    message = stub.user_sends(USER, "wait", user_id=USER)
    stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=20)
    assert prompts(bot) == ["wait"]
    (answer,) = stub.bot_messages(USER)
    assert answer["reply_to_message_id"] == message
    time.sleep(0.3)
    assert not any("Nothing running" in text for text in answer_texts(stub, USER))

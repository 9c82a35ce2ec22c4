"""The Telegram transport and the agent between them: a bare stop word with nothing to
stop is an ordinary message the CLI answers, and an agent that goes away mid-answer is
one line in the transport's log (the transport, a real agent and the fake CLIs as
processes, the fake Bot API in between)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess
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


@contextlib.contextmanager
def running(root: Path, stub: TelegramStub, **env: str) -> Iterator[tuple[AgentProcess, Transport]]:
    agent = setup_agent(root, stub, FAKECLI_RECORD=str(root / "record"), **env)
    transport = Transport(agent)
    agent.start()
    transport.start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        yield agent, transport
    finally:
        transport.stop()
        agent.stop()


@pytest.fixture
def bot(tmp_path: Path, stub: TelegramStub) -> Iterator[Path]:
    with running(tmp_path, stub):
        yield tmp_path


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


def test_an_agent_killed_mid_answer_is_one_warning_in_the_transports_log(
    tmp_path: Path, stub: TelegramStub
) -> None:
    with running(tmp_path, stub, FAKECLI_SCENARIO="claude-interrupt", FAKECLI_STALL_S="5") as (
        agent,
        transport,
    ):
        stub.user_sends(USER, "a long question", user_id=USER)
        stub.wait_for(lambda: prompts(tmp_path), timeout=20)
        agent.kill(signal.SIGKILL)
        stub.wait_for(lambda: "the agent went away" in transport.log(), timeout=20)
        log = transport.log()
    assert "Traceback" not in log
    assert log.count("the agent went away") == 1

"""The Telegram transport as a real process, between the fake Bot API and a real agent
daemon (with the fake CLIs): what a Telegram user sees."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO, AgentProcess
from tests.stubs.telegram_api import DEFAULT_TOKEN, TelegramStub

USER = 4242
STRANGER = 999
GROUP = -100777


def config_for(stub: TelegramStub, extra: str = "") -> str:
    base = stub.base_url.removesuffix("/bot")
    return (
        'provider = "claude"\nmodel = "opus"\ntransports = ["telegram"]\n'
        f'[telegram]\napi_base_url = "{base}"\nallowed_user_ids = [{USER}]\n'
        f"allowed_group_ids = [{GROUP}]\n"
        "[streaming]\nedit_interval_seconds = 0.3\n" + extra
    )


class Transport:
    def __init__(self, agent: AgentProcess) -> None:
        self.agent = agent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = agent.root / "telegram.log"

    def start(self) -> Transport:
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bin" / "ductor-telegram"), "--name", self.agent.name],
            env=self.agent.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


def setup_agent(root: Path, stub: TelegramStub, extra: str = "", **env: str) -> AgentProcess:
    agent = AgentProcess(root, config=config_for(stub, extra))
    agent.write_config()
    credentials = root / "config" / "credentials" / agent.name
    credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = credentials / "telegram-token"
    token.write_text(DEFAULT_TOKEN + "\n")
    token.chmod(0o600)
    dotenv = credentials / ".env"
    dotenv.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    dotenv.chmod(0o600)
    return agent


@pytest.fixture
def running(tmp_path: Path, stub: TelegramStub) -> Iterator[tuple[AgentProcess, Transport]]:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="150")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        yield agent, transport
    finally:
        transport.stop()
        agent.stop()


def answer_texts(stub: TelegramStub, chat: int) -> list[str]:
    return [m["plain_text"] for m in stub.bot_messages(chat)]


def test_a_private_message_is_answered_in_one_message_edited_in_place(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    message = stub.user_sends(USER, "hello", user_id=USER)
    stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=20)
    (answer,) = stub.bot_messages(USER)
    assert answer["reply_to_message_id"] == message
    assert answer["plain_text"] == "ECHO: hello"
    assert stub.calls_to("sendChatAction")


def test_a_stranger_gets_no_answer_and_is_logged(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    _, transport = running
    stub.user_sends(STRANGER, "let me in", user_id=STRANGER)
    stub.user_sends(USER, "hello", user_id=USER)
    stub.wait_for(lambda: answer_texts(stub, USER), timeout=20)
    assert stub.bot_messages(STRANGER) == []
    assert f"{STRANGER}" in transport.log() and "refused" in transport.log()


def test_a_forum_topic_is_its_own_session(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    agent, _ = running
    stub.user_sends(GROUP, "hello", user_id=USER, chat_type="supergroup", thread_id=7)
    stub.wait_for(lambda: answer_texts(stub, GROUP), timeout=20)
    assert stub.bot_messages(GROUP)[0]["message_thread_id"] == 7
    sessions = (agent.state / "sessions.json").read_text()
    assert f'"tg:{GROUP}:7"' in sessions


def test_an_unknown_group_is_told_and_left(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    stub.user_sends(-100555, "hi all", user_id=USER, chat_type="supergroup")
    stub.wait_for(lambda: stub.calls_to("leaveChat"), timeout=20)
    assert "not authorized" in answer_texts(stub, -100555)[0]


def test_status_answers_while_a_turn_runs(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    stub.user_sends(USER, "hello", user_id=USER)
    stub.user_sends(USER, "/status", user_id=USER)
    stub.wait_for(lambda: any("Session" in t for t in answer_texts(stub, USER)), timeout=20)
    stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=20)


def test_messages_sent_while_the_transport_was_down_are_answered_after_start(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub)
    agent.start()
    try:
        stub.user_sends(USER, "while you were away", user_id=USER)
        transport = Transport(agent).start()
        try:
            stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=30)
        finally:
            transport.stop()
    finally:
        agent.stop()


def test_a_message_accepted_by_the_agent_is_answered_once_after_the_transport_is_killed(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="700")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.user_sends(USER, "hello", user_id=USER)
        # Accepted: the offset moved past the update ("typing…" comes before that now).
        offset = agent.state / "telegram" / "offset.json"
        deadline = time.monotonic() + 20
        while '"offset": 2' not in (offset.read_text() if offset.exists() else ""):
            assert time.monotonic() < deadline, "the update was never accepted"
            time.sleep(0.02)
        transport.stop(signal.SIGKILL)
        transport = Transport(agent).start()
        stub.wait_for(lambda: any("ECHO: hello" in t for t in answer_texts(stub, USER)), timeout=40)
        time.sleep(2)
        complete = [t for t in answer_texts(stub, USER) if t.endswith("ECHO: hello")]
        assert len(complete) == 1, answer_texts(stub, USER)
    finally:
        transport.stop()
        agent.stop()


def test_a_long_answer_is_split_into_complete_messages(tmp_path: Path, stub: TelegramStub) -> None:
    base = REPO / "tests" / "fixtures" / "cli" / "claude-new"
    long_text = " ".join(f"word{i}" for i in range(2500))  # about 20 000 characters
    scenario = tmp_path / "long.jsonl"
    scenario.write_text(base.with_suffix(".jsonl").read_text().replace("ECHO: hello", long_text))
    for suffix in (".meta.json", ".stderr"):
        (tmp_path / f"long{suffix}").write_bytes(base.with_suffix(suffix).read_bytes())
    # max_messages = 0: all of it as messages, never as a document
    agent = setup_agent(tmp_path, stub, "max_messages = 0\n", FAKECLI_SCENARIO=str(scenario))
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.user_sends(USER, "write a lot", user_id=USER)
        stub.wait_for(lambda: len(stub.bot_messages(USER)) >= 5, timeout=30)
        time.sleep(1.5)
        texts = answer_texts(stub, USER)
        assert all(len(t) <= 4096 for t in texts)
        assert " ".join(" ".join(texts).split()) == long_text
    finally:
        transport.stop()
        agent.stop()


def test_a_selector_answers_every_press_on_the_same_message(
    stub: TelegramStub, running: tuple[AgentProcess, Transport]
) -> None:
    stub.user_sends(USER, "/model", user_id=USER)
    stub.wait_for(lambda: any(m["reply_markup"] for m in stub.bot_messages(USER)), timeout=20)
    (selector,) = stub.bot_messages(USER)
    first = stub.user_presses(USER, selector["message_id"], "ms:m:sonnet", user_id=USER)
    stub.wait_for(lambda: stub.bot_messages(USER)[0]["history"], timeout=10)
    second = stub.user_presses(USER, selector["message_id"], "ms:r:high:sonnet", user_id=USER)
    stub.wait_for(lambda: "reasoning: high" in answer_texts(stub, USER)[0], timeout=10)
    assert stub.callback_answer(first) is not None and stub.callback_answer(second) is not None


def test_a_task_result_injected_into_the_chat_is_answered_live_edited_in_place_and_once(
    tmp_path: Path, stub: TelegramStub
) -> None:
    # claude-partial streams "ECHO: One two ... ten" in small deltas: a message, then edits.
    agent = setup_agent(tmp_path, stub, FAKECLI_SCENARIO="claude-partial", FAKECLI_DELAY_MS="20")
    stub.add_chat(USER)  # the user has talked to the bot before
    agent.start()
    transport = Transport(agent).start()
    try:
        # the conversation the task comes from: the transport listens once the agent answered
        stub.user_sends(USER, "hello", user_id=USER)
        first = "ECHO: One two three four five six seven eight nine ten"
        stub.wait_for(lambda: first in answer_texts(stub, USER), timeout=30)
        deadline = time.monotonic() + 20  # the agent's log, not a Bot API call: poll it
        while "tg listens for the injected turns" not in agent.log():
            assert time.monotonic() < deadline, "the transport never listened"
            time.sleep(0.1)
        script = agent.workspace / "tools" / "task_tools" / "create_task.py"
        env = {
            **agent.env,
            "DUCTOR_AGENT_NAME": agent.name,
            "DUCTOR_AGENT_SOCKET": str(agent.socket),
            "DUCTOR_TRANSPORT": "tg",
            "DUCTOR_CHAT_ID": str(USER),
        }
        created = subprocess.run(
            [sys.executable, str(script), "--name", "audit", "List the outdated deps."],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert '"ok": true' in created.stdout, created.stdout + created.stderr
        answer = "ECHO: One two three four five six seven eight nine ten"
        stub.wait_for(lambda: answer in answer_texts(stub, USER), timeout=30)
        time.sleep(1.5)  # a second copy from the outbox would show up by now
        messages = stub.bot_messages(USER)
        texts = [m["plain_text"] for m in messages]
        assert len([t for t in texts if t.startswith("Task audit completed")]) == 1, texts
        assert texts.count(answer) == 2, texts  # the conversation's and the task's
        shown = [m for m in messages if m["plain_text"] == answer][-1]
        assert shown["history"], "the answer was streamed: sent, then edited in place"
        outbox = agent.state / "spool" / "outbox" / "tg" / "new"
        assert not outbox.is_dir() or not list(outbox.iterdir())
    finally:
        transport.stop()
        agent.stop()

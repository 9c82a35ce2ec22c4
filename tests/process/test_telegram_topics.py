"""Forum topics as a Telegram user meets them, end to end (the transport and a real agent
daemon as processes, the fake Bot API, the fake CLI recording each run): a topic mapped
to a project folder runs the CLI there, keeps its own default model across /new, is
reset from another topic by name; the join notification is posted and pinned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.test_telegram_kept import topic_created
from tests.process.test_telegram_transport import GROUP, USER, Transport, setup_agent
from tests.stubs.telegram_api import TelegramStub

WEB, OPS = 7, 9


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


def runs(root: Path) -> list[dict[str, object]]:
    file = root / "record"
    lines = file.read_text().splitlines() if file.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def in_topic(stub: TelegramStub, thread: int) -> list[str]:
    return [
        str(m["plain_text"])
        for m in stub.bot_messages(GROUP)
        if m.get("message_thread_id") == thread
    ]


def send(stub: TelegramStub, thread: int, text: str, answers: int) -> str:
    """Send in a topic; the bot's answer once that topic has ``answers`` of them."""
    stub.user_sends(GROUP, text, user_id=USER, chat_type="supergroup", thread_id=thread)
    stub.wait_for(lambda: len(in_topic(stub, thread)) >= answers, timeout=20)
    stub.wait_for(lambda: "…" not in in_topic(stub, thread)[-1], timeout=20)
    return in_topic(stub, thread)[-1]


def flag(run: dict[str, object], name: str) -> str | None:
    argv = [str(a) for a in run["argv"]]  # type: ignore[attr-defined]
    return argv[argv.index(name) + 1] if name in argv else None


def test_a_topic_mapped_to_a_project_runs_there_keeps_its_model_and_is_reset_by_name(
    tmp_path: Path, stub: TelegramStub
) -> None:
    project = tmp_path / "src" / "web"
    project.mkdir(parents=True)
    extra = f'[project_roots]\n"Web" = "{project}"\n'
    agent = setup_agent(tmp_path, stub, extra, FAKECLI_RECORD=str(tmp_path / "record"))
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        topic_created(stub, GROUP, WEB, "Web")
        topic_created(stub, GROUP, OPS, "Ops")

        send(stub, WEB, "hello", 1)
        first = runs(tmp_path)[-1]
        assert first["cwd"] == str(project)
        memory = agent.workspace / "memory_system" / "MAINMEMORY.md"
        assert f"Long-term memory: {memory}" in str(first["append_system_prompt"])
        send(stub, OPS, "hello", 1)
        assert runs(tmp_path)[-1]["cwd"] == str(agent.workspace)  # not a project

        assert "sonnet" in send(stub, WEB, "/topicmodel sonnet", 2)
        assert "(sonnet)" in send(stub, WEB, "/new", 3)
        send(stub, WEB, "after new", 4)
        assert flag(runs(tmp_path)[-1], "--model") == "sonnet"
        assert flag(runs(tmp_path)[-1], "--resume") is None
        status = send(stub, WEB, "/status", 5)
        assert f"Project ─── {project}" in status
        where = send(stub, WEB, "/where", 6)
        assert f"This topic works in {project}" in where

        send(stub, WEB, "again", 7)
        assert flag(runs(tmp_path)[-1], "--resume") is not None
        assert 'topic "Web"' in send(stub, OPS, "/new @web", 2)
        send(stub, WEB, "after reset from ops", 8)
        last = runs(tmp_path)[-1]
        assert flag(last, "--resume") is None
        assert flag(last, "--model") == "sonnet"
        assert 'Topic "Nowhere" not found.' in send(stub, OPS, "/new @Nowhere", 3)
    finally:
        transport.stop()
        agent.stop()


def test_a_topic_whose_project_folder_is_missing_gets_an_error_and_no_cli_run(
    tmp_path: Path, stub: TelegramStub
) -> None:
    gone = tmp_path / "not-there"
    extra = f'[project_roots]\n"{GROUP}:{WEB}" = "{gone}"\n'
    agent = setup_agent(tmp_path, stub, extra, FAKECLI_RECORD=str(tmp_path / "record"))
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        answer = send(stub, WEB, "hello", 1)
        assert "Project folder missing" in answer
        assert str(gone) in answer
        assert runs(tmp_path) == []
    finally:
        transport.stop()
        agent.stop()


def test_joining_an_allowed_group_posts_and_pins_the_join_notification(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub)
    agent.workspace.mkdir(parents=True, exist_ok=True)
    (agent.workspace / "JOIN_NOTIFICATION.md").write_text("Hi all! **Mention me** to ask.\n")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        stub.bot_added_to(GROUP, by_user=USER, may_pin=True)
        stub.wait_for(lambda: stub.pinned(GROUP), timeout=20)
        (posted,) = stub.bot_messages(GROUP)
        assert posted["plain_text"] == "Hi all! Mention me to ask."
        (pin,) = stub.pinned(GROUP)
        assert pin["message_id"] == posted["message_id"]
        assert pin.get("disable_notification") in (True, "true")
    finally:
        transport.stop()
        agent.stop()

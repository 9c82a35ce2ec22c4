"""What the Telegram transport keeps: forum topic names (learned from Telegram's topic
notices, kept across its restarts, sent to the agent with each request, shown by
/status) and the index of received files (telegram_files/_index.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess
from tests.process.test_telegram_transport import GROUP, USER, Transport, setup_agent
from tests.stubs.telegram_api import TelegramStub, _Message, _user


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


def topic_created(stub: TelegramStub, chat: int, thread: int, name: str) -> None:
    """The service message Telegram sends when a forum topic is created."""
    stub.add_chat(chat, "supergroup")
    with stub._lock:
        data = stub._new_message(chat, _user(USER), thread, None)
        data["forum_topic_created"] = {"name": name, "icon_color": 7322096}
        stub._keep(chat, _Message(data, from_bot=False, text=None))  # ids stay unique
        stub._enqueue({"message": data})


def status_text(stub: TelegramStub, count: int) -> str:
    stub.user_sends(GROUP, "/status", user_id=USER, chat_type="supergroup", thread_id=7)
    stub.wait_for(lambda: len(stub.bot_messages(GROUP)) >= count, timeout=20)
    return str(stub.bot_messages(GROUP)[-1]["plain_text"])


def test_a_topics_name_is_shown_by_status_and_kept_across_a_transport_restart(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent: AgentProcess = setup_agent(tmp_path, stub)
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        topic_created(stub, GROUP, 7, "Release planning")
        stub.user_sends(GROUP, "hello", user_id=USER, chat_type="supergroup", thread_id=7)
        stub.wait_for(lambda: stub.bot_messages(GROUP), timeout=20)
        text = status_text(stub, 2)
        assert "Release planning" in text
        assert f"tg:{GROUP}:7" not in text
        saved = json.loads((agent.state / "telegram" / "topic_names.json").read_text())
        assert saved == {"topics": {f"{GROUP}:7": "Release planning"}}
        sessions = json.loads((agent.state / "sessions.json").read_text())
        assert "Release planning" in json.dumps(sessions)

        transport.stop()
        (agent.state / "sessions.json").unlink()  # the agent forgets: the transport tells it
        agent.stop()
        agent.start()
        transport = Transport(agent).start()
        stub.user_sends(GROUP, "again", user_id=USER, chat_type="supergroup", thread_id=7)
        stub.wait_for(lambda: len(stub.bot_messages(GROUP)) >= 3, timeout=20)
        assert "Release planning" in status_text(stub, 4)
    finally:
        transport.stop()
        agent.stop()


def test_a_received_file_is_listed_in_the_index_the_agent_reads(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent: AgentProcess = setup_agent(tmp_path, stub)
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        notes = stub.add_file(b"remember the milk\n", "notes.txt")
        stub.user_sends(USER, user_id=USER, document=notes, caption="read this")
        stub.wait_for(lambda: stub.bot_messages(USER), timeout=20)
        index = json.loads((agent.workspace / "telegram_files" / "_index.json").read_text())
        assert index["total_files"] == 1
        ((day, entries),) = index["tree"].items()
        assert [entry["name"] for entry in entries] == ["notes.txt"]
        assert (agent.workspace / "telegram_files" / day / "notes.txt").is_file()
    finally:
        transport.stop()
        agent.stop()

"""What the chat shows of a turn when the transport or the agent dies mid-stream: the
restarted side finishes what the dead one began (real processes, the fake Bot API)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess
from tests.process.test_telegram_transport import USER, Transport, setup_agent
from tests.stubs.telegram_api import TelegramStub

# claude-partial's answer, streamed in small deltas, ends with these words.
COMPLETE = "One two three four five six seven eight nine ten"
THINKING = "🤔"


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


@pytest.fixture
def slow_agent(tmp_path: Path, stub: TelegramStub) -> Iterator[AgentProcess]:
    # Claude's token stream, one delta every 0.4 s: the answer takes several seconds.
    agent = setup_agent(tmp_path, stub, FAKECLI_SCENARIO="claude-partial", FAKECLI_DELAY_MS="400")
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def shown(stub: TelegramStub) -> list[dict[str, object]]:
    return stub.bot_messages(USER)


def complete(message: dict[str, object]) -> bool:
    return str(message["plain_text"]).endswith(COMPLETE)


def answers(stub: TelegramStub) -> list[dict[str, object]]:
    """The bot's messages that show (part of) the answer, not notices."""
    return [m for m in shown(stub) if "Service restarted" not in str(m["plain_text"])]


def emojis(stub: TelegramStub, message: int) -> list[str]:
    return [str(reaction.get("emoji")) for reaction in stub.reactions(USER, message)]


def wait_for_partial_answer(stub: TelegramStub, message: int) -> None:
    """Until the chat shows part of the answer and the thinking reaction."""
    stub.wait_for(
        lambda: (
            # Edited at least once: the transport knows the message it sent (the id
            # comes back with Telegram's answer; a kill before that cannot know it).
            any(m["history"] for m in shown(stub)) and THINKING in emojis(stub, message)
        ),
        timeout=30,
    )
    [partial] = shown(stub)
    assert not complete(partial), "the kill must come mid-stream"


def wait_for_complete_answer(stub: TelegramStub) -> None:
    stub.wait_for(lambda: any(complete(m) for m in shown(stub)), timeout=60)
    time.sleep(2)  # anything still to come (a duplicate, a late edit) shows up by now


def test_after_kill_9_of_the_transport_mid_stream_the_chat_ends_with_one_complete_answer(
    stub: TelegramStub, slow_agent: AgentProcess
) -> None:
    transport = Transport(slow_agent).start()
    try:
        message = stub.user_sends(USER, "count to ten", user_id=USER)
        wait_for_partial_answer(stub, message)
        transport.stop(signal.SIGKILL)
        transport = Transport(slow_agent).start()
        wait_for_complete_answer(stub)
        [answer] = shown(stub)
        assert complete(answer), "no truncated leftover beside the answer"
        assert answer["reply_to_message_id"] == message, "the answer replies to the question"
        assert emojis(stub, message) == [], "no status reaction left on the question"
    finally:
        transport.stop()


def test_after_kill_9_of_the_agent_mid_stream_the_chat_is_told_once_and_gets_one_answer(
    stub: TelegramStub, slow_agent: AgentProcess
) -> None:
    transport = Transport(slow_agent).start()
    try:
        message = stub.user_sends(USER, "count to ten", user_id=USER)
        wait_for_partial_answer(stub, message)
        slow_agent.kill(signal.SIGKILL)
        slow_agent.start()
        wait_for_complete_answer(stub)
        texts = [str(m["plain_text"]) for m in shown(stub)]
        assert sum("Service restarted" in t for t in texts) == 1, texts
        [answer] = answers(stub)
        assert complete(answer), "one answer, no truncated leftover"
        assert answer["reply_to_message_id"] == message
        assert emojis(stub, message) == []
    finally:
        transport.stop()


def test_after_both_die_mid_stream_the_restarted_pair_finishes_the_turn_once(
    stub: TelegramStub, slow_agent: AgentProcess
) -> None:
    transport = Transport(slow_agent).start()
    try:
        message = stub.user_sends(USER, "count to ten", user_id=USER)
        wait_for_partial_answer(stub, message)
        transport.stop(signal.SIGKILL)
        slow_agent.kill(signal.SIGKILL)
        slow_agent.start()
        transport = Transport(slow_agent).start()
        wait_for_complete_answer(stub)
        texts = [str(m["plain_text"]) for m in shown(stub)]
        assert sum("Service restarted" in t for t in texts) == 1, texts
        [answer] = answers(stub)
        assert complete(answer), texts
        assert answer["reply_to_message_id"] == message
        assert emojis(stub, message) == []
    finally:
        transport.stop()

"""How the Telegram transport takes updates in, as a process against the fake Bot API
and a real agent daemon with the fake CLIs: no chat waits for another, no single update
stops the loop, images are bounded, the token never shows in a log."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO, AgentProcess
from tests.process.test_telegram_transport import USER, Transport, answer_texts, setup_agent
from tests.stubs.telegram_api import TelegramStub

REJECTED_TOKEN = "987654321:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ra"


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


@pytest.mark.parametrize(
    "content", [f"{REJECTED_TOKEN}\n\n", f"{REJECTED_TOKEN} \n", f" {REJECTED_TOKEN}\t\n"]
)
def test_a_refused_token_with_whitespace_around_it_never_shows_in_the_log(
    tmp_path: Path, stub: TelegramStub, content: str
) -> None:
    agent = setup_agent(tmp_path, stub)
    token = tmp_path / "config" / "credentials" / agent.name / "telegram-token"
    token.write_text(content)
    done = subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor-telegram"), "--name", agent.name],
        env=agent.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78, done.stderr
    assert "refused the bot token" in done.stderr
    assert REJECTED_TOKEN not in done.stderr + done.stdout
    assert REJECTED_TOKEN.split(":")[1] not in done.stderr + done.stdout


GROUP_TOPICS = -100777  # the allowed group of config_for, used as a forum
SLOW = "[limits]\nmax_parallel_sessions = 4\n"


def big_blank_png(width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` transparent RGBA pixels, a few hundred KB on disk,
    made row by row (the test itself never holds the pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    packer = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (width * 4)
    parts = [packer.compress(row) for _ in range(height)]
    data = b"".join(parts) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def offset_of(agent: AgentProcess) -> int:
    file = agent.state / "telegram" / "offset.json"
    try:
        return int(json.loads(file.read_text())["offset"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s in vain for {what}"
        time.sleep(0.02)


def in_topic(stub: TelegramStub, thread: int) -> list[str]:
    return [
        str(m["plain_text"])
        for m in stub.bot_messages(GROUP_TOPICS)
        if m["message_thread_id"] == thread
    ]


def test_with_every_slot_busy_a_stop_acts_and_a_fifth_chat_sees_typing_within_a_second(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, SLOW, FAKECLI_DELAY_MS="4000")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        for topic in (1, 2, 3, 4):  # four forum topics: four sessions, every slot busy
            stub.user_sends(
                GROUP_TOPICS, f"slow {topic}", user_id=USER, chat_type="supergroup", thread_id=topic
            )
        wait_until(lambda: offset_of(agent) >= 5, 20, "the four turns to be accepted")
        time.sleep(1.0)  # the four CLIs run
        sent = time.monotonic()
        stub.user_sends(GROUP_TOPICS, "fifth", user_id=USER, chat_type="supergroup", thread_id=5)
        stub.wait_for(
            lambda: any(
                c.params.get("message_thread_id") == 5 for c in stub.calls_to("sendChatAction")
            ),
            timeout=5,
        )
        assert time.monotonic() - sent < 1.0, "the fifth chat saw no sign of life for a second"
        time.sleep(0.3)
        sent = time.monotonic()
        stub.user_sends(GROUP_TOPICS, "/stop", user_id=USER, chat_type="supergroup", thread_id=1)
        stub.wait_for(lambda: any("Stopped 1" in t for t in in_topic(stub, 1)), timeout=30)
        assert time.monotonic() - sent < 1.0, in_topic(stub, 1)
    finally:
        transport.stop()
        agent.stop()


def test_a_big_attachment_without_a_caption_is_refused_once_and_the_next_message_answered(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="50")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        huge = stub.add_file(b"\x00" * (21 * 1024 * 1024), "film.mp4")
        stub.user_sends(USER, user_id=USER, document=huge)
        stub.user_sends(USER, "hello", user_id=USER)
        stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=30)
        refusals = [t for t in answer_texts(stub, USER) if "Could not receive" in t]
        assert len(refusals) == 1, answer_texts(stub, USER)
        assert transport.proc is not None and transport.proc.poll() is None, transport.log()
        wait_until(lambda: offset_of(agent) == 3, 10, "the offset to move past both updates")
        # A restart does not replay the attachment: no second refusal.
        assert transport.stop() == 0
        transport = Transport(agent).start()
        stub.wait_for(lambda: len(stub.calls_to("getMe")) == 2, timeout=20)
        time.sleep(1.5)
        assert len([t for t in answer_texts(stub, USER) if "Could not receive" in t]) == 1
    finally:
        transport.stop()
        agent.stop()


def test_an_attachment_whose_download_fails_does_not_stop_the_transport(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="50")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        voice = stub.add_file(b"OggS" + b"\x00" * 1000, "voice.ogg", kind="voice")
        stub.fail_next("getFile", 400, "Bad Request: file is temporarily unavailable")
        stub.user_sends(USER, user_id=USER, voice=voice)
        stub.user_sends(USER, "hello", user_id=USER)
        stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=30)
        assert any("Could not receive that voice" in t for t in answer_texts(stub, USER))
        assert transport.proc is not None and transport.proc.poll() is None, transport.log()
    finally:
        transport.stop()
        agent.stop()


def test_a_huge_image_is_refused_with_its_size_and_the_transport_stays_small(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="50")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        png = stub.add_file(big_blank_png(9400, 9400), "huge.png")
        stub.user_sends(USER, user_id=USER, document=png, caption="what is in it?")
        stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=60)
        (refusal,) = [t for t in answer_texts(stub, USER) if "Could not receive" in t]
        assert "9400x9400" in refusal and "max_megapixels" in refusal, refusal
        assert transport.proc is not None
        status = Path(f"/proc/{transport.proc.pid}/status").read_text()
        peak_kb = int(status.split("VmHWM:")[1].split()[0])
        assert peak_kb < 250 * 1024, f"the transport peaked at {peak_kb // 1024} MB"
        files = list((agent.workspace / "telegram_files").rglob("huge*"))
        assert files == [], files
    finally:
        transport.stop()
        agent.stop()


def test_two_hundred_messages_keep_one_typing_loop_for_the_chat(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub, FAKECLI_DELAY_MS="3000")
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        start = time.monotonic()
        for number in range(200):
            stub.user_sends(USER, f"message {number}", user_id=USER)
        wait_until(lambda: offset_of(agent) >= 201, 60, "200 messages to be handed over")
        time.sleep(max(0.0, start + 3.5 - time.monotonic()))
        actions = [c for c in stub.calls_to("sendChatAction") if c.at - start < 3.5]
        assert 1 <= len(actions) <= 2, f"{len(actions)} sendChatAction calls in 3.5 s"
    finally:
        transport.stop()
        agent.stop()


def test_while_the_agent_is_down_a_waiting_message_does_not_make_the_transport_poll_hard(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub)
    transport = Transport(agent).start()  # the agent is not running yet
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        stub.user_sends(USER, "hello", user_id=USER)
        stub.wait_for(lambda: len(stub.calls_to("getUpdates")) >= 3, timeout=20)
        before = len(stub.calls_to("getUpdates"))
        time.sleep(8)
        asked = len(stub.calls_to("getUpdates")) - before
        # Asking again every 0.3 s would be ~26 calls in 8 s; backing off to 3 s makes ~5.
        assert asked <= 10, f"{asked} getUpdates calls in 8 s while the agent was down"
        agent.start()
        stub.wait_for(lambda: "ECHO: hello" in answer_texts(stub, USER), timeout=30)
        stub.user_sends(USER, "again", user_id=USER)  # the transport is back to long polls
        stub.wait_for(lambda: len(answer_texts(stub, USER)) == 2, timeout=10)
    finally:
        transport.stop()
        agent.stop()

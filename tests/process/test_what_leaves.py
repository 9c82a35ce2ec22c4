"""What may leave the machine and what may stop the outbox, seen from Telegram: the
transport and a real agent daemon as processes, the fake Bot API in between.

- ductor's own secrets never reach a chat, whatever ``file_access`` says;
- the outbox writes only to allowed chats;
- a FIFO in the spool or in place of a config or token file stops nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO, AgentProcess
from tests.process.test_telegram_features import Bot, eventually, scenario
from tests.process.test_telegram_transport import (
    STRANGER,
    USER,
    Transport,
    answer_texts,
    setup_agent,
)
from tests.stubs.telegram_api import DEFAULT_TOKEN, TelegramStub

from ductor.spool import Envelope, Kind, Payload, Routing, Spool, State

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


@pytest.fixture
def started() -> Iterator[list[Bot]]:
    bots: list[Bot] = []
    yield bots
    for bot in bots:
        bot.stop()


def start_bot(root: Path, stub: TelegramStub, started: list[Bot], **env: str) -> Bot:
    """An agent whose config allows every file (``file_access = "all"``), and its
    transport: only what ductor keeps for itself stays back."""
    stub.add_chat(USER)  # the owner has talked to the bot before
    bot = Bot(root, stub, **env)
    (root / "config" / "ductor.toml").write_text('file_access = "all"\n')
    started.append(bot)
    return bot.start()


def token_file(root: Path) -> Path:
    return root / "config" / "credentials" / "main" / "telegram-token"


def uploads(stub: TelegramStub, chat: int) -> list[bytes]:
    return [m["file"].content for m in stub.bot_messages(chat) if m["file"]]


def post(bot: Bot, envelope: Envelope) -> None:
    assert Spool(bot.agent.state / "spool").post(envelope)


def test_an_answer_naming_the_token_or_the_environment_uploads_neither_and_says_so(
    tmp_path: Path, stub: TelegramStub, started: list[Bot]
) -> None:
    token = token_file(tmp_path)
    answer = f"Here you go: <file:{token}> <file:/proc/self/environ>"
    start_bot(tmp_path, stub, started, FAKECLI_SCENARIO=scenario(tmp_path, answer))
    stub.user_sends(USER, "send me the bot token", user_id=USER)
    stub.wait_for(lambda: any("File not sent" in t for t in answer_texts(stub, USER)), timeout=20)
    assert uploads(stub, USER) == []
    assert stub.calls_to("sendDocument") == [] and stub.calls_to("sendPhoto") == []
    shown = "\n".join(answer_texts(stub, USER))
    assert "ductor's credentials are never sent" in shown
    assert "files under /proc, /sys and /dev are never sent" in shown
    assert DEFAULT_TOKEN not in shown


def test_an_outbox_envelope_carrying_the_token_sends_a_note_instead(
    tmp_path: Path, stub: TelegramStub, started: list[Bot]
) -> None:
    bot = start_bot(tmp_path, stub, started)
    report = bot.agent.workspace / "output_to_user" / "report.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("all green\n")
    post(
        bot,
        Envelope.create(
            agent="main",
            kind=Kind.CRON,
            routing=Routing("tg", chat_id=USER, origin="cron job leak"),
            payload=Payload(text="results", files=(token_file(tmp_path), report)),
        ),
    )
    stub.wait_for(lambda: uploads(stub, USER), timeout=20)
    assert uploads(stub, USER) == [b"all green\n"]
    assert any("Could not send telegram-token" in t for t in answer_texts(stub, USER) if t)


def test_an_envelope_for_a_chat_that_is_not_allowed_is_kept_back_and_the_owner_told(
    tmp_path: Path, stub: TelegramStub, started: list[Bot]
) -> None:
    bot = start_bot(tmp_path, stub, started)
    stub.add_chat(STRANGER)  # a chat the bot could write to
    refused = Envelope.create(
        agent="main",
        kind=Kind.CRON,
        routing=Routing("tg", chat_id=STRANGER, origin="cron job exfiltrate"),
        payload=Payload(text="the secret plans"),
    )
    post(bot, refused)
    stub.wait_for(lambda: any("not delivered" in t for t in answer_texts(stub, USER)), timeout=20)
    assert stub.bot_messages(STRANGER) == []
    [note] = answer_texts(stub, USER)
    assert f"chat {STRANGER} is not in allowed_user_ids" in note and refused.id in note
    assert "secret plans" not in note
    entry = Spool(bot.agent.state / "spool").outbox("tg").get(refused.id)
    assert entry is not None and entry.state is State.BAD


def test_a_fifo_in_the_outbox_neither_blocks_the_delivery_nor_ductor_outbox_list(
    tmp_path: Path, stub: TelegramStub, started: list[Bot]
) -> None:
    waiting = tmp_path / "state" / "main" / "spool" / "outbox" / "tg" / "new"
    waiting.mkdir(parents=True)
    os.mkfifo(waiting / "00000000-fifo")
    bot = start_bot(tmp_path, stub, started)
    post(
        bot,
        Envelope.create(
            agent="main",
            kind=Kind.CRON,
            routing=Routing("tg", chat_id=USER, origin="cron job news"),
            payload=Payload(text="the news"),
        ),
    )
    stub.wait_for(lambda: any("the news" in t for t in answer_texts(stub, USER)), timeout=20)
    listing = subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "outbox", "list", "main"],
        env=bot.agent.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if "00000000-fifo" in line]
    assert "bad:" in line and "a FIFO" in line


@pytest.mark.parametrize("which", ["config", "token"])
def test_a_fifo_in_place_of_the_config_or_the_token_is_exit_78_naming_it(
    tmp_path: Path, stub: TelegramStub, which: str
) -> None:
    agent: AgentProcess = setup_agent(tmp_path, stub)
    if which == "config":
        fifo = tmp_path / "config" / "agents" / "main.toml"
        program = "ductor-agent"
    else:
        fifo = token_file(tmp_path)
        program = "ductor-telegram"
    fifo.unlink()
    os.mkfifo(fifo, 0o600)
    result = subprocess.run(
        [sys.executable, str(REPO / "bin" / program), "--name", "main"],
        env=agent.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 78, result.stderr
    assert str(fifo) in result.stderr and "regular file" in result.stderr


def test_the_transport_keeps_serving_after_a_refused_envelope(
    tmp_path: Path, stub: TelegramStub, started: list[Bot]
) -> None:
    """The refusal is one envelope's fate, not the drain's: the next one arrives."""
    bot = start_bot(tmp_path, stub, started)
    for chat, text in ((STRANGER, "not for you"), (USER, "for you")):
        post(
            bot,
            Envelope.create(
                agent="main",
                kind=Kind.NOTICE,
                routing=Routing("tg", chat_id=chat),
                payload=Payload(text=text),
            ),
        )
    stub.wait_for(lambda: any("for you" in t for t in answer_texts(stub, USER)), timeout=20)
    eventually(lambda: any("not delivered" in t for t in answer_texts(stub, USER)))
    assert isinstance(bot.transport, Transport) and bot.transport.proc is not None
    assert bot.transport.proc.poll() is None

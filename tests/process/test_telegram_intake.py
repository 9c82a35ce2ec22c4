"""How the Telegram transport takes updates in, as a process against the fake Bot API
and a real agent daemon with the fake CLIs: no chat waits for another, no single update
stops the loop, images are bounded, the token never shows in a log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO
from tests.process.test_telegram_transport import (
    setup_agent,
)
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

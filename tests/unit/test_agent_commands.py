"""ductor.agent.commands and the user-facing error texts of ductor.agent.execute."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ductor import paths, protocol
from ductor.agent import commands
from ductor.agent.commands import COMMANDS, HELP, command_word, is_command, is_private
from ductor.agent.core import Agent
from ductor.agent.execute import error_text
from ductor.config import AgentConfig
from ductor.protocol import ProtocolError, Request, RequestType


def request(
    session: str | None = "tg:123", text: str = "hi", chat_is_private: bool | None = None
) -> Request:
    kind = RequestType.COMMAND if text.startswith("/") else RequestType.MESSAGE
    if session is None:
        kind = RequestType.STATUS
    return Request(kind, "r1", session=session, text=text, chat_is_private=chat_is_private)


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def run_text(tmp_path: Path, text: str, session: str = "tg:123") -> commands.CommandResult | None:
    async def run() -> commands.CommandResult | None:
        asked = request(session=session, text=text)
        return await commands.run_command_text(make_agent(tmp_path), asked)

    return asyncio.run(run())


# -- command_word ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Model@mybot sonnet", ("/model", "sonnet")),
        ("  /status  ", ("/status", "")),
        ("/model   opus   high ", ("/model", "opus   high")),
        ("/stop_all@bot", ("/stop_all", "")),
        ("hello /model", ("", "")),
        ("", ("", "")),
        ("@sonnet hi", ("", "")),
    ],
)
def test_command_word_splits_the_command_from_its_arguments(
    text: str, expected: tuple[str, str]
) -> None:
    assert command_word(text) == expected


def test_only_known_commands_count_as_commands() -> None:
    assert is_command("/help")
    assert is_command("/MODEL@bot opus")
    assert not is_command("/etc/passwd is a file")
    assert not is_command("what does /help do?")


# -- is_private --------------------------------------------------------------------------


def test_a_telegram_chat_with_a_positive_id_is_private() -> None:
    assert is_private(request("tg:123456"))


def test_a_telegram_group_with_a_negative_id_is_not_private() -> None:
    assert not is_private(request("tg:-100123456"))


def test_a_topic_is_never_private() -> None:
    assert not is_private(request("tg:123:7"))
    assert not is_private(request("tg:-100123:7"))


def test_a_cli_session_is_private_and_other_transports_are_not_by_default() -> None:
    assert is_private(request("cli:alice"))
    assert not is_private(request("mx:!room:example.org"))


def test_what_the_transport_says_about_the_chat_wins_over_the_session_key() -> None:
    assert is_private(request("mx:!room:example.org", chat_is_private=True))
    assert not is_private(request("tg:123456", chat_is_private=False))


def test_is_private_without_a_session_is_a_bad_request() -> None:
    with pytest.raises(ProtocolError) as raised:
        is_private(request(None))

    assert raised.value.code is protocol.ErrorCode.BAD_REQUEST


# -- error_text --------------------------------------------------------------------------


def test_an_auth_error_tells_the_user_to_log_in_again_and_keeps_the_session() -> None:
    text = error_text("auth", "401 Unauthorized", "sonnet", 600, "claude")

    assert "[sonnet]" in text
    assert "session is kept" in text
    assert (
        "claude is not logged in, or its credentials were refused: run `claude` once on the"
        " agent's machine and log in, or set ANTHROPIC_API_KEY in the agent's .env"
    ) in text
    assert "ductor doctor" in text
    assert text.endswith("**Detail:** `401 Unauthorized`")


def test_a_rate_limit_tells_the_user_to_wait() -> None:
    text = error_text("rate_limit", "429", "opus", 600)

    assert "rate limit" in text
    assert "Wait a while" in text


def test_a_context_overflow_points_to_new() -> None:
    text = error_text("context_too_long", "prompt is too long", "opus", 600)

    assert "no longer fits" in text
    assert "/new" in text


@pytest.mark.parametrize(
    ("seconds", "duration"),
    [(600, "10 min"), (3600, "60 min"), (25, "25 s"), (90, "1 min 30 s"), (0, "0 s")],
)
def test_a_timeout_says_after_how_long_the_cli_was_stopped(seconds: float, duration: str) -> None:
    text = error_text("timeout", "", "opus", seconds)

    assert text.startswith("**Timeout**")
    assert f"after {duration}." in text
    assert "session is kept" in text


def test_another_error_shows_the_first_line_of_the_detail() -> None:
    text = error_text("other", "  boom: disk full\nTraceback (most recent call last):", "opus", 60)

    assert text.endswith("**Detail:** `boom: disk full`")
    assert "Traceback" not in text


def test_a_long_detail_is_cut_to_200_characters() -> None:
    text = error_text("other", "x" * 500, "opus", 60)

    assert text.endswith("`" + "x" * 200 + "`")
    assert "x" * 201 not in text


def test_an_error_without_detail_says_so() -> None:
    assert error_text("other", "   ", "opus", 60).endswith("`(no detail)`")


# -- help and dispatch -------------------------------------------------------------------


def test_help_lists_every_command_except_aliases() -> None:
    first_word_for: dict[object, str] = {}
    for word, handler in COMMANDS.items():
        first_word_for.setdefault(handler, word)
    listed = set(re.findall(r"^(/\w+):", HELP, flags=re.MULTILINE))

    canonical = set(first_word_for.values()) - {"/start"}  # Telegram's first contact

    assert canonical == listed, (
        f"missing from /help: {canonical - listed}; extra: {listed - canonical}"
    )
    assert "/start" not in listed


def test_an_unknown_slash_word_is_no_command(tmp_path: Path) -> None:
    assert run_text(tmp_path, "/frobnicate now") is None


def test_help_and_start_in_a_group_answer_with_the_help_text(tmp_path: Path) -> None:
    helped = run_text(tmp_path, "/help")
    started = run_text(tmp_path, "/start@mybot", session="tg:-100123")

    assert helped is not None
    assert started is not None
    assert helped.text == started.text == HELP


def test_help_in_a_matrix_room_shows_the_bang_forms_and_the_room_commands(
    tmp_path: Path,
) -> None:
    async def run() -> commands.CommandResult | None:
        asked = replace(request(text="/help"), session="mx:!room:hs")
        return await commands.run_command_text(make_agent(tmp_path), asked)

    result = asyncio.run(run())
    assert result is not None
    lines = result.text.splitlines()
    assert "!model: choose the model (`!model sonnet` switches directly)" in lines
    assert not any(line.startswith("/") for line in lines)
    assert any(line.startswith("!where:") for line in lines)


def test_status_counts_an_api_key_in_the_agents_env_file_as_logged_in(tmp_path: Path) -> None:
    bin_dir = tmp_path / "home" / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    for cli in ("claude", "codex"):
        (bin_dir / cli).write_text("#!/bin/sh\n")
        (bin_dir / cli).chmod(0o755)
    credentials = tmp_path / "config" / "credentials" / "main"
    credentials.mkdir(parents=True)
    dotenv = credentials / ".env"
    dotenv.write_text("ANTHROPIC_API_KEY=sk-ant-example\n")
    dotenv.chmod(0o600)
    result = run_text(tmp_path, "/status")
    assert result is not None
    assert "[claude] authenticated (ANTHROPIC_API_KEY in the agent's .env)" in result.text
    assert "[codex] installed, not logged in" in result.text
    assert "sk-ant-example" not in result.text

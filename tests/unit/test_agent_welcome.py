"""ductor.agent.welcome: /start in a private chat and its quick-start buttons."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ductor import paths
from ductor.agent import commands, welcome
from ductor.agent.commands import HELP, CommandResult
from ductor.agent.core import Agent
from ductor.config import AgentConfig
from ductor.protocol import Request, RequestType, User


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
        "PATH": str(root / "no-bin"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def start(tmp_path: Path, session: str, name: str = "Ada Lovelace") -> CommandResult:
    asked = Request(RequestType.COMMAND, "r1", session=session, text="/start", user=User("1", name))
    result = asyncio.run(commands.run_command_text(make_agent(tmp_path), asked))
    assert result is not None
    return result


def test_start_in_a_private_chat_greets_by_first_name_with_three_quick_starts(
    tmp_path: Path,
) -> None:
    result = start(tmp_path, "tg:123")
    assert result.text.startswith("**Welcome to ductor, Ada!**")
    assert "No CLI is logged in yet" in result.text  # no CLI on this PATH
    assert "/showfiles" in result.text and "/help" in result.text
    assert [[b["data"] for b in row] for row in result.buttons] == [["w:1"], ["w:2"], ["w:3"]]


def test_start_in_a_group_is_help(tmp_path: Path) -> None:
    assert start(tmp_path, "tg:-100123").text == HELP


def test_a_quick_start_button_stands_for_a_long_prompt() -> None:
    prompt = welcome.quick_start_prompt("w:1")
    assert prompt is not None and "memory" in prompt and len(prompt) > 100
    assert welcome.quick_start_prompt("w:9") is None
    assert welcome.quick_start_prompt("crn:r:0") is None

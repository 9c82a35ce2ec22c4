"""``/model NAME``: a model no CLI has is refused with the list; names are canonical."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ductor import paths
from ductor.agent import commands
from ductor.agent.core import Agent
from ductor.config import AgentConfig
from ductor.protocol import Request, RequestType


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def model_command(agent: Agent, text: str, *, private: bool = False) -> str:
    request = Request(
        RequestType.COMMAND, "r1", session="tg:-100123", text=text, chat_is_private=private
    )
    result = asyncio.run(commands.run_command_text(agent, request))
    assert result is not None
    return result.text


def test_a_misspelt_model_is_refused_with_the_models_there_are(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    text = model_command(agent, "/model sonet", private=True)
    assert text.startswith("Unknown model `sonet`: nothing was changed.")
    assert "claude: opus" in text and "sonnet" in text and "gpt-5.5" in text
    assert agent.sessions.get("tg:-100123") is None
    assert not agent.paths.agent_config("main").exists(), "nothing saved as the default"


def test_a_model_name_is_matched_without_regard_to_case(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    text = model_command(agent, "/model SONNET")
    assert "opus → sonnet" in text
    session = agent.sessions.get("tg:-100123")
    assert session is not None and (session.provider, session.model) == ("claude", "sonnet")


def test_a_codex_model_switches_the_provider(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    text = model_command(agent, "/model gpt-5.5")
    assert "provider: claude → codex" in text


def test_any_full_claude_id_is_accepted(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    assert "opus → claude-opus-9-9" in model_command(agent, "/model claude-opus-9-9")

"""ductor.agent.topics and the topic commands: /topicmodel, /new @TopicName, the
project line of /status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from ductor import paths
from ductor.agent import commands
from ductor.agent.core import Agent
from ductor.agent.execute import Turn
from ductor.agent.topics import TopicStore
from ductor.agent.turns import TurnKind, TurnRecord
from ductor.config import AgentConfig
from ductor.protocol import Request, RequestType

TOPIC = "tg:-100123:7"
OTHER = "tg:-100123:9"


def make_agent(root: Path, config: AgentConfig | None = None) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), config or AgentConfig(), env=env)


def say(agent: Agent, text: str, session: str = TOPIC) -> str:
    async def run() -> str:
        asked = Request(RequestType.COMMAND, "r1", session=session, text=text)
        result = await commands.run_command_text(agent, asked)
        assert result is not None
        return result.text

    return asyncio.run(run())


def test_names_and_defaults_are_kept_in_the_agents_state(tmp_path: Path) -> None:
    store = TopicStore(tmp_path / "topics.json")
    store.learn(TOPIC, "Release planning")
    store.set_default(TOPIC, "claude", "sonnet")

    again = TopicStore(tmp_path / "topics.json")

    assert again.name(TOPIC) == "Release planning"
    assert again.default(TOPIC) == ("claude", "sonnet")
    assert again.find("tg:-100123:", "release PLANNING") == TOPIC
    assert again.find("tg:-999:", "release planning") is None


def test_an_unreadable_topics_file_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "topics.json").write_text("{not json")

    assert TopicStore(tmp_path / "topics.json").default(TOPIC) is None


def test_topicmodel_sets_a_default_that_new_sessions_and_slash_new_start_on(
    tmp_path: Path,
) -> None:
    agent = make_agent(tmp_path)
    agent.topics.learn(TOPIC, "Web")

    answer = say(agent, "/topicmodel Sonnet")
    fresh = say(agent, "/new")

    assert 'Default model of topic "Web": sonnet' in answer
    assert "(sonnet)" in fresh
    session = agent.sessions.get(TOPIC)
    assert session is not None and session.model == "sonnet"
    assert agent.turn_env().defaults(TOPIC) == ("claude", "sonnet")
    assert agent.turn_env().defaults(OTHER) == ("claude", AgentConfig().model)
    saved = json.loads((agent.state_dir / "topics.json").read_text())
    assert saved["topics"][TOPIC]["model"] == "sonnet"


def test_topicmodel_refuses_a_model_no_cli_has_and_changes_nothing(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)

    answer = say(agent, "/topicmodel gpt-99-imaginary")

    assert "Unknown model `gpt-99-imaginary`" in answer
    assert agent.topics.default(TOPIC) is None


def test_topicmodel_reset_goes_back_to_the_agents_default(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    say(agent, "/topicmodel sonnet")

    say(agent, "/topicmodel reset")

    assert agent.topics.default(TOPIC) is None
    assert "none (the agent's" in say(agent, "/topicmodel")


def test_new_at_a_topic_name_resets_that_topic_and_not_this_one(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    agent.topics.learn(OTHER, "Backend")
    for key in (TOPIC, OTHER):
        agent.sessions.record_turn(
            key, "claude", session_id=f"s-{key}", model="opus",
            input_tokens=1, output_tokens=1, cost_usd=None,
        )  # fmt: skip

    answer = say(agent, "/new @backend")

    assert 'topic "Backend"' in answer
    other, this = agent.sessions.get(OTHER), agent.sessions.get(TOPIC)
    assert other is not None and other.bucket("claude").session_id is None
    assert this is not None and this.bucket("claude").session_id == f"s-{TOPIC}"


def test_new_at_an_unknown_topic_says_so(tmp_path: Path) -> None:
    assert say(make_agent(tmp_path), "/new @Nowhere") == 'Topic "Nowhere" not found.'


def test_status_shows_the_project_folder_and_says_when_it_is_missing(tmp_path: Path) -> None:
    project = tmp_path / "web"
    agent = make_agent(tmp_path, AgentConfig(project_roots={"Web": str(project)}))
    agent.topics.learn(TOPIC, "Web")

    missing = say(agent, "/status")
    project.mkdir()
    present = say(agent, "/status")

    assert f"**Project** ─── {project} (missing" in missing
    assert f"**Project** ─── {project} (project_roots" in present
    assert "Project" not in say(agent, "/status", session=OTHER)


def test_a_turn_in_a_topic_whose_project_folder_is_missing_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "gone"
    agent = make_agent(tmp_path, AgentConfig(project_roots={"-100123:7": str(project)}))
    record = TurnRecord(id="t1", seq=1, session=TOPIC, kind=TurnKind.MESSAGE, text="hello")

    outcome = asyncio.run(Turn(agent.turn_env(), record, lambda _: None, "r1").run())

    assert outcome.is_error and outcome.error_kind == "project_missing"
    assert f"This topic works in {project}" in outcome.text
    assert 'project_roots."-100123:7"' in outcome.text

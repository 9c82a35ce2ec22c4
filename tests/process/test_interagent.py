"""Two agents that work together, end to end: both daemons run as processes in one
layout (the agent in the foreground, the fake CLIs); the tool scripts in the workspace
are run as the CLI would run them. What a chat would see is what lands in the agent's
Telegram outbox (no transport runs here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import BASE_CONFIG, AgentProcess, final

from ductor import protocol
from ductor.protocol import Request, RequestType, new_request_id

CHAT = "100"
CONFIG = BASE_CONFIG + "\n[telegram]\nallowed_user_ids = [{user}]\n"


def start(root: Path, name: str, user: int, **fake: str) -> AgentProcess:
    process = AgentProcess(root, name=name, config=CONFIG.format(user=user))
    values = {"FAKECLI_RECORD": str(root / f"runs-{name}.jsonl"), **fake}
    file = root / "config" / "credentials" / name / ".env"
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    file.chmod(0o600)
    process.write_config()
    return process


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    main = start(tmp_path, "main", 100)
    research = start(tmp_path, "research", 200)
    main.start()
    research.start()
    try:
        yield main, research
    finally:
        main.stop()
        research.stop()


def tool(agent: AgentProcess, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an agent tool script from the workspace as the CLI would (its environment)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DUCTOR_AGENT_NAME": agent.name,
        "DUCTOR_AGENT_SOCKET": str(agent.socket),
        "DUCTOR_TRANSPORT": "tg",
        "DUCTOR_CHAT_ID": CHAT,
    }
    script = agent.workspace / "tools" / "agent_tools" / f"{name}.py"
    return subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=agent.workspace,
    )


def outbox(agent: AgentProcess) -> list[dict[str, object]]:
    directory = agent.state / "spool" / "outbox" / "tg" / "new"
    if not directory.is_dir():
        return []
    found = [json.loads(p.read_text()) for p in directory.iterdir()]
    return sorted(found, key=lambda e: str(e["created_at"]))


def texts_in_outbox(agent: AgentProcess) -> list[str]:
    return [str(e["payload"]["text"]) for e in outbox(agent)]  # type: ignore[index]


def runs(agent: AgentProcess) -> list[str]:
    """What each CLI run of the agent was asked (argv and stdin), oldest first."""
    file = agent.root / f"runs-{agent.name}.jsonl"
    if not file.exists():
        return []
    found = [json.loads(line) for line in file.read_text().splitlines()]
    return [str(run.get("stdin") or "") + " ".join(run["argv"]) for run in found]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_ask_agent_prints_the_other_agents_answer_to_the_framed_message(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    result = tool(main, "ask_agent", "research", "Which tickets mention payments?")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()  # the research agent's answer
    asked = runs(research)
    assert len(asked) == 1
    assert "[INTER-AGENT MESSAGE from 'main' to 'research']" in asked[0]
    assert "Which tickets mention payments?" in asked[0]
    assert "You are agent 'research'." in asked[0]
    assert runs(main) == []  # the asking agent's CLI is the one running the tool
    assert texts_in_outbox(research) == []  # a sync ask posts nothing in the chat


def test_ask_agent_names_the_agents_there_are_when_the_target_does_not_exist(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, _ = pair
    result = tool(main, "ask_agent", "nobody", "Hello?")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert "no agent named 'nobody'" in answer["error"]
    assert "research" in answer["error"]


def test_ask_agent_says_when_the_target_is_stopped(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    research.stop()
    result = tool(main, "ask_agent", "research", "Hello?")
    assert result.returncode == 1
    assert "'research' is stopped" in json.loads(result.stdout)["error"]


def test_async_ask_is_announced_to_the_target_and_its_answer_answered_in_the_senders_chat(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    result = tool(
        main, "ask_agent_async", "--summary", "Ticket triage", "research", "Triage the tickets."
    )
    assert result.returncode == 0, result.stdout + result.stderr
    task_id = json.loads(result.stdout)["task_id"]
    wait_for(lambda: len(outbox(main)) >= 1)
    time.sleep(1.0)  # nothing else may follow
    received = texts_in_outbox(research)
    assert len(received) == 1, received
    assert received[0].startswith("📥 **Async task received** from `main`")
    assert task_id in received[0] and "Ticket triage" in received[0]
    assert outbox(research)[0]["routing"]["chat_id"] == 200  # type: ignore[index]
    answered = outbox(main)
    assert len(answered) == 1, answered  # the sender's answer to the injected result
    assert answered[0]["routing"]["chat_id"] == 100  # type: ignore[index]
    injected = runs(main)
    assert len(injected) == 1
    assert f"[ASYNC INTER-AGENT RESPONSE from 'research' (task {task_id})]" in injected[0]
    assert "Triage the tickets." in injected[0]


def test_async_ask_with_reply_to_answers_into_the_third_agent_and_tells_nobody_else(
    tmp_path: Path,
) -> None:
    agents = [start(tmp_path, n, u) for n, u in (("main", 100), ("research", 200), ("ops", 300))]
    for agent in agents:
        agent.start()
    main, research, ops = agents
    try:
        result = tool(main, "ask_agent_async", "--reply-to", "ops", "research", "Check disks.")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: len(outbox(ops)) >= 1)
        time.sleep(1.0)
        assert texts_in_outbox(research) == []  # --reply-to is silent
        assert outbox(main) == [] and runs(main) == []
        assert [e["routing"]["chat_id"] for e in outbox(ops)] == [300]  # type: ignore[index]
        assert "ASYNC INTER-AGENT RESPONSE from 'research'" in runs(ops)[0]
    finally:
        for agent in agents:
            agent.stop()


def test_async_ask_with_silent_does_not_tell_the_targets_chat(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    result = tool(main, "ask_agent_async", "--silent", "research", "Quietly count tickets.")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: len(outbox(main)) >= 1)
    time.sleep(0.5)
    assert texts_in_outbox(research) == []
    assert len(runs(research)) == 1


def test_async_ask_waits_in_the_inbox_of_a_stopped_target_and_is_answered_once_after_its_start(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    research.stop()
    result = tool(main, "ask_agent_async", "research", "Summarise the week.")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not running" in json.loads(result.stdout)["text"]
    time.sleep(0.5)
    assert runs(research) == []
    research.start()
    wait_for(lambda: len(outbox(main)) >= 1)
    time.sleep(1.0)
    assert len(runs(research)) == 1
    assert len(outbox(main)) == 1


def test_shared_knowledge_edit_reaches_every_agents_main_memory(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    result = tool(main, "edit_shared_knowledge", "--append", "2026-12-07: the VPN is down.")
    assert result.returncode == 0, result.stdout + result.stderr
    for agent in pair:
        memory = (agent.workspace / "memory_system" / "MAINMEMORY.md").read_text()
        assert "# Main memory" in memory  # the agent's own part stays
        start_at = memory.index("--- SHARED KNOWLEDGE START ---")
        assert "the VPN is down" in memory[start_at : memory.index("--- SHARED KNOWLEDGE END ---")]
    shown = json.loads(tool(research, "edit_shared_knowledge", "--show").stdout)
    assert "the VPN is down" in shown["shared"]
    result = tool(main, "edit_shared_knowledge", "--set", "Only this.")
    memory = (research.workspace / "memory_system" / "MAINMEMORY.md").read_text()
    assert "the VPN is down" not in memory and "Only this." in memory
    assert memory.count("--- SHARED KNOWLEDGE START ---") == 1


def test_rule_files_name_the_other_agents_and_how_to_ask_them(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, _ = pair
    rules = (main.workspace / "CLAUDE.md").read_text()
    assert "`research`: claude/opus" in rules
    assert "ask_agent.py" in rules
    assert "`main`:" not in rules
    listed = json.loads(tool(main, "list_agents").stdout)
    assert [a["name"] for a in listed["agents"]] == ["main", "research"]


def test_a_second_ask_continues_the_conversation_and_new_starts_it_afresh(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    for args in (("research", "First?"), ("research", "Second?"), ("--new", "research", "Third?")):
        result = tool(main, "ask_agent", *args)
        assert result.returncode == 0, result.stdout + result.stderr
    first, second, third = runs(research)
    assert "--resume" not in first
    assert "--resume" in second  # the same inter-agent session
    assert "--resume" not in third  # --new ended it


def test_a_failed_async_request_reaches_the_senders_chat_as_inter_agent_request_failed(
    tmp_path: Path,
) -> None:
    main = start(tmp_path, "main", 100).start()
    research = start(tmp_path, "research", 200, FAKECLI_SCENARIO="claude-error-500").start()
    try:
        result = tool(main, "ask_agent_async", "--silent", "research", "Do the thing.")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: len(outbox(main)) >= 1)
        time.sleep(1.0)
        texts = texts_in_outbox(main)
        assert len(texts) == 1, texts
        assert texts[0].startswith("**Inter-Agent Request Failed**\nAgent: `research`")
        assert "Request: Do the thing." in texts[0]
        assert runs(main) == []  # a failure is told, not injected
    finally:
        main.stop()
        research.stop()


def command(agent: AgentProcess, text: str) -> str:
    request = Request(type=RequestType.COMMAND, id=new_request_id(), session="tg:100", text=text)
    return final(agent.call(request)).text


def test_agents_lists_every_agent_with_its_model_and_whether_it_runs(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    research.stop()
    listed = command(main, "/agents")
    assert "**main** (this agent): claude/opus" in listed, listed
    assert "**research**: claude/opus" in listed
    assert "not running" in listed.split("**research**")[1]
    assert "no agent named" in command(main, "/agent_start nobody").lower()
    status = command(main, "/status")
    assert "**Other agents**" in status and "○ research: off" in status, status


def test_stop_all_in_one_agents_chat_stops_the_turn_running_on_the_other_agent(
    tmp_path: Path,
) -> None:
    main = start(tmp_path, "main", 100).start()
    research = start(tmp_path, "research", 200, FAKECLI_SCENARIO="claude-interrupt").start()
    try:
        request = Request(
            type=RequestType.MESSAGE, id=new_request_id(), session="tg:200", text="Work long."
        )
        with protocol.client.connect(research.socket, request, timeout=30) as exchange:
            events = exchange.events()
            while next(events).type is not protocol.EventType.ACCEPTED:
                pass
            time.sleep(1.0)  # the CLI runs (and stalls until it is signalled)
            answer = command(main, "/stop_all")
            rest = list(events)
        assert answer == "Stopped 1 process(es) across all agents.", answer
        assert rest[-1].type is protocol.EventType.FINAL
        assert rest[-1].get_str("stopped") == "stop"
    finally:
        main.stop()
        research.stop()


def test_create_agent_takes_the_token_from_stdin_and_every_rule_file_describes_the_new_agent(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    token = "123456:AAtokenNeverInArgv_0123456789abcdef"
    script = main.workspace / "tools" / "agent_tools" / "create_agent.py"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DUCTOR_AGENT_NAME": main.name,
        "DUCTOR_AGENT_SOCKET": str(main.socket),
    }
    argv = [sys.executable, str(script), "--name", "helper", "--token-file", "-"]
    argv += ["--users", "300", "--model", "sonnet", "--description", "reads the news"]
    result = subprocess.run(
        argv, input=token + "\n", env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = (main.root / "config" / "agents" / "helper.toml").read_text()
    assert "300" in config and "sonnet" in config and token not in config
    stored = main.root / "config" / "credentials" / "helper" / "telegram-token"
    assert stored.read_text().strip() == token
    roster = (research.workspace / "CLAUDE.md").read_text()
    assert "`helper`: reads the news; claude/sonnet" in roster, roster
    assert "**helper**: reads the news · claude/sonnet" in command(main, "/agents")
    assert token not in main.log()
    refused = tool(main, "create_agent", "--name", "x", "--token", token)
    assert refused.returncode == 1 and "never put a secret" in refused.stdout
    removed = tool(main, "remove_agent", "helper")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "`helper`" not in (research.workspace / "CLAUDE.md").read_text()


def test_the_user_continues_an_inter_agent_session_in_the_targets_chat_by_its_name(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    assert tool(main, "ask_agent", "research", "Start a plan.").returncode == 0
    name = json.loads(tool(main, "ask_agent_async", "--silent", "research", "More.").stdout)[
        "session"
    ]
    wait_for(lambda: len(runs(research)) >= 2)
    end = final(research.message(f"@{name} Add a step for the review.", session="tg:200"))
    assert end.text and not end.get_bool("is_error"), end
    last = runs(research)[-1]
    assert "Add a step for the review." in last
    assert "--resume" in last  # the session the other agent started
    assert "INTER-AGENT MESSAGE" not in last  # the user's own words


def test_a_provider_switch_of_the_target_ends_its_session_and_is_announced_before_the_answer(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    main, research = pair
    assert tool(main, "ask_agent", "research", "First, on Claude.").returncode == 0
    research.stop()
    research.write_config(research.config.replace('provider = "claude"', 'provider = "codex"'))
    research.write_config(
        research.root.joinpath("config", "agents", "research.toml")
        .read_text()
        .replace('model = "opus"', 'model = "gpt-5.5"')
    )
    research.start()
    tool(main, "ask_agent_async", "--silent", "research", "Then, on Codex.")
    wait_for(lambda: len(outbox(main)) >= 2)
    time.sleep(0.5)
    texts = texts_in_outbox(main)
    assert texts[0].startswith("**Provider Switch Detected**"), texts
    assert "now runs on codex (it was claude)" in texts[0]
    assert len(texts) == 2, texts  # the notice, then the answer to the injected result
    last = runs(research)[-1]
    assert "-m gpt-5.5" in last and " resume " not in last  # Codex, in a fresh session


def test_an_async_request_dropped_from_the_targets_queue_by_stop_all_is_reported_failed_once(
    tmp_path: Path,
) -> None:
    main = start(tmp_path, "main", 100).start()
    research = start(tmp_path, "research", 200, FAKECLI_SCENARIO="claude-interrupt").start()
    try:
        for message in ("First long job.", "Second job, queued."):
            result = tool(main, "ask_agent_async", "--silent", "research", message)
            assert result.returncode == 0, result.stdout + result.stderr
        accepted = research.state / "interagent"
        wait_for(lambda: len(runs(research)) == 1 and len(list(accepted.glob("*.json"))) == 2)
        assert command(research, "/stop_all").startswith("Stopped 1 process(es)")
        wait_for(lambda: len(outbox(main)) >= 2)
        time.sleep(1.0)  # nothing more comes
        texts = texts_in_outbox(main)
        assert len(texts) == 2, texts
        assert all(t.startswith("**Inter-Agent Request Failed**") for t in texts), texts
        assert sum("Request: Second job, queued." in t for t in texts) == 1, texts
        assert "before it ran" in "".join(texts)
        assert len(runs(research)) == 1  # the queued one never ran
    finally:
        main.stop()
        research.stop()

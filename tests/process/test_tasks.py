"""Background tasks end to end, with the agent in the foreground (each run a plain
process) and the fake CLIs: the tool scripts in the workspace, the runner, the inbox
reader, ``/tasks`` and its buttons. What the chat would see is what lands in the
agent's Telegram outbox (the agent runs no transport here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess, final

from ductor.protocol import Request, RequestType, new_request_id

CHAT = "tg:100"


def start(tmp_path: Path, **fake: str) -> AgentProcess:
    """An agent whose CLI runs get ``fake`` (FAKECLI_* settings) through its .env, and
    record what they were started with in runs.jsonl."""
    process = AgentProcess(tmp_path)
    values = {"FAKECLI_RECORD": str(tmp_path / "runs.jsonl"), **fake}
    file = tmp_path / "config" / "credentials" / process.name / ".env"
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    file.chmod(0o600)
    return process.start()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = start(tmp_path)
    try:
        yield process
    finally:
        process.stop()


def tool(
    agent: AgentProcess, name: str, *args: str, task_id: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a task tool script from the workspace as the CLI would (its environment)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DUCTOR_AGENT_NAME": agent.name,
        "DUCTOR_AGENT_SOCKET": str(agent.socket),
        "DUCTOR_TRANSPORT": "tg",
        "DUCTOR_CHAT_ID": "100",
    }
    if task_id:
        env["DUCTOR_TASK_ID"] = task_id
    script = agent.workspace / "tools" / "task_tools" / f"{name}.py"
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
    """The envelopes waiting for Telegram, oldest first."""
    directory = agent.state / "spool" / "outbox" / "tg" / "new"
    if not directory.is_dir():
        return []
    found = [json.loads(p.read_text()) for p in directory.iterdir()]
    return sorted(found, key=lambda e: str(e["created_at"]))


def texts_in_outbox(agent: AgentProcess) -> list[str]:
    return [str(e["payload"]["text"]) for e in outbox(agent)]  # type: ignore[index]


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def runs(agent: AgentProcess) -> list[dict[str, object]]:
    file = agent.root / "runs.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines()]


def created(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["ok"] is True, answer
    task = answer["task"]
    assert isinstance(task, dict)
    return task


def test_task_tool_without_arguments_prints_its_tutorial(agent: AgentProcess) -> None:
    result = tool(agent, "create_task")
    assert result.returncode == 0
    assert "Usage: create_task.py" in result.stdout
    assert "--priority" in result.stdout


def test_a_finished_task_is_announced_once_and_its_result_answered_in_the_chat(
    agent: AgentProcess,
) -> None:
    task = created(tool(agent, "create_task", "--name", "audit", "List the outdated deps."))
    assert task["status"] in ("starting", "running")

    def done() -> bool:
        return len(outbox(agent)) >= 2

    wait_for(done)
    time.sleep(1.0)  # nothing else may follow
    texts = texts_in_outbox(agent)
    notices = [t for t in texts if t.startswith("**Task `audit` completed**")]
    assert len(notices) == 1, texts
    assert "claude/opus" in notices[0]
    assert len(texts) == 2, texts  # the notice and the agent's answer to the result
    recorded = runs(agent)
    task_run, injected = recorded[0], recorded[1]
    assert task_run["env"]["DUCTOR_TASK_ID"] == task["id"]  # type: ignore[index]
    assert task_run["env"]["DUCTOR_CHAT_ID"] == "100"  # type: ignore[index]
    assert task_run["cwd"] == str(agent.workspace)
    assert "TASK RULES (MANDATORY)" in str(task_run["stdin"] or task_run["argv"])
    assert "[BACKGROUND TASK COMPLETED" in str(injected["stdin"] or injected["argv"])
    assert "Review this result critically" in str(injected["stdin"] or injected["argv"])
    memory = agent.workspace / "tasks" / str(task["id"]) / "TASKMEMORY.md"
    assert memory.read_text().startswith("# Task: audit")
    listed = json.loads(tool(agent, "list_tasks").stdout)
    assert listed["tasks"][0]["status"] == "done"


def test_a_failing_task_is_reported_once_even_when_the_injection_fails_too(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, FAKECLI_SCENARIO="claude-error-500")
    try:
        created(tool(process, "create_task", "--name", "flaky", "Do the thing."))
        wait_for(lambda: len(outbox(process)) >= 2)
        time.sleep(1.0)
        texts = texts_in_outbox(process)
        failed = [t for t in texts if t.startswith("**Task `flaky` failed**\nReason:")]
        assert len(failed) == 1, texts
    finally:
        process.stop()


def test_tasks_menu_cancels_a_running_task_and_posts_its_partial_memory(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, FAKECLI_DELAY_MS="1500")
    try:
        task = created(tool(process, "create_task", "--name", "slow", "Take your time."))
        menu = final(
            process.call(
                Request(type=RequestType.COMMAND, id=new_request_id(), session=CHAT, text="/tasks")
            )
        )
        assert "**Running**" in menu.text
        assert "1 running · 0 waiting · 0 finished" in menu.text
        buttons = [b for row in menu.data["buttons"] for b in row]  # type: ignore[attr-defined]
        assert {"label": "Cancel slow", "data": f"tsc:cancel:{task['id']}"} in buttons
        pressed = final(
            process.call(
                Request(
                    type=RequestType.BUTTON,
                    id=new_request_id(),
                    session=CHAT,
                    data=f"tsc:cancel:{task['id']}",
                )
            )
        )
        assert "Cancelling slow" in pressed.text
        wait_for(lambda: any("cancelled" in t for t in texts_in_outbox(process)))
        time.sleep(1.0)
        texts = texts_in_outbox(process)
        cancelled = [t for t in texts if t.startswith("**Task `slow` cancelled**")]
        assert len(cancelled) == 1, texts
        assert "CONTENT FROM TASKMEMORY.MD" in cancelled[0]
        assert len(texts) == 1, texts  # a cancelled task is not injected
        menu = final(
            process.call(
                Request(type=RequestType.COMMAND, id=new_request_id(), session=CHAT, text="/tasks")
            )
        )
        assert "0 running · 0 waiting · 1 finished" in menu.text
    finally:
        process.stop()


def test_a_task_that_asks_its_parent_waits_and_resumes_its_own_session_with_the_answer(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, FAKECLI_DELAY_MS="700")
    try:
        task = created(tool(process, "create_task", "--name", "db", "Set up the database."))
        asked = tool(process, "ask_parent", "Which PostgreSQL version?", task_id=str(task["id"]))
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert "Question forwarded to parent agent" in asked.stdout
        wait_for(
            lambda: (
                json.loads(tool(process, "list_tasks").stdout)["tasks"][0]["status"] == "waiting"
            )
        )
        texts = texts_in_outbox(process)
        assert f"**Task `{task['id']}` has a question:**\nWhich PostgreSQL version?" in texts
        resumed = tool(process, "resume_task", str(task["id"]), "Use version 16.")
        assert resumed.returncode == 0, resumed.stdout
        wait_for(lambda: any("`db` completed" in t for t in texts_in_outbox(process)), 30)
        task_runs = [r for r in runs(process) if r["env"].get("DUCTOR_TASK_ID") == task["id"]]
        assert len(task_runs) == 2
        assert "--resume" in task_runs[1]["argv"]
        assert "Use version 16." in str(task_runs[1]["stdin"] or task_runs[1]["argv"])
    finally:
        process.stop()


def test_another_agent_cannot_touch_this_agents_tasks(agent: AgentProcess) -> None:
    request = Request(type=RequestType.TASK, id=new_request_id(), text="list", sender="intruder")
    events = agent.call(request)
    assert events[-1].type.value == "error"
    assert "belong to it alone" in events[-1].text


def test_a_task_over_its_timeout_fails_with_the_time_it_was_given(tmp_path: Path) -> None:
    config = (
        'provider = "claude"\nmodel = "opus"\ntransports = []\n\n'
        "[timeouts]\nextend_on_activity = false\nwarning_intervals = []\n\n"
        "[tasks]\ntimeout_seconds = 2\n"
    )
    process = AgentProcess(tmp_path, config=config)
    process.write_config()
    file = tmp_path / "config" / "credentials" / process.name / ".env"
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    file.write_text("FAKECLI_DELAY_MS=1500\n")
    file.chmod(0o600)
    process.start()
    try:
        created(tool(process, "create_task", "--name", "sloth", "Take forever."))
        wait_for(lambda: any("`sloth` failed" in t for t in texts_in_outbox(process)), 30)
        [failed] = [t for t in texts_in_outbox(process) if "`sloth` failed" in t]
        assert failed == "**Task `sloth` failed**\nReason: Timeout after 2s"
    finally:
        process.stop()


# -- named sessions -------------------------------------------------------------------


def command(agent: AgentProcess, text: str) -> str:
    request = Request(type=RequestType.COMMAND, id=new_request_id(), session=CHAT, text=text)
    return final(agent.call(request)).text


def test_a_named_session_runs_in_the_background_posts_its_result_and_continues(
    agent: AgentProcess,
) -> None:
    started = command(agent, "/session @sonnet Summarise the README.")
    assert started.startswith("**Session `"), started
    assert "Running on Claude (sonnet)." in started
    name = started.split("`")[1]
    wait_for(lambda: any(t.startswith(f"**[{name}] Complete**") for t in texts_in_outbox(agent)))
    sent = command(agent, f"/session @{name} And the license?")
    assert sent.startswith(f"**[{name}] Follow-up sent**"), sent
    wait_for(lambda: len(texts_in_outbox(agent)) >= 2)
    time.sleep(0.5)
    texts = texts_in_outbox(agent)
    assert [t.split(" ")[0] for t in texts] == [f"**[{name}]"] * 2, texts
    session_runs = [r for r in runs(agent) if "--model" in r["argv"]]
    assert len(session_runs) == 2
    assert "--resume" in session_runs[1]["argv"]  # its own CLI session, continued
    assert "And the license?" in str(session_runs[1]["stdin"] or session_runs[1]["argv"])
    assert "TASK RULES" not in str(session_runs[0]["stdin"])  # the user's words as they are
    listed = command(agent, "/tasks")
    assert name not in listed  # a named session is not a task


def test_sessions_lists_named_sessions_and_ends_them(agent: AgentProcess) -> None:
    name = command(agent, "/session Think about it.").split("`")[1]
    menu = final(
        agent.call(
            Request(type=RequestType.COMMAND, id=new_request_id(), session=CHAT, text="/sessions")
        )
    )
    assert f"1. **{name}** | claude/opus |" in menu.text
    buttons = [b for row in menu.data["buttons"] for b in row]  # type: ignore[attr-defined]
    assert {"label": f"End {name}", "data": f"nsc:end:{name}"} in buttons
    pressed = final(
        agent.call(
            Request(
                type=RequestType.BUTTON, id=new_request_id(), session=CHAT, data=f"nsc:end:{name}"
            )
        )
    )
    assert f"Session {name} ended." in pressed.text
    assert "No named sessions." in pressed.text
    refused = command(agent, f"/session @{name} more")
    assert "Unknown provider, model or session" in refused


def test_at_name_continues_a_named_session_in_the_foreground_streamed_and_tagged(
    agent: AgentProcess,
) -> None:
    name = command(agent, "/session Plan the trip.").split("`")[1]
    wait_for(lambda: any(t.startswith(f"**[{name}] Complete**") for t in texts_in_outbox(agent)))
    events = agent.message(f"@{name} Now the budget.", session=CHAT)
    end = final(events)
    assert end.text.startswith(f"**[{name} | claude]**\n\n"), end.text
    deltas = [e.text for e in events if e.type.value == "text"]
    assert deltas[0] == f"**[{name} | claude]**\n\n" and len(deltas) > 1
    session_runs = [r for r in runs(agent) if "--model" in r["argv"]]
    assert "--resume" in session_runs[-1]["argv"]
    assert "Now the budget." in str(session_runs[-1]["stdin"] or session_runs[-1]["argv"])
    # Not the chat's own session: that one was never started.
    assert agent.message("@nosuchsession hello", session=CHAT)[-1].type.value in ("final",)
    command(agent, "/sessions")
    final(
        agent.call(
            Request(
                type=RequestType.BUTTON, id=new_request_id(), session=CHAT, data=f"nsc:end:{name}"
            )
        )
    )
    ended = final(agent.message(f"@{name} more", session=CHAT))
    assert ended.text == (f"Session '{name}' has ended. Start a new one with `/session <prompt>`.")


def test_a_named_session_cut_short_by_a_shutdown_is_resumed_at_the_next_start(
    tmp_path: Path,
) -> None:
    process = start(tmp_path, FAKECLI_DELAY_MS="1000")
    try:
        name = command(process, "/session Write the report.").split("`")[1]
        [record] = (process.state / "tasks").glob("*.json")
        wait_for(lambda: json.loads(record.read_text())["status"] == "running")
        wait_for(lambda: len(runs(process)) == 1)  # the CLI runs
        process.stop()
        os.kill(json.loads(record.read_text())["pid"], signal.SIGTERM)  # as a shutdown does
        wait_for(lambda: json.loads(record.read_text())["status"] == "failed")
        assert texts_in_outbox(process) == []  # no "Cancelled": it was not the user
        process.start()
        wait_for(lambda: any(f"[{name}] Complete" in t for t in texts_in_outbox(process)), 30)
        texts = texts_in_outbox(process)
        assert texts[0] == f"**Auto-Recovery** ─── Resuming background session **{name}**"
        assert len([t for t in texts if f"[{name}] Complete" in t]) == 1
        assert "Write the report." in str(runs(process)[-1]["stdin"])
    finally:
        process.stop()

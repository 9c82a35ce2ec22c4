"""Background tasks with the real Claude Code CLI against the API stub: the CLI itself
creates the task from a chat (a Bash call of tools/task_tools/create_task.py), the task
runs as its own CLI run, and its result comes back into the chat's session once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.process.agent_proc import final
from tests.process.test_agent_real_claude import start_agent
from tests.process.test_tasks import outbox, texts_in_outbox, wait_for
from tests.stubs.anthropic_api import AnthropicStub

# Inside the task the same Bash call only says where it runs, so a task never makes tasks.
COMMAND = (
    '[ -n "$DUCTOR_TASK_ID" ] && echo "inside task $DUCTOR_TASK_ID" ||'
    ' python3 tools/task_tools/create_task.py --name stubtask "Say hello from the task."'
)


def test_the_real_cli_creates_a_task_whose_result_is_answered_in_the_chat_once(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    anthropic_stub.set_behaviour("tool", command=COMMAND)
    agent = start_agent(real_claude, anthropic_stub, tmp_path)
    try:
        end = final(agent.message("Please delegate a greeting.", session="tg:100"))
        anthropic_stub.set_behaviour("echo")
        assert "Tool said:" in end.text, end.text
        assert '"ok": true' in end.text, end.text
        records = list((agent.state / "tasks").glob("*.json"))
        assert len(records) == 1
        task = json.loads(records[0].read_text())
        assert task["name"] == "stubtask" and task["session"] == "tg:100"

        def answered() -> bool:
            return len(outbox(agent)) >= 2

        wait_for(answered, timeout=90)
        time.sleep(2.0)  # nothing more may come
        texts = texts_in_outbox(agent)
        notices = [t for t in texts if t.startswith("**Task `stubtask` completed**")]
        assert len(notices) == 1, texts
        answers = [t for t in texts if "[BACKGROUND TASK COMPLETED" in t]
        assert len(answers) == 1, texts  # the stub echoes the injected prompt
        assert len(texts) == 2, texts
        done = json.loads(records[0].read_text())
        assert done["status"] == "done"
        assert done["session_id"]
        bodies = [str(r) for r in anthropic_stub.requests]
        assert any("TASK RULES (MANDATORY)" in b for b in bodies)
    finally:
        agent.stop()


def test_a_named_session_of_the_real_cli_answers_in_the_background_and_then_in_the_foreground(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    anthropic_stub.set_behaviour("echo")
    agent = start_agent(real_claude, anthropic_stub, tmp_path)
    try:
        started = final(agent.message("/session first question", session="tg:100"))
        name = started.text.split("`")[1]
        wait_for(lambda: bool(outbox(agent)), timeout=60)
        [posted] = texts_in_outbox(agent)
        assert posted.startswith(f"**[{name}] Complete**")
        assert "ECHO: first question" in posted
        events = agent.message(f"@{name} second question", session="tg:100")
        end = final(events)
        assert end.text == f"**[{name} | claude]**\n\nECHO: second question"
        conversation = str(anthropic_stub.requests[-1]["messages"])
        assert "first question" in conversation  # the same CLI session, resumed
    finally:
        agent.stop()

"""Two agents with the real Claude Code CLI against the API stub: the CLI of one agent
asks the other through a Bash call of tools/agent_tools/ask_agent*.py, as a model would.
The Bash command is conditional so that the same stub behaviour makes the asked agent
answer (with its name) instead of asking again."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess, final
from tests.process.conftest import claude_env
from tests.process.test_agent_real_claude import CONFIG
from tests.process.test_interagent import outbox, texts_in_outbox, wait_for
from tests.stubs.anthropic_api import AnthropicStub

from ductor.agent.execute import RESTORED_NOTICE

ANSWER = 'if [ "$DUCTOR_AGENT_NAME" = research ]; then echo "research says $((6 * 7))"; el'


@pytest.fixture
def pair(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(real_claude)
    env = claude_env(anthropic_stub, tmp_path / "home")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    config = CONFIG + "\n[telegram]\nallowed_user_ids = [{user}]\n"
    agents = [
        AgentProcess(tmp_path, name=name, config=config.format(user=user), extra_env=env)
        for name, user in (("main", 100), ("research", 200))
    ]
    for agent in agents:
        agent.start()
    try:
        yield agents[0], agents[1]
    finally:
        for agent in agents:
            agent.stop()


def test_the_real_cli_asks_another_agent_and_gets_its_answer(
    pair: tuple[AgentProcess, AgentProcess], anthropic_stub: AnthropicStub
) -> None:
    main, _ = pair
    command = ANSWER + 'se python3 tools/agent_tools/ask_agent.py research "What is 6*7?"; fi'
    anthropic_stub.set_behaviour("tool", command=command)
    end = final(main.message("Ask research what 6*7 is.", session="tg:100"))
    assert "Tool said: Tool said: research says 42" in end.text, end.text
    bodies = [str(r) for r in anthropic_stub.requests]
    assert any("[INTER-AGENT MESSAGE from 'main' to 'research']" in b for b in bodies)


def test_the_real_cli_hands_another_agent_a_task_and_answers_its_result_in_the_chat_once(
    pair: tuple[AgentProcess, AgentProcess], anthropic_stub: AnthropicStub
) -> None:
    main, research = pair
    command = (
        ANSWER + "if [ -e .asked ]; then echo already asked; else touch .asked;"
        ' python3 tools/agent_tools/ask_agent_async.py research "What is 6*7?"; fi'
    )
    anthropic_stub.set_behaviour("tool", command=command)
    end = final(main.message("Hand research a sum.", session="tg:100"))
    anthropic_stub.set_behaviour("echo")  # the injected result is answered in words
    assert '"task_id"' in end.text, end.text
    wait_for(lambda: len(outbox(main)) >= 1, timeout=90)
    time.sleep(2.0)  # nothing more may come
    received = texts_in_outbox(research)
    assert len(received) == 1 and "Async task received" in received[0], received
    assert len(outbox(main)) == 1, texts_in_outbox(main)
    bodies = [str(r) for r in anthropic_stub.requests]
    assert any("ASYNC INTER-AGENT RESPONSE from 'research'" in b for b in bodies)


def test_an_ask_whose_session_the_cli_lost_is_answered_in_a_fresh_one_with_a_notice(
    pair: tuple[AgentProcess, AgentProcess], anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    main, _ = pair
    anthropic_stub.set_behaviour("echo")
    tools = main.workspace / "tools" / "agent_tools"
    env = {
        "PATH": "/usr/bin:/bin",
        "DUCTOR_AGENT_NAME": "main",
        "DUCTOR_AGENT_SOCKET": str(main.socket),
        "DUCTOR_TRANSPORT": "tg",
        "DUCTOR_CHAT_ID": "100",
    }

    def ask(text: str) -> str:
        done = subprocess.run(
            [sys.executable, str(tools / "ask_agent.py"), "research", text],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "ECHO:" in ask("Remember 42.")
    lost = list((tmp_path / "home" / ".claude" / "projects").glob("*research*/*.jsonl"))
    assert lost, "the CLI kept no session file"
    for file in lost:
        file.unlink()
    answer = ask("What did I ask you to remember?")
    assert answer.startswith(RESTORED_NOTICE), answer
    assert "ECHO:" in answer

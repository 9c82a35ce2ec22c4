"""The agent daemon with the real Claude Code CLI behind it, against the API stub.

One end-to-end turn, one resumed turn and one interrupted turn, as a user of
``ductor chat`` or a transport sees them: events over the agent socket.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess, final, texts
from tests.process.conftest import claude_env
from tests.process.test_real_claude import cut_every_stream_halfway
from tests.stubs.anthropic_api import AnthropicStub

from ductor import protocol

CONFIG = """\
provider = "claude"
model = "claude-sonnet-4-5"
transports = []
"""


def start_agent(
    real_claude: Path, stub: AnthropicStub, tmp_path: Path, config: str = CONFIG
) -> AgentProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(real_claude)
    env = claude_env(stub, tmp_path / "home")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    process = AgentProcess(tmp_path, config=config, extra_env=env)
    process.start()
    return process


@pytest.fixture
def agent(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> Iterator[AgentProcess]:
    process = start_agent(real_claude, anthropic_stub, tmp_path)
    yield process
    process.stop()


def test_a_turn_streams_the_real_clis_answer_token_by_token(
    agent: AgentProcess, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("echo", chunk_size=4, chunk_delay=0.02)
    events = agent.message("hello")
    deltas = [e for e in events if e.type is protocol.EventType.TEXT]
    end = final(events)
    assert len(deltas) > 1, events
    assert texts(events).startswith("ECHO: hello")
    assert end.text.startswith("ECHO: hello")
    assert end.get_str("session_id")
    assert not end.get_bool("is_error")
    request = anthropic_stub.requests[0]
    assert request["model"] == "claude-sonnet-4-5"


def test_the_next_message_resumes_the_real_clis_session(
    agent: AgentProcess, anthropic_stub: AnthropicStub
) -> None:
    first = final(agent.message("hello"))
    second = final(agent.message("second question"))
    assert second.get_str("session_id") == first.get_str("session_id")
    assert second.text.startswith("ECHO: second question")
    conversation = anthropic_stub.requests[1]["messages"]
    flat = str(conversation)
    assert "hello" in flat and "ECHO: hello" in flat


def test_interrupt_stops_the_real_cli_and_keeps_its_session(
    agent: AgentProcess, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("echo", chunk_size=1, chunk_delay=0.3)
    results: dict[str, list[protocol.Event]] = {}
    turn = threading.Thread(target=lambda: results.update(turn=agent.message("count to ten")))
    turn.start()
    anthropic_stub.wait_for_requests(1, timeout=30)
    time.sleep(1.0)  # a few tokens are out
    started = time.monotonic()
    answer = final(agent.message("/interrupt"))
    turn.join(30)
    assert answer.text == "Interrupted 1 process(es)."
    end = final(results["turn"])
    assert time.monotonic() - started < 10
    assert end.get_str("stopped") == "interrupt"
    assert not end.get_bool("is_error")
    shown = texts(results["turn"])
    assert shown and "ECHO: count to ten".startswith(shown[: len("ECHO: count to ten")])
    anthropic_stub.set_behaviour("echo")
    after = final(agent.message("go on"))
    assert end.get_str("session_id")
    assert after.get_str("session_id") == end.get_str("session_id")
    assert after.text.startswith("ECHO: go on")


def test_a_timeout_of_the_real_cli_ends_with_the_timeout_message_and_its_duration(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    anthropic_stub.set_behaviour("stall")
    timeouts = "[timeouts]\nnormal = 4\nwarning_intervals = [2]\nextend_on_activity = false\n"
    process = start_agent(real_claude, anthropic_stub, tmp_path, CONFIG + timeouts)
    try:
        events = process.message("hello")
    finally:
        process.stop()
    statuses = [e.text for e in events if e.type is protocol.EventType.STATUS]
    assert "Timeout in 2 s" in statuses
    end = final(events)
    assert end.get_bool("is_error")
    assert end.get_str("error_kind") == "timeout"
    assert "**Timeout**" in end.text and "stopped after 4 s" in end.text, end.text


def test_an_answer_cut_mid_stream_reaches_the_chat_exactly_once(
    agent: AgentProcess, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_every_stream_halfway(monkeypatch)
    events = agent.message("hello")
    end = final(events)
    assert not end.get_bool("is_error"), end.text
    # the stub echoes the whole prompt (the first message of a session carries hook blocks)
    assert end.text.startswith("ECHO: hello") and end.text.count("ECHO:") == 1
    assert texts(events) == end.text


def argv_of_every_process() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_no_local_user_can_read_the_prompt_or_the_memory_in_any_argv(
    agent: AgentProcess, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("stall")
    (agent.workspace / "memory_system" / "MAINMEMORY.md").write_text("The cat is Ziggy.\n")
    prompt = "my private question about the merger"
    results: dict[str, list[protocol.Event]] = {}
    turn = threading.Thread(target=lambda: results.update(turn=agent.message(prompt)))
    turn.start()
    anthropic_stub.wait_for_requests(1, timeout=30)
    everything = argv_of_every_process()
    final(agent.message("/interrupt"))
    turn.join(30)
    assert any("--include-partial-messages" in argv for argv in everything)  # the CLI ran
    assert not [argv for argv in everything if prompt in argv or "Ziggy" in argv]
    body = str(anthropic_stub.requests[0])
    assert prompt in body and "Ziggy" in body  # the model got both

"""The agent daemon with each real CLI behind it (Claude Code, Codex, Gemini), against the
stub of that CLI's model API.

What a user of ``ductor chat`` or a transport sees, over the agent socket: an answer
that streams in, a second message that resumes the CLI's session, an error from the
API that says what went wrong, and ``/stop`` ending a running turn.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess, final, texts
from tests.process.real_clis import CLIS, MODELS, Stub, cli_env, installed, stub_for

from ductor import protocol

pytestmark = pytest.mark.timeout(180)


@dataclass
class Setup:
    cli: str
    agent: AgentProcess
    stub: Stub


@pytest.fixture(params=CLIS)
def real(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    cli: str = request.param
    binary = installed(cli)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / cli).symlink_to(binary)
    stub = stub_for(cli)
    env = cli_env(cli, stub, tmp_path / "home")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    config = f'provider = "{cli}"\nmodel = "{MODELS[cli]}"\ntransports = []\n'
    agent = AgentProcess(tmp_path, config=config, extra_env=env)
    try:
        agent.start()
        yield Setup(cli, agent, stub)
    finally:
        agent.stop()
        stub.close()


def test_a_turn_streams_the_real_clis_answer(real: Setup) -> None:
    real.stub.set_behaviour("echo", chunk_size=4, chunk_delay=0.05)

    events = real.agent.message("hello")

    end = final(events)
    assert not end.get_bool("is_error"), real.agent.log()[-3000:]
    assert end.text.startswith("ECHO: hello")
    assert texts(events).startswith("ECHO: hello")
    deltas = [e for e in events if e.type is protocol.EventType.TEXT]
    if real.cli != "codex":  # `codex exec --json` prints a message only when it is complete
        assert len(deltas) > 1, events
    assert end.get_str("session_id")
    assert MODELS[real.cli] in json.dumps(real.stub.calls) + json.dumps(real.stub.requests)


def test_the_next_message_resumes_the_real_clis_session(real: Setup) -> None:
    first = final(real.agent.message("hello"))
    second = final(real.agent.message("second question"))

    assert second.text.startswith("ECHO: second question"), real.agent.log()[-3000:]
    assert second.get_str("session_id") == first.get_str("session_id")
    history = json.dumps(real.stub.requests[-1])
    assert "hello" in history and "ECHO: hello" in history


def test_an_api_error_ends_the_turn_saying_the_login_is_refused(real: Setup) -> None:
    real.stub.set_behaviour("error", status=401)

    end = final(real.agent.message("hello"))

    assert end.get_bool("is_error"), end
    assert end.get_str("error_kind") == "auth", end
    assert "not logged in" in end.text
    real.stub.set_behaviour("echo")
    assert final(real.agent.message("hello again")).text.startswith("ECHO: hello again")


def test_stop_ends_the_running_turn_and_the_next_message_is_answered(real: Setup) -> None:
    real.stub.set_behaviour("echo", chunk_size=1, chunk_delay=0.3)
    results: dict[str, list[protocol.Event]] = {}
    turn = threading.Thread(target=lambda: results.update(turn=real.agent.message("count")))
    turn.start()
    real.stub.wait_for_requests(1, timeout=60)
    time.sleep(1.0)  # the answer is streaming now
    started = time.monotonic()

    answer = final(real.agent.message("/stop"))
    turn.join(30)

    assert "Stopped 1 process(es)" in answer.text, answer
    end = final(results["turn"])
    assert time.monotonic() - started < 10
    assert end.get_str("stopped") == "stop", end
    assert "ECHO: count".startswith(texts(results["turn"])[: len("ECHO: count")])
    real.stub.set_behaviour("echo")
    after = final(real.agent.message("go on"))
    assert after.text.startswith("ECHO: go on"), real.agent.log()[-3000:]

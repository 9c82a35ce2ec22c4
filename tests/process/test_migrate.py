"""``ductor migrate`` end to end: a conversation started with the original continues in
the migrated agent, with each real CLI (Claude Code, Codex, Gemini) against its stub.

The fixture home was written by the real original (tests/fixtures/original-home). The
conversation is started the way the original starts one: the real CLI, run in the
original's workspace, whose session id the original keeps in the chat's bucket of
``sessions.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO, AgentProcess, final
from tests.process.real_clis import CLIS, MODELS, Stub, cli_env, installed, stub_for

from ductor.migrate.cli_sessions import gemini_dir, gemini_projects, project_slug
from ductor.protocol import Request, RequestType, new_request_id

pytestmark = pytest.mark.timeout(180)

FIXTURE = REPO / "tests" / "fixtures" / "original-home" / "ductor-home"
FIRST = "Remember this: my cat is called Miso."
QUESTION = "What is my cat called?"


@dataclass
class Setup:
    cli: str
    binary: Path
    stub: Stub
    home: Path  # the user's home, with the original's ~/.ductor
    env: dict[str, str]  # what the CLI needs to reach its stub


@pytest.fixture(params=CLIS)
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    cli: str = request.param
    binary = installed(cli)
    stub = stub_for(cli)
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home / ".ductor", symlinks=True)
    try:
        yield Setup(cli, binary, stub, home, cli_env(cli, stub, home))
    finally:
        stub.close()


def start_conversation_with_the_original(setup: Setup) -> str:
    """One turn of the real CLI in the original's workspace; its session id."""
    model = MODELS[setup.cli]
    argv = {
        "claude": [str(setup.binary), "-p", "--output-format", "json", "--model", model],
        "codex": [str(setup.binary), "exec", "--json", "--skip-git-repo-check", "-m", model, "-"],
        "gemini": [str(setup.binary), "--output-format", "json", "-m", model],
    }[setup.cli]
    extra = {"GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    done = subprocess.run(
        argv,
        input=FIRST,
        cwd=setup.home / ".ductor" / "workspace",
        env=setup.env | extra,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    if setup.cli == "codex":
        return str(
            next(
                json.loads(line)["thread_id"]
                for line in done.stdout.splitlines()
                if '"thread_id"' in line
            )
        )
    return str(json.loads(done.stdout)["session_id"])


def record_in_the_originals_sessions(setup: Setup, key: str, session_id: str) -> None:
    """What the original writes after that turn: the id in the chat's bucket."""
    file = setup.home / ".ductor" / "sessions.json"
    sessions = json.loads(file.read_text())
    now = datetime.now(UTC).isoformat()
    record = sessions[key]
    record.update(created_at=now, last_active=now, provider=setup.cli, model=MODELS[setup.cli])
    record["provider_sessions"][setup.cli] = {"session_id": session_id, "message_count": 1}
    file.write_text(json.dumps(sessions, indent=2))


def run_migrate(agent: AgentProcess, setup: Setup) -> subprocess.CompletedProcess[str]:
    no_manager = {"XDG_RUNTIME_DIR": str(agent.root / "no-manager")}
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "migrate"],
        env=agent.env | setup.env | no_manager | {"DUCTOR_HOME": str(setup.home / ".ductor")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def migrated_agent(setup: Setup, root: Path) -> AgentProcess:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / setup.cli).symlink_to(setup.binary)
    env = setup.env | {"PATH": f"{bin_dir}:{setup.env['PATH']}"}
    return AgentProcess(root, extra_env=env)


def test_a_migrated_chat_continues_the_originals_conversation(setup: Setup, tmp_path: Path) -> None:
    session_id = start_conversation_with_the_original(setup)
    record_in_the_originals_sessions(setup, "tg:100", session_id)
    agent = migrated_agent(setup, tmp_path)
    migrated = run_migrate(agent, setup)
    assert migrated.returncode == 0, migrated.stderr + migrated.stdout
    setup.stub.requests.clear()

    agent.start()
    try:
        end = final(agent.message(QUESTION, session="tg:100"))
    finally:
        agent.stop()
    assert not end.get_bool("is_error"), agent.log()[-3000:]
    assert end.get_str("session_id") == session_id
    conversation = json.dumps(setup.stub.requests[-1])
    assert "my cat is called Miso" in conversation and QUESTION in conversation
    where_it_lives(setup, agent, session_id)


def where_it_lives(setup: Setup, agent: AgentProcess, session_id: str) -> None:
    """The conversation now lives where the CLI looks for it from the new workspace; the
    original's copy is left as it was, so going back continues from there."""
    old_workspace = setup.home / ".ductor" / "workspace"
    if setup.cli == "claude":
        projects = setup.home / ".claude" / "projects"
        new = projects / project_slug(agent.workspace) / f"{session_id}.jsonl"
        old = projects / project_slug(old_workspace) / f"{session_id}.jsonl"
        assert QUESTION in new.read_text()
        assert QUESTION not in old.read_text()
    elif setup.cli == "gemini":
        gemini = gemini_dir(setup.env)
        names = gemini_projects(gemini)
        new_chats = gemini / "tmp" / names[str(agent.workspace)] / "chats"
        old_chats = gemini / "tmp" / names[str(old_workspace)] / "chats"
        assert any(QUESTION in f.read_text() for f in new_chats.glob("*.jsonl"))
        assert not any(QUESTION in f.read_text() for f in old_chats.glob("*.jsonl"))
    # Codex resumes a thread by its id from any directory: nothing was moved.


def test_a_migrated_named_session_continues_with_its_earlier_turns(tmp_path: Path) -> None:
    binary = installed("claude")
    stub = stub_for("claude")
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home / ".ductor", symlinks=True)
    setup = Setup("claude", binary, stub, home, cli_env("claude", stub, home))
    try:
        session_id = start_conversation_with_the_original(setup)
        file = home / ".ductor" / "named_sessions.json"
        named = json.loads(file.read_text())
        named["sessions"][0].update(session_id=session_id, model=MODELS["claude"])
        file.write_text(json.dumps(named))
        name = named["sessions"][0]["name"]
        agent = migrated_agent(setup, tmp_path)
        assert run_migrate(agent, setup).returncode == 0
        stub.requests.clear()
        agent.start()
        try:
            request = Request(
                type=RequestType.COMMAND,
                id=new_request_id(),
                session="tg:100",
                text=f"/session @{name} {QUESTION}",
            )
            sent = final(agent.call(request)).text
            assert sent.startswith(f"**[{name}] Follow-up sent**"), sent
            deadline = time.monotonic() + 60
            while not any(QUESTION in json.dumps(r) for r in stub.requests):
                assert time.monotonic() < deadline, agent.log()[-3000:]
                time.sleep(0.1)
        finally:
            agent.stop()
        asked = next(r for r in stub.requests if QUESTION in json.dumps(r))
        assert "my cat is called Miso" in json.dumps(asked)
    finally:
        stub.close()

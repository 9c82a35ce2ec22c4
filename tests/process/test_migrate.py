"""``ductor migrate`` end to end: a conversation started with the original continues in
the migrated agent, with the real Claude Code CLI against the API stub.

The fixture home was written by the real original (tests/fixtures/original-home). The
conversation is started the way the original starts one: the real CLI, run in the
original's workspace, whose session id the original keeps in ``sessions.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.process.agent_proc import REPO, AgentProcess, final
from tests.process.conftest import claude_env
from tests.process.test_agent_real_claude import start_agent
from tests.stubs.anthropic_api import AnthropicStub

from ductor.migrate.cli_sessions import project_slug

FIXTURE = REPO / "tests" / "fixtures" / "original-home" / "ductor-home"


def start_conversation_with_the_original(
    real_claude: Path, stub: AnthropicStub, home: Path, text: str
) -> str:
    """One turn of the real CLI in the original's workspace; its session id."""
    done = subprocess.run(
        [str(real_claude), "-p", "--output-format", "json", "--model", "sonnet"],
        input=text,
        cwd=home / ".ductor" / "workspace",
        env=claude_env(stub, home),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    session_id = json.loads(done.stdout)["session_id"]
    assert isinstance(session_id, str)
    return session_id


def record_in_the_originals_sessions(home: Path, key: str, session_id: str) -> None:
    """What the original writes after that turn: the id in the chat's claude bucket."""
    file = home / ".ductor" / "sessions.json"
    sessions = json.loads(file.read_text())
    now = datetime.now(UTC).isoformat()
    sessions[key].update(created_at=now, last_active=now)
    sessions[key]["provider_sessions"]["claude"]["session_id"] = session_id
    file.write_text(json.dumps(sessions, indent=2))


def run_migrate(agent: AgentProcess, home: Path) -> subprocess.CompletedProcess[str]:
    env = agent.env | {"HOME": str(home), "XDG_RUNTIME_DIR": str(agent.root / "no-manager")}
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "migrate", "--from", str(home / ".ductor")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_migrated_chat_continues_the_originals_claude_conversation(
    real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home / ".ductor", symlinks=True)
    first = "Remember this: my cat is called Miso."
    session_id = start_conversation_with_the_original(real_claude, anthropic_stub, home, first)
    record_in_the_originals_sessions(home, "tg:100", session_id)
    probe = AgentProcess(tmp_path)
    migrated = run_migrate(probe, home)
    assert migrated.returncode == 0, migrated.stderr + migrated.stdout
    assert "Claude session" in migrated.stdout or "claude session" in migrated.stdout
    anthropic_stub.requests.clear()

    agent = start_agent(real_claude, anthropic_stub, tmp_path)
    try:
        end = final(agent.message("What is my cat called?", session="tg:100"))
    finally:
        agent.stop()
    assert not end.get_bool("is_error"), end
    assert end.get_str("session_id") == session_id
    conversation = json.dumps(anthropic_stub.requests[-1]["messages"])
    assert "my cat is called Miso" in conversation
    assert "What is my cat called?" in conversation
    # The conversation now lives under the new workspace's project, where a CLI that
    # looks a session up by its working directory finds it; the original's copy is
    # left as it was, so going back to the original continues from there.
    projects = home / ".claude" / "projects"
    new = projects / project_slug(agent.workspace) / f"{session_id}.jsonl"
    old = projects / project_slug(home / ".ductor" / "workspace") / f"{session_id}.jsonl"
    assert "What is my cat called?" in new.read_text()
    assert "What is my cat called?" not in old.read_text()

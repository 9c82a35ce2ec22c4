"""``ductor migrate`` on a copy of the fixture home made by the real original."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ductor.agent.sessions import SessionStore
from ductor.cli.main import main
from ductor.config import load_files
from ductor.cron.jobs import JobStore
from ductor.migrate.cli_sessions import project_slug
from ductor.tasks.store import TaskStore
from ductor.units import Manager
from ductor.webhooks.store import HookStore

FIXTURE = Path(__file__).parents[1] / "fixtures" / "original-home" / "ductor-home"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home with the original's ``~/.ductor`` (a copy of the fixture)."""
    shutil.copytree(FIXTURE, tmp_path / ".ductor", symlinks=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("DUCTOR_HOME", raising=False)
    # No service manager in unit tests: the timers are synced in the systemd test.
    monkeypatch.setattr(Manager, "problem", lambda self: "no manager in unit tests")
    return tmp_path


def migrate(home: Path, *args: str) -> int:
    base = ["--config-dir", str(home / "config"), "--state-dir", str(home / "state")]
    return main([*base, "migrate", "--from", str(home / ".ductor"), *args])


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def read_only(home: Path) -> Iterator[Path]:
    source = home / ".ductor"
    modes = {}
    for path in [source, *source.rglob("*")]:
        if not path.is_symlink():
            modes[path] = stat.S_IMODE(path.stat().st_mode)
            path.chmod(modes[path] & ~0o222)
    yield source
    for path, mode in modes.items():
        path.chmod(mode | 0o200)


def test_a_dry_run_prints_the_plan_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate(home, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: nothing is written" in out
    assert "agent main" in out and "agent research" in out
    assert "docker.enabled" in out and "Docker sandbox" in out
    assert "daily-news: '30 7 * * 1-5' in America/New_York" in out
    assert "webhooks    " in out and "github-push" in out
    assert "FAKE-fixture" not in out  # no secret is shown
    assert not (home / "config").exists() and not (home / "state").exists()


def test_a_run_writes_agents_that_load_and_leaves_the_original_untouched(
    home: Path, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest_tree(read_only)
    assert migrate(home) == 0
    assert digest_tree(read_only) == before
    config = load_files([home / "config" / "agents" / "main.toml"])
    assert config.telegram.allowed_user_ids == (100,)
    assert config.telegram.allowed_group_ids == (-100200,)
    research = load_files([home / "config" / "agents" / "research.toml"])
    assert research.model == "opus"
    credentials = home / "config" / "credentials"
    token = credentials / "main" / "telegram-token"
    assert token.read_text() == "123456:FAKE-fixture-main-token\n"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (credentials / "research" / "telegram-token").read_text().startswith("654321:")
    dotenv = (credentials / "main" / ".env").read_text()
    assert "GITHUB_TOKEN=ghp_FAKEfixture" in dotenv and "GEMINI_API_KEY=AIza" in dotenv
    assert stat.S_IMODE((credentials / "main" / ".env").stat().st_mode) == 0o600
    state = home / "state" / "main"
    store = SessionStore(state / "sessions.json")
    assert set(store.keys()) == {"tg:100", "tg:-100200:7"}
    assert set(JobStore(state).load()) == {"daily-news", "weekly-review"}
    workspace = state / "workspace"
    assert "Miso" in (workspace / "memory_system" / "MAINMEMORY.md").read_text()
    assert (workspace / "tools" / "user_tools" / "weather.py").is_file()
    assert (workspace / "skills" / "haiku" / "SKILL.md").is_file()
    # the original's bundled scripts stay behind (ductor ships its own webhook tools)
    shipped = workspace / "tools" / "webhook_tools"
    assert not (shipped / "_shared.py").exists()
    assert not [f for f in shipped.glob("*.py") if "the original ductor ships" in f.read_text()]
    assert (
        (workspace / "CLAUDE.md").read_text() != (read_only / "workspace" / "CLAUDE.md").read_text()
        if (read_only / "workspace" / "CLAUDE.md").exists()
        else True
    )
    news = workspace / "cron_tasks" / "daily-news"
    assert {p.name for p in news.iterdir()} >= {"TASK.md", "RULES.md", "MEMORY.md"}
    assert not (news / "CLAUDE.md").exists()
    chats = json.loads((state / "telegram" / "chat_activity.json").read_text())
    assert chats["records"]["-100200"]["title"] == "Team forum"
    hook = HookStore(state).get("github-push")
    assert (hook.auth, hook.hmac_secret, hook.hmac_prefix) == (
        "hmac",
        "FAKE-fixture-hmac-secret",
        "sha256=",
    )
    assert hook.prompt_template == "Push to {{repository}} by {{pusher}}" and hook.enabled
    assert stat.S_IMODE((state / "webhooks.toml").stat().st_mode) == 0o600
    [named] = [t for t in TaskStore(state, workspace).all() if t.kind == "session"]
    original = json.loads((FIXTURE / "named_sessions.json").read_text())["sessions"][0]
    assert (named.name, named.session, named.provider) == (original["name"], "tg:100", "claude")
    assert named.session_id == "33333333-3333-4333-8333-333333333333" and not named.ended
    assert (home / "state" / "migrate-report.txt").read_text().count("agent main") == 1
    out = capsys.readouterr().out
    assert "FAKE-fixture" not in out


def test_a_second_run_changes_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate(home) == 0
    written = digest_tree(home / "config") | digest_tree(home / "state" / "main")
    capsys.readouterr()
    assert migrate(home) == 0
    out = capsys.readouterr().out
    assert "main: 0 written" in out and "research: 0 written" in out
    again = digest_tree(home / "config") | digest_tree(home / "state" / "main")
    assert again == written


def test_a_file_changed_since_the_last_run_is_kept(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert migrate(home) == 0
    memory = home / "state" / "main" / "workspace" / "memory_system" / "MAINMEMORY.md"
    memory.write_text("rewritten by the new agent\n")
    assert migrate(home) == 0
    assert memory.read_text() == "rewritten by the new agent\n"
    assert "kept as they were" in capsys.readouterr().out


def test_an_existing_agent_of_the_same_name_is_a_conflict_and_is_left_alone(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = home / "config" / "agents" / "main.toml"
    agent.parent.mkdir(parents=True)
    agent.write_text('model = "sonnet"\n')
    assert migrate(home, "--dry-run") == 0
    assert "CONFLICT" in capsys.readouterr().out
    assert migrate(home) == 1
    assert agent.read_text() == 'model = "sonnet"\n'
    assert not (home / "state" / "main").exists()
    assert (home / "config" / "agents" / "research.toml").is_file()


def test_only_migrates_the_one_agent(home: Path) -> None:
    assert migrate(home, "--only", "research") == 0
    assert (home / "config" / "agents" / "research.toml").is_file()
    assert not (home / "config" / "agents" / "main.toml").exists()
    assert migrate(home, "--only", "nobody") == 2


def test_it_refuses_while_the_original_runs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A process whose command line names ductor, as the original's does.
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "ductor"],
        stdin=subprocess.DEVNULL,
    )
    try:
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        while b"ductor" not in cmdline.read_bytes():  # until the exec is done
            time.sleep(0.01)
        (home / ".ductor" / "bot.pid").write_text(f"{sleeper.pid}\n")
        assert migrate(home) == 75
        err = capsys.readouterr().err
        assert f"pid {sleeper.pid}" in err and "ductor stop" in err
        assert not (home / "config").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert migrate(home, "--dry-run") == 0  # a stale pid file does not block


def test_a_corrupt_state_file_is_reported_and_the_rest_migrates(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / ".ductor" / "sessions.json").write_text('{"tg:100": {"provider": "claude",')
    assert migrate(home) == 0
    out = capsys.readouterr().out
    assert "sessions.json: invalid JSON at line 1" in out
    assert not (home / "state" / "main" / "sessions.json").exists()
    assert (home / "state" / "main" / "cron_jobs.toml").is_file()


def test_claude_session_files_move_to_the_new_workspaces_project(home: Path) -> None:
    old = home / ".ductor" / "workspace"
    project = home / ".claude" / "projects" / project_slug(old)
    project.mkdir(parents=True)
    sid = "11111111-1111-4111-8111-111111111111"
    (project / f"{sid}.jsonl").write_text('{"type":"user"}\n')
    (project / sid / "tool-results").mkdir(parents=True)
    (project / sid / "tool-results" / "a.txt").write_text("result")
    # A topic that ran in a project root: found by its id in another project.
    other = home / ".claude" / "projects" / "-home-u-projects-docs"
    other.mkdir(parents=True)
    (other / "22222222-2222-4222-8222-222222222222.jsonl").write_text("{}\n")
    assert migrate(home) == 0
    new = home / ".claude" / "projects" / project_slug(home / "state" / "main" / "workspace")
    assert (new / f"{sid}.jsonl").read_text() == '{"type":"user"}\n'
    assert (new / sid / "tool-results" / "a.txt").read_text() == "result"
    assert (new / "22222222-2222-4222-8222-222222222222.jsonl").is_file()
    assert (project / f"{sid}.jsonl").is_file()  # the original's copy stays


def test_the_claude_project_slug_replaces_every_non_alphanumeric_character() -> None:
    assert project_slug(Path("/home/u/.ductor/workspace")) == "-home-u--ductor-workspace"
    assert os.sep == "/"


def add_matrix_sub_agent(home: Path) -> None:
    """A hand-made edge case: a Matrix sub-agent with overrides, its login, a room."""
    root = home / ".ductor"
    entries = json.loads((root / "agents.json").read_text())
    entries.append(
        {
            "name": "ops",
            "transport": "matrix",
            "matrix": {
                "homeserver": "https://matrix.example.org",
                "user_id": "@ops-bot:example.org",
                "allowed_users": ["@me:example.org"],
                "allowed_rooms": ["!ops:example.org"],
            },
            "model": "haiku",
            "streaming": {"enabled": False},
            "favourite_colour": "green",
        }
    )
    (root / "agents.json").write_text(json.dumps(entries))
    store = root / "agents" / "ops" / "matrix_store"
    store.mkdir(parents=True)
    (store / "room_id_map.json").write_text('{"!ops:example.org": 42}')
    (store / "credentials.json").write_text(
        '{"user_id": "@ops-bot:example.org", "device_id": "OPSDEV", "access_token": "syt_ops"}'
    )
    now = "2026-12-01T10:00:00+00:00"
    (root / "agents" / "ops" / "sessions.json").write_text(
        json.dumps(
            {
                "mx:42": {
                    "transport": "mx",
                    "chat_id": 42,
                    "provider": "claude",
                    "model": "haiku",
                    "created_at": now,
                    "last_active": now,
                    "provider_sessions": {"claude": {"session_id": "abc", "message_count": 2}},
                }
            }
        )
    )
    (root / "agents" / "ops" / "cron_jobs.json").write_text(
        json.dumps(
            {
                "jobs": [
                    {
                        "id": "Night Check",
                        "schedule": "0 2 * * *",
                        "timezone": "Asia/Tokyo",
                        "quiet_start": 8,
                        "quiet_end": 20,
                        "transport": "mx",
                        "chat_id": 42,
                        "task_folder": "Night Check",
                    }
                ]
            }
        )
    )
    folder = root / "agents" / "ops" / "workspace" / "cron_tasks" / "Night Check"
    folder.mkdir(parents=True)
    (folder / "Night Check_MEMORY.md").write_text("2026-11-30 02:00: all green\n")
    (folder / "scripts").mkdir()
    (folder / "scripts" / "check.sh").write_text("echo ok\n")


def test_a_matrix_sub_agent_with_overrides_comes_across_with_its_rooms(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_matrix_sub_agent(home)
    assert migrate(home) == 0
    config = load_files([home / "config" / "agents" / "ops.toml"])
    assert config.transports == ("matrix",)
    assert config.matrix.user_id == "@ops-bot:example.org"
    assert config.matrix.device_id == "OPSDEV"
    assert config.model == "haiku" and not config.streaming.enabled
    secret = home / "config" / "credentials" / "ops" / "matrix-access-token"
    assert secret.read_text() == "syt_ops\n"
    assert not (home / "config" / "credentials" / "ops" / "telegram-token").exists()
    store = SessionStore(home / "state" / "ops" / "sessions.json")
    assert store.keys() == ["mx:!ops:example.org"]
    job = JobStore(home / "state" / "ops").get("night-check")
    assert (job.transport, job.chat_id, job.timezone) == ("mx", "!ops:example.org", "Asia/Tokyo")
    assert (job.quiet_start, job.quiet_end) == (8, 20)
    task = home / "state" / "ops" / "workspace" / "cron_tasks" / "night-check"
    assert (task / "MEMORY.md").read_text() == "2026-11-30 02:00: all green\n"
    assert (task / "scripts" / "check.sh").read_text() == "echo ok\n"
    out = capsys.readouterr().out
    assert "favourite_colour: not a setting this product knows" in out


def test_gemini_chats_move_into_a_project_registered_for_the_new_workspace(home: Path) -> None:
    sid = "46eecc74-19ee-412f-8006-7aae27f332db"
    sessions_file = home / ".ductor" / "sessions.json"
    sessions = json.loads(sessions_file.read_text())
    sessions["tg:100"]["provider_sessions"]["gemini"] = {"session_id": sid, "message_count": 1}
    sessions_file.write_text(json.dumps(sessions))
    gemini = home / ".gemini"
    old = str(home / ".ductor" / "workspace")
    registry = {"projects": {old: "workspace", "/elsewhere": "ductor-main"}}
    (gemini / "tmp" / "workspace" / "chats").mkdir(parents=True)
    (gemini / "projects.json").write_text(json.dumps(registry))
    chat = gemini / "tmp" / "workspace" / "chats" / f"session-2026-12-01T10-00-{sid[:8]}.jsonl"
    chat.write_text(json.dumps({"sessionId": sid, "kind": "main"}) + "\n{}\n")
    assert migrate(home) == 0
    projects = json.loads((gemini / "projects.json").read_text())["projects"]
    new = str(home / "state" / "main" / "workspace")
    assert projects[new] == "ductor-main-2"  # "ductor-main" is another directory's
    assert projects[old] == "workspace" and projects["/elsewhere"] == "ductor-main"
    copied = gemini / "tmp" / "ductor-main-2" / "chats" / chat.name
    assert copied.read_text() == chat.read_text()
    assert (gemini / "tmp" / "ductor-main-2" / ".project_root").read_text() == new
    assert migrate(home) == 0  # again: registered once, nothing copied twice
    again = json.loads((gemini / "projects.json").read_text())["projects"]
    assert again == projects


def test_after_a_run_every_agents_config_and_secrets_pass_the_doctors_checks(home: Path) -> None:
    from ductor.config import validate_all
    from ductor.paths import resolve

    assert migrate(home) == 0
    paths = resolve(config_dir=home / "config", state_dir=home / "state")
    for name in ("main", "research"):
        assert validate_all(paths, name) == []

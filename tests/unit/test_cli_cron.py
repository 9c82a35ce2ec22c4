"""`ductor cron` through `ductor.cli.main.main`, with a manager that records its systemctl
calls, and the workspace's cron tool scripts against a fake `ductor` on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ductor.agent.workspace import ensure_workspace
from ductor.cli import context
from ductor.cli.main import main
from ductor.cron.jobs import JobStore
from ductor.cron.sync import service_unit, timer_unit
from ductor.run import Result
from ductor.units import Manager

NEWS = timer_unit("main", "daily-news")


@dataclass(frozen=True)
class FakeManager(Manager):
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def systemctl(self, *args: str, check: bool = True, timeout: float = 90) -> Result:
        self.calls.append(args)
        return Result(("systemctl", *args), 0, "", "")

    def show(self, units: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
        return [{"NextElapseUSecRealtime": "Mon 2030-01-07 08:00:00 CET"} for _ in units]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DUCTOR_CHAT_ID", "DUCTOR_TOPIC_ID", "DUCTOR_TRANSPORT", "DUCTOR_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "config" / "agents").mkdir(parents=True)
    (tmp_path / "config" / "agents" / "main.toml").write_text(
        'user_timezone = "Europe/Berlin"\n'
        "[telegram]\nallowed_user_ids = [42]\nallowed_group_ids = [-100123]\n"
    )
    return tmp_path


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> FakeManager:
    fake = FakeManager(context.Mode.USER)
    monkeypatch.setattr(context.Context, "manager", property(lambda self: fake))
    return fake


def ductor(home: Path, *args: str) -> int:
    return main(["--config-dir", str(home / "config"), "--state-dir", str(home / "state"), *args])


def store(home: Path) -> JobStore:
    return JobStore(home / "state" / "main")


def add_news(home: Path, *extra: str) -> int:
    return ductor(
        home,
        "cron",
        "add",
        "main",
        "daily-news",
        "--schedule",
        "0 8 * * *",
        "--prompt",
        "news",
        *extra,
    )


def test_add_from_a_chat_reports_back_to_that_chat(
    home: Path,
    manager: FakeManager,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DUCTOR_CHAT_ID", "-100123")
    monkeypatch.setenv("DUCTOR_TOPIC_ID", "7")
    monkeypatch.setenv("DUCTOR_TRANSPORT", "tg")
    assert add_news(home, "--title", "News", "--quiet", "22-7", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "daily-news" and shown["chat_id"] == "-100123"
    assert shown["topic_id"] == "7" and shown["transport"] == "tg"
    assert shown["timer"] == NEWS and shown["next_run"].startswith("Mon 2030-01-07")
    job = store(home).get("daily-news")
    assert (job.title, job.quiet_start, job.quiet_end) == ("News", 22, 7)
    assert ("enable", "--now", NEWS) in manager.calls
    dropin = home / "xdg/systemd/user" / f"{NEWS}.d" / "10-ductor.conf"
    assert "OnCalendar=*-*-* 08:00:00 Europe/Berlin" in dropin.read_text()
    assert (home / "state/main/workspace/cron_tasks/daily-news/TASK.md").is_file()


def test_an_explicit_chat_wins_over_the_environment(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUCTOR_CHAT_ID", "-100123")
    monkeypatch.setenv("DUCTOR_TOPIC_ID", "7")
    assert add_news(home, "--chat", "42", "--transport", "mx") == 0
    job = store(home).get("daily-news")
    assert (job.chat_id, job.topic_id, job.transport) == ("42", "", "mx")


def test_add_without_a_chat_anywhere_broadcasts(home: Path, manager: FakeManager) -> None:
    assert add_news(home) == 0
    assert store(home).get("daily-news").chat_id == ""


@pytest.mark.parametrize("chat", ["777", "-100999"])
def test_add_with_a_chat_that_is_not_allowed_is_refused_and_stores_nothing(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str], chat: str
) -> None:
    assert add_news(home, "--chat", chat) == 2
    error = capsys.readouterr().err
    assert f"--chat {chat}: agent main may not write to this chat" in error
    assert "allowed_group_ids" in error
    assert store(home).load() == {}
    assert manager.calls == []


def test_add_from_a_chat_that_is_no_longer_allowed_is_refused(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUCTOR_CHAT_ID", "-100555")
    monkeypatch.setenv("DUCTOR_TRANSPORT", "tg")
    assert add_news(home) == 2
    assert store(home).load() == {}


def test_edit_moving_a_job_to_a_chat_that_is_not_allowed_is_refused(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add_news(home, "--chat", "42") == 0
    assert ductor(home, "cron", "edit", "main", "daily-news", "--chat", "666") == 2
    assert "may not write to this chat" in capsys.readouterr().err
    assert store(home).get("daily-news").chat_id == "42"


@pytest.mark.parametrize("dependency", ["/tmp/evil", "../../outside", "..", ".hidden", "a/b"])
def test_a_dependency_that_is_not_a_plain_name_is_refused(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str], dependency: str
) -> None:
    assert add_news(home, "--dependency", dependency) == 2
    assert "dependency" in capsys.readouterr().err
    assert store(home).load() == {}
    assert add_news(home, "--dependency", "nightly-db.backup_2") == 0
    assert store(home).get("daily-news").dependency == "nightly-db.backup_2"


def test_a_bad_schedule_is_a_usage_error_and_stores_nothing(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    code = ductor(home, "cron", "add", "main", "x", "--schedule", "0 8 * *", "--prompt", "p")
    assert code == 2
    assert "schedule" in capsys.readouterr().err
    assert store(home).load() == {}
    assert manager.calls == []


def test_an_unknown_agent_is_refused(home: Path, manager: FakeManager) -> None:
    code = ductor(home, "cron", "add", "nobody", "x", "--schedule", "@daily", "--prompt", "p")
    assert code == 2


def test_list_shows_schedule_zone_next_run_and_route(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    add_news(home, "--chat", "42", "--topic", "3")
    ductor(
        home,
        "cron",
        "add",
        "main",
        "backup",
        "--schedule",
        "@daily",
        "--prompt",
        "b",
        "--timezone",
        "UTC",
    )
    ductor(home, "cron", "disable", "main", "backup")
    capsys.readouterr()
    assert ductor(home, "cron", "list", "main") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SCHEDULE", "TIMEZONE", "ENABLED"]
    assert lines[1].split()[:4] == ["backup", "@daily", "UTC", "no"]
    assert "daily-news  0 8 * * *" in lines[2] and "Europe/Berlin" in lines[2]
    assert "2030-01-07" in lines[2] and "chat 42 topic 3" in lines[2]
    assert ductor(home, "cron", "list", "main", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [job["name"] for job in listed] == ["backup", "daily-news"]


def test_edit_changes_given_fields_and_keeps_the_route(
    home: Path, manager: FakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_news(home, "--chat", "42")
    monkeypatch.setenv("DUCTOR_CHAT_ID", "999")
    code = ductor(
        home,
        "cron",
        "edit",
        "main",
        "daily-news",
        "--schedule",
        "30 7 * * 1-5",
        "--catch-up",
        "--quiet",
        "off",
    )
    assert code == 0
    job = store(home).get("daily-news")
    assert job.schedule == "30 7 * * 1-5" and job.catch_up and job.chat_id == "42"
    dropin = home / "xdg/systemd/user" / f"{NEWS}.d" / "10-ductor.conf"
    assert "Mon..Fri *-*-* 07:30:00 Europe/Berlin" in dropin.read_text()
    assert "Persistent=yes" in dropin.read_text()
    assert ductor(home, "cron", "edit", "main", "daily-news", "--broadcast") == 0
    assert store(home).get("daily-news").chat_id == ""


def test_edit_of_an_unknown_job_lists_the_existing_ones(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    add_news(home)
    assert ductor(home, "cron", "edit", "main", "daily", "--model", "x") == 2
    assert "existing jobs: daily-news" in capsys.readouterr().err


def test_remove_deletes_the_job_and_disables_its_timer_but_keeps_the_folder(
    home: Path, manager: FakeManager
) -> None:
    add_news(home)
    assert ductor(home, "cron", "remove", "main", "daily-news") == 0
    assert store(home).load() == {}
    assert ("disable", "--now", NEWS) in manager.calls
    assert not (home / "xdg/systemd/user" / f"{NEWS}.d").exists()
    folder = home / "state/main/workspace/cron_tasks/daily-news"
    assert folder.is_dir()
    add_news(home)
    assert ductor(home, "cron", "remove", "main", "daily-news", "--purge") == 0
    assert not folder.exists()


def test_run_starts_the_service_without_waiting(home: Path, manager: FakeManager) -> None:
    add_news(home)
    assert ductor(home, "cron", "run", "main", "daily-news") == 0
    assert manager.calls[-1] == ("start", "--no-block", service_unit("main", "daily-news"))


def test_sync_of_every_agent_reports_nothing_to_do_when_in_sync(
    home: Path, manager: FakeManager, capsys: pytest.CaptureFixture[str]
) -> None:
    add_news(home)
    capsys.readouterr()
    assert ductor(home, "cron", "sync", "--json") == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["agent"] == "main" and report["written"] == [] and not report["reloaded"]


# The workspace's tool scripts


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    ensure_workspace(tmp_path / "ws", agent="main", providers=[])
    return tmp_path / "ws" / "tools" / "cron_tools"


def fake_ductor(bindir: Path, record: Path, *, code: int = 0) -> None:
    bindir.mkdir()
    script = bindir / "ductor"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps("
        "{'argv': sys.argv[1:], 'chat': os.environ.get('DUCTOR_CHAT_ID')}))\n"
        f"if {code}:\n"
        "    print('ductor: no cron job named x', file=sys.stderr)\n"
        f"    sys.exit({code})\n"
        "print(json.dumps({'name': 'daily-news'}))\n"
    )
    script.chmod(0o755)


def tool(
    tools: Path, name: str, *args: str, path: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools / name), *args],
        env={"PATH": path, "DUCTOR_AGENT_NAME": "main", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_every_tool_script_is_an_executable_python_script(tools: Path) -> None:
    names = sorted(p.name for p in tools.iterdir())
    assert names == ["cron_add.py", "cron_edit.py", "cron_list.py", "cron_remove.py", "cron_run.py"]
    for script in tools.iterdir():
        assert script.read_text().startswith("#!/usr/bin/env python3\n")
        assert os.access(script, os.X_OK)


def test_a_tool_script_without_arguments_explains_itself(tools: Path) -> None:
    result = tool(tools, "cron_add.py", path=os.environ["PATH"])
    assert result.returncode == 0
    assert "Usage: cron_add.py NAME --schedule" in result.stdout
    assert "Example:" in result.stdout and "chat" in result.stdout


def test_a_tool_script_calls_ductor_cron_for_its_agent(tools: Path, tmp_path: Path) -> None:
    record = tmp_path / "argv.json"
    fake_ductor(tmp_path / "bin", record)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = tool(
        tools,
        "cron_add.py",
        "daily-news",
        "--schedule",
        "0 8 * * *",
        "--prompt",
        "news",
        path=path,
        DUCTOR_CHAT_ID="-100123",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"name": "daily-news"}
    called = json.loads(record.read_text())
    assert called["argv"] == [
        "cron",
        "add",
        "main",
        "daily-news",
        "--schedule",
        "0 8 * * *",
        "--prompt",
        "news",
        "--json",
    ]
    assert called["chat"] == "-100123"
    assert tool(tools, "cron_list.py", path=path).returncode == 0
    assert json.loads(record.read_text())["argv"] == ["cron", "list", "main", "--json"]


def test_a_failing_ductor_becomes_a_json_error(tools: Path, tmp_path: Path) -> None:
    fake_ductor(tmp_path / "bin", tmp_path / "argv.json", code=2)
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    result = tool(tools, "cron_remove.py", "x", path=path)
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"ok": False, "error": "no cron job named x"}


def test_a_missing_ductor_is_named_in_a_json_error(tools: Path, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3").symlink_to(sys.executable)  # python3 but no ductor
    result = tool(tools, "cron_run.py", "x", path=str(tmp_path / "bin"))
    assert json.loads(result.stdout)["error"].startswith("the `ductor` command was not found")

"""Settings that nothing acts on yet are reported, with their file and line, when set."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import pytest

from ductor import service
from ductor.config import pending
from ductor.paths import Mode, Paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(
        mode=Mode.USER,
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
        runtime_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
    )


def write_agent(paths: Paths, text: str) -> Path:
    file = paths.agent_config("main")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def test_a_pending_key_set_away_from_its_default_is_named_with_file_and_line(
    paths: Paths,
) -> None:
    file = write_agent(paths, 'model = "sonnet"\n\n[cleanup]\nmedia_files_days = 3\n')
    found = [str(item) for item in pending.inert_settings_of(paths, "main")]
    assert found == [
        f"{file}:4: cleanup.media_files_days is not yet acted on"
        " (the cleanup timer is not built yet); the setting has no effect"
    ]


def test_the_shipped_example_config_reports_nothing(paths: Paths) -> None:
    paths.config_dir.mkdir(parents=True)
    shutil.copy(REPO / "etc" / "ductor.toml", paths.global_config)
    assert pending.inert_settings_of(paths, "main") == []


def test_keys_that_work_are_never_reported(paths: Paths) -> None:
    write_agent(
        paths, 'model = "sonnet"\n[streaming]\nmin_chars = 10\n[heartbeat]\nenabled = true\n'
    )
    assert pending.inert_settings_of(paths, "main") == []


def test_a_list_of_targets_counts_as_set_only_when_not_empty(paths: Paths) -> None:
    write_agent(paths, "[notifications]\nupgrade_targets = []\n")
    assert pending.inert_settings_of(paths, "main") == []
    write_agent(paths, "[[notifications.upgrade_targets]]\nchat_id = 5\n")
    assert [s.key for s in pending.inert_settings_of(paths, "main")] == [
        "notifications.upgrade_targets"
    ]


def run_service(paths: Paths, monkeypatch: pytest.MonkeyPatch, **options: bool) -> int:
    monkeypatch.setattr(service, "resolve", lambda mode: paths)
    args = argparse.Namespace(name="main", mode=None, log_level="INFO")
    return service.run(args, lambda svc: 0, log=logging.getLogger("t"), what="x", **options)


def test_the_agent_daemon_logs_each_pending_setting_once_at_start(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    write_agent(paths, 'language = "de"\n[cleanup]\ncheck_hour = 4\n')
    assert run_service(paths, monkeypatch, report_pending=True) == 0
    warned = [line for line in capfd.readouterr().err.splitlines() if "not yet acted on" in line]
    assert len(warned) == 2
    assert f"{paths.agent_config('main')}:1: language " in warned[0]
    assert "cleanup.check_hour" in warned[1]


def test_other_programs_do_not_repeat_the_warnings(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    write_agent(paths, 'language = "de"\n')
    assert run_service(paths, monkeypatch) == 0
    assert "not yet acted on" not in capfd.readouterr().err

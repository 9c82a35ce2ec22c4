"""The failure report of a cron run (``ductor-cron failed UNIT``, the timers' services'
``OnFailure=``): it must reach a chat even when what failed is the job file itself."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ductor.cron.jobs import Job, JobStore
from ductor.cron.oneshot import report_failure
from ductor.paths import Mode, Paths, resolve
from ductor.units import Manager

UNIT = "ductor-cron@main:daily.service"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    def show(self: Manager, units: Sequence[str], props: Sequence[str]) -> list[dict[str, str]]:
        return [{"Result": "exit-code", "ExecMainStatus": "78"} for _ in units]

    monkeypatch.setattr(Manager, "show", show)
    result = resolve(
        Mode.USER,
        env={"HOME": str(tmp_path)},
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
    )
    result.agents_config_dir.mkdir(parents=True)
    result.agent_config("main").write_text("[telegram]\nallowed_user_ids = [42, 43]\n")
    return result


def outbox(paths: Paths) -> list[dict[str, Any]]:
    files = sorted((paths.spool("main") / "outbox" / "tg" / "new").glob("*"))
    return [json.loads(file.read_text()) for file in files]


def test_a_failed_run_is_reported_to_the_chat_of_its_job(paths: Paths) -> None:
    JobStore(paths.agent_state("main")).add(
        Job(name="daily", schedule="0 8 * * *", prompt="news", chat_id="-100", title="News")
    )
    assert report_failure(UNIT, paths) == 0
    [envelope] = outbox(paths)
    assert envelope["routing"]["chat_id"] == -100
    assert "**News**: the cron run failed (exit-code, status 78)" in envelope["payload"]["text"]


def test_a_failed_run_whose_job_file_is_broken_reaches_the_main_user_with_the_reason(
    paths: Paths,
) -> None:
    jobs = paths.agent_state("main") / "cron_jobs.toml"
    jobs.parent.mkdir(parents=True)
    jobs.write_text("[jobs.daily\n")
    assert report_failure(UNIT, paths) == 0
    [envelope] = outbox(paths)
    assert envelope["routing"]["chat_id"] == 42  # the main user's private chat
    text = envelope["payload"]["text"]
    assert "cron job daily" in text and "status 78" in text
    assert "cron_jobs.toml" in text  # the reason: what could not be read


def test_a_failed_run_of_an_agent_with_a_broken_config_is_still_reported(paths: Paths) -> None:
    JobStore(paths.agent_state("main")).add(
        Job(name="daily", schedule="0 8 * * *", prompt="news", chat_id="-100")
    )
    paths.agent_config("main").write_text("[telegram\n")
    assert report_failure(UNIT, paths) == 0
    [envelope] = outbox(paths)
    assert envelope["routing"]["chat_id"] == -100
    assert "main.toml" in envelope["payload"]["text"]

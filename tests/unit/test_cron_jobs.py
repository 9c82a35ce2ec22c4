from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ductor.cron.jobs import Job, JobStore, task_folder, validate
from ductor.errors import ConfigError, UsageError


def news(**changes: object) -> Job:
    values: dict[str, object] = {
        "name": "daily-news",
        "schedule": "0 8 * * 1-5",
        "prompt": "Summarise the headlines.",
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def test_jobs_survive_a_round_trip_through_the_file(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    added = store.add(
        news(
            title="News",
            prompt="Line one\nline two",
            timezone="Europe/Berlin",
            quiet_start=22,
            quiet_end=7,
            transport="telegram",
            chat_id="-100123",
            topic_id="7",
            catch_up=True,
        )
    )
    store.add(news(name="backup", schedule="@daily", enabled=False))
    assert added.created_at and added.updated_at
    assert added.transport == "tg"
    loaded = JobStore(tmp_path).load()
    assert loaded == {"daily-news": added, "backup": loaded["backup"]}
    assert loaded["backup"].enabled is False and loaded["backup"].quiet_start is None
    text = store.path.read_text()
    assert "[jobs.daily-news]" in text and "[jobs.backup]" in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_update_changes_only_the_given_fields_and_stamps_the_time(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    added = store.add(news(created_at="2024-01-01T00:00:00+00:00", updated_at="x"))
    changed = store.update("daily-news", schedule="30 7 * * *", model="sonnet")
    assert changed.schedule == "30 7 * * *" and changed.model == "sonnet"
    assert changed.prompt == added.prompt and changed.created_at == added.created_at
    assert changed.updated_at != "x"
    assert store.set_enabled("daily-news", False).enabled is False
    assert store.get("daily-news").enabled is False


def test_remove_returns_the_job_and_forgets_it(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add(news())
    assert store.remove("daily-news").name == "daily-news"
    assert store.load() == {}


def test_a_bad_schedule_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"'daily-news': schedule: .*hour"):
        JobStore(tmp_path).add(news(schedule="0 25 * * *"))
    assert not (tmp_path / "cron_jobs.toml").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"quiet_start": 22}, "quiet hours"),
        ({"quiet_start": 22, "quiet_end": 24}, "quiet_end"),
        ({"provider": "grok"}, "provider"),
        ({"effort": "huge"}, "effort"),
        ({"transport": "slack"}, "transport"),
        ({"topic_id": "5"}, "topic_id"),
        ({"prompt": "  "}, "prompt"),
        ({"name": "Daily News"}, "invalid cron job name"),
        ({"dependency": "/var/lib/x"}, "dependency: '/var/lib/x' is not a plain name"),
        ({"dependency": "../../x"}, "dependency: '../../x' is not a plain name"),
        ({"dependency": ".lock"}, "dependency: '.lock' is not a plain name"),
    ],
)
def test_invalid_fields_are_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(UsageError, match=field):
        validate(news(**changes))


def test_a_second_job_of_the_same_name_is_refused(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add(news())
    with pytest.raises(UsageError, match="exists already"):
        store.add(news(schedule="@hourly"))


def test_an_unknown_job_is_reported_with_the_existing_ones(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add(news())
    store.add(news(name="backup"))
    with pytest.raises(UsageError, match=r"'nope' \(existing jobs: backup, daily-news\)"):
        store.get("nope")
    with pytest.raises(UsageError, match="nope"):
        store.remove("nope")
    with pytest.raises(UsageError, match="nope"):
        store.update("nope", model="x")


def test_fields_that_are_not_editable_are_refused(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add(news())
    with pytest.raises(UsageError, match="created_at"):
        store.update("daily-news", created_at="2020")


def test_a_file_with_broken_toml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cron_jobs.toml"
    path.write_text('[jobs.a]\nschedule = "@daily"\nprompt = "x\n')
    with pytest.raises(ConfigError) as caught:
        JobStore(tmp_path).load()
    assert caught.value.file == path and caught.value.line == 3


def test_a_value_of_the_wrong_type_names_its_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cron_jobs.toml"
    path.write_text('[jobs.a]\nschedule = "@daily"\nprompt = "x"\nenabled = "yes"\n')
    with pytest.raises(ConfigError, match=r"cron_jobs.toml:4: jobs.a.enabled: expected bool"):
        JobStore(tmp_path).load()


def test_task_folder_holds_task_rules_and_memory_and_keeps_edits(tmp_path: Path) -> None:
    job = news(title="Morning news", description="For the commute.")
    folder = task_folder(tmp_path, job.name, job)
    assert folder == tmp_path / "cron_tasks" / "daily-news"
    task = (folder / "TASK.md").read_text()
    assert "# Morning news" in task and "For the commute." in task
    assert "Summarise the headlines." in task
    rules = (folder / "RULES.md").read_text()
    assert "MEMORY.md" in rules and "unattended" in rules and "delivered" in rules
    (folder / "TASK.md").write_text("my refined task\n")
    (folder / "MEMORY.md").write_text("2024-01-01 08:00: sent 5 items\n")
    task_folder(tmp_path, job.name, news(prompt="something else"))
    assert (folder / "TASK.md").read_text() == "my refined task\n"
    assert (folder / "MEMORY.md").read_text() == "2024-01-01 08:00: sent 5 items\n"


def test_a_dependency_with_a_path_in_the_file_names_its_key_and_line(tmp_path: Path) -> None:
    """A hand-edited cron_jobs.toml cannot make a run create a lock file elsewhere."""
    path = tmp_path / "cron_jobs.toml"
    path.write_text('[jobs.a]\nschedule = "@daily"\nprompt = "x"\ndependency = "../../../etc/x"\n')
    with pytest.raises(ConfigError, match=r"cron_jobs.toml:4: jobs.a.dependency: .* plain name"):
        JobStore(tmp_path).load()

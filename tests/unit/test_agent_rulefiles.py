"""ductor.agent.rulefiles: the rule-file variant by logged-in CLIs, edits carried between
CLAUDE.md, AGENTS.md and GEMINI.md, stale files of CLIs not logged in removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ductor.agent.rulefiles import carry_edits, sync_rule_files, variant, variant_text
from ductor.agent.shared_memory import ROSTER_END, ROSTER_START
from ductor.agent.workspace import rule_text


@pytest.mark.parametrize(
    ("logged_in", "expected"),
    [
        ([], "claude-only"),
        (["claude"], "claude-only"),
        (["codex"], "codex-only"),
        (["gemini"], "gemini-only"),
        (["claude", "gemini"], "all-clis"),
        (["claude", "codex", "gemini"], "all-clis"),
    ],
)
def test_the_variant_follows_the_logged_in_clis(logged_in: list[str], expected: str) -> None:
    assert variant(logged_in) == expected


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.md")}


def age(path: Path, seconds: float) -> None:
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def test_a_fresh_workspace_gets_the_variant_of_the_logged_in_clis(tmp_path: Path) -> None:
    sync_rule_files(tmp_path, agent="main", authenticated=["codex"])

    assert names(tmp_path) == {"AGENTS.md"}
    assert (tmp_path / "AGENTS.md").read_text() == variant_text("main", "codex-only")


def test_unedited_shipped_text_follows_a_new_variant_and_keeps_the_roster(tmp_path: Path) -> None:
    roster = f"{ROSTER_START}\n- `research`: helper\n{ROSTER_END}\n"
    (tmp_path / "CLAUDE.md").write_text(rule_text("main") + "\n" + roster)

    sync_rule_files(tmp_path, agent="main", authenticated=["claude", "gemini"])

    assert names(tmp_path) == {"CLAUDE.md", "GEMINI.md"}
    text = (tmp_path / "GEMINI.md").read_text()
    assert text.startswith(variant_text("main", "all-clis"))
    assert text.endswith(roster)
    assert (tmp_path / "CLAUDE.md").read_text() == text


def test_a_users_edit_of_one_file_is_carried_to_the_others_never_overwritten(
    tmp_path: Path,
) -> None:
    sync_rule_files(tmp_path, agent="main", authenticated=["claude", "codex", "gemini"])
    for name in ("CLAUDE.md", "GEMINI.md"):
        age(tmp_path / name, 60)
    (tmp_path / "AGENTS.md").write_text("# my own rules\n")

    carried = carry_edits(tmp_path)
    sync_rule_files(tmp_path, agent="main", authenticated=["claude", "codex", "gemini"])

    assert {p.name for p in carried} == {"CLAUDE.md", "GEMINI.md"}
    for name in ("CLAUDE.md", "AGENTS.md", "GEMINI.md"):
        assert (tmp_path / name).read_text() == "# my own rules\n"


def test_the_file_of_a_cli_no_longer_logged_in_goes_after_its_edit_is_carried(
    tmp_path: Path,
) -> None:
    sync_rule_files(tmp_path, agent="main", authenticated=["claude", "gemini"])
    age(tmp_path / "CLAUDE.md", 60)
    (tmp_path / "GEMINI.md").write_text("# edited for gemini\n")

    sync_rule_files(tmp_path, agent="main", authenticated=["claude"])

    assert names(tmp_path) == {"CLAUDE.md"}
    assert (tmp_path / "CLAUDE.md").read_text() == "# edited for gemini\n"


def test_cron_task_folders_keep_stale_files_and_get_missing_ones(tmp_path: Path) -> None:
    job = tmp_path / "cron_tasks" / "daily"
    task = tmp_path / "tasks" / "abcd1234"
    job.mkdir(parents=True)
    task.mkdir(parents=True)
    (job / "GEMINI.md").write_text("# job rules\n")
    (task / "GEMINI.md").write_text("# task rules\n")
    (tmp_path / "cron_tasks" / "empty").mkdir()

    sync_rule_files(tmp_path, agent="main", authenticated=["claude"])

    assert names(job) == {"CLAUDE.md", "GEMINI.md"}
    assert (job / "CLAUDE.md").read_text() == "# job rules\n"
    assert names(task) == {"CLAUDE.md"}
    assert (task / "CLAUDE.md").read_text() == "# task rules\n"
    assert names(tmp_path / "cron_tasks" / "empty") == set()


def test_folders_outside_the_workspace_root_jobs_and_tasks_are_never_touched(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "projects" / "repo"
    repo.mkdir(parents=True)
    (repo / "AGENTS.md").write_text("# the repo's own\n")

    sync_rule_files(tmp_path, agent="main", authenticated=["claude"])

    assert names(repo) == {"AGENTS.md"}


def test_carrying_edits_creates_and_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text("# only one\n")

    assert carry_edits(tmp_path) == []
    assert names(tmp_path) == {"CLAUDE.md"}

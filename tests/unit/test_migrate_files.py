"""Which files of the original's workspace come across, and the original's home as read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductor.errors import UsageError
from ductor.migrate.files import workspace_files
from ductor.migrate.source import OriginalHome


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_what_the_user_made_comes_and_what_the_original_generates_stays(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    touch(
        old,
        "CLAUDE.md",
        "AGENTS.md",
        "memory_system/MAINMEMORY.md",
        "memory_system/CLAUDE.md",
        "tools/RULES.md",
        "tools/_tool_shared.py",
        "tools/cron_tools/cron_add.py",
        "tools/media_tools/transcribe_audio.py",
        "tools/user_tools/weather.py",
        "tools/user_tools/CLAUDE.md",
        "skills/skill-creator/SKILL.md",
        "skills/haiku/SKILL.md",
        "skills/haiku/CLAUDE.md",
        "cron_tasks/Old Name/CLAUDE.md",
        "cron_tasks/Old Name/TASK_DESCRIPTION.md",
        "cron_tasks/Old Name/scripts/run.py",
        "cron_tasks/Old Name/.venv/bin/python",
        "cron_tasks/Old Name/__pycache__/x.pyc",
        "telegram_files/2026-01-01/photo.jpg",
        "notes/ideas.md",
    )
    (old / "skills" / "linked").symlink_to(tmp_path)
    plan = workspace_files(old, new, renamed={"Old Name": "old-name"})
    copied = sorted(str(c.dest.relative_to(new)) for c in plan.carries)
    assert copied == [
        "cron_tasks/old-name/TASK_DESCRIPTION.md",
        "cron_tasks/old-name/scripts/run.py",
        "memory_system/MAINMEMORY.md",
        "notes/ideas.md",
        "skills/haiku/CLAUDE.md",  # the user's own skill keeps all of its files
        "skills/haiku/SKILL.md",
        "telegram_files/2026-01-01/photo.jpg",
        "tools/user_tools/weather.py",
    ]
    reasons = {reason: len(items) for reason, items in plan.left.items()}
    assert reasons["the original's rule files (this product writes its own)"] == 6
    assert "symbolic links (the original's skill links)" in reasons
    assert any("virtual environments" in reason for reason in reasons)


def test_a_directory_without_the_originals_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no config/config\.json"):
        OriginalHome(tmp_path)


def test_unusable_agents_json_entries_are_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text("{}")
    (tmp_path / "agents.json").write_text('[{"name": "a"}, {"name": ""}, 7, {"name": "a"}]')
    home = OriginalHome(tmp_path)
    assert [agent.name for agent in home.agents()] == ["main", "a"]
    assert len(home.problems.items) == 3


def test_a_config_that_is_not_json_is_named_with_its_line_without_its_content(
    tmp_path: Path,
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text('{\n  "telegram_token": "1:SECRET",,\n}')
    home = OriginalHome(tmp_path)
    with pytest.raises(UsageError, match=r"config\.json: invalid JSON at line 2") as raised:
        home.config()
    assert "SECRET" not in str(raised.value)

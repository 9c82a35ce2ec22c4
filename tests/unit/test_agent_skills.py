"""ductor.agent.skills: skills shared between the workspace and the CLIs' skill folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductor.agent import skills
from ductor.config.schema import SkillsConfig, SkillSyncConfig


def make_skill(folder: Path, name: str, description: str = "Does a thing") -> Path:
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: {description}\n---\n# {name}\n"
    )
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".gemini").mkdir()
    return home


def folders(
    tmp_path: Path, home: Path, config: SkillsConfig | None = None
) -> list[skills.SkillFolder]:
    env = {"HOME": str(home)}
    return skills.skill_folders(tmp_path / "workspace", env, config or SkillsConfig())


def test_a_workspace_skill_appears_in_each_installed_cli_as_a_link(
    tmp_path: Path, home: Path
) -> None:
    skill = make_skill(tmp_path / "workspace/skills/pdf-tools", "pdf-tools")
    report = skills.sync(folders(tmp_path, home))
    claude = home / ".claude/skills/pdf-tools"
    gemini = home / ".gemini/skills/pdf-tools"
    assert claude.is_symlink() and claude.resolve() == skill.resolve()
    assert gemini.is_symlink() and gemini.resolve() == skill.resolve()
    assert not (home / ".codex").exists()  # Codex is not installed: its home is not made
    assert sorted(report.linked) == sorted([claude, gemini])


def test_a_cli_skill_appears_in_the_workspace_and_the_other_clis(
    tmp_path: Path, home: Path
) -> None:
    skill = make_skill(home / ".claude/skills/review", "review")
    skills.sync(folders(tmp_path, home))
    assert (tmp_path / "workspace/skills/review").resolve() == skill.resolve()
    assert (home / ".gemini/skills/review").resolve() == skill.resolve()


def test_the_workspace_copy_wins_and_real_folders_are_never_touched(
    tmp_path: Path, home: Path
) -> None:
    ours = make_skill(tmp_path / "workspace/skills/notes", "notes")
    theirs = make_skill(home / ".claude/skills/notes", "notes", "their own")
    skills.sync(folders(tmp_path, home))
    assert not theirs.is_symlink() and "their own" in (theirs / "SKILL.md").read_text()
    assert (home / ".gemini/skills/notes").resolve() == ours.resolve()


def test_a_folder_without_name_and_description_is_no_skill(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "workspace/skills/draft"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: draft\n---\n")
    skills.sync(folders(tmp_path, home))
    assert not (home / ".claude/skills/draft").exists()


def test_foreign_links_stay_and_only_our_broken_links_go(tmp_path: Path, home: Path) -> None:
    gone = make_skill(tmp_path / "workspace/skills/old", "old")
    skills.sync(folders(tmp_path, home))
    link = home / ".claude/skills/old"
    assert link.is_symlink()
    (gone / "SKILL.md").unlink()
    gone.rmdir()
    foreign = home / ".claude/skills/elsewhere"
    foreign.symlink_to(tmp_path / "not-there")
    report = skills.sync(folders(tmp_path, home))
    assert not link.is_symlink() and link in report.removed
    assert foreign.is_symlink()


def test_sync_off_or_a_cli_switched_off_links_nothing_there(tmp_path: Path, home: Path) -> None:
    make_skill(tmp_path / "workspace/skills/pdf-tools", "pdf-tools")
    assert folders(tmp_path, home, SkillsConfig(sync_enabled=False)) == []
    config = SkillsConfig(sync=SkillSyncConfig(claude=False))
    skills.sync(folders(tmp_path, home, config))
    assert not (home / ".claude/skills/pdf-tools").exists()
    assert (home / ".gemini/skills/pdf-tools").is_symlink()


def test_codex_skills_live_under_codex_home(tmp_path: Path, home: Path) -> None:
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    make_skill(tmp_path / "workspace/skills/pdf-tools", "pdf-tools")
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home)}
    skills.sync(skills.skill_folders(tmp_path / "workspace", env, SkillsConfig()))
    assert (codex_home / "skills/pdf-tools").is_symlink()

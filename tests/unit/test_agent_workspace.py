from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ductor import agents
from ductor.agent import workspace
from ductor.paths import Mode, Paths


def test_first_start_lays_out_folders_memory_and_one_rule_file_per_provider(
    tmp_path: Path,
) -> None:
    root = tmp_path / "workspace"
    created = workspace.ensure_workspace(root, agent="main", providers=["claude", "gemini"])
    for name in ("memory_system", "output_to_user", "tools", "cron_tasks", "tasks"):
        assert (root / name).is_dir()
        assert root / name in created
    assert (root / "memory_system/MAINMEMORY.md").read_text().startswith("# Main memory")
    assert (root / "CLAUDE.md").is_file()
    assert (root / "GEMINI.md").is_file()
    assert not (root / "AGENTS.md").exists()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_rule_file_tells_the_agent_who_it_is_and_how_to_use_ductor(tmp_path: Path) -> None:
    workspace.ensure_workspace(tmp_path, agent="helper", providers=["codex"])
    rules = (tmp_path / "AGENTS.md").read_text()
    assert "`helper`" in rules
    assert "<file:/absolute/path" in rules and "output_to_user/" in rules
    assert "[button:" in rules and "new row" in rules
    assert "memory_system/MAINMEMORY.md" in rules
    assert "tools/" in rules and "cron_tasks/" in rules
    assert "wait for the user to" in rules


def test_second_start_creates_nothing_and_keeps_user_edits(tmp_path: Path) -> None:
    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude"])
    (tmp_path / "CLAUDE.md").write_text("my own rules\n")
    (tmp_path / "memory_system/MAINMEMORY.md").write_text("2024-01-01: likes tea\n")
    assert workspace.ensure_workspace(tmp_path, agent="main", providers=["claude"]) == []
    assert (tmp_path / "CLAUDE.md").read_text() == "my own rules\n"
    assert (tmp_path / "memory_system/MAINMEMORY.md").read_text() == "2024-01-01: likes tea\n"


def test_a_newly_installed_provider_gets_its_rule_file_on_the_next_start(tmp_path: Path) -> None:
    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude"])
    (tmp_path / "memory_system" / "MAINMEMORY.md").unlink()
    created = workspace.ensure_workspace(tmp_path, agent="main", providers=["claude", "codex"])
    assert sorted(created) == sorted(
        [tmp_path / "memory_system" / "MAINMEMORY.md", tmp_path / "AGENTS.md"]
    )


def test_a_symlink_in_place_of_a_rule_file_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "shared.md").write_text("shared rules\n")
    (tmp_path / "CLAUDE.md").symlink_to(tmp_path / "shared.md")
    (tmp_path / "GEMINI.md").symlink_to(tmp_path / "missing.md")
    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude", "gemini"])
    assert (tmp_path / "shared.md").read_text() == "shared rules\n"
    assert not (tmp_path / "missing.md").exists()


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude", "codex", "gemini"])
    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude", "codex", "gemini"])
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_an_unknown_provider_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'grok'"):
        workspace.ensure_workspace(tmp_path, agent="main", providers=["grok"])


def test_installed_providers_lists_those_whose_cli_is_found() -> None:
    found = {"codex": "/opt/bin/codex", "claude": "/opt/bin/claude"}
    assert workspace.installed_providers(found.get) == ["claude", "codex"]
    assert workspace.installed_providers(lambda _: None) == []


def test_agents_ensure_workspace_creates_state_spool_and_rule_file(tmp_path: Path) -> None:
    paths = Paths(
        mode=Mode.USER,
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
        runtime_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
    )
    created = agents.ensure_workspace(paths, "main", providers=["gemini"])
    assert paths.spool("main") in created
    assert (paths.workspace("main") / "GEMINI.md").is_file()
    assert (paths.workspace("main") / "memory_system/MAINMEMORY.md").is_file()
    assert agents.ensure_workspace(paths, "main", providers=["gemini"]) == []


# --- shipped tool scripts reach existing agents --------------------------------------

CRON_ADD = Path("tools/cron_tools/cron_add.py")


def test_a_script_ductor_wrote_earlier_is_replaced_by_the_shipped_version_without_backup(
    tmp_path: Path,
) -> None:
    (tmp_path / CRON_ADD).parent.mkdir(parents=True)
    workspace.refresh_shipped_scripts(tmp_path, {CRON_ADD: "old shipped text\n"})
    workspace.ensure_workspace(tmp_path, agent="main", providers=[])
    shipped = workspace.cron_tool_scripts()["cron_add.py"]
    assert (tmp_path / CRON_ADD).read_text() == shipped
    assert not (tmp_path / "tools/cron_tools/cron_add.py.bak").exists()
    assert stat.S_IMODE((tmp_path / CRON_ADD).stat().st_mode) == 0o700


def test_a_script_the_user_changed_is_kept_as_bak_and_replaced(tmp_path: Path) -> None:
    workspace.ensure_workspace(tmp_path, agent="main", providers=[])
    (tmp_path / CRON_ADD).write_text("# my own version\n")
    workspace.ensure_workspace(tmp_path, agent="main", providers=[])
    assert (tmp_path / "tools/cron_tools/cron_add.py.bak").read_text() == "# my own version\n"
    assert (tmp_path / CRON_ADD).read_text() == workspace.cron_tool_scripts()["cron_add.py"]
    # the next start leaves both alone
    (tmp_path / "tools/cron_tools/cron_add.py.bak").write_text("kept\n")
    workspace.ensure_workspace(tmp_path, agent="main", providers=[])
    assert (tmp_path / "tools/cron_tools/cron_add.py.bak").read_text() == "kept\n"


def test_a_script_from_before_ductor_kept_records_is_backed_up_when_it_differs(
    tmp_path: Path,
) -> None:
    (tmp_path / "tools/cron_tools").mkdir(parents=True)
    (tmp_path / CRON_ADD).write_text("# written by an older ductor, or by the user\n")
    workspace.ensure_workspace(tmp_path, agent="main", providers=[])
    assert (tmp_path / "tools/cron_tools/cron_add.py.bak").exists()
    assert (tmp_path / CRON_ADD).read_text() == workspace.cron_tool_scripts()["cron_add.py"]


def test_every_tool_the_prompts_and_rule_files_name_exists_in_a_seeded_workspace(
    tmp_path: Path,
) -> None:
    import re

    from ductor.agent import prompt

    workspace.ensure_workspace(tmp_path, agent="main", providers=["claude", "codex", "gemini"])
    texts = [(tmp_path / name).read_text() for name in ("CLAUDE.md", "AGENTS.md", "GEMINI.md")]
    enabled = prompt.tasks_available(tmp_path, enabled=True)
    for count in range(0, 31):
        for new_session in (True, False):
            texts += prompt.hook_suffixes(
                count,
                new_session=new_session,
                tasks_enabled=enabled,
                reflection_every=5,
                reflection_prompt="reflect",
            )
    paths = {m for text in texts for m in re.findall(r"tools/[\w./-]+\.py", text)}
    scripts = {m for text in texts for m in re.findall(r"\b[\w-]+\.py\b", text)}
    assert "cron_add.py" in scripts, "the rule file names the cron tools"
    present = {p.name for p in (tmp_path / "tools").rglob("*.py")}
    assert sorted(p for p in paths if not (tmp_path / p).is_file()) == []
    assert sorted(scripts - present) == []


def test_the_task_blocks_appear_only_once_the_task_tool_exists(tmp_path: Path) -> None:
    from ductor.agent import prompt

    assert not prompt.tasks_available(tmp_path, enabled=True)
    tool = tmp_path / prompt.TASK_TOOL
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/usr/bin/env python3\n")
    assert prompt.tasks_available(tmp_path, enabled=True)
    assert not prompt.tasks_available(tmp_path, enabled=False)

from __future__ import annotations

from pathlib import Path

from ductor.agent import shared_memory
from ductor.agent.shared_memory import END, START, merged_memory
from ductor.paths import resolve

OWN = "# Main memory\n\n## Facts learned\n2026-12-01: likes tea\n"


def test_shared_knowledge_is_added_after_the_agents_own_memory() -> None:
    merged = merged_memory(OWN, "VPN is down\n")
    assert merged.startswith(OWN)
    assert merged.endswith(f"{START}\nVPN is down\n{END}\n")


def test_a_second_sync_replaces_the_block_and_keeps_what_the_agent_wrote_after_it() -> None:
    first = merged_memory(OWN, "old fact")
    later = first + "2026-12-02: the agent wrote this\n"
    merged = merged_memory(later, "new fact")
    assert "old fact" not in merged and "new fact" in merged
    assert "the agent wrote this" in merged and "likes tea" in merged
    assert merged.count(START) == 1
    assert merged_memory(merged, "new fact") == merged


def test_an_empty_shared_file_removes_the_block() -> None:
    assert merged_memory(merged_memory(OWN, "fact"), "") == OWN


def test_edit_appends_to_the_shared_file_and_reaches_started_agents_only(tmp_path: Path) -> None:
    paths = resolve(config_dir=tmp_path / "config", state_dir=tmp_path / "state")
    paths.agents_config_dir.mkdir(parents=True)
    for name in ("a", "b"):
        paths.agent_config(name).write_text('provider = "claude"\ntransports = []\n')
    memory = paths.workspace("a") / "memory_system" / "MAINMEMORY.md"
    memory.parent.mkdir(parents=True)
    memory.write_text(OWN)
    text = shared_memory.edit(paths, append="2026-12-07: deploys freeze on Fridays")
    assert text.startswith("# Shared knowledge") and text.endswith("Fridays\n")
    assert "deploys freeze on Fridays" in memory.read_text()
    assert not (paths.workspace("b") / "memory_system" / "MAINMEMORY.md").exists()


def test_the_roster_names_each_other_agent_with_its_description_and_provider(
    tmp_path: Path,
) -> None:
    paths = resolve(config_dir=tmp_path / "config", state_dir=tmp_path / "state")
    paths.agents_config_dir.mkdir(parents=True)
    paths.agent_config("main").write_text('provider = "claude"\ntransports = []\n')
    paths.agent_config("research").write_text(
        'description = "reads papers,\\n  long answers"\nprovider = "codex"\n'
        'model = "gpt-5.4"\ntransports = []\n'
    )
    rules = paths.workspace("main") / "CLAUDE.md"
    rules.parent.mkdir(parents=True)
    rules.write_text("# main's own rules\n")
    shared_memory.sync_all(paths)
    text = rules.read_text()
    assert "- `research`: reads papers, long answers; codex/gpt-5.4" in text
    assert text.startswith("# main's own rules\n")

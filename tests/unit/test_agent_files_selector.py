"""ductor.agent.files_selector: /showfiles and its sf: buttons."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ductor import paths
from ductor.agent import commands, files_selector
from ductor.agent.commands import CommandResult
from ductor.agent.core import Agent
from ductor.config import AgentConfig
from ductor.protocol import Request, RequestType


def make_agent(root: Path, file_access: str = "all") -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    config = replace(AgentConfig(), file_access=file_access)
    return Agent("main", paths.resolve(env=env), config, env=env)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    agent = make_agent(tmp_path)
    (agent.workspace / "output_to_user").mkdir(parents=True)
    return agent


def showfiles(agent: Agent, text: str = "/showfiles") -> CommandResult:
    request = Request(RequestType.COMMAND, "r1", session="tg:123", text=text)
    result = asyncio.run(commands.run_command_text(agent, request))
    assert result is not None
    return result


def press(agent: Agent, data: str) -> CommandResult:
    request = Request(RequestType.BUTTON, "r2", session="tg:123", data=data)
    result = asyncio.run(files_selector.handle_button(agent, request))
    assert result is not None
    return result


def buttons(result: CommandResult) -> dict[str, str]:
    return {b["label"]: b["data"] for row in result.buttons for b in row}


def write(path: Path, text: str = "x", mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_showfiles_lists_the_deliverables_and_incoming_folders(agent: Agent) -> None:
    (agent.workspace / "telegram_files").mkdir()
    (agent.workspace / "memory_system").mkdir()
    result = showfiles(agent)
    assert set(buttons(result)) == {"📁 output_to_user", "📁 telegram_files"}
    assert "memory_system" not in result.text


def test_entering_a_folder_shows_its_files_and_a_way_up(agent: Agent) -> None:
    write(agent.workspace / "output_to_user/report.pdf", "pdf" * 100)
    write(agent.workspace / "output_to_user/.secret", "hidden")
    entered = press(agent, buttons(showfiles(agent))["📁 output_to_user"])
    assert "report.pdf" in entered.text and "300 bytes" in entered.text
    assert ".secret" not in entered.text
    assert buttons(entered) == {
        "📄 report.pdf": "sf:f:output_to_user/report.pdf",
        "⬆ Up": "sf:d:0:",
    }


def test_pressing_a_file_sends_it_and_keeps_the_folder_on_screen(agent: Agent) -> None:
    report = write(agent.workspace / "output_to_user/report.txt", "numbers")
    result = press(agent, "sf:f:output_to_user/report.txt")
    assert result.files == [str(report.resolve())]
    assert result.text.startswith("Sending output_to_user/report.txt.")
    assert "📄 report.txt" in buttons(result)


def test_a_long_folder_is_paged_with_at_most_ten_buttons_a_page(agent: Agent) -> None:
    for number in range(14):
        write(agent.workspace / f"output_to_user/file{number:02d}.txt", mtime=1e9 + number)
    first = press(agent, "sf:d:0:output_to_user")
    assert "page 1/3" in first.text
    assert sum(len(row) for row in first.buttons) <= 10
    assert "📄 file13.txt" in buttons(first)  # newest first
    second = press(agent, buttons(first)["Next ▶"])
    assert "page 2/3" in second.text and "◀ Previous" in buttons(second)


def test_paths_outside_the_browsable_folders_cannot_be_reached(agent: Agent) -> None:
    write(agent.workspace / "memory_system/MAINMEMORY.md")
    assert press(agent, "sf:f:memory_system/MAINMEMORY.md").files == []
    assert press(agent, "sf:f:output_to_user/../memory_system/MAINMEMORY.md").files == []
    assert press(agent, "sf:d:0:../").buttons == []
    assert "only output_to_user/" in showfiles(agent, "/showfiles /etc").text


def test_a_link_out_of_the_folder_is_not_sent(agent: Agent, tmp_path: Path) -> None:
    secret = write(tmp_path / "config/credentials/main/.env", "TOKEN=1")
    (agent.workspace / "output_to_user/env.txt").symlink_to(secret)
    result = press(agent, "sf:f:output_to_user/env.txt")
    assert result.files == []
    assert result.text.startswith("Not sent: output_to_user/env.txt: ductor's credentials")


def test_file_access_home_refuses_a_workspace_outside_home(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, file_access="home")
    write(agent.workspace / "output_to_user/a.txt")
    result = press(agent, "sf:f:output_to_user/a.txt")
    assert result.files == [] and "outside the home directory" in result.text


def test_a_path_too_long_for_callback_data_is_found_by_its_fingerprint(agent: Agent) -> None:
    name = "a-very-long-name-for-a-deliverable-" + "x" * 40 + ".txt"
    file = write(agent.workspace / "output_to_user/deep" / name)
    entered = press(agent, "sf:d:0:output_to_user/deep")
    [data] = [d for label, d in buttons(entered).items() if label.startswith("📄 a-very")]
    assert data.startswith("sf:f:#") and len(data.encode()) <= 64
    assert press(agent, data).files == [str(file.resolve())]


def test_other_callback_data_is_not_ours(agent: Agent) -> None:
    request = Request(RequestType.BUTTON, "r2", session="tg:123", data="crn:r:0")
    assert asyncio.run(files_selector.handle_button(agent, request)) is None

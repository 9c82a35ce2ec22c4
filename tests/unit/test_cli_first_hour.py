"""A new user's first hour with the `ductor` command: the overview, a machine without a
running systemd, a token typed as an argument, API keys in the agent's .env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAEexampleexampleexampleexample_-xy"

# systemctl of systemd 252 where PID 1 is something else (a container started without
# systemd, WSL without systemd): what the real one prints, so the test means the same
# on a machine that does boot with systemd.
NOT_BOOTED_SYSTEMCTL = """#!/bin/sh
case "$*" in
    --version) echo 'systemd 252 (252.38-1~deb12u1)'; exit 0 ;;
    *is-system-running*) echo offline; exit 1 ;;
    --user*) echo 'Failed to connect to bus: No medium found' >&2; exit 1 ;;
    *) echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
       echo 'Failed to connect to bus: Host is down' >&2; exit 1 ;;
esac
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def not_booted(home: Path) -> Path:
    """A PATH directory whose systemctl is that of a machine not booted with systemd."""
    directory = home / "fake-bin"
    directory.mkdir()
    (directory / "systemctl").write_text(NOT_BOOTED_SYSTEMCTL)
    (directory / "systemctl").chmod(0o755)
    return directory


def ductor(
    home: Path, *args: str, input: str | None = None, path_first: Path | None = None
) -> subprocess.CompletedProcess[str]:
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {
        "HOME": str(home),
        "PATH": f"{path_first}:{path}" if path_first else path,
        "XDG_RUNTIME_DIR": str(home / "run"),
        "DUCTOR_STATE_DIR": str(home / "state"),
    }
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def init(home: Path, *extra: str) -> None:
    result = ductor(
        home,
        "init",
        "main",
        "--non-interactive",
        "--no-enable",
        "--user-id",
        "42",
        "--telegram-token-file",
        "-",
        *extra,
        input=TOKEN + "\n",
    )
    assert result.returncode == 0, result.stderr


def test_ductor_alone_says_what_it_is_and_to_create_an_agent_first(home: Path) -> None:
    result = ductor(home)
    assert result.returncode == 0, result.stderr
    assert "Claude Code, Codex and Gemini" in result.stdout
    assert "No agents yet" in result.stdout
    assert "ductor init" in result.stdout
    assert "usage" not in result.stdout + result.stderr


def test_ductor_alone_lists_the_agents_and_the_next_step(home: Path, not_booted: Path) -> None:
    init(home, "--provider", "codex")
    result = ductor(home, path_first=not_booted)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("main "))
    assert row.split()[:2] == ["main", "unknown"]
    assert "codex" in row and "telegram" in row
    assert "PID 1 is not systemd" in result.stdout
    assert "Next:" in result.stdout


def test_doctor_on_a_machine_without_systemd_as_pid_1_says_exactly_that(
    home: Path, not_booted: Path
) -> None:
    init(home)
    result = ductor(home, "doctor", path_first=not_booted)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "[XX] systemd: version 252 is installed, but PID 1 is not systemd" in lines[0]
    assert "[ok] systemd" not in result.stdout
    assert "enable-linger" not in result.stdout  # a fix that cannot work there
    assert "Everything looks fine" not in result.stdout


def test_status_without_a_service_manager_says_why_there_are_no_units(
    home: Path, not_booted: Path
) -> None:
    init(home)
    result = ductor(home, "status", path_first=not_booted)
    assert result.returncode == 0, result.stderr
    assert "No unit states for main: PID 1 is not systemd" in result.stdout


def test_cron_add_without_a_service_manager_saves_the_job_and_says_how_to_sync_it(
    home: Path, not_booted: Path
) -> None:
    init(home)
    result = ductor(
        home,
        "cron",
        "add",
        "main",
        "daily",
        "--schedule",
        "0 8 * * *",
        "--prompt",
        "hi",
        path_first=not_booted,
    )
    assert result.returncode == 0, result.stderr
    assert "added cron job daily of main" in result.stdout
    assert "saved in" in result.stderr and "`ductor cron sync main`" in result.stderr
    listed = ductor(home, "cron", "list", "main", path_first=not_booted)
    assert "daily" in listed.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--telegram-token", TOKEN],
        [f"--telegram-token={TOKEN}"],
        ["--token", TOKEN],
        ["--matrix-password", "hunter2-correct-horse"],
    ],
)
def test_a_secret_given_as_an_argument_is_refused_saying_why_and_never_echoed(
    home: Path, argv: list[str]
) -> None:
    result = ductor(home, "init", "main", "--non-interactive", "--user-id", "42", *argv)
    assert result.returncode == 2
    assert "is refused" in result.stderr and "ps shows argv" in result.stderr
    assert "-file FILE" in result.stderr
    secret = argv[-1].partition("=")[2] or argv[-1]
    assert secret not in result.stdout + result.stderr
    assert not (home / ".config/ductor/agents/main.toml").exists()


def test_no_option_is_taken_for_an_abbreviation_and_no_token_is_echoed(home: Path) -> None:
    result = ductor(home, "init", "main", "--telegram-tok", TOKEN)
    assert result.returncode == 2
    assert "unrecognized arguments: --telegram-tok" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "token file" not in result.stderr  # not read as --telegram-token-file


def test_agent_enable_now_says_it_also_starts_the_agent() -> None:
    result = ductor(Path("/nonexistent"), "agent", "enable", "--help")
    assert "also start it now" in result.stdout


def test_doctor_counts_an_api_key_in_the_agents_env_as_logged_in(home: Path) -> None:
    init(home)
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "claude").write_text("#!/bin/sh\n")
    (bin_dir / "claude").chmod(0o755)
    dotenv = home / ".config/ductor/credentials/main/.env"
    dotenv.write_text("ANTHROPIC_API_KEY=sk-ant-example-key\n")
    dotenv.chmod(0o600)
    result = ductor(home, "doctor")
    line = next(x for x in result.stdout.splitlines() if "claude CLI" in x)
    assert line.startswith("[ok]"), result.stdout
    assert "ANTHROPIC_API_KEY in the agent's .env" in line
    assert "sk-ant-example-key" not in result.stdout + result.stderr


def test_doctor_names_each_setting_that_is_not_yet_acted_on(home: Path) -> None:
    init(home)
    config = home / ".config/ductor/agents/main.toml"
    config.write_text('language = "de"\n' + config.read_text())
    result = ductor(home, "doctor")
    lines = [x for x in result.stdout.splitlines() if "language" in x]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("[--] config main: ")
    assert "language is not yet acted on" in lines[0]


@pytest.mark.parametrize(
    ("provider", "model"),
    [("claude", "sonnet"), ("codex", "gpt-5.5"), ("gemini", "gemini-2.5-pro")],
)
def test_init_writes_a_default_model_the_pinned_cli_knows(
    home: Path, provider: str, model: str
) -> None:
    init(home, "--provider", provider)
    config = (home / ".config/ductor/agents/main.toml").read_text()
    assert f'model = "{model}"' in config


def test_init_refuses_a_model_the_cli_does_not_know_with_the_list(home: Path) -> None:
    result = ductor(
        home,
        "init",
        "main",
        "--non-interactive",
        "--no-enable",
        "--user-id",
        "42",
        "--telegram-token-file",
        "-",
        "--provider",
        "codex",
        "--model",
        "gpt-5-codex",
        input=TOKEN + "\n",
    )
    assert result.returncode == 2
    assert "the codex CLI has no model 'gpt-5-codex'" in result.stderr
    assert "gpt-5.5" in result.stderr
    assert not (home / ".config/ductor/agents/main.toml").exists()


def test_chat_with_an_agent_no_service_manager_can_start_says_how_to_run_it(
    home: Path, not_booted: Path
) -> None:
    init(home)
    result = ductor(home, "chat", "main", "-m", "hello", path_first=not_booted)
    assert result.returncode == 75, result.stderr
    assert "agent 'main' is not running, and no service manager can start it" in result.stderr
    assert "PID 1 is not systemd" in result.stderr
    assert "`ductor-agent --name main`" in result.stderr
    assert "systemctl --user start" not in result.stderr

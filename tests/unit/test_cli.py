"""The `ductor` command as a user runs it, against temporary directories (the systemd
side is covered by tests/systemd)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAEexampleexampleexampleexample_-xy"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def ductor(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
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


def init(home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return ductor(
        home,
        "init",
        "main",
        "--non-interactive",
        "--no-enable",
        "--user-id",
        "42,43",
        "--timezone",
        "Europe/Berlin",
        "--telegram-token-file",
        "-",
        *extra,
        input=TOKEN + "\n",
    )


def test_init_writes_config_credentials_and_workspace(home: Path) -> None:
    result = init(home)
    assert result.returncode == 0, result.stderr
    config = (home / ".config/ductor/agents/main.toml").read_text()
    assert "allowed_user_ids = [42, 43]" in config
    assert 'user_timezone = "Europe/Berlin"' in config
    token = home / ".config/ductor/credentials/main/telegram-token"
    assert token.read_text().strip() == TOKEN
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (home / "state/main/workspace/memory_system/MAINMEMORY.md").is_file()
    assert TOKEN not in result.stdout + result.stderr


def test_init_creates_a_matrix_agent_whose_config_loads(home: Path) -> None:
    password = "correct horse battery staple"
    result = ductor(
        home,
        "init",
        "mx",
        "--non-interactive",
        "--no-enable",
        "--transport",
        "matrix",
        "--homeserver",
        "https://matrix.example.org/",
        "--matrix-user-id",
        "@bot:example.org",
        "--matrix-allowed-user",
        "@me:example.org,@you:example.org",
        "--matrix-room",
        "#team:example.org",
        "--matrix-password-file",
        "-",
        "--timezone",
        "UTC",
        input=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    assert "in Matrix" in result.stdout
    secret = home / ".config/ductor/credentials/mx/matrix-password"
    assert secret.read_text().strip() == password
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ductor import config, paths; c = config.load_agent_config(paths.resolve(), 'mx');"
            " print(c.transports, c.matrix.homeserver, c.matrix.user_id,"
            " c.matrix.allowed_users, c.matrix.allowed_rooms, c.telegram.allowed_user_ids)",
        ],
        env={
            "HOME": str(home),
            "DUCTOR_STATE_DIR": str(home / "state"),
            "PYTHONPATH": str(REPO / "lib"),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == (
        "('matrix',) https://matrix.example.org @bot:example.org"
        " ('@me:example.org', '@you:example.org') ('#team:example.org',) ()"
    )


def test_init_of_a_matrix_agent_names_what_is_missing(home: Path) -> None:
    result = ductor(
        home, "init", "mx", "--no-enable", "--transport", "matrix", "--homeserver", "x", input=""
    )
    assert result.returncode == 2
    assert "--matrix-user-id" in result.stderr and "--matrix-password-file" in result.stderr
    assert "--telegram-token-file" not in result.stderr


def test_init_without_a_terminal_names_every_missing_value(home: Path) -> None:
    result = ductor(home, "init", "main", "--no-enable", input="")
    assert result.returncode == 2
    assert "--telegram-token-file" in result.stderr and "--user-id" in result.stderr


def test_init_refuses_a_token_of_the_wrong_shape_without_echoing_it(home: Path) -> None:
    result = ductor(
        home,
        "init",
        "--non-interactive",
        "--no-enable",
        "--user-id",
        "1",
        "--telegram-token-file",
        "-",
        input="not-a-token-at-all-secret\n",
    )
    assert result.returncode == 2
    assert "wrong format" in result.stderr
    assert "not-a-token-at-all-secret" not in result.stderr


def test_init_twice_refuses_to_overwrite_the_agent(home: Path) -> None:
    assert init(home).returncode == 0
    again = init(home)
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_agent_list_json_shows_provider_model_and_transports(home: Path) -> None:
    init(home, "--provider", "codex", "--model", "gpt-5.4")
    rows = json.loads(ductor(home, "agent", "list", "--json").stdout)
    assert rows[0]["name"] == "main"
    assert rows[0]["provider"] == "codex"
    assert rows[0]["model"] == "gpt-5.4"
    assert rows[0]["transports"] == "telegram"


def test_agent_add_description_is_shown_by_agent_list(home: Path) -> None:
    init(home, "--description", "answers about the house")
    config = (home / ".config/ductor/agents/main.toml").read_text()
    assert 'description = "answers about the house"' in config
    rows = json.loads(ductor(home, "agent", "list", "--json").stdout)
    assert rows[0]["description"] == "answers about the house"
    assert "answers about the house" in ductor(home, "agent", "list").stdout


def test_unknown_agent_is_a_usage_error_that_lists_known_agents(home: Path) -> None:
    init(home)
    result = ductor(home, "status", "nosuch")
    assert result.returncode == 2
    assert "known agents: main" in result.stderr


def test_doctor_names_file_key_and_line_of_a_broken_config_and_exits_78(home: Path) -> None:
    init(home)
    path = home / ".config/ductor/agents/main.toml"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "", "[streaming]", 'edit_interval_seconds = "fast"']) + "\n")
    result = ductor(home, "doctor", "main")
    assert result.returncode == 78
    assert f"{path}:{len(lines) + 3}: streaming.edit_interval_seconds" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_reports_bad_toml_syntax_with_its_line(home: Path) -> None:
    init(home)
    path = home / ".config/ductor/ductor.toml"
    path.write_text("language = 'en'\n[streaming\n")
    result = ductor(home, "doctor", "--json")
    assert result.returncode == 78
    checks = json.loads(result.stdout)["checks"]
    assert any(f"{path}:2" in c["detail"] for c in checks if c["level"] == "fail")


def test_doctor_flags_a_token_file_others_can_read_with_the_chmod_fix(home: Path) -> None:
    init(home)
    token = home / ".config/ductor/credentials/main/telegram-token"
    token.chmod(0o644)
    result = ductor(home, "doctor", "main")
    assert result.returncode != 0
    assert f"chmod 600 {token}" in result.stdout


def test_every_subcommand_has_help() -> None:
    for args in (
        ["--help"],
        ["init", "--help"],
        ["agent", "--help"],
        ["agent", "add", "--help"],
        ["status", "--help"],
        ["logs", "--help"],
        ["doctor", "--help"],
    ):
        result = subprocess.run(
            [sys.executable, str(REPO / "bin" / "ductor"), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, args
        assert "usage: ductor" in result.stdout


def test_init_on_a_terminal_asks_for_each_value_and_explains_where_to_get_it(
    home: Path,
) -> None:
    import pty
    import select
    import time

    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "DUCTOR_STATE_DIR": str(home / "state"),
    }
    pid, fd = pty.fork()
    if pid == 0:  # the child: ductor on a terminal
        os.execve(
            sys.executable,
            [sys.executable, str(REPO / "bin" / "ductor"), "init", "--no-enable"],
            env,
        )
    answers = [
        ("Bot token", TOKEN),
        ("User id(s)", "42"),
        ("Provider", "gemini"),
        ("Model", ""),
        ("Time zone", "Asia/Tokyo"),
    ]
    seen = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        last = seen.rsplit("\n", 1)[-1]
        if answers and last.startswith(answers[0][0]) and last.rstrip().endswith(":"):
            os.write(fd, (answers.pop(0)[1] + "\n").encode())
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert "@BotFather" in seen and "@userinfobot" in seen
    assert TOKEN not in seen  # the token prompt does not echo
    config = (home / ".config/ductor/agents/main.toml").read_text()
    assert 'provider = "gemini"' in config
    assert 'model = "gemini-2.5-pro"' in config
    assert 'user_timezone = "Asia/Tokyo"' in config


def test_agent_remove_keeps_state_unless_purged(home: Path) -> None:
    init(home)
    result = ductor(home, "agent", "remove", "main")
    assert result.returncode == 0, result.stderr
    assert not (home / ".config/ductor/agents/main.toml").exists()
    assert not (home / ".config/ductor/credentials/main").exists()
    assert (home / "state/main/workspace").is_dir()
    assert "kept state and workspace" in result.stdout
    init(home)
    assert ductor(home, "agent", "remove", "main", "--purge").returncode == 0
    assert not (home / "state/main").exists()


def test_doctor_calls_an_empty_token_file_empty_and_not_ok(home: Path) -> None:
    init(home)
    token = home / ".config/ductor/credentials/main/telegram-token"
    token.write_text("\n")
    result = ductor(home, "doctor", "main", "--json")
    checks = json.loads(result.stdout)["checks"]
    tokens = [c for c in checks if "telegram-token" in c["detail"]]
    assert [(c["level"], c["detail"]) for c in tokens] == [("fail", f"{token} is empty")]
    assert result.returncode == 1


def test_doctor_calls_a_fifo_token_not_a_regular_file_and_does_not_hang(home: Path) -> None:
    init(home)
    token = home / ".config/ductor/credentials/main/telegram-token"
    token.unlink()
    os.mkfifo(token, 0o600)
    result = ductor(home, "doctor", "main")  # a blocking open would hit the 60 s timeout
    assert f"[XX] credentials main: {token} is not a regular file" in result.stdout
    assert "telegram-token is missing" not in result.stdout
    assert result.returncode != 0


def test_a_doctor_warning_means_exit_1_and_never_everything_looks_fine(home: Path) -> None:
    import io

    from ductor.cli.context import Context
    from ductor.cli.doctor import Check, Level, report
    from ductor.paths import Mode, resolve

    out = io.StringIO()
    ctx = Context(paths=resolve(Mode.USER, env={"HOME": str(home)}), out=out)
    warned = [Check("systemd", Level.OK, "252"), Check("lingering", Level.WARN, "off", "fix it")]
    assert report(ctx, warned) == 1
    assert "[!!] lingering: off" in out.getvalue()
    assert "Everything looks fine" not in out.getvalue()
    assert "1 problem(s) found." in out.getvalue()
    out.truncate(0)
    assert report(ctx, warned[:1]) == 0
    assert "Everything looks fine." in out.getvalue()


def test_doctor_sees_the_credentials_a_system_unit_loads_as_the_manager_will() -> None:
    from dataclasses import dataclass

    from ductor.cli.doctor import loaded_credentials
    from ductor.paths import Mode
    from ductor.run import Result
    from ductor.units import Manager

    cat = (
        "# /etc/systemd/system/ductor-agent@.service\n[Service]\nExecStart=/x\n\n"
        "# /etc/systemd/system/ductor-agent@.service.d/20-system.conf\n[Service]\n"
        "LoadCredential=old:/nowhere\nLoadCredential=\n"
        "LoadCredential=dotenv:/etc/ductor/credentials/%I/.env\n"
    )

    @dataclass(frozen=True)
    class Files(Manager):
        def systemctl(self, *args: str, check: bool = True, timeout: float = 90) -> Result:
            return Result(("systemctl", *args), 0, cat, "")

    unit = "ductor-agent@my\\x2dbot.service"
    assert loaded_credentials(Files(Mode.SYSTEM), unit) == [
        "dotenv:/etc/ductor/credentials/my-bot/.env"
    ]

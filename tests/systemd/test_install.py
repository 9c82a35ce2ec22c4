"""install.sh, `ductor init`, `doctor`, `status` and the agent target, inside a real
systemd booted for the test (user manager of root, then the system manager)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

pytestmark = pytest.mark.systemd

SRC = "/opt/ductor-src"
TOKEN = "123456789:AAEexampleexampleexampleexample_-xy"
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/opt/wheelhouse"}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths in root's home inside the test system, spelled for the shell that runs them.
UNIT_DIR = "$HOME/.config/systemd/user"
CONFIG = "$HOME/.config/ductor"


def sh(
    systemd: Any,
    script: str,
    *,
    check: bool = True,
    user: bool = True,
    input: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    path = f"$HOME/.local/bin:{SYSTEM_PATH}" if user else SYSTEM_PATH
    env = {**OFFLINE, "XDG_RUNTIME_DIR": "/run/user/0"} if user else OFFLINE
    result: subprocess.CompletedProcess[str] = systemd.run(
        [
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            "bash",
            "-c",
            f'export PATH="{path}"; {script}',
        ],
        check=False,
        timeout=timeout,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script!r} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def home(systemd: Any) -> str:
    return str(sh(systemd, "echo $HOME").stdout.strip())


@pytest.fixture(scope="module")
def installed(systemd: Any) -> Any:
    sh(systemd, f"{SRC}/install.sh")
    return systemd


def test_user_install_puts_programs_units_and_example_config_in_place(installed: Any) -> None:
    out = sh(installed, f"ls {UNIT_DIR}; ls ~/.local/bin; ls {CONFIG}").stdout.split()
    for expected in (
        "ductor.target",
        "ductor@.target",
        "ductor-reload@.service",
        "ductor",
        "ductor.toml",
    ):
        assert expected in out
    assert sh(installed, "systemctl --user is-enabled ductor.target").stdout.strip() == "enabled"
    shebang = sh(installed, "head -1 ~/.local/bin/ductor").stdout.strip()
    assert shebang == f"#!{home(installed)}/.local/share/ductor/venv/bin/python"
    assert sh(installed, "ductor --version").stdout.strip().startswith("ductor ")


def test_user_install_enables_lingering_or_says_how(installed: Any) -> None:
    assert sh(installed, "test -e /var/lib/systemd/linger/$(id -un)", check=False).returncode == 0


def test_install_again_upgrades_in_place_and_keeps_the_users_config(installed: Any) -> None:
    sh(installed, f"echo '# my own note' >> {CONFIG}/ductor.toml")
    before = sh(installed, f"cd {UNIT_DIR} && find . -type f | sort | xargs sha256sum").stdout
    sh(installed, f"{SRC}/install.sh")
    after = sh(installed, f"cd {UNIT_DIR} && find . -type f | sort | xargs sha256sum").stdout
    assert before == after
    assert "# my own note" in sh(installed, f"cat {CONFIG}/ductor.toml").stdout


# What the README's first command printed (the agent fixture runs it).
FIRST_COMMAND: dict[str, str] = {}


@pytest.fixture(scope="module")
def agent(installed: Any) -> Any:
    # The README's first command: install (again: an upgrade) and create the agent.
    FIRST_COMMAND["stdout"] = sh(
        installed,
        f"{SRC}/install.sh --init main --non-interactive --user-id 42 --timezone Europe/Berlin"
        " --telegram-token-file -",
        input=TOKEN + "\n",
    ).stdout
    return installed


def test_the_package_is_installed_by_pip_from_pyproject_with_its_commands(
    installed: Any,
) -> None:
    venv = "~/.local/share/ductor/venv"
    shown = sh(installed, f"{venv}/bin/python -m pip show ductor").stdout
    assert "Name: ductor" in shown
    assert sh(installed, f"{venv}/bin/ductor --version").stdout.startswith("ductor ")
    # pip built it from a copy: the checkout gets no build/ or egg-info
    assert sh(installed, f"ls -d {SRC}/build {SRC}/lib/*.egg-info", check=False).returncode != 0


def test_the_first_command_starts_the_agent_and_says_how_to_talk_to_it_and_watch_it(
    agent: Any,
) -> None:
    out = FIRST_COMMAND["stdout"]
    assert "Started ductor@main.target." in out
    assert "ductor logs main -f" in out and "ductor chat main" in out
    assert "write to your bot in Telegram" in out
    agent.wait_until(
        lambda: (
            (
                sh(agent, "systemctl --user is-active ductor-agent@main.socket", check=False).stdout
            ).strip()
            == "active"
        ),
        timeout=30,
    )


def test_init_writes_config_and_a_private_token_and_enables_the_target(agent: Any) -> None:
    config = sh(agent, f"cat {CONFIG}/agents/main.toml").stdout
    assert "42" in config and "Europe/Berlin" in config
    assert TOKEN not in config
    mode = sh(agent, f"stat -c '%a %s' {CONFIG}/credentials/main/telegram-token").stdout.split()
    assert mode[0] == "600"
    assert sh(agent, "systemctl --user is-enabled ductor@main.target").stdout.strip() == "enabled"
    assert sh(agent, "ls ~/.config/ductor/main/workspace/memory_system").stdout.strip() == (
        "MAINMEMORY.md"
    )


def test_the_token_never_appears_in_the_journal(agent: Any) -> None:
    assert TOKEN not in agent.run(["journalctl", "--no-pager", "-o", "cat"], check=False).stdout


def test_starting_the_agent_target_activates_what_is_installed(agent: Any) -> None:
    sh(agent, "systemctl --user start ductor@main.target")
    state = sh(agent, "systemctl --user is-active ductor@main.target ductor-config@main.path")
    assert state.stdout.split() == ["active", "active"]


def test_status_lists_the_agents_units_from_systemctl_show(agent: Any) -> None:
    sh(agent, "systemctl --user start ductor@main.target")
    data = json.loads(sh(agent, "ductor status --json").stdout)
    units = {u["unit"]: u for u in data["units"]}
    assert units["ductor@main.target"]["active"] == "active"
    assert units["ductor-config@main.path"]["active"] == "active"
    assert all(u["agent"] == "main" for u in data["units"])
    table = sh(agent, "ductor status main").stdout
    assert "ductor@main.target" in table and "active" in table


def test_ductor_alone_shows_the_running_agent_and_how_to_talk_to_it(agent: Any) -> None:
    sh(agent, "systemctl --user start ductor@main.target")
    out = sh(agent, "ductor").stdout
    row = next(line for line in out.splitlines() if line.startswith("main "))
    assert row.split()[1:3] == ["active", "enabled"]
    assert "ductor chat main" in out and "ductor logs main -f" in out


def test_doctor_reports_the_missing_cli_with_a_fix_instead_of_crashing(agent: Any) -> None:
    result = sh(agent, "ductor doctor --json", check=False)
    assert result.returncode == 1, result.stderr
    checks = json.loads(result.stdout)["checks"]
    claude = next(c for c in checks if c["name"] == "claude CLI")
    assert claude["level"] == "fail"
    assert "npm install" in claude["fix"]
    names = {c["name"]: c["level"] for c in checks}
    assert names["config main"] == "ok"
    assert names["units installed"] == "ok"
    assert names["agent main"] == "ok"
    text = sh(agent, "ductor doctor", check=False).stdout
    assert "fix: npm install -g @anthropic-ai/claude-code" in text


def test_a_broken_config_is_refused_with_file_key_and_line(agent: Any) -> None:
    path = f"{CONFIG}/agents/main.toml".replace("$HOME", home(agent))
    original = sh(agent, f"cat {path}").stdout
    try:
        sh(agent, f"printf '\\n[streaming]\\nedit_interval_seconds = \"fast\"\\n' >> {path}")
        line = len(original.splitlines()) + 3
        result = sh(agent, "ductor doctor", check=False)
        assert result.returncode == 78
        assert f"{path}:{line}" in result.stdout
        assert "streaming.edit_interval_seconds" in result.stdout
        assert "Traceback" not in result.stdout + result.stderr
        # The .path unit noticed the save; the reload refused it and said why.
        agent.wait_until(
            lambda: (
                "edit_interval_seconds" in sh(agent, "ductor logs main -n 200", check=False).stdout
            ),
            timeout=30,
        )
        failed = sh(
            agent, "systemctl --user show -p Result,ExecMainStatus ductor-reload@main.service"
        )
        assert "ExecMainStatus=78" in failed.stdout
    finally:
        sh(agent, f"cat > {path} <<'EOF'\n{original}EOF")


def test_logs_shows_the_agents_units(agent: Any) -> None:
    out = sh(agent, "ductor logs main -n 100", check=False).stdout
    assert "ductor-reload" in out or "ductor agent main" in out


def test_install_stops_rather_than_replace_another_program_called_ductor(agent: Any) -> None:
    foreign = "#!/bin/sh\necho 'the original ductor'\n"
    sh(agent, "mv ~/.local/bin/ductor ~/ductor.ours")
    try:
        sh(agent, f"cat > ~/.local/bin/ductor <<'EOF'\n{foreign}EOF\nchmod +x ~/.local/bin/ductor")
        refused = sh(agent, f"{SRC}/install.sh", check=False)
        assert refused.returncode == 1
        assert "another program by that name" in refused.stderr
        assert "--force" in refused.stderr
        assert sh(agent, "~/.local/bin/ductor").stdout.strip() == "the original ductor"
        forced = sh(agent, f"{SRC}/install.sh --force")
        assert "replacing" in forced.stderr
        assert sh(agent, "ductor --version").stdout.startswith("ductor ")
    finally:
        sh(agent, "rm -f ~/ductor.ours")


def test_uninstall_removes_programs_and_units_but_keeps_config(agent: Any) -> None:
    sh(agent, f"{SRC}/install.sh --uninstall")
    assert sh(agent, "test -e ~/.local/bin/ductor", check=False).returncode == 1
    assert sh(agent, f"test -e {UNIT_DIR}/ductor@.target", check=False).returncode == 1
    assert sh(agent, f"test -e {CONFIG}/agents/main.toml").returncode == 0
    # and a fresh install picks the agent up again
    sh(agent, f"{SRC}/install.sh")
    assert "main" in sh(agent, "ductor agent list").stdout


def test_system_install_runs_agents_under_a_dedicated_account(installed: Any) -> None:
    sh(installed, f"{SRC}/install.sh --system", user=False)
    sh(installed, "id ductor", user=False)
    sh(
        installed,
        "ductor --system init ops --non-interactive --user-id 7 --timezone UTC"
        " --telegram-token-file -",
        user=False,
        input=TOKEN + "\n",
    )
    assert (
        sh(
            installed, "stat -c %a /etc/ductor/credentials/ops/telegram-token", user=False
        ).stdout.strip()
        == "600"
    )
    sh(installed, "systemctl start ductor@ops.target", user=False)
    data = json.loads(sh(installed, "ductor --system status --json", user=False).stdout)
    active = {u["unit"]: u["active"] for u in data["units"]}
    assert active["ductor@ops.target"] == "active"
    assert active["ductor-config@ops.path"] == "active"
    # a config change is validated and applied by the system reload unit
    sh(installed, "sed -i '1i language = \"de\"' /etc/ductor/agents/ops.toml", user=False)
    installed.wait_until(
        lambda: (
            "config of ops is valid"
            in sh(
                installed,
                "journalctl -u ductor-reload@ops.service --no-pager -o cat",
                user=False,
                check=False,
            ).stdout
        ),
        timeout=30,
    )


def test_system_purge_removes_programs_units_config_state_and_the_account(installed: Any) -> None:
    sh(installed, f"{SRC}/install.sh --system --purge", user=False)
    for path in (
        "/etc/ductor",
        "/var/lib/ductor",
        "/opt/ductor",
        "/usr/local/bin/ductor",
        "/etc/systemd/system/ductor@.target",
    ):
        assert sh(installed, f"test -e {path}", user=False, check=False).returncode == 1, path
    assert sh(installed, "id ductor", user=False, check=False).returncode != 0
    # the user installation is untouched
    assert sh(installed, "ductor --version").returncode == 0


def test_uninstall_then_purge_leave_nothing_of_ductor_behind(installed: Any) -> None:
    where = "ls -d ~/.config/ductor/main/workspace ~/.local/state/ductor/main/workspace"
    workspace = sh(installed, f"{where} 2>/dev/null", check=False).stdout.split()[0]
    transcripts = "~/.claude/projects/" + "".join(c if c.isalnum() else "-" for c in workspace)
    sh(installed, "systemctl --user start ductor@main.target")
    sh(installed, "ductor cron add main daily --schedule '0 8 * * *' --prompt hi")
    sh(installed, f"mkdir -p {transcripts} ~/.cache/ductor/models && touch {transcripts}/a.jsonl")
    wants = f"ls {UNIT_DIR}/*.wants/ 2>/dev/null | grep ductor"
    assert "ductor-cron@main:daily.timer" in sh(installed, wants).stdout

    removed = sh(installed, f"{SRC}/install.sh --uninstall").stdout
    assert "Kept your configuration" in removed
    assert sh(installed, wants, check=False).stdout == ""  # no link to a unit that is gone
    listed = sh(installed, "systemctl --user list-units --all --plain --no-legend 'ductor*'")
    assert listed.stdout.strip() == ""  # nothing not-found, failed or left running
    assert sh(installed, "ls -d /run/user/0/ductor ~/.cache/ductor", check=False).stdout == ""
    assert sh(installed, f"test -e {CONFIG}/agents/main.toml").returncode == 0

    since = sh(installed, "date +%s").stdout.strip()
    sh(installed, f"{SRC}/install.sh")  # the agent comes back with its config; then purge
    sh(installed, "systemctl --user start ductor@main.target")
    purged = sh(installed, f"{SRC}/install.sh --purge").stdout
    assert "Left on purpose" in purged
    assert "Turned lingering off" in purged  # install.sh had turned it on
    for path in (CONFIG, "~/.local/share/ductor", "~/.local/state/ductor", "~/.cache/ductor"):
        assert sh(installed, f"test -e {path}", check=False).returncode == 1, path
    assert sh(installed, f"test -e {transcripts}", check=False).returncode == 1
    assert sh(installed, "test -e /var/lib/systemd/linger/root", check=False).returncode == 1
    assert sh(installed, f"{wants}", check=False).stdout == ""
    # deleting the config triggered no reload that failed (the .path units went first)
    journal = installed.run(
        ["journalctl", "--no-pager", "-o", "cat", f"--since=@{since}"], check=False
    ).stdout
    assert not [line for line in journal.splitlines() if "ductor-reload@" in line and "ail" in line]

    # and a purge after an uninstall still finds the cache and config (no venv to ask)
    sh(installed, "mkdir -p ~/.cache/ductor/x ~/.config/ductor/agents")
    sh(installed, f"{SRC}/install.sh --purge")
    assert sh(installed, "ls -d ~/.cache/ductor ~/.config/ductor", check=False).stdout == ""
    sh(installed, f"{SRC}/install.sh")  # the modules after this one find ductor installed

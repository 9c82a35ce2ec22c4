"""The harness that boots a real systemd: it comes up clean, user units work, and the host
is left exactly as it was, whatever happens to the test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from tests.systemd.harness import (
    REPO_ROOT,
    BootedSystemd,
    InsideCommandError,
    remove_cgroup,
)

pytestmark = pytest.mark.systemd

# A unit that exits at once can lose its unit name in the journal: journald reads the
# sender's cgroup only when it gets to the stream, and by then the process may be gone
# (systemd's own tests do the same). --sync waits until journald has read everything.
ECHO_THEN_SYNC = 'echo "$1"; journalctl --sync'

RUN_PIPED = ("systemd-run", "--wait", "--pipe", "--quiet")


def host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def processes_in_pid_namespace_of(pid: int) -> set[int]:
    namespace = os.readlink(f"/proc/{pid}/ns/pid")
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns/pid") == namespace:
                    found.add(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return found


def wait_for_exit(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while process_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- prerequisites -----------------------------------------------------------------------


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_prerequisite_skips_but_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    from tests.systemd import conftest

    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="no unshare here"):
        conftest.skip_or_fail("no unshare here")


def test_prerequisites_name_root_when_not_root() -> None:
    # nobody may not enter the checkout (a clone in root's 0700 home, the venv in it): it
    # runs a copy of the harness (stdlib only) with the interpreter the venv points to.
    folder = Path(tempfile.mkdtemp(prefix="ductor-harness-"))
    try:
        folder.chmod(0o755)
        shutil.copy(REPO_ROOT / "tests" / "systemd" / "harness.py", folder / "harness.py")
        (folder / "harness.py").chmod(0o644)
        python = os.path.realpath(sys.executable)
        code = "import harness; print(harness.missing_prerequisites())"
        found = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        shutil.rmtree(folder)
    assert "root" in found


# --- the shared boot ----------------------------------------------------------------------


def test_boot_reports_running_with_no_failed_units(systemd: BootedSystemd) -> None:
    assert systemd.state == "running"
    assert systemd.failed_units == []
    assert systemd.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert systemd.run(["systemctl", "--failed", "--plain", "--no-legend"]).stdout == ""


def test_the_system_has_no_network_but_loopback(systemd: BootedSystemd) -> None:
    links = systemd.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def test_user_manager_of_root_runs_and_systemctl_user_works(systemd: BootedSystemd) -> None:
    assert systemd.run(["systemctl", "is-system-running"], user=True).stdout.strip() == "running"
    environment = systemd.run(["systemctl", "show-environment"], user=True).stdout
    assert "HOME=/root" in environment.splitlines()


def test_a_user_unit_file_copied_in_starts_and_logs(systemd: BootedSystemd, tmp_path: Path) -> None:
    name = f"harness-{uuid.uuid4().hex[:8]}.service"
    token = uuid.uuid4().hex
    (tmp_path / name).write_text(
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart=/bin/sh -c '{ECHO_THEN_SYNC.replace('$', '$$')}' sh {token}\n"
    )
    home = systemd.run(["sh", "-c", 'echo "$HOME"']).stdout.strip()
    inside = f"{home}/.config/systemd/user/{name}"
    systemd.copy_in(tmp_path / name, inside)
    try:
        systemd.run(["systemctl", "daemon-reload"], user=True)
        systemd.run(["systemctl", "start", name], user=True)
        assert systemd.run(["systemctl", "is-active", name], user=True).stdout.strip() == "active"
        systemd.wait_until(
            lambda: token in systemd.journal(unit=name, user=True), what=f"{token} in journal"
        )
    finally:
        systemd.run(["systemctl", "stop", name], user=True, check=False)
        systemd.run(["rm", "-f", inside])
        systemd.run(["systemctl", "daemon-reload"], user=True)


def test_systemd_run_user_wait_with_private_users_runs_in_a_user_namespace(
    systemd: BootedSystemd,
) -> None:
    assert systemd.run(["systemd-run", "--wait", "-p", "PrivateUsers=yes", "true"], user=True)
    uid_map = systemd.run(
        [*RUN_PIPED, "-p", "PrivateUsers=yes", "cat", "/proc/self/uid_map"],
        user=True,
    ).stdout.split()
    assert uid_map == ["0", "0", "1"]  # only root itself is mapped, not every uid


def test_load_credential_reaches_a_user_unit(systemd: BootedSystemd) -> None:
    # The harness makes / a shared mount; without that, systemd 252 hands units an empty
    # $CREDENTIALS_DIRECTORY and says nothing.
    out = systemd.run(
        [
            *RUN_PIPED,
            "-p",
            "PrivateUsers=yes",
            "-p",
            "LoadCredential=hostname:/etc/hostname",
            "-p",
            "SetCredential=word:hello",
            "sh",
            "-c",
            'cat "$CREDENTIALS_DIRECTORY/hostname" "$CREDENTIALS_DIRECTORY/word"',
        ],
        user=True,
    ).stdout.split()
    assert out == [systemd.read_text("/etc/hostname").strip(), "hello"]


def test_transient_unit_output_shows_up_in_journal(systemd: BootedSystemd) -> None:
    token = uuid.uuid4().hex
    unit = f"echo-{uuid.uuid4().hex[:8]}.service"
    # the unit's own output line, not systemd's "Started ..." that quotes its command line
    said = rf"sh\[\d+\]: said {token}$"
    cursor = systemd.cursor()
    echo = ["sh", "-c", ECHO_THEN_SYNC, "sh", f"said {token}"]
    systemd.run(["systemd-run", "--wait", f"--unit={unit}", *echo])
    # By its unique text, not by unit: under load journald may read the cgroup of a
    # process that already exited too late to attribute the line to its unit.
    systemd.wait_until(
        lambda: systemd.journal(since_cursor=cursor, grep=said),
        timeout=60,
        what=f"the output of {unit} in the journal",
    )
    assert len(systemd.journal(grep=said).splitlines()) == 1
    assert token not in systemd.journal(since_cursor=systemd.cursor())


def test_user_transient_unit_output_shows_up_in_user_journal(systemd: BootedSystemd) -> None:
    token = uuid.uuid4().hex
    unit = f"echo-{uuid.uuid4().hex[:8]}.service"
    systemd.run(
        ["systemd-run", "--wait", f"--unit={unit}", "sh", "-c", ECHO_THEN_SYNC, "sh", token],
        user=True,
    )
    systemd.wait_until(
        lambda: systemd.journal(unit=unit, user=True, grep=rf"sh\[\d+\]: {token}$"),
        what=f"the output of the user unit {unit} in the journal",
    )


def test_a_failing_command_reports_its_output_and_the_journal(systemd: BootedSystemd) -> None:
    with pytest.raises(InsideCommandError) as raised:
        systemd.run(["sh", "-c", "echo to-stderr >&2; exit 3"])
    assert raised.value.returncode == 3
    message = str(raised.value)
    assert "to-stderr" in message and "last journal lines" in message
    assert systemd.run(["false"], check=False).returncode == 1


def test_a_command_that_times_out_is_killed_inside(systemd: BootedSystemd) -> None:
    marker = f"sleep-{uuid.uuid4().hex[:8]}"
    with pytest.raises(subprocess.TimeoutExpired):
        systemd.run(["bash", "-c", f"exec -a {marker} sleep 60"], timeout=0.5)
    systemd.wait_until(["sh", "-c", f"! pgrep -f ^{marker}"], timeout=5, what=f"{marker} gone")


def test_repository_and_wheelhouse_are_inside_and_install_offline(
    systemd: BootedSystemd,
) -> None:
    listing = systemd.run(["ls", "-A", "/opt/ductor-src"]).stdout.split()
    assert {"pyproject.toml", "lib", "requirements", "tests"} <= set(listing)
    assert not {".venv", ".git", ".cache"} & set(listing)
    assert systemd.run(["find", "/opt/ductor-src", "-name", "__pycache__"]).stdout == ""
    # Every pinned runtime package resolves from the wheelhouse alone: there is no network.
    systemd.run(
        [
            "/usr/bin/python3",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-index",
            "--find-links=/opt/wheelhouse",
            "--dest=/tmp/downloaded",
            "--requirement=/opt/ductor-src/requirements/runtime.lock",
        ],
        env={"PIP_CONFIG_FILE": "/dev/null"},
    )


# --- boots of their own -------------------------------------------------------------------


def test_host_tmp_survives_a_boot_and_the_inside_tmp_stays_private() -> None:
    fd, name = tempfile.mkstemp(prefix="ductor-host-marker-", dir="/tmp")
    os.close(fd)
    host_marker = Path(name)
    inside_marker = Path(f"/tmp/ductor-inside-marker-{uuid.uuid4().hex}")
    try:
        with BootedSystemd() as booted:
            booted.run(["touch", str(inside_marker)])
            assert not inside_marker.exists()
            seen = booted.run(["test", "-e", str(host_marker)], check=False)
            assert seen.returncode == 1  # the host's /tmp is not even visible inside
        assert host_marker.exists()
        assert not inside_marker.exists()
    finally:
        host_marker.unlink(missing_ok=True)


def test_teardown_leaves_no_process_mount_or_cgroup_behind() -> None:
    booted = BootedSystemd()
    with booted:
        pid, cgroup, work_dir = booted.pid, booted.cgroup, booted.work_dir
        assert pid is not None and cgroup is not None and work_dir is not None
        booted.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])  # a straggler
        processes = processes_in_pid_namespace_of(pid)
        assert len(processes) > 3  # systemd, journald, dbus, logind, the sleep...
        assert str(work_dir) not in host_mounts()  # its mounts never reach the host
    assert not {p for p in processes if process_exists(p)}
    assert not cgroup.exists()
    assert str(work_dir) not in host_mounts()
    assert not work_dir.exists()
    assert booted.state == "stopped"


def test_teardown_kills_a_system_that_does_not_power_off_in_time() -> None:
    booted = BootedSystemd().boot()
    pid = booted.pid
    assert pid is not None
    try:
        booted.run(
            [
                "systemd-run",
                "--unit=stubborn",
                "-p",
                "TimeoutStopSec=infinity",
                "bash",
                "-c",
                "trap '' TERM; while :; do sleep 1; done",
            ]
        )
        booted.wait_until(["systemctl", "is-active", "--quiet", "stubborn.service"])
    finally:
        started = time.monotonic()
        booted.teardown(timeout=1)
    assert time.monotonic() - started < 10
    assert not process_exists(pid)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_teardown_happens_when_the_body_raises(error: type[BaseException]) -> None:
    booted = BootedSystemd()
    with pytest.raises(error, match="in the test body"), booted:
        pid = booted.pid
        raise error("in the test body")
    assert pid is not None and not process_exists(pid)
    assert booted.cgroup is None and booted.work_dir is None


def test_killing_the_test_runner_with_sigkill_stops_systemd() -> None:
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                sys.path.insert(0, {str(REPO_ROOT)!r})
                from tests.systemd.harness import BootedSystemd
                booted = BootedSystemd().boot()
                print(booted.pid, booted.cgroup, booted.work_dir, flush=True)
                time.sleep(300)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    pid_text, cgroup, work_dir = runner.stdout.readline().split()
    pid = int(pid_text)
    try:
        assert process_exists(pid)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        assert wait_for_exit(pid), f"systemd {pid} still runs after its test runner was killed"
    finally:
        if not wait_for_exit(pid, 1):
            os.kill(pid, signal.SIGKILL)
        remove_cgroup(Path(cgroup))  # nobody was left to remove these
        shutil.rmtree(work_dir, ignore_errors=True)

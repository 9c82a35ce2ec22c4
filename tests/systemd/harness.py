"""Boot a real systemd for tests, inside private namespaces on an overlay of this machine.

The host is never touched: systemd runs as PID 1 of new PID, mount, UTS, IPC, network and
cgroup namespaces; its root is an overlay whose lower layer is the host's `/` and whose
upper layer is a tmpfs that exists only in the private mount namespace; `/run`, `/tmp` and
`/dev` are fresh; `/sys` and `/proc/sys` are read-only; its cgroups are a subtree of our
own. Stopping it (or killing it) drops the namespaces and with them every mount.

    with BootedSystemd() as sd:            # boots, waits for "running"
        sd.start_user_manager()            # user@0.service, for `systemctl --user`
        sd.run(["systemctl", "is-system-running"])
        print(sd.journal(unit="dbus.service"))

Only the standard library is used, so the module also works without pytest, and it is
itself the program that sets up the namespaces (`python3 harness.py --inner ...`). See
docs/testing.md.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time
import tomllib
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

SYSTEMD = "/lib/systemd/systemd"
HOST_PYTHON = "/usr/bin/python3"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Units that must not run in a test boot: they talk to hardware or the network, touch
#: state shared with the host kernel, or just make noise and cost time. Runtime masks
#: (symlinks to /dev/null in /run/systemd/system) in the private /run.
DEFAULT_MASKED_UNITS: tuple[str, ...] = (
    # login prompts: there is no terminal to put them on
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "console-getty.service",
    # time and network: the network namespace is empty, the clock belongs to the host
    "systemd-timesyncd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    # services and housekeeping of this machine that have no place in a test boot
    "postgresql.service",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "systemd-tmpfiles-clean.timer",
    # kernel file systems that are global to the host kernel: nothing here needs them
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
)

#: Set to 1 to keep a booted systemd alive at teardown and print how to enter it.
KEEP_ENV = "DUCTOR_TEST_KEEP"
USER_RUNTIME_DIR = "/run/user/0"
#: Tools that take --user; run(..., user=True) adds it to them.
USER_AWARE_TOOLS = frozenset(
    {"systemctl", "systemd-run", "journalctl", "busctl", "systemd-analyze", "systemd-cgls"}
)
#: The environment of commands run inside: a root login shell's, not the test runner's.
INSIDE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
USER_MANAGER_ENV: Mapping[str, str] = {
    "XDG_RUNTIME_DIR": USER_RUNTIME_DIR,
    "DBUS_SESSION_BUS_ADDRESS": f"unix:path={USER_RUNTIME_DIR}/bus",
}
STALE_PREFIX = "ductor-test-"  # + PID of the test runner + counter
TAR_EXTRACT = ("tar", "--extract", "--file=-", "--directory=/")
#: Capabilities dropped from everything inside: loading kernel modules and setting the
#: clock would change the host, whatever namespace they come from.
DROPPED_CAPABILITIES = ("sys_module", "sys_time")
# glibc's SIGRTMIN+4: systemd's "power off now, cleanly".
POWEROFF_SIGNAL = signal.SIGRTMIN + 4


class HarnessError(RuntimeError):
    """The harness could not do what it was asked; the message says what and why."""


class BootError(HarnessError):
    """systemd did not come up; the message carries the boot output and the journal."""


class InsideCommandError(subprocess.CalledProcessError):
    """A command run inside exited non-zero (run(..., check=True))."""

    def __init__(
        self,
        returncode: int,
        cmd: Sequence[str],
        output: str,
        stderr: str,
        journal_tail: str,
    ) -> None:
        super().__init__(returncode, list(cmd), output, stderr)
        self.journal_tail = journal_tail

    def __str__(self) -> str:
        return (
            f"inside the test systemd, {' '.join(self.cmd)!r} exited {self.returncode}\n"
            f"--- stdout\n{_tail(self.output, 40)}\n--- stderr\n{_tail(self.stderr, 40)}\n"
            f"--- last journal lines\n{self.journal_tail}"
        )


def _tail(text: str | None, lines: int) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


# --- prerequisites ------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this machine lacks to boot a test systemd, one human line each (empty: ready)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the harness mounts and unshares; run the tests as root)")
    for tool in ("unshare", "nsenter", "setpriv", "mount", "umount", "pivot_root"):
        if shutil.which(tool) is None:
            missing.append(f"the {tool} command (apt-get install util-linux mount)")
    if not os.access(SYSTEMD, os.X_OK):
        missing.append(f"{SYSTEMD} (apt-get install systemd)")
    filesystems = Path("/proc/filesystems").read_text()
    if not re.search(r"\boverlay$", filesystems, re.MULTILINE):
        missing.append("the overlay file system (modprobe overlay)")
    if not Path("/proc/self/ns/cgroup").exists():
        missing.append("cgroup namespaces (a kernel with CONFIG_CGROUPS and namespaces)")
    if _cgroup2_mount() is None:
        missing.append("a mounted cgroup2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
    return missing


# --- cgroups ------------------------------------------------------------------------------


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(fields[0].split()[4])
    return None


def _own_cgroup2() -> Path:
    mount = _cgroup2_mount()
    if mount is None:
        raise HarnessError("no cgroup2 hierarchy is mounted")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    raise HarnessError("/proc/self/cgroup has no cgroup2 entry")


def remove_cgroup(path: Path) -> None:
    """Remove a cgroup subtree, killing what is left in it first."""
    if not path.is_dir():
        return
    kill = path / "cgroup.kill"
    if kill.exists() and (path / "cgroup.events").read_text().find("populated 1") >= 0:
        kill.write_text("1")
    deadline = time.monotonic() + 5
    while True:
        try:
            for directory in sorted(
                (p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts)
            )[::-1]:
                directory.rmdir()
            path.rmdir()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise HarnessError(f"cannot remove cgroup {path}: {error}") from error
            time.sleep(0.05)


def _sweep_stale_cgroups(parent: Path, min_age: float = 120.0) -> None:
    """Remove empty cgroups of earlier runs that could not clean up (runner was killed)."""
    for candidate in parent.glob(f"{STALE_PREFIX}*"):
        with contextlib.suppress(OSError, HarnessError):
            events = (candidate / "cgroup.events").read_text()
            if "populated 0" in events and time.time() - candidate.stat().st_mtime > min_age:
                remove_cgroup(candidate)


def _sweep_stale_work_dirs(min_age: float = 120.0) -> None:
    """Remove work directories (logs and an empty mount point) of killed test runners."""
    for candidate in Path(tempfile.gettempdir()).glob(f"{STALE_PREFIX}*"):
        runner = candidate.name.removeprefix(STALE_PREFIX).split("-", 1)[0]
        with contextlib.suppress(OSError):
            if (
                runner.isdigit()
                and not Path(f"/proc/{runner}").exists()
                and time.time() - candidate.stat().st_mtime > min_age
            ):
                shutil.rmtree(candidate)


# --- the booted system --------------------------------------------------------------------

_live: weakref.WeakSet[BootedSystemd] = weakref.WeakSet()


@atexit.register
def _teardown_all_at_exit() -> None:
    for booted in list(_live):
        with contextlib.suppress(Exception):
            booted.teardown()


class BootedSystemd:
    """A systemd booted in private namespaces. Context manager: boots on entry, tears down on
    exit whatever happened. Everything runs as root inside."""

    _counter = 0

    def __init__(
        self,
        *,
        masked_units: Iterable[str] = DEFAULT_MASKED_UNITS,
        target: str = "multi-user.target",
    ) -> None:
        self.masked_units = tuple(masked_units)
        self.target = target
        BootedSystemd._counter += 1
        #: Names its cgroup and its work directory (logs, the empty mount point).
        self.name = f"{STALE_PREFIX}{os.getpid()}-{BootedSystemd._counter}"
        self.work_dir: Path | None = None
        self.cgroup: Path | None = None
        self.pid: int | None = None
        self.failed_units: list[str] = []
        self.state = "not booted"
        self.boot_seconds: float | None = None
        #: What the namespace setup and systemd printed; filled at teardown.
        self.boot_output = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._console: _Console | None = None
        self._nsenter = shutil.which("nsenter") or "nsenter"

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> BootedSystemd:
        if self._process is None:
            self.boot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def boot(self, timeout: float = 60.0) -> BootedSystemd:
        """Start systemd and wait until `systemctl is-system-running --wait` says running or
        degraded (then `failed_units` names the culprits). Starts dbus.socket, which bus
        clients (systemd-run --wait, loginctl, busctl) need. Raises BootError, tearing down
        what was started, if it does not come up within `timeout` seconds."""
        if self._process is not None:
            raise HarnessError("this BootedSystemd was already booted; make a new one")
        missing = missing_prerequisites()
        if missing:
            raise HarnessError("cannot boot a test systemd, missing: " + "; ".join(missing))
        started = time.monotonic()
        try:
            self._start(timeout)
            self._wait_until_up(started + timeout)
            self.run(["systemctl", "start", "dbus.socket"])
        except BaseException as error:
            detail = self._failure_report() if isinstance(error, Exception) else ""
            self.teardown()
            if isinstance(error, HarnessError | subprocess.SubprocessError):
                raise BootError(f"{error}\n{detail}") from error
            raise
        self.boot_seconds = time.monotonic() - started
        return self

    def _start(self, timeout: float) -> None:
        _sweep_stale_work_dirs()
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        base = self.work_dir / "base"
        base.mkdir()
        self._console = _Console(self.work_dir / "console.log")
        parent = _own_cgroup2()
        _sweep_stale_cgroups(parent)
        self.cgroup = parent / self.name
        self.cgroup.mkdir()
        procs = str(self.cgroup / "cgroup.procs")

        def enter_cgroup() -> None:  # runs in the child between fork and exec
            with open(procs, "w") as handle:
                handle.write("0")

        argv = [
            "setpriv",
            # if the test runner dies, even by SIGKILL, unshare dies, and with it (see
            # --kill-child) systemd and the whole namespace
            "--pdeathsig=KILL",
            "--bounding-set=" + ",".join(f"-{cap}" for cap in DROPPED_CAPABILITIES),
            "unshare",
            "--fork",
            "--kill-child=KILL",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--cgroup",
            sys.executable,
            "-I",
            str(Path(__file__).resolve()),
            "--inner",
            str(base),
            self._console.tty,
            self.target,
            *self.masked_units,
        ]
        with open(self.work_dir / "boot.log", "wb") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=enter_cgroup,  # noqa: PLW1509 - the runner is single-threaded here
                env={"PATH": INSIDE_ENV["PATH"], "LANG": "C.UTF-8"},
            )
        _live.add(self)
        self.pid = self._wait_for_systemd_pid(time.monotonic() + timeout)

    def _wait_for_systemd_pid(self, deadline: float) -> int:
        """The host PID of systemd: unshare's child, once it has exec'ed systemd."""
        assert self._process is not None
        children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise HarnessError(
                    f"the namespace setup exited with status {self._process.returncode}"
                )
            with contextlib.suppress(OSError, ValueError, IndexError):
                child = int(children.read_text().split()[0])
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return child
            time.sleep(0.02)
        raise HarnessError("systemd was not started in time")

    def _wait_until_up(self, deadline: float) -> None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(f"systemd is not up in time (last state: {self.state})")
            if self._process is not None and self._process.poll() is not None:
                raise HarnessError(f"systemd exited with status {self._process.returncode}")
            try:
                result = self.run(
                    ["systemctl", "is-system-running", "--wait"],
                    check=False,
                    timeout=remaining,
                )
            except subprocess.TimeoutExpired:
                self.state = "starting (timed out)"
                continue
            self.state = result.stdout.strip() or result.stderr.strip()
            if self.state in ("running", "degraded"):
                break
            if self.state in ("maintenance", "stopping"):
                raise HarnessError(f"systemd reports {self.state!r} while booting")
            time.sleep(0.05)  # not reachable yet: no /run/systemd/private socket
        listed = self.run(["systemctl", "--failed", "--plain", "--no-legend"], check=False)
        self.failed_units = [line.split()[0] for line in listed.stdout.splitlines() if line]

    def start_user_manager(self, timeout: float = 30.0) -> None:
        """Start the user manager of root (user@0.service, as logind would for a lingering
        user) and wait until it is running. Lingering is not enabled: code under test that
        enables it (loginctl enable-linger) finds this manager already running."""
        self.run(["systemctl", "start", "user@0.service"], timeout=timeout)
        state = self.run(
            ["systemctl", "is-system-running", "--wait"], user=True, check=False, timeout=timeout
        ).stdout.strip()
        if state not in ("running", "degraded"):
            raise HarnessError(
                f"the user manager of root reports {state!r}\n{self._journal_tail()}"
            )

    def teardown(self, timeout: float = 30.0) -> None:
        """Power systemd off (SIGRTMIN+4), SIGKILL it after `timeout`, wait for the namespace
        to go and remove its cgroup. Idempotent; safe to call at any point of boot()."""
        process = self._process
        if process is not None and process.poll() is None:
            if self.pid is not None and os.environ.get(KEEP_ENV) == "1" and not _running_in_ci():
                self._keep_alive_until_stopped(process)
            try:
                if self.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, POWEROFF_SIGNAL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout)
            finally:
                # Also on a second Ctrl-C: killing PID 1 ends the namespace at once, and
                # unshare, reaping it, exits.
                if process.poll() is None and self.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(10)
                if process.poll() is None:
                    process.kill()
                    process.wait()
        _live.discard(self)
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.cgroup is not None:
            remove_cgroup(self.cgroup)
            self.cgroup = None
        if self.work_dir is not None:
            self.boot_output = self._read_boot_output()
            base = self.work_dir / "base"
            if os.path.ismount(base):  # never: the tmpfs on it lived in the namespace only
                raise HarnessError(f"{base} is mounted on the host; unmount it by hand")
            base.rmdir()
            shutil.rmtree(self.work_dir)
            self.work_dir = None
        if self.pid is not None:
            self.state = "stopped"

    def _keep_alive_until_stopped(self, process: subprocess.Popen[bytes]) -> None:
        print(
            f"\n{KEEP_ENV}=1: the test systemd stays up until you stop it.\n"
            f"  enter it:  nsenter -t {self.pid} -a bash\n"
            f"  user units: nsenter -t {self.pid} -a env XDG_RUNTIME_DIR={USER_RUNTIME_DIR}"
            " systemctl --user status\n"
            f"  stop it:   kill -s SIGRTMIN+4 {self.pid}   (or press Ctrl-C here)",
            file=sys.__stderr__,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            process.wait()

    # -- using it ------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The overlay root as the host sees it (/proc/PID/root), for reading files. An
        absolute symlink on the way resolves on the host, not inside: read_text() does not
        have that trap, and copy_in() is the way to write."""
        return Path(f"/proc/{self._require_running()}/root")

    def run(
        self,
        argv: Sequence[str],
        *,
        user: bool = False,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 120.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside as root (nsenter into all namespaces), with the environment of a
        root login plus `env`. user=True targets the user manager of root: it sets
        XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS, and adds --user to systemctl,
        systemd-run, journalctl, busctl and systemd-analyze. stdin is closed unless `input`
        is given. On timeout the command and its children are killed. Like subprocess.run,
        it waits for whatever holds its stdout and stderr: redirect those of background
        processes (`daemon >/dev/null 2>&1 &`)."""
        pid = self._require_running()
        inner = list(argv)
        environment = dict(INSIDE_ENV)
        if user:
            environment.update(USER_MANAGER_ENV)
            if inner and inner[0] in USER_AWARE_TOOLS and "--user" not in inner:
                inner.insert(1, "--user")
        environment.update(env or {})
        process = subprocess.Popen(
            [self._nsenter, f"--target={pid}", "--all", "--", *inner],
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            start_new_session=True,  # one process group to kill on timeout
        )
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout = stderr = ""
            # a process that left the group may still hold the pipes: do not wait for it
            with contextlib.suppress(subprocess.TimeoutExpired):
                stdout, stderr = process.communicate(timeout=5)
            raise subprocess.TimeoutExpired(inner, timeout, stdout, stderr) from None
        except BaseException:
            _kill_group(process)
            process.wait()
            raise
        if check and process.returncode != 0:
            raise InsideCommandError(
                process.returncode, inner, stdout, stderr, self._journal_tail()
            )
        return subprocess.CompletedProcess(inner, process.returncode, stdout, stderr)

    def read_text(self, inside_path: str) -> str:
        """The content of a file inside (resolved inside, symlinks included)."""
        return self.run(["cat", "--", inside_path]).stdout

    def journal(
        self,
        *,
        unit: str | None = None,
        user: bool = False,
        since_cursor: str | None = None,
        grep: str | None = None,
        lines: int | None = None,
    ) -> str:
        """journalctl inside (--no-pager -o short-precise), optionally of one unit, after a
        cursor from cursor(), and only the lines matching the regular expression `grep`.
        user=True: `unit` is a unit of root's user manager, and without a unit the whole
        user manager (user@0.service) is shown. Root has no journal file of its own
        (journald keeps uids below 1000 in the system journal), so `journalctl --user`
        shows nothing for root; this uses --user-unit= on the system journal instead."""
        argv = ["journalctl", "--no-pager", "-o", "short-precise"]
        if user:
            argv.append(f"--user-unit={unit}" if unit else "--unit=user@0.service")
        elif unit is not None:
            argv.append(f"--unit={unit}")
        if since_cursor is not None:
            argv += ["--after-cursor", since_cursor]
        if lines is not None:
            argv += ["--lines", str(lines)]
        output = self.run(argv).stdout
        if grep is None:
            return output
        pattern = re.compile(grep)
        return "".join(line for line in output.splitlines(True) if pattern.search(line))

    def cursor(self) -> str:
        """The journal's current end, for journal(since_cursor=...)."""
        shown = self.run(["journalctl", "--no-pager", "--lines=0", "--show-cursor"]).stdout
        match = re.search(r"^-- cursor: (\S+)", shown, re.MULTILINE)
        if match is None:
            raise HarnessError(f"journalctl printed no cursor: {shown!r}")
        return match.group(1)

    def wait_until(
        self,
        condition: Callable[[], object] | Sequence[str],
        timeout: float = 30.0,
        *,
        interval: float = 0.1,
        user: bool = False,
        what: str | None = None,
    ) -> None:
        """Wait until `condition` holds: a callable returning something true, or a command
        (argv, run inside, with `user` as in run()) exiting 0. Raises TimeoutError naming
        `what` (or the condition), with the last journal lines."""
        deadline = time.monotonic() + timeout
        while True:
            if callable(condition):
                if condition():
                    return
            else:
                remaining = max(deadline - time.monotonic(), 0.1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    done = self.run(condition, user=user, check=False, timeout=remaining)
                    if done.returncode == 0:
                        return
            if time.monotonic() >= deadline:
                described = what or (
                    getattr(condition, "__name__", repr(condition))
                    if callable(condition)
                    else " ".join(condition)
                )
                raise TimeoutError(
                    f"not true after {timeout:g}s: {described}\n"
                    f"--- last journal lines\n{self._journal_tail()}"
                )
            time.sleep(interval)

    def copy_in(
        self, host_path: os.PathLike[str] | str, inside_path: str, *, exclude: Iterable[str] = ()
    ) -> None:
        """Copy a file or directory tree from the host to `inside_path` (created, with its
        parents; an existing directory is merged into). Entries whose name is in `exclude`
        are left out, at any depth. Streams a tar archive into `tar -x` run inside, so
        paths resolve inside the overlay, never on the host."""
        source = Path(host_path)
        if not source.exists():
            raise HarnessError(f"copy_in: {source} does not exist")
        if not inside_path.startswith("/"):
            raise HarnessError(f"copy_in: {inside_path!r} is not an absolute path")
        excluded = frozenset(exclude)
        arcname = inside_path.strip("/")
        depth = len(Path(arcname).parts)

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if excluded.intersection(Path(info.name).parts[depth:]):
                return None
            return info if info.isfile() or info.isdir() or info.issym() else None

        pid = self._require_running()
        process = subprocess.Popen(
            [self._nsenter, f"--target={pid}", "--all", "--", *TAR_EXTRACT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(INSIDE_ENV),
        )
        assert process.stdin is not None
        try:
            with tarfile.open(fileobj=process.stdin, mode="w|") as archive:
                archive.add(source, arcname=arcname or ".", filter=keep)
        except BrokenPipeError:
            pass  # tar inside failed; its message follows
        finally:
            process.stdin.close()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        if process.wait() != 0:
            raise HarnessError(f"copy_in {source} -> {inside_path} failed: {output}")

    # -- helpers -------------------------------------------------------------------------

    def _require_running(self) -> int:
        if self.pid is None or self._process is None or self._process.poll() is not None:
            raise HarnessError(f"the test systemd is not running (state: {self.state})")
        return self.pid

    def _journal_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(Exception):
            return self.run(
                ["journalctl", "--no-pager", "-o", "short-precise", f"--lines={lines}"],
                check=False,
                timeout=10,
            ).stdout
        return "(journal not readable)"

    def _read_boot_output(self) -> str:
        if self.work_dir is None:
            return ""
        parts = []
        for name in ("boot.log", "console.log"):
            with contextlib.suppress(OSError):
                text = (self.work_dir / name).read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {name}\n{text}")
        return "\n".join(parts)

    def _failure_report(self) -> str:
        alive = self._process is not None and self._process.poll() is None
        journal = self._journal_tail(40) if alive and self.pid is not None else "(no journal)"
        return (
            f"--- boot output\n{_tail(self._read_boot_output(), 40) or '(none)'}\n"
            f"--- last journal lines\n{journal}"
        )


class _Console:
    """A pty for /dev/console inside (systemd writes its status only to a terminal), its
    output copied to a file by a thread. systemd blocks when nobody reads its console."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._master, self._slave = os.openpty()
        self.tty = os.ttyname(self._slave)
        # wide enough that status lines are not cut with "…"
        fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self._thread = threading.Thread(target=self._drain, name="systemd-console", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with open(self.log, "wb") as out:
            while True:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # EIO: the last writer is gone
                    return
                if not chunk:
                    return
                with contextlib.suppress(OSError):
                    out.write(chunk.replace(b"\r", b""))
                    out.flush()

    def close(self) -> None:
        os.close(self._slave)  # with no slave left open the reader gets EIO and stops
        self._thread.join(timeout=5)
        os.close(self._master)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --- offline wheels -----------------------------------------------------------------------


class WheelhouseError(HarnessError):
    """pip could not build the wheelhouse; the message carries pip's output."""


def wheelhouse(
    repo_root: os.PathLike[str] | str = REPO_ROOT, *, dev: bool = False, python: str = HOST_PYTHON
) -> Path:
    """A directory of wheels for everything in requirements/runtime.lock (and dev.lock with
    dev=True) plus the build requirements of pyproject.toml, built once with `python -m pip
    wheel` on the host and cached in <repo>/.cache/wheelhouse/<hash of the lock files>.
    Inside a test systemd, PIP_NO_INDEX=1 PIP_FIND_LINKS=<copy of it> installs offline."""
    repo = Path(repo_root)
    locks = sorted((repo / "requirements").glob("*.lock"))
    if not locks:
        raise WheelhouseError(f"no requirements/*.lock in {repo}")
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    build_requires: list[str] = list(pyproject.get("build-system", {}).get("requires", []))
    digest = hashlib.sha256()
    for lock in locks:
        digest.update(lock.name.encode() + b"\0" + lock.read_bytes() + b"\0")
    digest.update("\0".join([os.path.realpath(python), *build_requires]).encode())
    directory = repo / ".cache" / "wheelhouse" / digest.hexdigest()[:16]
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {"runtime": [repo / "requirements" / "runtime.lock"]}
    if dev:
        wanted["dev"] = [repo / "requirements" / "dev.lock"]
    with open(directory.with_suffix(".lock"), "w") as lock_handle:
        fcntl.flock(lock_handle, fcntl.LOCK_EX)  # one builder at a time, others wait
        for part, files in wanted.items():
            stamp = directory / f".complete-{part}"
            if stamp.exists():
                continue
            requirements: list[str] = []
            for file in files:
                requirements += ["-r", str(file)]
            if part == "runtime":
                requirements += [*build_requires, "wheel"]
            _pip_wheel(python, directory, requirements)
            stamp.touch()
    return directory


def _pip_wheel(python: str, directory: Path, requirements: list[str]) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "PIP_NO_INDEX"}
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    argv = [python, "-m", "pip", "wheel", "-q", "--wheel-dir", str(directory), *requirements]
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode != 0:
        raise WheelhouseError(
            f"{' '.join(argv)} exited {result.returncode}:\n{_tail(result.stderr, 30)}"
        )


# --- inside: set up the namespaces and become systemd -------------------------------------


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def _bind(source: str, target: str, *options: str) -> None:
    _sh("mount", "--bind", source, target)
    if options:
        _sh("mount", "-o", ",".join(("remount", "bind", *options)), target)


def _inner_main(base: str, console: str, target: str, masked_units: Sequence[str]) -> None:
    """Runs as PID 1 of the new namespaces: build the root, pivot into it, exec systemd."""
    _sh("mount", "--make-rprivate", "/")  # nothing of ours propagates to the host
    _sh("mount", "-t", "tmpfs", "-o", "mode=0700", "tmpfs", base)
    for part in ("upper", "work", "root"):
        os.mkdir(f"{base}/{part}")
    root = f"{base}/root"
    _sh(
        "mount", "-t", "overlay", "overlay",
        "-o", f"lowerdir=/,upperdir={base}/upper,workdir={base}/work", root,
    )  # fmt: skip
    # /proc: fresh; its kernel knobs read-only but for our own network namespace's
    _sh("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    _bind(f"{root}/proc/sys", f"{root}/proc/sys", "ro")
    _bind(f"{root}/proc/sys/net", f"{root}/proc/sys/net", "rw")
    if os.path.exists(f"{root}/proc/sysrq-trigger"):
        _bind(f"{root}/proc/sysrq-trigger", f"{root}/proc/sysrq-trigger", "ro")
    # /sys: read-only (no udev, no sysctl on the host's devices); cgroup2 of our namespace
    _sh("mount", "--rbind", "/sys", f"{root}/sys")
    if os.path.ismount(f"{root}/sys/fs/cgroup"):
        _sh("umount", "--recursive", f"{root}/sys/fs/cgroup")
    _sh("mount", "-o", "remount,bind,ro", f"{root}/sys")
    _sh("mount", "-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", f"{root}/sys/fs/cgroup")
    # /dev: a private one with the usual nodes, its own ptys and a console
    dev = f"{root}/dev"
    _sh("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "tmpfs", dev)
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        Path(f"{dev}/{node}").touch()
        _bind(f"/dev/{node}", f"{dev}/{node}")
    Path(f"{dev}/console").touch()
    _bind(console, f"{dev}/console")  # a pty whose other end the harness reads
    for directory in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{directory}")
    _sh("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts",
        f"{dev}/pts")  # fmt: skip
    _sh("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{dev}/shm")
    _sh("mount", "-t", "mqueue", "mqueue", f"{dev}/mqueue")
    for link, destination in (
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(destination, f"{dev}/{link}")
    # /run and /tmp: fresh. Without the private /tmp, systemd-tmpfiles would empty the host's.
    _sh("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", f"{root}/run")
    _sh("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{root}/tmp")
    masks = Path(f"{root}/run/systemd/system")
    masks.mkdir(parents=True)
    for unit in masked_units:
        (masks / unit).symlink_to("/dev/null")
    os.chdir(root)
    os.makedirs("oldroot", exist_ok=True)
    _sh("pivot_root", ".", "oldroot")
    os.chdir("/")
    _sh("umount", "--lazy", "/oldroot")
    os.rmdir("/oldroot")
    # systemd makes / shared itself, but not in a container; without it LoadCredential=
    # silently gives units an empty $CREDENTIALS_DIRECTORY.
    _sh("mount", "--make-rshared", "/")
    # container= tells systemd (and ConditionVirtualization=) it is in a container.
    os.execve(
        SYSTEMD,
        [SYSTEMD, "--system", "--show-status=yes", f"--unit={target}"],
        {"container": "ductor-test", "TERM": "dumb"},
    )


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--inner":
        _inner_main(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(f"usage: {sys.argv[0]} --inner BASE CONSOLE TARGET [MASKED_UNIT...]")

"""Starting and stopping task runs.

Under systemd (the agent has an ``INVOCATION_ID``) every run is the oneshot
``ductor-task@AGENT:ID.service``, started with ``systemctl start --no-block`` in the
agent's own manager and stopped with ``systemctl stop``: it survives agent restarts
and has its own journal and cgroup. An agent run in the foreground (``ductor-agent
--name NAME`` in a terminal, the process tests) starts the same runner as a plain
process in its own session instead, and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ductor import sandbox
from ductor.paths import Mode, Paths
from ductor.units import Manager, instance, unit_name

if TYPE_CHECKING:
    from ductor.config.schema import LimitsConfig

log = logging.getLogger(__name__)

TEMPLATE = "ductor-task@.service"
STOP_WAIT = 45.0  # the unit's TimeoutStopSec= and a little more


def task_unit(agent: str, task_id: str) -> str:
    """``task_unit("main", "1f2e3d4c")`` → ``ductor-task@main:1f2e3d4c.service``."""
    return unit_name(TEMPLATE, agent, task_id)


def uses_systemd(env: Mapping[str, str]) -> bool:
    return bool(env.get("INVOCATION_ID")) and shutil.which("systemctl") is not None


def requests_dir(state_dir: Path) -> Path:
    """Where a system agent asks for its task units to start or stop (``ID.start``,
    ``ID.stop``): its account may neither start units nor write their drop-ins, so
    ``ductor-task-control@NAME.service`` (root, started by its ``.path`` unit) does."""
    return state_dir / "tasks" / "requests"


def ask_root(folder: Path, task_id: str, verb: str) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / f"{task_id}.{verb}").touch()


def unit_settings(paths: Paths, agent: str, limits: LimitsConfig) -> str:
    """The task unit's own drop-in: the agent's ``[limits]``, as its service has them,
    and in system mode the agent's ``.env`` as the credential the runner reads (as a
    cron run gets it); "" when there is nothing to set."""
    from ductor.agent.dotenv import DOTENV_CREDENTIAL, dotenv_file
    from ductor.agents import limits_dropin

    lines = limits_dropin(limits).removeprefix("[Service]\n")
    if paths.mode is Mode.SYSTEM:
        lines += f"LoadCredential={DOTENV_CREDENTIAL}:{dotenv_file(paths, agent)}\n"
    return f"[Service]\n{lines}" if lines else ""


@dataclass
class Launcher:
    agent: str
    mode: Mode
    env: Mapping[str, str]
    settings: str = ""  # the unit's drop-in (:func:`unit_settings`)
    state_dir: Path | None = None  # the agent's state (its requests to root)

    @property
    def root_requests(self) -> Path | None:
        """Where a system agent's account asks root to start and stop its task units;
        None when it does that itself."""
        if self.mode is Mode.SYSTEM and self.state_dir is not None and os.geteuid() != 0:
            return requests_dir(self.state_dir)
        return None

    @property
    def systemd(self) -> bool:
        return uses_systemd(self.env)

    def start(self, task_id: str) -> int:
        """Start a run; returns the runner's pid when it is a plain process, else 0."""
        requests = self.root_requests if self.systemd else None
        if requests is not None:
            ask_root(requests, task_id, "start")
            log.info("task %s: asked ductor-task-control to start its unit", task_id)
            return 0
        if self.systemd:
            unit = task_unit(self.agent, task_id)
            sandbox.fence_task(Manager(self.mode), self.agent, unit, settings=self.settings)
            Manager(self.mode).systemctl("start", "--no-block", unit, timeout=30)
            log.info("task %s: started %s", task_id, unit)
            return 0
        argv = [sys.executable, "-m", "ductor.tasks.runner"]
        if self.mode is Mode.SYSTEM:
            argv.append("--system")
        argv += ["run", instance(self.agent, task_id)]
        child_env = {k: v for k, v in self.env.items() if not k.startswith(("LISTEN_", "NOTIFY"))}
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )
        log.info("task %s: started the runner as pid %d", task_id, process.pid)
        return process.pid

    def stop(self, task_id: str, pid: int, *, wait: float = STOP_WAIT) -> bool:
        """Stop a run (its CLI gets SIGTERM, then SIGKILL) and wait up to ``wait``
        seconds for it to end (the unit's ``ExecStopPost=`` included); returns whether
        it ended."""
        requests = self.root_requests if self.systemd else None
        if requests is not None:
            ask_root(requests, task_id, "stop")
        elif self.systemd:
            Manager(self.mode).systemctl(
                "stop", task_unit(self.agent, task_id), check=False, timeout=wait
            )
            return not self.is_running(task_id, pid)
        elif pid <= 0:
            return True
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while self.is_running(task_id, pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5 if self.systemd else 0.05)  # systemctl is-active: not too often
        return True

    def is_running(self, task_id: str, pid: int) -> bool:
        """Whether the run's unit (or process) is still there."""
        if self.systemd:
            result = Manager(self.mode).systemctl(
                "is-active", task_unit(self.agent, task_id), check=False, timeout=15
            )
            return result.stdout.strip() in {"active", "activating", "deactivating", "reloading"}
        if pid <= 0:
            return False
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
            if waited == pid:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            return stream.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def control(agent: str, paths: Paths) -> int:
    """``ductor-task control AGENT`` (root, in system mode): start and stop the task
    units the agent asked for. Each unit gets its drop-ins first (:func:`unit_settings`,
    the sandbox), from what root reads itself: the agent's config and its own drop-ins,
    never from what the agent's account wrote. Returns how many requests were done."""
    from ductor import config
    from ductor.tasks.store import TaskStore, check_task_id

    manager = Manager(paths.mode)
    store = TaskStore(paths.agent_state(agent), paths.workspace(agent))
    done = 0
    for request in sorted(requests_dir(paths.agent_state(agent)).glob("*")):
        task_id, _, verb = request.name.partition(".")
        unit = ""
        try:
            check_task_id(task_id)
            unit = task_unit(agent, task_id)
            if verb == "start" and store.get(task_id) is not None:
                limits = config.load_agent_config(paths, agent).limits
                settings = unit_settings(paths, agent, limits)
                sandbox.fence_task(manager, agent, unit, settings=settings)
                manager.systemctl("start", "--no-block", unit, timeout=30)
                done += 1
            elif verb == "stop":
                manager.systemctl("stop", "--no-block", unit, check=False, timeout=30)
                done += 1
            else:
                log.warning("ignored the task request %s", request.name)
        except Exception as exc:  # one bad request never blocks the others
            log.warning("task request %s failed: %s", request.name, exc)
        request.unlink(missing_ok=True)
        if unit:
            log.info("task %s: %s %s", task_id, verb, unit)
    return done

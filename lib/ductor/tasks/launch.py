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

    @property
    def systemd(self) -> bool:
        return uses_systemd(self.env)

    def start(self, task_id: str) -> int:
        """Start a run; returns the runner's pid when it is a plain process, else 0."""
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
        if self.systemd:
            Manager(self.mode).systemctl(
                "stop", task_unit(self.agent, task_id), check=False, timeout=wait
            )
            return not self.is_running(task_id, pid)
        if pid <= 0:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while self.is_running(task_id, pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
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

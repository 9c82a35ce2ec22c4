"""Carrying out a migration plan: write what is missing, never overwrite, never touch
the original's home (its files are only ever opened for reading)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ductor import agents, atomic
from ductor.cron.sync import sync_jobs
from ductor.errors import DuctorError
from ductor.migrate.cli_sessions import Carry, register_gemini_project
from ductor.migrate.plan import AgentPlan, Write
from ductor.paths import Paths
from ductor.units import Manager

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    written: int = 0
    unchanged: int = 0
    kept: list[Path] = field(default_factory=list)  # existed with other content
    units: list[str] = field(default_factory=list)  # what the syncs did, or why not


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _put(dest: Path, data: bytes, mode: int, outcome: Outcome) -> None:
    try:
        existing = _read(dest)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if existing == data:
            outcome.unchanged += 1
        else:
            outcome.kept.append(dest)
        return
    atomic.make_directories(dest.parent, mode=0o700)
    atomic.write_bytes(dest, data, mode=mode)
    outcome.written += 1


def _copy(carry: Carry, outcome: Outcome) -> None:
    source = carry.source
    if source.is_dir() and not source.is_symlink():
        for directory, _dirs, files in os.walk(source, followlinks=False):
            for name in files:
                path = Path(directory) / name
                if not path.is_symlink():
                    _copy(Carry(path, carry.dest / path.relative_to(source)), outcome)
        return
    mode = stat.S_IMODE(source.stat().st_mode) & 0o700 or 0o600
    _put(carry.dest, _read(source), mode, outcome)


def _write(write: Write, outcome: Outcome) -> None:
    _put(write.dest, write.data, write.mode, outcome)


def execute(
    plan: AgentPlan, paths: Paths, manager: Manager | None, env: Mapping[str, str]
) -> Outcome:
    """Write the agent's files, lay out the rest of its workspace, and (where a service
    manager runs) sync its target and its cron timers."""
    outcome = Outcome()
    for write in plan.writes:
        _write(write, outcome)
    for _what, carry in plan.copies:
        _copy(carry, outcome)
    if plan.gemini_project is not None:
        register_gemini_project(env, paths.workspace(plan.name), plan.gemini_project)
    agents.ensure_workspace(paths, plan.name)
    if manager is None:
        return outcome
    try:
        agents.sync_target(paths, manager, plan.name)
        report = sync_jobs(paths, manager, plan.name)
        outcome.units += report.written + report.enabled
    except DuctorError as exc:
        outcome.units.append(
            f"units not synced ({exc}); run `ductor agent sync {plan.name}` and"
            f" `ductor cron sync {plan.name}`"
        )
    return outcome

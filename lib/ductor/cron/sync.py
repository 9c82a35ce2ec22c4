"""From ``cron_jobs.toml`` to systemd timers.

Every job is an instance of ``ductor-cron@.timer`` (``ductor-cron@AGENT:JOB.timer``)
whose drop-in carries the job's ``OnCalendar=`` lines and ``Persistent=``. Syncing
writes the drop-ins of existing jobs, deletes those of removed jobs, reloads the manager
once if a file changed, and enables (or disables) each timer. It touches timers only: a
run in progress is never stopped by a reschedule, an edit or a removal.

Every calendar line is checked with ``systemd-analyze calendar`` before it is written,
so a translation systemd would reject never reaches a unit file.

In system mode each job's service gets a drop-in too: the agent's ``.env`` as
``LoadCredential=dotenv:...``, read by the manager (root) for the run, which cannot
read root's credentials directory itself. systemd has no specifier for the AGENT part
of ``AGENT:JOB``, so the template cannot name the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ductor import calendar as cron_calendar
from ductor import sandbox
from ductor.cron.jobs import Job, JobStore
from ductor.errors import UsageError
from ductor.paths import Mode, Paths
from ductor.units import (
    Manager,
    analyze_calendar,
    instance,
    parse_instance,
    remove_dropin,
    unit_dir,
    unit_name,
    write_dropin,
)

TIMER_TEMPLATE = "ductor-cron@.timer"
SERVICE_TEMPLATE = "ductor-cron@.service"
DROPIN_NAME = "10-ductor.conf"


def timer_unit(agent: str, job: str) -> str:
    """``timer_unit("main", "daily-news")`` → ``ductor-cron@main:daily\\x2dnews.timer``."""
    return unit_name(TIMER_TEMPLATE, agent, job)


def service_unit(agent: str, job: str) -> str:
    return unit_name(SERVICE_TEMPLATE, agent, job)


def calendar_lines(job: Job, default_timezone: str) -> list[str]:
    """The job's ``OnCalendar=`` values: its own timezone, else the agent's."""
    return cron_calendar.to_oncalendar(job.schedule, job.timezone or default_timezone)


def timer_dropin(job: Job, default_timezone: str) -> str:
    """The ``[Timer]`` section of the job's drop-in (the empty ``OnCalendar=`` clears
    whatever the template sets)."""
    lines = "".join(f"OnCalendar={line}\n" for line in calendar_lines(job, default_timezone))
    persistent = "yes" if job.catch_up else "no"
    return f"[Timer]\nOnCalendar=\n{lines}Persistent={persistent}\n"


def check_calendar(job: Job, default_timezone: str, *, known: str = "") -> list[str]:
    """Translate the job's schedule and have ``systemd-analyze calendar`` accept every
    line; ``known`` is text whose ``OnCalendar=`` lines were checked before."""
    lines = calendar_lines(job, default_timezone)
    for line in lines:
        if f"OnCalendar={line}\n" in known:
            continue
        result = analyze_calendar(line)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
            raise UsageError(
                f"cron job {job.name!r}: systemd cannot schedule {job.schedule!r}"
                f" (OnCalendar={line}): {detail}"
            )
    return lines


@dataclass
class SyncReport:
    """Timer units whose drop-in was written or removed, and that were enabled or
    disabled by one sync."""

    agent: str
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    reloaded: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.enabled or self.disabled)

    def to_dict(self) -> dict[str, object]:
        return {
            "agent": self.agent,
            "written": self.written,
            "removed": self.removed,
            "enabled": self.enabled,
            "disabled": self.disabled,
            "reloaded": self.reloaded,
        }


def service_dropin(paths: Paths, agent: str) -> str:
    """The ``[Service]`` drop-in of a job's run in system mode: the agent's ``.env``."""
    from ductor.agent.dotenv import DOTENV_CREDENTIAL, dotenv_file

    return f"[Service]\nLoadCredential={DOTENV_CREDENTIAL}:{dotenv_file(paths, agent)}\n"


def scheduled_jobs(directory: Path, agent: str, template: str = TIMER_TEMPLATE) -> dict[str, str]:
    """Job name → unit, for every unit of ``template`` of ``agent`` that has our drop-in."""
    prefix, _, suffix = template.partition("@")
    start = f"{prefix}@{instance(agent)}:"
    end = f"{suffix}.d"
    found: dict[str, str] = {}
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        name = entry.name
        if not (name.startswith(start) and name.endswith(end)):
            continue
        if not (entry / DROPIN_NAME).is_file():
            continue
        unit = name.removesuffix(".d")
        parts = parse_instance(unit[len(prefix) + 1 : -len(suffix)])
        if len(parts) == 2 and parts[0] == agent:
            found[parts[1]] = unit
    return found


def sync_jobs(paths: Paths, manager: Manager, agent: str) -> SyncReport:
    """Make the agent's timers match its job file; see the module docstring."""
    jobs = JobStore(paths.agent_state(agent)).load()
    default_timezone = ""
    fence = ""  # the agent's sandbox, for each job's service
    if jobs:
        from ductor.config import load_agent_config

        agent_config = load_agent_config(paths, agent)
        default_timezone = agent_config.user_timezone
        fence = sandbox.dropin(paths, agent, agent_config)
    directory = unit_dir(manager.mode)
    dropins: dict[str, str] = {}
    for job in jobs.values():  # check every job before writing any file
        unit = timer_unit(agent, job.name)
        known = _read(directory / f"{unit}.d" / DROPIN_NAME)
        check_calendar(job, default_timezone, known=known)
        dropins[job.name] = timer_dropin(job, default_timezone)
    wanted = {name: job.enabled for name, job in jobs.items()}
    services = {}
    if manager.mode is Mode.SYSTEM:
        services = dict.fromkeys(jobs, service_dropin(paths, agent))
    report = _apply(manager, agent, dropins, wanted, services)
    command = f"ductor cron sync {agent}"
    if sandbox.sync_cron(directory, agent, fence, command=command):
        manager.daemon_reload()
        report.reloaded = True
    return report


def unschedule_all(manager: Manager, agent: str) -> SyncReport:
    """Disable every timer of ``agent`` and delete their drop-ins (the agent is going)."""
    return _apply(manager, agent, {}, {}, {})


def _apply(
    manager: Manager,
    agent: str,
    dropins: Mapping[str, str],
    wanted: Mapping[str, bool],
    services: Mapping[str, str],
) -> SyncReport:
    report = SyncReport(agent)
    directory = unit_dir(manager.mode)
    command = f"ductor cron sync {agent}"
    for name in sorted(dropins):
        unit = timer_unit(agent, name)
        if write_dropin(directory, unit, dropins[name], command=command, name=DROPIN_NAME):
            report.written.append(unit)
    stale = {
        name: unit for name, unit in scheduled_jobs(directory, agent).items() if name not in wanted
    }
    for unit in sorted(stale.values()):
        if remove_dropin(directory, unit, DROPIN_NAME):
            report.removed.append(unit)
    for name in sorted(services):
        unit = service_unit(agent, name)
        if write_dropin(directory, unit, services[name], command=command, name=DROPIN_NAME):
            report.written.append(unit)
    for name, unit in sorted(scheduled_jobs(directory, agent, SERVICE_TEMPLATE).items()):
        if name not in services and remove_dropin(directory, unit, DROPIN_NAME):
            report.removed.append(unit)
    if report.written or report.removed:
        manager.daemon_reload()
        report.reloaded = True
    for unit in sorted(stale.values()):
        manager.systemctl("disable", "--now", unit, check=False)
    units = [timer_unit(agent, name) for name in sorted(wanted)]
    states = manager.show(units, ["UnitFileState", "ActiveState"])
    for name, unit, state in zip(sorted(wanted), units, states, strict=True):
        is_on = state.get("UnitFileState") == "enabled" or state.get("ActiveState") in (
            "active",
            "activating",
        )
        fully_on = state.get("UnitFileState") == "enabled" and state.get("ActiveState") == "active"
        if wanted[name] and not fully_on:
            manager.systemctl("enable", "--now", unit)
            report.enabled.append(unit)
        elif not wanted[name] and is_on:
            manager.systemctl("disable", "--now", unit)
            report.disabled.append(unit)
    return report


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""

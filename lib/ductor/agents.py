"""Agents on disk: which exist, creating one (config, credentials, workspace), removing
one, and the drop-in that makes ``ductor@NAME.target`` pull in its units."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ductor import atomic, config, sandbox
from ductor.errors import DuctorError, UsageError
from ductor.paths import Paths, validate_agent_name
from ductor.units import (
    PART_SEPARATOR,
    Manager,
    instance,
    remove_dropin,
    unit_dir,
    unit_name,
    write_dropin,
)
from ductor.webhooks import units as webhook_units

TARGET_TEMPLATE = "ductor@.target"


@dataclass(frozen=True)
class Wanted:
    """A unit template the agent target pulls in, and when."""

    template: str
    transport: str | None = None  # only when this transport is configured
    webhooks: bool = False  # only with [webhooks] enabled


# What ``ductor@NAME.target`` pulls in, where the template is installed.
WANTED = (
    Wanted("ductor-agent@.socket"),
    Wanted("ductor-telegram@.service", transport="telegram"),
    Wanted("ductor-matrix@.service", transport="matrix"),
    Wanted(webhook_units.SOCKET_TEMPLATE, webhooks=True),
    Wanted(webhook_units.RUN_PATH_TEMPLATE, webhooks=True),
)


def target(name: str) -> str:
    return unit_name(TARGET_TEMPLATE, name)


def list_agents(paths: Paths) -> list[str]:
    directory = paths.agents_config_dir
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def exists(paths: Paths, name: str) -> bool:
    return paths.agent_config(name).is_file()


def require(paths: Paths, name: str) -> str:
    validate_agent_name(name)
    if not exists(paths, name):
        known = ", ".join(list_agents(paths)) or "none"
        raise UsageError(
            f"no agent named {name!r} (config {paths.agent_config(name)} is missing;"
            f" known agents: {known}). Create it with `ductor agent add {name}`."
        )
    return name


@dataclass(frozen=True)
class NewAgent:
    name: str
    telegram_token: str | None
    allowed_user_ids: tuple[int, ...]
    provider: str
    model: str
    timezone: str
    allowed_group_ids: tuple[int, ...] = ()
    description: str = ""
    transports: tuple[str, ...] = ("telegram",)
    matrix_homeserver: str = ""
    matrix_user_id: str = ""
    matrix_password: str | None = None
    matrix_allowed_users: tuple[str, ...] = ()
    matrix_allowed_rooms: tuple[str, ...] = ()


def create(paths: Paths, spec: NewAgent) -> list[Path]:
    """Write the agent's config and credentials and lay out its workspace.

    Returns the files and directories created, for the summary.
    """
    validate_agent_name(spec.name)
    if exists(paths, spec.name):
        raise UsageError(
            f"agent {spec.name!r} already exists ({paths.agent_config(spec.name)}); edit that"
            f" file, or remove the agent first with `ductor agent remove {spec.name}`"
        )
    created: list[Path] = []
    file = paths.agent_config(spec.name)
    file.parent.mkdir(parents=True, exist_ok=True)
    values: list[tuple[str, object]] = (
        [("description", spec.description)] if spec.description else []
    )
    values += [
        ("provider", spec.provider),
        ("model", spec.model),
        ("user_timezone", spec.timezone),
        ("transports", list(spec.transports)),
    ]
    if "telegram" in spec.transports:
        values.append(("telegram.allowed_user_ids", list(spec.allowed_user_ids)))
    if spec.allowed_group_ids:
        values.append(("telegram.allowed_group_ids", list(spec.allowed_group_ids)))
    if "matrix" in spec.transports:
        values += [
            ("matrix.homeserver", spec.matrix_homeserver),
            ("matrix.user_id", spec.matrix_user_id),
            ("matrix.allowed_users", list(spec.matrix_allowed_users)),
        ]
        if spec.matrix_allowed_rooms:
            values.append(("matrix.allowed_rooms", list(spec.matrix_allowed_rooms)))
    header = (
        f"# Agent {spec.name!r}. Settings here override {paths.global_config}.\n"
        "# Every key is explained in the example config shipped with ductor.\n"
    )
    file.write_text(header, encoding="utf-8")
    try:
        config.set_values(file, values)
    except BaseException:
        file.unlink(missing_ok=True)
        raise
    created.append(file)
    if spec.telegram_token:
        config.write_secret(paths, spec.name, config.TELEGRAM_TOKEN, spec.telegram_token)
        created.append(paths.agent_credentials(spec.name) / config.TELEGRAM_TOKEN)
    if spec.matrix_password:
        config.write_secret(paths, spec.name, config.MATRIX_PASSWORD, spec.matrix_password)
        created.append(paths.agent_credentials(spec.name) / config.MATRIX_PASSWORD)
    from ductor.agent import workspace  # its templates: only for creating (see ensure_workspace)

    providers = [spec.provider, *workspace.installed_providers()]
    created.extend(ensure_workspace(paths, spec.name, providers=providers))
    return created


def ensure_workspace(
    paths: Paths, name: str, *, providers: Iterable[str] | None = None
) -> list[Path]:
    """Create the agent's state directory, spool and workspace where missing.

    Rule files are written for ``providers``; by default for the configured provider
    and every CLI installed on this machine.
    """
    # Imported here: the workspace's templates and tool scripts (~15 ms) are only needed
    # to create one, not by ``ductor chat`` or ``ductor status``, which import this module.
    from ductor.agent import workspace

    created: list[Path] = []
    for directory in (paths.agent_state(name), paths.spool(name)):
        if not directory.is_dir():
            atomic.make_directories(directory, mode=0o700)
            created.append(directory)
    if providers is None:
        providers = [*_configured_provider(paths, name), *workspace.installed_providers()]
    created.extend(
        workspace.ensure_workspace(paths.workspace(name), agent=name, providers=providers)
    )
    return created


def _configured_provider(paths: Paths, name: str) -> list[str]:
    if not exists(paths, name):
        return []
    try:
        return [config.load_agent_config(paths, name).provider]
    except DuctorError:
        return []  # a broken config is reported where it is loaded for real


def installed_templates(manager: Manager, templates: Iterable[str]) -> set[str]:
    """Which of these templates the manager can load (installed anywhere it looks)."""
    names = list(templates)
    result = manager.systemctl(
        "list-unit-files", "--no-legend", "--plain", "--no-pager", "--", *names, check=False
    )
    found = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    return found & set(names)


def wanted_units(paths: Paths, manager: Manager, name: str) -> list[str]:
    cfg = config.load_agent_config(paths, name)
    available = installed_templates(manager, (w.template for w in WANTED))
    units = []
    for wanted in WANTED:
        if wanted.template not in available:
            continue
        if wanted.transport is not None and wanted.transport not in cfg.transports:
            continue
        if wanted.webhooks and not cfg.webhooks.enabled:
            continue
        units.append(unit_name(wanted.template, name))
    return units


AGENT_SERVICE = "ductor-agent@.service"


def reloadable_units(manager: Manager, name: str) -> list[str]:
    """Every running unit of the agent that can re-read its config (``ExecReload=``):
    the agent daemon and its transports, whatever the target wants."""
    own = instance(name)  # systemd matches with FNM_NOESCAPE: a \x2d stays itself
    patterns = [f"ductor-*@{own}.service", f"ductor-*@{own}:*.service"]
    units = manager.list_units(patterns)
    props = manager.show(units, ["Id", "ActiveState", "CanReload"])
    return [
        p["Id"] for p in props if p.get("ActiveState") == "active" and p.get("CanReload") == "yes"
    ]


def limits_dropin(limits: config.LimitsConfig) -> str:
    """The ``[Service]`` lines for the agent's ``[limits]``; "" when none is set."""
    lines = []
    if limits.memory_max:
        lines.append(f"MemoryMax={limits.memory_max}")
    if limits.tasks_max:
        lines.append(f"TasksMax={limits.tasks_max}")
    if limits.cpu_weight:
        lines.append(f"CPUWeight={limits.cpu_weight}")
    return "[Service]\n" + "\n".join(lines) + "\n" if lines else ""


HEARTBEAT_TIMER = "ductor-heartbeat@.timer"


def heartbeat_timers(name: str, agent_config: config.AgentConfig) -> dict[str, float | None]:
    """Every heartbeat timer of the agent and its interval in minutes (None: off)."""
    beat = agent_config.heartbeat
    main_on = beat.enabled and bool(agent_config.telegram.allowed_user_ids)
    timers: dict[str, float | None] = {
        unit_name(HEARTBEAT_TIMER, name): beat.interval_minutes if main_on else None
    }
    for index, group in enumerate(beat.group_targets, start=1):
        on = beat.enabled and group.enabled
        minutes = group.interval_minutes or beat.interval_minutes
        timers[unit_name(HEARTBEAT_TIMER, name, str(index))] = minutes if on else None
    return timers


def sync_heartbeat(
    manager: Manager, name: str, agent_config: config.AgentConfig, *, command: str
) -> bool:
    """Heartbeat timers on or off as ``[heartbeat]`` says, each with its interval."""
    directory = unit_dir(manager.mode)
    if HEARTBEAT_TIMER not in installed_templates(manager, [HEARTBEAT_TIMER]):
        return False
    changed = False
    wanted = heartbeat_timers(name, agent_config)
    for timer, minutes in wanted.items():
        if minutes is None:
            changed = remove_dropin(directory, timer) or changed
            continue
        body = f"[Timer]\nOnActiveSec={minutes}min\nOnUnitActiveSec={minutes}min\n"
        changed = write_dropin(directory, timer, body, command=command) or changed
    if changed:
        manager.daemon_reload()
    for timer, minutes in wanted.items():
        verb = "enable" if minutes is not None else "disable"
        manager.systemctl(verb, "--now", timer, check=False)
    return changed


def sync_target(paths: Paths, manager: Manager, name: str) -> bool:
    """Make ``ductor@NAME.target`` want exactly the units this agent's config enables,
    and give the agent's service the resource limits of its config."""
    units = wanted_units(paths, manager, name)
    body = "[Unit]\n" + "".join(f"Wants={unit}\nAfter={unit}\n" for unit in units)
    directory = unit_dir(manager.mode)
    command = f"ductor agent sync {name}"
    changed = write_dropin(directory, target(name), body, command=command)
    agent_config = config.load_agent_config(paths, name)
    changed = sync_heartbeat(manager, name, agent_config, command=command) or changed
    limits = limits_dropin(agent_config.limits)
    service = unit_name(AGENT_SERVICE, name)
    if limits:
        changed = write_dropin(directory, service, limits, command=command) or changed
    else:
        changed = remove_dropin(directory, service) or changed
    fence = sandbox.dropin(paths, name, agent_config)
    fenced = sandbox.agent_units(name)
    changed = sandbox.sync_units(directory, fenced, fence, command=command) or changed
    changed = sandbox.sync_cron(directory, name, fence, command=command) or changed
    listen = webhook_units.sync_socket(directory, name, agent_config, command=command)
    if changed or listen:
        manager.daemon_reload()
    if listen:
        webhook_units.restart_socket(manager, name)
    return changed or listen


def _heartbeat_units(paths: Paths, manager: Manager, name: str, directory: Path) -> list[str]:
    """Every heartbeat timer of agent ``name`` (its own and one per group target), from
    its config, the manager and the drop-ins on disk; never another agent's (``main2``
    is not a heartbeat of ``main``)."""
    try:
        agent_config = config.load_agent_config(paths, name)
    except DuctorError:
        agent_config = config.AgentConfig()
    own = unit_name(HEARTBEAT_TIMER, name)
    group_prefix = own.removesuffix(".timer") + PART_SEPARATOR

    def is_ours(unit: str) -> bool:
        return unit == own or (unit.startswith(group_prefix) and unit.endswith(".timer"))

    found = set(heartbeat_timers(name, agent_config))
    found.update(u for u in manager.list_units([own, f"{group_prefix}*.timer"]) if is_ours(u))
    if directory.is_dir():
        found.update(
            d.name[:-2]
            for d in directory.iterdir()
            if d.name.endswith(".d") and is_ours(d.name[:-2])
        )
    return sorted(found)


def remove(paths: Paths, manager: Manager, name: str, *, purge: bool) -> list[Path]:
    """Stop and disable the agent, delete its config and credentials; state only on purge."""
    require(paths, name)
    manager.systemctl("disable", "--now", target(name), check=False)
    removed = []
    from ductor.cron.sync import unschedule_all

    unschedule_all(manager, name)
    directory = unit_dir(manager.mode)
    changed = remove_dropin(directory, target(name))
    changed = remove_dropin(directory, unit_name(webhook_units.SOCKET_TEMPLATE, name)) or changed
    changed = sandbox.sync_units(directory, sandbox.agent_units(name), "", command="") or changed
    changed = sandbox.sync_cron(directory, name, "", command="") or changed
    tasks = sandbox.fenced_tasks(directory, name)
    changed = sandbox.unfence_tasks(directory, tasks) or changed
    for timer in _heartbeat_units(paths, manager, name, directory):
        manager.systemctl("disable", "--now", timer, check=False)
        changed = remove_dropin(directory, timer) or changed
    if changed:
        manager.daemon_reload()
    for path in (paths.agent_config(name), paths.agent_credentials(name)):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    if purge and paths.agent_state(name).exists():
        shutil.rmtree(paths.agent_state(name))
        removed.append(paths.agent_state(name))
    return removed

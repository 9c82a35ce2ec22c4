"""Agents on disk: which exist, creating one (config, credentials, workspace), removing
one, and the drop-in that makes ``ductor@NAME.target`` pull in its units."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ductor import config
from ductor.errors import UsageError
from ductor.paths import Paths, validate_agent_name
from ductor.units import Manager, remove_dropin, unit_dir, unit_name, write_dropin

TARGET_TEMPLATE = "ductor@.target"
WORKSPACE_DIRS = (
    "memory_system",
    "tools",
    "cron_tasks",
    "tasks",
    "output_to_user",
)
MAINMEMORY = """# Main memory

Durable facts about the user and this agent's work, one short dated entry per line
(`YYYY-MM-DD: ...`). The agent keeps this file up to date.
"""


@dataclass(frozen=True)
class Wanted:
    """A unit template the agent target pulls in, and when."""

    template: str
    transport: str | None = None  # only when this transport is configured


# What ``ductor@NAME.target`` pulls in, where the template is installed.
WANTED = (
    Wanted("ductor-agent@.socket"),
    Wanted("ductor-telegram@.service", transport="telegram"),
    Wanted("ductor-matrix@.service", transport="matrix"),
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
    values: list[tuple[str, object]] = [
        ("provider", spec.provider),
        ("model", spec.model),
        ("user_timezone", spec.timezone),
        ("transports", ["telegram"]),
        ("telegram.allowed_user_ids", list(spec.allowed_user_ids)),
    ]
    if spec.allowed_group_ids:
        values.append(("telegram.allowed_group_ids", list(spec.allowed_group_ids)))
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
    created.extend(ensure_workspace(paths, spec.name))
    return created


def ensure_workspace(paths: Paths, name: str) -> list[Path]:
    created: list[Path] = []
    state = paths.agent_state(name)
    for directory in (
        state,
        paths.spool(name),
        *(paths.workspace(name) / sub for sub in WORKSPACE_DIRS),
    ):
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700, exist_ok=True)
            created.append(directory)
    memory = paths.workspace(name) / "memory_system" / "MAINMEMORY.md"
    if not memory.exists():
        memory.write_text(MAINMEMORY, encoding="utf-8")
        created.append(memory)
    return created


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
        units.append(unit_name(wanted.template, name))
    return units


def sync_target(paths: Paths, manager: Manager, name: str) -> bool:
    """Make ``ductor@NAME.target`` want exactly the units this agent's config enables."""
    units = wanted_units(paths, manager, name)
    body = "[Unit]\n" + "".join(f"Wants={unit}\nAfter={unit}\n" for unit in units)
    changed = write_dropin(
        unit_dir(manager.mode), target(name), body, command=f"ductor agent sync {name}"
    )
    if changed:
        manager.daemon_reload()
    return changed


def remove(paths: Paths, manager: Manager, name: str, *, purge: bool) -> list[Path]:
    """Stop and disable the agent, delete its config and credentials; state only on purge."""
    require(paths, name)
    manager.systemctl("disable", "--now", target(name), check=False)
    removed = []
    if remove_dropin(unit_dir(manager.mode), target(name)):
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

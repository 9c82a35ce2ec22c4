"""``ductor status`` and ``ductor agent list``: read with ``systemctl show``."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ductor import agents
from ductor.cli.context import Context, table
from ductor.paths import Mode
from ductor.units import Manager, parse_instance

PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "ActiveEnterTimestamp",
    "NRestarts",
    "MemoryCurrent",
    "NextElapseUSecRealtime",
    "Result",
)


@dataclass(frozen=True)
class UnitStatus:
    agent: str
    unit: str
    active: str
    sub: str
    enabled: str
    since: str
    restarts: int | None
    memory_bytes: int | None
    next_run: str
    result: str = ""  # systemd's Result=: "start-limit-hit" for a unit that keeps crashing

    def row(self) -> list[str]:
        state = f"{self.active} ({self.sub})" if self.sub else self.active
        if self.result in ("start-limit-hit", "service-start-limit-hit"):
            state += ", start limit hit: keeps crashing"
        return [
            self.agent,
            self.unit,
            state,
            self.enabled or "-",
            self.since or "-",
            "-" if self.restarts is None else str(self.restarts),
            _human_bytes(self.memory_bytes),
            self.next_run or "-",
        ]


def agent_of(unit: str) -> str | None:
    """The agent a ductor unit belongs to, from its instance name."""
    prefix, sep, rest = unit.partition("@")
    if not sep or not prefix.startswith("ductor") or "." not in rest:
        return None
    inst = rest.rsplit(".", 1)[0]
    if not inst:
        return None
    return parse_instance(inst)[0]


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return None if number >= 2**63 else number  # systemd's "infinity"/unset


def _human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "-"


def _timestamp(value: str) -> str:
    # systemctl show prints e.g. "Sat 2026-11-21 20:11:10 UTC"; keep date and time.
    parts = value.split()
    return " ".join(parts[1:3]) if len(parts) >= 3 else value


def collect(manager: Manager, names: list[str]) -> list[UnitStatus]:
    units = [u for u in manager.list_units(["ductor*"]) if agent_of(u) in names]
    targets = [agents.target(n) for n in names]
    units = sorted(set(units) | set(targets), key=lambda u: (agent_of(u) or "", u))
    statuses = []
    for props in manager.show(units, PROPERTIES):
        unit = props.get("Id", "")
        if not unit:
            continue
        statuses.append(
            UnitStatus(
                agent=agent_of(unit) or "",
                unit=unit,
                active=props.get("ActiveState", "unknown")
                if props.get("LoadState") != "not-found"
                else "not-installed",
                sub=props.get("SubState", "") if props.get("LoadState") != "not-found" else "",
                enabled=props.get("UnitFileState", ""),
                since=_timestamp(props.get("ActiveEnterTimestamp", "")),
                restarts=_int(props.get("NRestarts")),
                memory_bytes=_int(props.get("MemoryCurrent")),
                next_run=_timestamp(props.get("NextElapseUSecRealtime", "")),
                result=props.get("Result", ""),
            )
        )
    return statuses


def run_status(ctx: Context, args: argparse.Namespace) -> int:
    from ductor.webhooks import status as webhook_status  # not on the overview's path

    names = [agents.require(ctx.paths, args.name)] if args.name else agents.list_agents(ctx.paths)
    problem = ctx.manager.problem() if names else None
    statuses = collect(ctx.manager, names) if names and problem is None else []
    if ctx.json:
        ctx.dump(
            {
                "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": str(ctx.mode),
                "agents": names,
                "units": [asdict(s) for s in statuses],
                "manager_problem": problem,
                "webhooks": {n: webhook_status.summary(ctx.paths.agent_state(n)) for n in names},
            }
        )
        return 0
    if not names:
        ctx.print("No agents yet. Create one with `ductor init`.")
        return 0
    if problem is not None:
        ctx.print(f"No unit states for {', '.join(names)}: {problem}.")
        ctx.print("`ductor doctor` says what to fix.")
        return 0
    header = ["agent", "unit", "active", "enabled", "since", "restarts", "memory", "next"]
    ctx.print(table([s.row() for s in statuses], header))
    _print_webhooks(ctx, names)
    return 0


def _print_webhooks(ctx: Context, names: list[str]) -> None:
    from ductor.webhooks import status as webhook_status

    hooks = [(n, line) for n in names for line in webhook_status.lines(ctx.paths.agent_state(n))]
    if hooks:
        ctx.print("\nwebhooks (last call):")
        for name, line in hooks:
            ctx.print(f"  {name}/{line}")


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    from ductor import config

    names = agents.list_agents(ctx.paths)
    shown = (
        ctx.manager.show([agents.target(n) for n in names], ["ActiveState", "UnitFileState"])
        if names
        else []
    )
    rows = []
    for name, props in zip(names, shown, strict=True):
        try:
            cfg = config.load_agent_config(ctx.paths, name)
            provider, model, transports = cfg.provider, cfg.model, ",".join(cfg.transports)
            description = " ".join(cfg.description.split())
        except Exception as exc:  # a broken config is listed, not fatal here
            provider, model, transports = "?", "?", f"config error: {exc}"
            description = ""
        rows.append(
            {
                "name": name,
                "active": props.get("ActiveState", "unknown"),
                "enabled": props.get("UnitFileState", "") or "-",
                "provider": provider,
                "model": model,
                "transports": transports,
                "description": description,
                "config": str(ctx.paths.agent_config(name)),
            }
        )
    if ctx.json:
        ctx.dump(rows)
    elif not rows:
        ctx.print("No agents yet. Create one with `ductor init`.")
    else:
        keys = ["name", "active", "enabled", "provider", "model", "transports", "description"]
        keys.append("config")
        ctx.print(table([[str(r[k]) for k in keys] for r in rows], keys))
    return 0


def run_overview(ctx: Context, args: argparse.Namespace) -> int:
    """``ductor`` alone: what it is, the agents and their state, and the next step."""
    from ductor import __version__, config

    ctx.print(
        f"ductor {__version__}: Claude Code, Codex and Gemini CLI as chat agents"
        " (Telegram, Matrix), run by systemd."
    )
    names = agents.list_agents(ctx.paths)
    scope = " ".join(ctx.manager.scope)
    problem = ctx.manager.problem() if names else None
    shown = (
        ctx.manager.show([agents.target(n) for n in names], ["ActiveState", "UnitFileState"])
        if names and problem is None
        else [{} for _ in names]
    )
    rows = []
    stopped = []
    for name, props in zip(names, shown, strict=True):
        try:
            cfg = config.load_agent_config(ctx.paths, name)
            provider, model, transports = cfg.provider, cfg.model, ",".join(cfg.transports)
        except Exception:  # listed anyway; `ductor doctor` shows the error
            provider, model, transports = "?", "?", "config error"
        active = props.get("ActiveState", "unknown")
        if active != "active":
            stopped.append(name)
        enabled = props.get("UnitFileState", "") or "-"
        rows.append([name, active, enabled, provider, model, transports])
    ctx.print()
    if not names:
        ctx.print(f"No agents yet ({ctx.paths.agents_config_dir} is empty).")
        ctx.print()
        ctx.print("Next: create one; it asks for the bot token and your user id:")
        ctx.print(f"  ductor{'' if ctx.mode is Mode.USER else ' --system'} init")
    else:
        ctx.print(table(rows, ["agent", "state", "enabled", "provider", "model", "transports"]))
        ctx.print()
        first = (stopped or names)[0]
        if problem is not None:
            ctx.print(f"The agents' state is unknown: {problem}.")
            ctx.print("Next: `ductor doctor` says what to fix.")
        elif stopped:
            ctx.print(f"Next: turn it on with `systemctl {scope} start {agents.target(first)}`")
            ctx.print("      (`ductor doctor` checks the CLIs, the config and the units first).")
        else:
            ctx.print(f"Next: write to your bot, or talk to it here: `ductor chat {first}`;")
            ctx.print(
                f"      watch it with `ductor logs {first} -f`, check it with `ductor doctor`."
            )
    ctx.print()
    ctx.print("Every command: `ductor --help`.")
    return 0

"""The agents of this machine from a chat: ``/agents`` (their state as the service
manager sees it), ``/agent_start``, ``/agent_stop``, ``/agent_restart`` and
``/agent_commands`` (docs/agents.md).

Health is systemd's: the state of ``ductor-agent@NAME.service`` and of the agent's
target, since when, how often it restarted, its memory and the last error line of its
journal. Only agents of this account are listed and managed (the same manager); a
manager that refuses (system mode without the right to start units) says why.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ductor import agents, protocol
from ductor.agent.execute import SEP
from ductor.config import load_agent_config
from ductor.errors import ConfigError, DuctorError
from ductor.paths import Mode
from ductor.run import run
from ductor.units import Manager, unit_name

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "NRestarts",
    "MemoryCurrent",
)
# A unit that keeps crashing: the service's Result=, or (systemd 252, socket-activated)
# its socket's, once the start limit is hit.
START_LIMIT_HIT = frozenset({"start-limit-hit", "service-start-limit-hit"})
ICONS = {"active": "●", "activating": "◐", "reloading": "◐", "failed": "✖"}

AGENT_COMMANDS = f"""**Multi-agent** {SEP}
Several agents run on this machine, each with its own bot, workspace, memory and
sessions. They ask each other with the tool scripts in `tools/agent_tools/`
(`ask_agent.py`, `ask_agent_async.py`) and share `SHAREDMEMORY.md`.

/agents: every agent with its state (from systemd), model and transports
/agent_start NAME: turn an agent on
/agent_stop NAME: turn an agent off
/agent_restart NAME: restart an agent's units
/stop_all: stop what every agent is running

A new agent: `ductor agent add NAME` on the machine (or ask this agent to run
`tools/agent_tools/create_agent.py`)."""


@dataclass(frozen=True)
class Health:
    name: str
    state: str  # active, inactive, failed, activating, ... or "unknown"
    sub: str = ""
    result: str = ""  # systemd's Result=, e.g. start-limit-hit, exit-code
    since: str = ""
    restarts: int | None = None
    memory_bytes: int | None = None
    last_error: str = ""


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return None if number >= 2**63 else number


def _human_bytes(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return ""


def _timestamp(value: str) -> str:
    parts = value.split()
    return " ".join(parts[1:3]) if len(parts) >= 3 else value


def service(name: str) -> str:
    return unit_name("ductor-agent@.service", name)


def health(manager: Manager, names: list[str]) -> dict[str, Health]:
    """State of each agent's daemon (falling back to its target) as systemd sees it."""
    sockets = [unit_name("ductor-agent@.socket", n) for n in names]
    units = [service(n) for n in names] + [agents.target(n) for n in names] + sockets
    shown = manager.show(units, PROPERTIES)
    by_unit = {p.get("Id", ""): p for p in shown if p.get("Id")}
    found: dict[str, Health] = {}
    for name in names:
        props = by_unit.get(service(name), {})
        target = by_unit.get(agents.target(name), {})
        socket = by_unit.get(unit_name("ductor-agent@.socket", name), {})
        state = props.get("ActiveState", "unknown")
        if state == "inactive" and target.get("ActiveState") == "active":
            state, props = "idle", {**props, "SubState": "socket-activated"}
        entered = "ActiveEnterTimestamp" if state == "active" else "InactiveEnterTimestamp"
        since = _timestamp(props.get(entered, ""))
        found[name] = Health(
            name=name,
            state=state,
            sub=props.get("SubState", ""),
            result="start-limit-hit"
            if {props.get("Result"), socket.get("Result")} & START_LIMIT_HIT
            else props.get("Result", ""),
            since=since,
            restarts=_int(props.get("NRestarts")),
            memory_bytes=_int(props.get("MemoryCurrent")),
            last_error=last_error(manager, name) if state in ("failed", "activating") else "",
        )
    return found


def last_error(manager: Manager, name: str) -> str:
    """The agent's last error line in the journal (the daemon's units)."""
    scope = ["--user"] if manager.mode is Mode.USER else []
    try:
        result = run(
            [
                "journalctl",
                *scope,
                "-u",
                service(name),
                "-p",
                "err",
                "-n",
                "1",
                "-o",
                "cat",
                "--no-pager",
            ],
            check=False,
            timeout=10,
        )
    except (DuctorError, OSError):
        return ""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def agents_text(agent: Agent) -> str:
    names = agents.list_agents(agent.paths)
    if not names:
        return "No agents."
    manager = Manager(agent.paths.mode)
    try:
        states = health(manager, names) if manager.problem() is None else {}
    except DuctorError as exc:
        log.warning("/agents: no state from the service manager: %s", exc)
        states = {}
    lines = [f"**Agents** {SEP}"]
    for name in names:
        try:
            config = agent.config if name == agent.name else load_agent_config(agent.paths, name)
            transports = ", ".join(config.transports) or "no transport"
            what = f"{config.provider}/{config.model} · {transports}"
            if description := " ".join(config.description.split()):
                what = f"{description} · {what}"
        except ConfigError as exc:
            what = f"config error: {exc}"
        state = states.get(name)
        me = " (this agent)" if name == agent.name else ""
        if state is None:
            running = agent.paths.agent_socket(name).exists()
            lines.append(f"{'●' if running else '○'} **{name}**{me}: {what}")
            lines.append(f"   {'socket open' if running else 'not running'} (no service manager)")
            continue
        icon = ICONS.get(state.state, "○")
        lines.append(f"{icon} **{name}**{me}: {what}")
        detail = [state.state + (f" ({state.sub})" if state.sub else "")]
        if state.state == "failed" and state.result:
            detail.append(
                "start limit hit: it keeps crashing"
                if state.result == "start-limit-hit"
                else f"result: {state.result}"
            )
        if state.since:
            detail.append(f"since {state.since}")
        if state.restarts:
            detail.append(f"{state.restarts} restart{'s' if state.restarts != 1 else ''}")
        if memory := _human_bytes(state.memory_bytes):
            detail.append(memory)
        lines.append("   " + ", ".join(detail))
        if state.last_error:
            lines.append(f"   last error: `{state.last_error}`")
    return "\n".join(lines)


def status_lines(agent: Agent) -> list[str]:
    """For ``/status``: one line per other agent (state, restarts, a crash loop named);
    nothing when this agent is alone."""
    others = [n for n in agents.list_agents(agent.paths) if n != agent.name]
    if not others:
        return []
    manager = Manager(agent.paths.mode)
    try:
        states = health(manager, others) if manager.problem() is None else {}
    except DuctorError:
        states = {}
    lines = [f"**Other agents** {SEP}"]
    for name in others:
        state = states.get(name)
        if state is None:
            running = agent.paths.agent_socket(name).exists()
            lines.append(f"{'●' if running else '○'} {name}: {'running' if running else 'off'}")
            continue
        text = f"{ICONS.get(state.state, '○')} {name}: {state.state}"
        if state.result == "start-limit-hit":
            text += ", start limit hit (keeps crashing)"
        if state.restarts:
            text += f", {state.restarts} restart{'s' if state.restarts != 1 else ''}"
        lines.append(text)
    return lines


def manage(agent: Agent, verb: str, name: str) -> str:
    name = name.strip().lower()
    if not name:
        return f"Usage: /agent_{verb} NAME (see /agents)"
    if name not in agents.list_agents(agent.paths):
        known = ", ".join(agents.list_agents(agent.paths)) or "none"
        return f"There is no agent named `{name}` (agents: {known})."
    if name == agent.name and verb == "stop":
        return (
            f"`{name}` is this agent: stopping it from here would end this chat's bot."
            f" Run `ductor agent stop {name}` on the machine."
        )
    manager = Manager(agent.paths.mode)
    problem = manager.problem()
    if problem is not None:
        return f"Cannot {verb} `{name}`: {problem}."
    args = [verb, agents.target(name)]
    if name == agent.name:
        args.insert(1, "--no-block")  # the restart takes this very process down
    result = manager.systemctl(*args, check=False, timeout=60)
    if not result.ok:
        why = (result.stderr.strip() or result.stdout.strip() or "refused").splitlines()[-1]
        return f"Cannot {verb} `{name}`: {why}"
    done = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    log.info("agent %s %s from a chat", name, done)
    return f"Agent `{name}` {done}."


def _result(text: str) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text)


async def cmd_agents(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    return _result(await asyncio.to_thread(agents_text, agent))


async def cmd_agent_start(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    return _result(await asyncio.to_thread(manage, agent, "start", args))


async def cmd_agent_stop(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    return _result(await asyncio.to_thread(manage, agent, "stop", args))


async def cmd_agent_restart(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    return _result(await asyncio.to_thread(manage, agent, "restart", args))


async def cmd_agent_commands(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    return _result(AGENT_COMMANDS)

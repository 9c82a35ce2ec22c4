"""Chat commands: answered at once, never queued behind a running turn.

Results are transport-neutral: text (light Markdown) plus rows of abstract buttons
(label + callback data); each transport renders them its own way. ``/model`` and
``/effort`` are selectors whose buttons come back as ``button`` requests (``ms:...``),
``/cron`` is one too (``crn:...``, see :mod:`ductor.agent.cron_selector`).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ductor import __version__, clipath, protocol, sandbox
from ductor.agent import (
    agent_commands,
    cron_selector,
    files_selector,
    selectors,
    session_commands,
    task_commands,
    topic_commands,
    welcome,
)
from ductor.agent.execute import SEP
from ductor.run import run as run_command
from ductor.tasks.store import TaskKind
from ductor.webhooks import status as webhook_status

if TYPE_CHECKING:
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

ButtonRows = list[list[dict[str, str]]]


@dataclass
class CommandResult:
    text: str
    buttons: ButtonRows = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # checked paths the transport sends


Handler = Callable[["Agent", protocol.Request, str], Awaitable[CommandResult]]

HELP = """**Commands**
/new: fresh session with the default model (other providers' sessions are kept);
`/new @TopicName` resets another topic of this group
/reset: fresh session with the current model
/stop: stop the running answer and drop queued messages
/interrupt: interrupt the running answer (like Ctrl-C); queued messages go on
/stop_all: stop everything every agent runs
/model: choose the model (`/model sonnet` switches directly)
/effort: choose the reasoning effort for this chat
/topicmodel: this topic's lasting default model (`/topicmodel sonnet`, `/topicmodel reset`)
/cron: the cron jobs: pause, resume, last runs
/tasks: background tasks of this chat: cancel, clean up
/session: start a named session in the background (`/session @opus <prompt>`)
/sessions: this chat's sessions and named sessions: end them
/status: session, queue and CLI state
/memory: show the agent's long-term memory
/showfiles: browse the files for you (output_to_user/) and the ones you sent, and get them
/diagnose: versions, config and recent log lines
/agents: the agents of this machine and their state
/agent_start: turn an agent on (`/agent_start NAME`)
/agent_stop: turn an agent off (`/agent_stop NAME`)
/agent_restart: restart an agent (`/agent_restart NAME`)
/agent_commands: how the agents work together
/info: about ductor
/help: this list

Start a message with `@model` (e.g. `@sonnet`) to switch this chat's model for it and
the messages after it."""


def command_word(text: str) -> tuple[str, str]:
    """``("/model", "sonnet")`` from ``"/Model@mybot sonnet"``; ("", "") if no command."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return "", ""
    word, _, rest = stripped.partition(" ")
    word = word.split("@", 1)[0].lower()
    return word, rest.strip()


def session_of(request: protocol.Request) -> str:
    if not request.session:
        raise protocol.ProtocolError(
            protocol.ErrorCode.BAD_REQUEST, "this command needs a session", "session"
        )
    return request.session


def is_private(request: protocol.Request) -> bool:
    if request.chat_is_private is not None:
        return request.chat_is_private
    key = protocol.parse_session_key(session_of(request))
    if key.topic is not None:
        return False
    if key.transport == "tg":
        return not key.chat.startswith("-")
    return key.transport == "cli"


async def cmd_new(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    key = session_of(request)
    if args.startswith("@") and len(args) > 1:
        return await topic_commands.new_in_topic(agent, request, args[1:])
    await agent.stop(key)
    provider, model = agent.turn_env().defaults(key)  # the topic's lasting model, if set
    session = agent.sessions.new_session(key, default_provider=provider, default_model=model)
    return CommandResult(
        f"**Session Reset** {SEP} New {session.provider} session ({session.model}) in this"
        " chat. Sessions with other providers were kept. Send a message to continue."
    )


async def cmd_reset(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    key = session_of(request)
    await agent.stop(key)
    session = agent.sessions.reset_current(
        key, default_provider=agent.config.provider, default_model=agent.config.model
    )
    return CommandResult(
        f"**Session Reset** {SEP} New {session.provider} session ({session.model}) in this"
        " chat. Send a message to continue."
    )


async def cmd_stop(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    stopped, discarded = await agent.stop(session_of(request))
    stopped += await asyncio.to_thread(
        session_commands.end_chat_sessions, agent, session_of(request)
    )
    if not stopped and not discarded:
        return CommandResult("Nothing running right now.")
    extra = f" {discarded} queued message(s) discarded." if discarded else ""
    return CommandResult(f"**Agent Stopped** {SEP} Stopped {stopped} process(es).{extra}")


async def cmd_interrupt(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    count = agent.interrupt(session_of(request))
    return CommandResult(f"Interrupted {count} process(es)." if count else "No active processes.")


async def cmd_stop_all(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    count = await agent.stop_all()
    tasks = await asyncio.to_thread(task_commands.hub(agent).cancel_session, None)
    tasks += await asyncio.to_thread(
        task_commands.hub(agent).cancel_session, None, TaskKind.SESSION
    )
    others = await agent.stop_other_agents(request)
    total = count + tasks + others
    if not total:
        return CommandResult("No active processes found on any agent.")
    return CommandResult(f"Stopped {total} process(es) across all agents.")


async def cmd_status(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    lines: list[str] = []
    session = agent.sessions.get(request.session) if request.session else None
    if session is None:
        lines.append(f"**Session** {SEP} none yet; next model: {agent.config.model}")
    else:
        bucket = session.bucket()
        sid = f"{bucket.session_id[:8]}..." if bucket.session_id else "new"
        effort = session.effort or agent.config.reasoning_effort
        configured = (
            f" (configured: {agent.config.model})" if session.model != agent.config.model else ""
        )
        lines += [
            f"**Session** {SEP} {session.topic_name or session.key}",
            f"id {sid} · {bucket.message_count} messages"
            f" · {bucket.input_tokens + bucket.output_tokens} tokens"
            f" · ${bucket.cost_usd:.4f}",
            f"model {session.model}{configured} · provider {session.provider}"
            + (f" · effort {effort}" if session.provider != "gemini" else ""),
        ]
    if request.session:
        lines += topic_commands.project_lines(agent, request.session)
    lane = agent.lanes.get(request.session or "")
    if lane is not None and lane.busy:
        lines.append(f"running: {'yes' if lane.running else 'no'} · queued: {len(lane.pending)}")
    lines.append(f"**Agent** {SEP} {agent.name}: {agent.status_line()}")
    lines.append(f"**Sandbox** {SEP} {sandbox.summary(agent.config)}")
    lines += await asyncio.to_thread(agent_commands.status_lines, agent)
    hooks = await asyncio.to_thread(webhook_status.lines, agent.state_dir)
    if hooks:
        lines.append(f"**Webhooks** {SEP}")
        lines += hooks
    lines.append(f"**CLIs** {SEP}")
    dotenv = agent.dotenv.values()
    for provider in ("claude", "codex", "gemini"):
        lines.append(f"[{provider}] {cli_state(provider, agent.env, dotenv)}")
    streaming = agent.config.streaming
    lines.append(
        f"**Streaming** {SEP} tool progress {'on' if streaming.show_tool_progress else 'off'}"
        f" · thinking indicator {'on' if streaming.show_thinking_indicator else 'off'}"
        f" · reasoning stream {'on' if streaming.show_reasoning_stream else 'off'}"
    )
    return CommandResult("\n".join(lines))


def cli_state(provider: str, env: dict[str, str], dotenv: dict[str, str] | None = None) -> str:
    """Installed, logged in (and how), for /status; ``dotenv`` is the agent's .env."""
    if clipath.find_cli(provider, env) is None:
        return "not installed"
    ok, where = clipath.logged_in(provider, env, dotenv)
    return f"authenticated ({where})" if ok else "installed, not logged in"


async def cmd_memory(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    file = agent.workspace / "memory_system" / "MAINMEMORY.md"
    try:
        content = file.read_text(encoding="utf-8").strip()
    except OSError:
        content = ""
    if not content:
        return CommandResult("Memory is empty. The agent builds it as you talk.")
    return CommandResult(
        f"**Memory** {SEP}\n{content}\n{SEP}\nTip: ask the agent to remember or forget things."
    )


async def cmd_diagnose(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    config = agent.config
    lines = [
        f"**Diagnose** {SEP}",
        f"ductor {__version__} · agent {agent.name}",
        f"config: {agent.paths.agent_config(agent.name)}",
        f"default: {config.provider}/{config.model} (effort {config.reasoning_effort})",
        f"permission mode: {config.permission_mode}",
        f"workspace: {agent.workspace}",
        f"agent: {agent.status_line()}",
    ]
    for provider, models in agent.models.items():
        updated = models.last_updated
        lines.append(
            f"{provider} models: {len(models.ids())} (updated {updated:%Y-%m-%d %H:%M} UTC)"
            if updated
            else f"{provider} models: {len(models.ids())} (built-in list)"
        )
    lines.append("")
    lines.append("Recent log lines:")
    lines.append("```\n" + recent_log(agent) + "\n```")
    return CommandResult("\n".join(lines))


def recent_log(agent: Agent, count: int = 30) -> str:
    user = agent.paths.mode.value == "user"
    unit = f"ductor-agent@{agent.name}.service"
    argv = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(count)]
    argv += [f"--user-unit={unit}"] if user else ["-u", unit]
    try:
        result = run_command(argv, check=False, timeout=10)
    except Exception as exc:  # the journal is optional here: say why it is missing
        return f"(journal not available: {exc})"
    output = result.stdout.strip()
    return output[-3000:] if output else "(no journal lines for " + shlex.quote(unit) + ")"


MATRIX_HELP_EXTRA = """
!where: the rooms the bot is in
!leave: leave a room (`!leave <room id>`)

Every command works with `!` or `/`. Buttons are numbered: react with the number, or type
it."""


async def cmd_help(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    if request.session and protocol.parse_session_key(request.session).transport == "mx":
        # Matrix clients treat a leading / as their own command: show the ! forms.
        lines = [
            ("!" + line[1:] if line.startswith("/") else line).replace("`/", "`!")
            for line in HELP.split("\n")
        ]
        head, _, tail = "\n".join(lines).partition("\n\n")
        return CommandResult(head + MATRIX_HELP_EXTRA.rstrip() + "\n\n" + tail)
    return CommandResult(HELP)


async def cmd_info(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    return CommandResult(
        f"**ductor {__version__}** {SEP} Claude Code, Codex and Gemini CLIs driven from your"
        " chats, run by systemd: one agent per unit, cron jobs as timers, logs in the journal."
    )


async def cmd_model(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    if args:
        return await selectors.switch_model(agent, request, args.split(maxsplit=1)[0], effort=None)
    return selectors.model_root(agent, request)


async def cmd_cron(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    word = args.split(maxsplit=1)[0] if args else ""
    page = int(word) - 1 if word.isdigit() else 0
    return await asyncio.to_thread(cron_selector.menu, agent, request, page)


async def cmd_effort(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    if args:
        return selectors.set_effort(agent, request, args.split(maxsplit=1)[0].lower())
    return selectors.effort_menu(agent, request)


COMMANDS: dict[str, Handler] = {
    "/new": cmd_new,
    "/reset": cmd_reset,
    "/stop": cmd_stop,
    "/interrupt": cmd_interrupt,
    "/stop_all": cmd_stop_all,
    "/status": cmd_status,
    "/model": cmd_model,
    "/effort": cmd_effort,
    "/topicmodel": topic_commands.cmd_topicmodel,
    "/cron": cmd_cron,
    "/tasks": task_commands.cmd_tasks,
    "/session": session_commands.cmd_session,
    "/sessions": session_commands.cmd_sessions,
    "/memory": cmd_memory,
    "/showfiles": files_selector.cmd_showfiles,
    "/diagnose": cmd_diagnose,
    "/help": cmd_help,
    "/start": welcome.cmd_start,
    "/info": cmd_info,
    "/agents": agent_commands.cmd_agents,
    "/agent_start": agent_commands.cmd_agent_start,
    "/agent_stop": agent_commands.cmd_agent_stop,
    "/agent_restart": agent_commands.cmd_agent_restart,
    "/agent_commands": agent_commands.cmd_agent_commands,
}


def is_command(text: str) -> bool:
    return command_word(text)[0] in COMMANDS


async def run_command_text(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The command's result, or None when the text is no command we know (a prompt)."""
    word, args = command_word(request.text)
    handler = COMMANDS.get(word)
    if handler is None:
        return None
    log.info("command %s in %s", word, request.session or "-")
    return await handler(agent, request, args)

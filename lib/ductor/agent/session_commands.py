"""Named sessions: ``/session``, ``/sessions`` and their ``nsc:`` and ``ns:`` buttons.

A named session is a conversation of its own beside the chat's (its own CLI session),
run in the background: every run is a ``ductor-task@AGENT:ID`` unit of kind "session",
and its answer is posted to the chat as "**[name] Complete** (42s) ─── ...", with its
``[button:...]`` markers as buttons (``ns:NAME:LABEL``) that continue that session.
``/session @name text`` (or a press of one of its buttons) continues it in the
background; ``/sessions`` lists the chat's sessions with End buttons.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ductor import protocol
from ductor.agent.execute import SEP
from ductor.agent.task_commands import hub
from ductor.errors import DuctorError
from ductor.providers.models import provider_for_model
from ductor.tasks import texts
from ductor.tasks.store import ACTIVE, Task, TaskKind

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

PROVIDERS = ("claude", "codex", "gemini")
LABELS = {"claude": "Claude", "codex": "Codex", "gemini": "Gemini"}
USAGE = (
    "Usage: `/session [@provider [model] | @model] <prompt>` starts a named session in the"
    " background; `/session @name <text>` continues one. `/sessions` lists them."
)

Rows = list[list[dict[str, str]]]


def _result(text: str, buttons: Rows | None = None) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text, buttons or [])


def _target(agent: Agent, words: list[str]) -> tuple[str, str, list[str]] | None:
    """(provider, model, the rest) of a ``@provider [model]`` or ``@model`` directive."""
    head = words[0][1:].lower()
    known = agent.known_models()
    if head in PROVIDERS:
        rest = words[1:]
        if rest and rest[0].lower() in known:
            return head, rest[0].lower(), rest[1:]
        config = agent.config
        if head == config.provider:
            return head, config.model, rest
        return head, "sonnet" if head == "claude" else "", rest
    if head in known:
        provider = provider_for_model(head, gemini_ids=agent.gemini_ids())
        return str(provider), head, words[1:]
    return None


def start(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    session = request.session or ""
    words = args.split()
    if not words:
        return _result(USAGE)
    tasks = hub(agent)
    try:
        if words[0].startswith("@"):
            named = tasks.named(session, words[0][1:].lower())
            if named is not None:
                text = args.split(maxsplit=1)[1] if len(words) > 1 else ""
                if not text.strip():
                    return _result(USAGE)
                task = tasks.follow_up(named, text.strip())
                return _result(f"**[{task.name}] Follow-up sent** {SEP} Task `{task.id}` queued.")
            target = _target(agent, words)
            if target is None:
                return _result(f"Unknown provider, model or session `{words[0]}`.\n\n{USAGE}")
            provider, model, rest = target
            prompt = " ".join(rest)
        else:
            provider, model, prompt = agent.config.provider, agent.config.model, args.strip()
        if not prompt:
            return _result(USAGE)
        task = tasks.start_session(session, prompt, provider, model)
    except DuctorError as exc:
        return _result(str(exc))
    on = f" ({task.model})" if task.model else ""
    return _result(
        f"**Session `{task.name}` started** {SEP} Running on"
        f" {LABELS.get(task.provider, task.provider)}{on}.\n"
        f"Follow up: `/session @{task.name} <message>`"
    )


def _status(task: Task) -> str:
    if task.state in ACTIVE:
        return "running"
    return "idle" if task.error == "" else "failed"


def _age(task: Task) -> str:
    return texts.format_duration(max(0.0, time.time() - task.created_at))


def menu(agent: Agent, request: protocol.Request, note: str = "") -> CommandResult:
    session = request.session or ""
    parts = [f"**Sessions** {SEP}"]
    chat = protocol.parse_session_key(session) if session else None
    if chat is not None:
        prefix = f"{chat.transport}:{chat.chat}"
        topics = []
        for key in sorted(agent.sessions.keys()):
            if key != prefix and not key.startswith(prefix + ":"):
                continue
            found = agent.sessions.get(key)
            if found is None:
                continue
            bucket = found.bucket()
            label = found.topic_name or ("this chat" if key == prefix else key)
            topics.append(
                f"{label} · {found.provider}/{found.model} · {bucket.message_count} msgs,"
                f" ${found.total_cost_usd:.2f}"
            )
        if topics:
            parts.append("**Chat sessions**\n" + "\n".join(topics))
    named = [t for t in hub(agent).list(session, TaskKind.SESSION) if not t.ended]
    if named:
        lines = []
        for index, task in enumerate(named, 1):
            lines.append(
                f"{index}. **{task.name}** | {texts.provider_label(task)} | {_status(task)}"
                f" ({task.run} msgs, {_age(task)})\n> _{' '.join(task.prompt.split())[:60]}_"
            )
        parts.append("**Named sessions**\n" + "\n".join(lines))
    else:
        parts.append("No named sessions. Start one with `/session <prompt>`.")
    if note:
        parts.append(f"_{note}_")
    buttons: Rows = [[{"label": f"End {t.name}", "data": f"nsc:end:{t.name}"}] for t in named]
    if len(named) > 1:
        buttons.append([{"label": "End all", "data": "nsc:endall"}])
    buttons.append([{"label": "Refresh", "data": "nsc:r"}])
    return _result("\n\n".join(parts), buttons)


async def cmd_session(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    return await asyncio.to_thread(start, agent, request, args)


async def cmd_sessions(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    return await asyncio.to_thread(menu, agent, request)


async def handle_button(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The result of an ``nsc:`` or ``ns:`` callback, or None when the data is not ours."""
    if request.data.startswith(("nsc:", "ns:")):
        return await asyncio.to_thread(answer, agent, request)
    return None


def answer(agent: Agent, request: protocol.Request) -> CommandResult:
    session = request.session or ""
    tasks = hub(agent)
    kind, _, rest = request.data.partition(":")
    if kind == "ns":  # a button under a named session's answer: continue it
        name, _, label = rest.partition(":")
        named = tasks.named(session, name)
        if named is None:
            return _result(f"Session '{name}' has ended or was not found.")
        try:
            task = tasks.follow_up(named, request.text or label)
        except DuctorError as exc:
            return _result(str(exc))
        return _result(f"**[{task.name}] Follow-up sent** {SEP} Task `{task.id}` queued.")
    action, _, name = rest.partition(":")
    note = ""
    if action == "end":
        named = tasks.named(session, name)
        if named is None:
            note = f"Session '{name}' has ended or was not found."
        else:
            tasks.end(named)
            note = f"Session {name} ended."
    elif action == "endall":
        live = [t for t in tasks.list(session, TaskKind.SESSION) if not t.ended]
        for task in live:
            tasks.end(task)
        note = f"Ended {len(live)} session{'s' if len(live) != 1 else ''}."
    elif action != "r":
        note = "This button is no longer valid."
    return menu(agent, request, note)


def end_chat_sessions(agent: Agent, session: str) -> int:
    """``/stop`` outside a topic: stop the chat's named-session runs and end them."""
    key = protocol.parse_session_key(session)
    if key.topic is not None:
        return 0
    tasks = hub(agent)
    stopped = 0
    for task in tasks.list(session, TaskKind.SESSION):
        if not task.ended:
            stopped += task.state in ACTIVE
            tasks.end(task)
    return stopped

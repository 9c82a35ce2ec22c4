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
import re
import time
from typing import TYPE_CHECKING, Protocol

from ductor import protocol
from ductor.agent.execute import SEP
from ductor.agent.runner import CliNotFound, CliRun
from ductor.agent.task_commands import hub
from ductor.agent.turns import new_turn_id
from ductor.errors import DuctorError
from ductor.protocol import Events
from ductor.providers.events import Error, Result, SessionStarted, TextDelta
from ductor.providers.models import provider_for_model
from ductor.tasks import texts
from ductor.tasks.runner import build_spec
from ductor.tasks.store import ACTIVE, Status, Task, TaskKind

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
        f"Follow up: `@{task.name} <message>`"
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


# -- `@name <text>`: a follow-up in the foreground -------------------------------------

_FOLLOW_UP = re.compile(r"@([A-Za-z][A-Za-z0-9]*)(?:\s+(.*))?", re.DOTALL)


class Sink(Protocol):
    @property
    def connected(self) -> bool: ...

    def send(self, event: protocol.Event) -> None: ...


async def foreground(agent: Agent, request: protocol.Request, sink: Sink) -> bool:
    """Continue the chat's named session NAME with ``@NAME <text>``, streamed to the
    client and tagged ``**[NAME | provider]**``; False when the message names no named
    session of the chat (it may be an ``@model`` directive)."""
    if not request.text.lstrip().startswith("@"):  # every message passes here: stay cheap
        return False
    match = _FOLLOW_UP.fullmatch(request.text.strip())
    if match is None or request.session is None:
        return False
    session, name, text = request.session, match.group(1).lower(), (match.group(2) or "").strip()
    tasks = hub(agent)
    found = [t for t in tasks.list(session, TaskKind.SESSION) if t.name == name]
    if not found:
        return False

    def answer(text: str) -> None:
        if sink.connected:
            sink.send(Events.final(request.id, text=text, command=True))

    task = found[-1]
    if task.ended:
        answer(f"Session '{name}' has ended. Start a new one with `/session <prompt>`.")
        return True
    if task.state in ACTIVE:
        answer(f"Session '{name}' is still processing. Wait or use /stop to cancel.")
        return True
    if not text:
        answer(f"Send `@{name} <text>` to continue session {name}.")
        return True
    started = time.time()
    task = tasks.store.update(
        task.id,
        status=Status.RUNNING.value,
        follow_up=text,
        run=task.run + 1,
        started_at=started,
        error="",
        cancel_requested=False,
    )
    run = CliRun(build_spec(task, agent.name, agent.paths, agent.config, agent.env))
    tag = f"**[{name} | {task.provider}]**\n\n"
    label = f"ns:{name}"
    if sink.connected:
        sink.send(Events.accepted(request.id, new_turn_id(), session))
        sink.send(Events.text(request.id, tag))
    agent.registry.add(session, label, run)
    result, error, session_id = "", "", ""
    try:
        async for event in run.events():
            if isinstance(event, TextDelta) and sink.connected:
                sink.send(Events.text(request.id, event.text))
            elif isinstance(event, SessionStarted):
                session_id = event.session_id
            elif isinstance(event, Result):
                result, session_id = event.text, event.session_id or session_id
                if event.is_error and not error:
                    error = event.text or "the CLI reported an error"
            elif isinstance(event, Error):
                error = event.text
    except CliNotFound as exc:
        error = str(exc)
    finally:
        agent.registry.remove(session, label, run)
    if run.stopped_by is not None and not error:
        error = "stopped"
    tasks.store.update(
        task.id,
        status=(Status.FAILED if error else Status.DONE).value,
        completed_at=time.time(),
        elapsed_seconds=round(time.time() - started, 1),
        error=error,
        session_id=session_id or task.session_id,
        result_preview=result.strip()[: texts.RESULT_PREVIEW],
    )
    text = tag + (f"Failed: {error}" if error else result.strip())
    if sink.connected:
        sink.send(Events.final(request.id, text=text, session=session))
    else:
        agent.post_notice(session, text, origin=f"session {name}")
    return True

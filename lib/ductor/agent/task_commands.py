"""Background tasks in the agent: the tool scripts' ``task`` requests, ``/tasks`` and its
``tsc:`` buttons.

The tool scripts in ``tools/task_tools/`` send ``{"type": "task", "text": VERB, "data":
JSON arguments, "sender": DUCTOR_AGENT_NAME, "session": the chat}`` (docs/protocol.md);
a request whose sender is not this agent is refused. Everything that touches files or
``systemctl`` runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ductor import protocol
from ductor.agent.execute import SEP
from ductor.errors import DuctorError
from ductor.protocol import ErrorCode, Events
from ductor.tasks import texts
from ductor.tasks.hub import TaskHub, public
from ductor.tasks.store import ACTIVE, FINISHED, Status, Task

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

PREFIX = "tsc:"
LABEL_CHARS = 30
ICONS = {
    Status.STARTING: "[...]",
    Status.RUNNING: "[...]",
    Status.WAITING: "[?]",
    Status.DONE: "[OK]",
    Status.FAILED: "[FAIL]",
    Status.CANCELLED: "[X]",
}
NO_TASKS = "**Background tasks**\n\nNo background tasks in this chat."

Rows = list[list[dict[str, str]]]


def hub(agent: Agent) -> TaskHub:
    return TaskHub(agent.name, agent.paths, lambda: agent.config, agent.env)


# -- the tool scripts' requests ---------------------------------------------------------


async def handle_request(agent: Agent, request: protocol.Request) -> protocol.Event:
    if request.sender != agent.name:
        return Events.error(
            request.id,
            ErrorCode.UNAUTHORIZED,
            f"tasks of agent {agent.name!r} belong to it alone (DUCTOR_AGENT_NAME is"
            f" {request.sender or 'not set'!r})",
        )
    try:
        args = json.loads(request.data) if request.data else {}
    except ValueError as exc:
        return Events.error(request.id, ErrorCode.BAD_REQUEST, f"data: {exc}")
    if not isinstance(args, dict):
        return Events.error(request.id, ErrorCode.BAD_REQUEST, "data: expected a JSON object")
    try:
        return await asyncio.to_thread(_task_verb, agent, request, args)
    except DuctorError as exc:
        return Events.error(request.id, ErrorCode.BAD_REQUEST, str(exc))


def _task_verb(agent: Agent, request: protocol.Request, args: dict[str, Any]) -> protocol.Event:
    tasks = hub(agent)
    verb = request.text
    task_id = str(args.get("task_id") or "")
    if verb == "create":
        task = tasks.create(args, request.session or "")
        log.info("task %s (%s) created for %s", task.id, task.name, task.session or "-")
        text = (
            f"Task {task.id} '{task.name}' started on {texts.provider_label(task)}. Its result"
            " comes back into this conversation when it is done."
        )
        return Events.final(request.id, text=text, task=public(task))
    if verb == "list":
        listed = tasks.list()
        return Events.final(request.id, text=list_text(listed), tasks=[public(t) for t in listed])
    if verb == "cancel":
        task = tasks.cancel(task_id)
        return Events.final(
            request.id, text=f"Task {task.id} is being cancelled.", task=public(task)
        )
    if verb == "delete":
        task = tasks.delete(task_id)
        return Events.final(request.id, text=f"Task {task.id} deleted.", task=public(task))
    if verb == "resume":
        task = tasks.resume(task_id, str(args.get("prompt") or ""))
        return Events.final(request.id, text=f"Task {task.id} resumed.", task=public(task))
    if verb == "ask":
        return Events.final(request.id, text=tasks.ask(task_id, str(args.get("question") or "")))
    return Events.error(
        request.id,
        ErrorCode.BAD_REQUEST,
        f"{verb!r} is not a task verb (create, list, cancel, delete, resume, ask)",
    )


def list_text(tasks: list[Task]) -> str:
    """``list_tasks.py``'s lines: ``⏳ [id] name | provider/model | status 37s``."""
    if not tasks:
        return "No background tasks."
    icons = {Status.DONE: "✅", Status.FAILED: "❌", Status.CANCELLED: "🚫"}
    lines = []
    for task in tasks:
        icon = icons.get(task.state, "⏳")
        line = (
            f"{icon} [{task.id}] {task.name} | {texts.provider_label(task)} | {task.status}"
            f" {int(task.duration)}s"
        )
        if task.state is Status.WAITING and task.last_question:
            line += f"\n   ↳ {task.last_question[:200]}"
        if task.error:
            line += f"\n   error: {task.error[:200]}"
        lines.append(line)
    return "\n".join(lines)


# -- /tasks ---------------------------------------------------------------------------


def _result(text: str, buttons: Rows | None = None) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text, buttons or [])


def _entry(task: Task) -> str:
    line = (
        f"{ICONS.get(task.state, '[?]')} **{task.name}** · {texts.provider_label(task)}"
        f" · {task.status} ({texts.format_duration(task.duration)})"
    )
    if task.state is Status.FAILED and task.error:
        line += f" · {task.error[:80]}"
    return line


def menu(agent: Agent, request: protocol.Request, note: str = "") -> CommandResult:
    session = request.session or ""
    tasks = hub(agent).list(session)
    running = [t for t in tasks if t.state in ACTIVE]
    waiting = [t for t in tasks if t.state is Status.WAITING]
    finished = [t for t in tasks if t.state in FINISHED]
    refresh = {"label": "Refresh", "data": f"{PREFIX}r"}
    if not tasks:
        text = NO_TASKS + (f"\n\n_{note}_" if note else "")
        return _result(text, [[refresh]])
    parts = [f"**Background tasks** {SEP}"]
    if running:
        parts.append("**Running**\n" + "\n".join(_entry(t) for t in running))
    if waiting:
        parts.append(
            "**Waiting**\n"
            + "\n".join(
                _entry(t) + (f"\n  ↳ _{t.last_question[:200]}_" if t.last_question else "")
                for t in waiting
            )
        )
    if finished:
        parts.append("**Finished**\n" + "\n".join(_entry(t) for t in finished[-10:]))
    parts.append(f"{len(running)} running · {len(waiting)} waiting · {len(finished)} finished")
    if note:
        parts.append(f"_{note}_")
    buttons: Rows = [
        [{"label": f"Cancel {t.name[:LABEL_CHARS]}", "data": f"{PREFIX}cancel:{t.id}"}]
        for t in running
    ]
    if len(running) > 1:
        buttons.append([{"label": "Cancel all", "data": f"{PREFIX}cancelall"}])
    last = [refresh]
    if finished:
        last.append({"label": "Delete finished", "data": f"{PREFIX}cleanup"})
    buttons.append(last)
    return _result("\n\n".join(parts), buttons)


async def cmd_tasks(agent: Agent, request: protocol.Request, _: str) -> CommandResult:
    return await asyncio.to_thread(menu, agent, request)


async def handle_button(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The result of a ``tsc:`` callback, or None when the data is not ours."""
    if not request.data.startswith(PREFIX):
        return None
    return await asyncio.to_thread(answer, agent, request)


def answer(agent: Agent, request: protocol.Request) -> CommandResult:
    action, _, target = request.data.removeprefix(PREFIX).partition(":")
    tasks = hub(agent)
    session = request.session or ""
    note = ""
    try:
        if action == "cancel" and target:
            task = tasks.get(target)
            if task.session != session:
                note = "That task belongs to another chat."
            else:
                tasks.cancel(task.id)
                note = f"Cancelling {task.name}: its partial result follows."
        elif action == "cancelall":
            count = tasks.cancel_session(session)
            note = f"Cancelling {count} task{'s' if count != 1 else ''}."
        elif action == "cleanup":
            count = tasks.delete_finished(session)
            note = f"Deleted {count} finished task{'s' if count != 1 else ''}."
        elif action != "r":
            note = "This button is no longer valid."
    except DuctorError as exc:
        note = str(exc)
    return menu(agent, request, note)

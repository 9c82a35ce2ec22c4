"""What a task says: its prompts, its folder's files, the chat notices, and the inbox
envelope that carries a result (or a question) back to the agent.

The inbox envelope (docs/spool.md, "Injecting into a session"): routed to the session
the task reports to; ``payload.text`` is the notice posted to the chat (once), and
``payload.metadata["prompt"]`` the prompt injected into the chat's active session.
"""

from __future__ import annotations

import time
from pathlib import Path

from ductor.spool import Button, Envelope, Execution, ExecutionStatus, Kind, Payload, Routing
from ductor.tasks.store import Status, Task

MEMORY_LIMIT = 4000
RESULT_PREVIEW = 200
ERROR_LIMIT = 2000
PROMPT_KEY = "prompt"  # payload.metadata key of the text to inject

TASK_RULES = """\
# Task Agent Rules

You are a background task of the agent `{agent}`, working on one task for it. You have
no user to talk to: nobody reads what you write except the agent that gave you this task.

- When you cannot go on without a decision or information only the user or the parent
  agent has, ask with `python3 tools/task_tools/ask_parent.py "your question"`, then
  finish your current work: you will be resumed with the answer.
- Keep `tasks/{task_id}/TASKMEMORY.md` up to date: what you did, what you found, what is
  left. It is handed back with your result, also when you are cancelled.
- Do not create further background tasks for this task's own work.
- End with a complete, self-contained result: it is all the parent agent sees.
"""

TASKMEMORY_TEMPLATE = """\
# Task: {name}

Created: {created}
Provider/model: {provider}/{model}

## Task Description
{description}

## Progress
"""

PROMPT_SUFFIX = """

---
TASK RULES (MANDATORY): you are a background task; nobody sees your output except the \
agent that started you. If you need a decision or information from the user, run \
`python3 tools/task_tools/ask_parent.py "your question"` and finish your current work: \
you will be resumed with the answer. After finishing, update your task memory: {memory}"""

RESUME_REMINDER = """

---
Reminder: you are a background task without user access. Ask with \
`python3 tools/task_tools/ask_parent.py "..."` if you must, and write your results to \
{memory}."""


TOOL_NAMES = (
    "create_task",
    "list_tasks",
    "cancel_task",
    "delete_task",
    "resume_task",
    "ask_parent",
)


def tool_scripts() -> dict[str, str]:
    """File name → text of the scripts in ``tools/task_tools/``: one script (tool.py)
    under each name, doing what its name says."""
    text = Path(__file__).with_name("tool.py").read_text(encoding="utf-8")
    return {f"{name}.py": text for name in TOOL_NAMES}


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"


def rules_text(agent: str, task_id: str) -> str:
    return TASK_RULES.format(agent=agent, task_id=task_id)


def memory_seed(task: Task) -> str:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task.created_at or time.time()))
    return TASKMEMORY_TEMPLATE.format(
        name=task.name,
        created=created,
        provider=task.provider,
        model=task.model or "default",
        description=task.prompt[:500],
    )


def run_prompt(task: Task, memory: Path) -> str:
    """What the task's CLI is asked: the task with its rules, or a resume's follow-up."""
    if task.follow_up:
        return task.follow_up + RESUME_REMINDER.format(memory=memory)
    return task.prompt + PROMPT_SUFFIX.format(memory=memory)


def memory_block(content: str, memory: Path) -> str:
    content = content.strip()
    if not content:
        return ""
    if len(content) > MEMORY_LIMIT:
        content = (
            content[:MEMORY_LIMIT] + f"\n[... truncated -- original was {len(content)} chars."
            f" Full content at: {memory}]"
        )
    return f"\n\n---\nCONTENT FROM TASKMEMORY.MD ({memory}):\n{content}"


def provider_label(task: Task) -> str:
    return f"{task.provider}/{task.model}" if task.model else task.provider


def notice(task: Task, memory_text: str, memory: Path) -> str:
    """The chat's notice of a finished run."""
    name = task.name
    state = task.state
    if state is Status.DONE:
        return (
            f"**Task `{name}` completed** ({format_duration(task.elapsed_seconds)},"
            f" {provider_label(task)})"
        )
    if state is Status.CANCELLED:
        return f"**Task `{name}` cancelled**" + memory_block(memory_text, memory)
    return f"**Task `{name}` failed**\nReason: {task.error[:ERROR_LIMIT] or 'unknown'}"


def injection(task: Task, result: str, memory_text: str, memory: Path) -> str:
    """The prompt that brings a done or failed run back into the parent session; ""
    for a cancelled one (the user cancelled it: the notice says all)."""
    state = task.state
    header = (
        f"task_id='{task.id}' name='{task.name}']\nProvider: {provider_label(task)}"
        f" | Duration: {format_duration(task.elapsed_seconds)}"
    )
    if state is Status.DONE:
        body = (result.strip() or "(the task gave no answer)") + memory_block(memory_text, memory)
        return (
            f"[BACKGROUND TASK COMPLETED: {header}\n\n{body}\n\n"
            f'To follow up: python3 tools/task_tools/resume_task.py {task.id} "your follow-up"'
            f"\n\n[END TASK RESULT]\n\nOriginal task: {task.prompt}\n\n"
            "Review this result critically: check it against the original task, say what"
            " is missing or doubtful, and tell the user the outcome in your own words."
        )
    if state is Status.FAILED:
        return (
            f"[BACKGROUND TASK FAILED: {header}\n\nError: {task.error[:ERROR_LIMIT]}\n\n"
            f"[END TASK RESULT]\n\nOriginal task: {task.prompt}\n\n"
            "Inform the user that the task failed and why, and suggest what to do next"
            " (retry, change the approach, or resume it with resume_task.py)."
        )
    return ""


def question_notice(task: Task, question: str) -> str:
    return f"**Task `{task.id}` has a question:**\n{question}"


def question_injection(task: Task, question: str) -> str:
    return (
        f"[BACKGROUND TASK QUESTION: task_id='{task.id}' name='{task.name}']\n{question}\n\n"
        "[END TASK QUESTION]\n\nThe task is paused until it gets an answer. Answer it"
        " yourself if you can, else ask the user; then send the answer with:\n"
        f'python3 tools/task_tools/resume_task.py {task.id} "the answer"'
    )


def routing_of(task: Task) -> Routing | None:
    if not task.session:
        return None
    parts = task.session.split(":")
    transport, rest = parts[0], ":".join(parts[1:])
    if transport == "tg":
        chat, _, topic = rest.partition(":")
        return Routing(
            transport=transport,
            chat_id=_id(chat),
            topic_id=_id(topic) if topic else None,
            origin=f"task {task.name}",
        )
    return Routing(transport=transport, chat_id=rest, origin=f"task {task.name}")


def fallback_routing(task: Task) -> Routing:
    """A task made without a chat reports to every allowed user of the agent's primary
    transport (as it was when the task was made)."""
    return Routing(transport=task.transport or "cli", broadcast=True, origin=f"task {task.name}")


def _id(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def result_envelope_id(task: Task) -> str:
    return f"task-{task.id}-{task.run}"


def result_envelope(
    agent: str, task: Task, result: str, memory_text: str, memory: Path
) -> Envelope:
    """The inbox envelope of a finished run (done, failed or cancelled)."""
    routing = routing_of(task) or fallback_routing(task)
    status = {
        Status.DONE: ExecutionStatus.OK,
        Status.CANCELLED: ExecutionStatus.CANCELLED,
    }.get(task.state, ExecutionStatus.ERROR)
    return Envelope.create(
        agent=agent,
        kind=Kind.TASK,
        envelope_id=result_envelope_id(task),
        routing=routing,
        payload=Payload(
            text=notice(task, memory_text, memory),
            metadata={
                PROMPT_KEY: injection(task, result, memory_text, memory),
                "task": task.id,
                "run": task.run,
                "status": task.status,
            },
        ),
        execution=Execution(status=status, error=task.error or None),
    )


def question_envelope(agent: str, task: Task, question: str) -> Envelope:
    routing = routing_of(task) or fallback_routing(task)
    return Envelope.create(
        agent=agent,
        kind=Kind.TASK_QUESTION,
        envelope_id=f"task-{task.id}-q{task.question_count}",
        routing=routing,
        payload=Payload(
            text=question_notice(task, question),
            metadata={PROMPT_KEY: question_injection(task, question), "task": task.id},
        ),
    )


# -- named sessions ----------------------------------------------------------------------

SEP = "───"
SESSION_ERROR_LIMIT = 2000


def session_notice(task: Task, result: str) -> str:
    """A named session's run as the chat sees it: "**[name] Complete** (42s) ─── ..."."""
    took = format_duration(task.elapsed_seconds)
    state = task.state
    if state is Status.DONE:
        return f"**[{task.name}] Complete** ({took}) {SEP}\n\n{result.strip() or '(no answer)'}"
    if state is Status.CANCELLED:
        preview = " ".join((task.follow_up or task.prompt).split())[:60]
        return f"**[{task.name}] Cancelled** {SEP} _{preview}_"
    return f"**[{task.name}] Failed** ({took}) {SEP} {task.error[:SESSION_ERROR_LIMIT]}"


def session_envelope(
    agent: str, task: Task, result: str, buttons: tuple[tuple[Button, ...], ...] = ()
) -> Envelope:
    """The inbox envelope of a named session's run: a notice only, nothing injected."""
    routing = routing_of(task) or fallback_routing(task)
    return Envelope.create(
        agent=agent,
        kind=Kind.SESSION,
        envelope_id=result_envelope_id(task),
        routing=routing,
        payload=Payload(
            text=session_notice(task, result),
            buttons=buttons,
            metadata={"task": task.id, "session": task.name, "run": task.run},
        ),
    )

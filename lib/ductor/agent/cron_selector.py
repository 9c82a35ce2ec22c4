"""The ``/cron`` selector and its ``crn:`` button callbacks.

A paged list of the agent's cron jobs (:data:`PAGE_SIZE` a page): whether each is on,
its schedule, where its results go, how its last run went and whether that result was
delivered. Buttons pause or resume a job, or all of them, and page through the list.

Callback data (the number is the page the button was on, 0-based):

- ``crn:t:<page>:<name>``: toggle a job; ``crn:t:<page>:#<slot>.<fp>`` when the name
  does not fit in 64 bytes (``slot`` = position on the page, ``fp`` = 8 hex of the
  name's blake2s, so a list that changed meanwhile is noticed);
- ``crn:ao:<page>`` / ``crn:af:<page>``: every job on / off;
- ``crn:p:<page>`` / ``crn:n:<page>``: previous / next page; ``crn:r:<page>``: refresh.

A change is written to the job file and followed by a sync of the timers (in a thread:
it runs ``systemctl``); a failed sync is said in the answer, the change stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ductor import atomic, protocol
from ductor import calendar as cron_calendar
from ductor.agent.execute import SEP
from ductor.cron.jobs import Job, JobStore
from ductor.cron.sync import sync_jobs
from ductor.errors import DuctorError
from ductor.spool import QueueDirectory, SpoolError, State
from ductor.units import Manager

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

PREFIX = "crn:"
PAGE_SIZE = 5
CALLBACK_DATA_BYTES = 64
LABEL_CHARS = 40
ERROR_CHARS = 60
NO_JOBS = "No cron jobs yet. Ask the agent to schedule something, or use `ductor cron add`."
# Transport names as the job file keeps them, from the agent config's long names.
_SHORT_TRANSPORT = {"telegram": "tg", "matrix": "mx"}

Rows = list[list[dict[str, str]]]


def _result(text: str, buttons: Rows | None = None) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text, buttons or [])


def _button(label: str, data: str) -> dict[str, str]:
    return {"label": label, "data": data}


def _now() -> datetime:
    return datetime.now(UTC)


# -- what one line says ------------------------------------------------------------------


def schedule_text(job: Job) -> str:
    """``calendar.describe`` when it reads better than the expression, else the expression."""
    try:
        described = cron_calendar.describe(job.schedule)
    except DuctorError:
        described = ""
    text = described if described and not described.startswith("cron ") else job.schedule
    return f"{text} ({job.timezone})" if job.timezone else text


def default_transport(agent: Agent) -> str:
    first = (agent.config.transports or ("telegram",))[0]
    return _SHORT_TRANSPORT.get(first, first)


def routing_text(agent: Agent, job: Job, session: str | None) -> str:
    """``→ this chat``, ``→ chat 123 topic 7`` (``(mx)`` when on another transport), or
    ``→ broadcast``."""
    transport = job.transport or default_transport(agent)
    if not job.chat_id:
        return "→ broadcast"
    here: protocol.SessionKey | None = None
    if session:
        try:
            here = protocol.parse_session_key(session)
        except protocol.ProtocolError:
            here = None
    if here is not None and here.transport == transport:
        same_chat = _same_id(here.chat, job.chat_id)
        same_topic = (here.topic is None and not job.topic_id) or (
            here.topic is not None and _same_id(here.topic, job.topic_id)
        )
        if same_chat and same_topic:
            return "→ this chat"
    text = f"→ chat {job.chat_id}" + (f" topic {job.topic_id}" if job.topic_id else "")
    if here is None or here.transport != transport:
        text += f" ({transport})"
    return text


def _same_id(a: str, b: str) -> bool:
    try:
        return int(a) == int(b)
    except ValueError:
        return a == b


def ago(when: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def _since(when: datetime, now: datetime) -> str:
    text = ago(when, now)
    return "" if text == "just now" else text.removesuffix(" ago")


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _short(text: str, limit: int = ERROR_CHARS) -> str:
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return line.replace("`", "'")


@dataclass(frozen=True)
class LastRun:
    """What ``cron_runs/JOB.json`` says about the job's last run."""

    status: str = ""  # "" = never ran
    started: datetime | None = None
    finished: datetime | None = None
    error: str = ""
    envelope: str = ""

    @property
    def finished_run(self) -> bool:
        """Whether the last run went through (and so may have an envelope to deliver)."""
        return self.status in {"ok", "error", "timeout", "cancelled"}


def last_run(agent: Agent, name: str) -> LastRun:
    file = agent.state_dir / "cron_runs" / f"{name}.json"
    try:
        data = atomic.read_json(file)
    except FileNotFoundError:
        return LastRun()
    except (OSError, ValueError, DuctorError) as exc:
        log.warning("cannot read the run state of cron job %s: %s", name, exc)
        return LastRun(status="unknown")
    if not isinstance(data, dict):
        return LastRun(status="unknown")
    status, error, envelope = (
        data.get(key) for key in ("last_status", "last_error", "last_envelope")
    )
    return LastRun(
        status=status if isinstance(status, str) else "",
        started=_time(data.get("last_started")),
        finished=_time(data.get("last_finished")),
        error=error if isinstance(error, str) else "",
        envelope=envelope if isinstance(envelope, str) else "",
    )


def last_run_text(run: LastRun, now: datetime) -> str:
    """``ok 2 h ago``, ``error: detail (2 h ago)``, ``skipped (quiet hours)``, ``never``…"""
    status = run.status
    if not status:
        return "never"
    if status == "unknown":
        return "last run unknown"
    when = (run.finished or run.started) if run.finished_run else run.started
    age = ago(when, now) if when else ""
    if status == "ok":
        return f"ok {age}".strip()
    if status == "running":
        since = _since(run.started, now) if run.started else ""
        return f"running for {since}" if since else "running"
    if status == "skipped_quiet":
        return "skipped (quiet hours)" + (f" {age}" if age else "")
    if status.startswith("unit_failed:"):
        status, detail = "run failed", status.partition(":")[2]
    else:
        detail = run.error
    text = f"{status}: `{_short(detail)}`" if detail.strip() else status
    return f"{text} ({age})" if age else text


def delivery_text(agent: Agent, envelope_id: str) -> str:
    """``delivered``, ``sending``, ``waiting``, ``retrying``, ``delivery failed``, or ""
    when the envelope is nowhere (pruned from done/ after a week, or a bad id).

    A broadcast may sit in several transports' outboxes: the least finished state wins.
    """
    states: list[tuple[State, int]] = []
    for transport in agent.spool.outbox_transports():
        directory = QueueDirectory(agent.spool.root / "outbox" / transport)
        try:
            entry = directory.get(envelope_id)
        except SpoolError:
            return ""
        if entry is not None:
            attempts = entry.envelope.delivery.attempts if entry.envelope else 0
            states.append((entry.state, attempts))
    if not states:
        return ""
    found = {state for state, _ in states}
    if found & {State.FAILED, State.BAD}:
        return "delivery failed"
    if State.NEW in found:
        retried = any(state is State.NEW and attempts for state, attempts in states)
        return "retrying" if retried else "waiting"
    if State.CUR in found:
        return "sending"
    return "delivered"


def job_line(agent: Agent, job: Job, session: str | None, now: datetime) -> str:
    run = last_run(agent, job.name)
    parts = [
        f"{'✅' if job.enabled else '⏸'} **{job.name}**",
        schedule_text(job),
        routing_text(agent, job, session),
        last_run_text(run, now),
    ]
    if run.finished_run and run.envelope:
        delivery = delivery_text(agent, run.envelope)
        if delivery:
            parts.append(delivery)
    return " · ".join(parts)


# -- the selector ------------------------------------------------------------------------


def pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


def _clamp(page: int, count: int) -> int:
    return min(max(page, 0), pages(count) - 1)


def fingerprint(name: str) -> str:
    return hashlib.blake2s(name.encode(), digest_size=4).hexdigest()


def toggle_data(page: int, slot: int, name: str) -> str:
    data = f"{PREFIX}t:{page}:{name}"
    if len(data.encode()) <= CALLBACK_DATA_BYTES:
        return data
    return f"{PREFIX}t:{page}:#{slot}.{fingerprint(name)}"[:CALLBACK_DATA_BYTES]


def _label(symbol: str, name: str) -> str:
    if len(name) > LABEL_CHARS:
        name = name[: LABEL_CHARS - 1] + "…"
    return f"{symbol} {name}"


def load_jobs(agent: Agent) -> list[Job]:
    """The agent's jobs sorted by name (ConfigError if the file is broken)."""
    jobs = JobStore(agent.state_dir).load()
    return [jobs[name] for name in sorted(jobs)]


def menu(
    agent: Agent,
    request: protocol.Request,
    page: int = 0,
    *,
    note: str = "",
    now: datetime | None = None,
) -> CommandResult:
    """The page ``page`` (0-based, clamped) of the job list, with ``note`` under it."""
    try:
        jobs = load_jobs(agent)
    except DuctorError as exc:
        return _result(_with_note(f"**Cron jobs** {SEP} the job file cannot be read: {exc}", note))
    if not jobs:
        return _result(_with_note(NO_JOBS, note))
    now = now or _now()
    page = _clamp(page, len(jobs))
    total = pages(len(jobs))
    enabled = sum(job.enabled for job in jobs)
    header = (
        f"**Cron jobs** {SEP} {len(jobs)} job{'s' if len(jobs) != 1 else ''}, {enabled} enabled"
    )
    if total > 1:
        header += f" · page {page + 1}/{total}"
    shown = jobs[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    lines = [header, *(job_line(agent, job, request.session, now) for job in shown)]
    rows: Rows = [
        [
            _button(
                _label("⏸" if job.enabled else "▶", job.name),
                toggle_data(page, slot, job.name),
            )
        ]
        for slot, job in enumerate(shown)
    ]
    rows.append([_button("All on", f"{PREFIX}ao:{page}"), _button("All off", f"{PREFIX}af:{page}")])
    nav: list[dict[str, str]] = []
    if page > 0:
        nav.append(_button("« Prev", f"{PREFIX}p:{page}"))
    nav.append(_button("Refresh", f"{PREFIX}r:{page}"))
    if page < total - 1:
        nav.append(_button("Next »", f"{PREFIX}n:{page}"))
    rows.append(nav)
    return _result(_with_note("\n".join(lines), note), rows)


def _with_note(text: str, note: str) -> str:
    return f"{text}\n\n{note}" if note else text


# -- changes -----------------------------------------------------------------------------


def _sync(agent: Agent) -> str:
    """Sync the timers; "" when it worked, else what to tell the user."""
    try:
        sync_jobs(agent.paths, Manager(agent.paths.mode), agent.name)
    except Exception as exc:  # the job file changed anyway: say so, never fail the button
        log.error("cron sync of agent %s failed: %s", agent.name, exc)
        return (
            f"The timers could not be updated: {_short(str(exc), 200)}"
            f"\nRun `ductor cron sync {agent.name}` to retry."
        )
    return ""


def _change(agent: Agent, change: Callable[[JobStore], str]) -> str:
    """Apply ``change`` to the job file, then sync; the note for the answer."""
    try:
        note = change(JobStore(agent.state_dir))
    except DuctorError as exc:
        return f"Nothing changed: {exc}"
    if not note:
        return ""
    problem = _sync(agent)
    return f"{note}\n{problem}" if problem else note


def _toggle(name: str) -> Callable[[JobStore], str]:
    def change(store: JobStore) -> str:
        job = store.get(name)
        job = store.set_enabled(name, not job.enabled)
        return f"{job.name} {'resumed' if job.enabled else 'paused'}."

    return change


def _all(enabled: bool) -> Callable[[JobStore], str]:
    def change(store: JobStore) -> str:
        wanted = [job.name for job in store.load().values() if job.enabled != enabled]
        changed: list[str] = []
        problems: list[str] = []
        for name in wanted:  # one bad job must not keep the others from switching
            try:
                store.set_enabled(name, enabled)
            except DuctorError as exc:
                problems.append(str(exc))
            else:
                changed.append(name)
        if not changed:
            return "\n".join(f"Not changed: {problem}" for problem in problems)
        word = "on" if enabled else "off"
        lines = [f"{len(changed)} job{'s' if len(changed) != 1 else ''} switched {word}."]
        lines += [f"Not changed: {problem}" for problem in problems]
        return "\n".join(lines)

    return change


def _resolve(agent: Agent, page: int, target: str) -> str | None:
    """The job name a toggle button means; None when the list changed under it."""
    if not target.startswith("#"):
        return target
    slot_text, _, fp = target[1:].partition(".")
    try:
        jobs = load_jobs(agent)
    except DuctorError:
        return None
    if not slot_text.isdigit():
        return None
    index = _clamp(page, len(jobs)) * PAGE_SIZE + int(slot_text)
    if index >= len(jobs) or fingerprint(jobs[index].name) != fp:
        return None
    return jobs[index].name


async def handle_button(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The result of a ``crn:`` callback, or None when the data is not ours.

    Runs in a thread: it reads and writes the job file and syncs the timers.
    """
    if not request.data.startswith(PREFIX):
        return None
    return await asyncio.to_thread(answer, agent, request)


def answer(agent: Agent, request: protocol.Request) -> CommandResult:
    """What a ``crn:`` button does, blocking (see :func:`handle_button`)."""
    action, _, rest = request.data.removeprefix(PREFIX).partition(":")
    page_text, _, target = rest.partition(":")
    if not page_text.isdigit():
        return _result("This button is no longer valid.")
    page = int(page_text)
    if action in ("r", "p", "n"):
        return menu(agent, request, page + {"r": 0, "p": -1, "n": 1}[action])
    if action in ("ao", "af"):
        note = _change(agent, _all(action == "ao"))
        if not note:
            note = f"Every job was {'on' if action == 'ao' else 'off'} already."
        return menu(agent, request, page, note=note)
    if action == "t" and target:
        name = _resolve(agent, page, target)
        if name is None:
            return menu(agent, request, page, note="The job list changed; here it is again.")
        return menu(agent, request, page, note=_change(agent, _toggle(name)))
    return _result("This button is no longer valid.")

"""An agent's cron jobs: ``STATE/AGENT/cron_jobs.toml``, one ``[jobs.NAME]`` table each,
and the task folder every job runs in (``workspace/cron_tasks/NAME/``).

The file is the only source of truth: ``ductor cron sync`` derives the timers from it.
It is rewritten atomically under a lock, so the user's ``ductor cron`` and the agent's
tool scripts can change it at the same time without losing an edit.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductor import atomic, tomlstore
from ductor import calendar as cron_calendar
from ductor.config.schema import PROVIDERS, REASONING_EFFORTS
from ductor.errors import UsageError

JOB_NAME = r"[a-z0-9][a-z0-9_-]{0,47}"
_JOB_NAME = re.compile(JOB_NAME)
# A dependency names a lock file (STATE/cron_locks/NAME.lock): a plain name, never a path.
_DEPENDENCY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
FILE_NAME = "cron_jobs.toml"
TASKS_DIR = "cron_tasks"
# Short names as DUCTOR_TRANSPORT carries them; the long ones are accepted too.
TRANSPORTS = {"tg": "telegram", "mx": "matrix"}


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str  # cron expression or @macro
    prompt: str  # what the CLI is asked each run
    title: str = ""
    description: str = ""
    timezone: str = ""  # "" = the agent's user_timezone, else local time
    enabled: bool = True
    provider: str = ""  # overrides; "" = the agent's defaults
    model: str = ""
    effort: str = ""
    quiet_start: int | None = None  # hours 0-23 in the job's timezone; a run inside is skipped
    quiet_end: int | None = None
    dependency: str = ""  # jobs with the same dependency never run at the same time
    transport: str = ""  # where results go; "" = broadcast on the agent's first transport
    chat_id: str = ""
    topic_id: str = ""
    silent_on_success: bool = False
    catch_up: bool = False  # run once after downtime if a run was missed (Persistent=)
    created_at: str = ""  # ISO 8601, UTC
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dependency_problem(value: str) -> str | None:
    """Why ``value`` cannot be a dependency (it names a lock file), or None when it can."""
    if not value or _DEPENDENCY.fullmatch(value):
        return None
    return (
        f"{value!r} is not a plain name: use up to 64 letters, digits, '-', '_' or '.',"
        " not starting with a dot (it names a lock file; no '/', no '..')"
    )


def validate(job: Job) -> Job:
    """Check every field of ``job``; returns it with the transport name normalised.

    Raises UsageError naming the job and the field.
    """

    def bad(field: str, detail: str) -> UsageError:
        return UsageError(f"cron job {job.name!r}: {field}: {detail}")

    if not _JOB_NAME.fullmatch(job.name):
        raise UsageError(
            f"invalid cron job name {job.name!r}: use 1-48 characters, lower-case letters,"
            " digits, '_' or '-', starting with a letter or digit"
        )
    if not job.prompt.strip():
        raise bad("prompt", "must not be empty (it is what the agent is asked on every run)")
    try:
        cron_calendar.parse_cron(job.schedule)
    except UsageError as exc:
        raise bad("schedule", str(exc)) from None
    try:
        cron_calendar.check_timezone(job.timezone)
    except UsageError as exc:
        raise UsageError(f"cron job {job.name!r}: {exc}") from None
    if (job.quiet_start is None) != (job.quiet_end is None):
        raise bad("quiet hours", "give both a start and an end hour, or neither")
    for field, hour in (("quiet_start", job.quiet_start), ("quiet_end", job.quiet_end)):
        if hour is not None and not 0 <= hour <= 23:
            raise bad(field, f"{hour} is not an hour from 0 to 23")
    if job.provider and job.provider not in PROVIDERS:
        raise bad("provider", f"{job.provider!r} is none of {', '.join(PROVIDERS)}")
    if job.effort and job.effort not in REASONING_EFFORTS:
        raise bad("effort", f"{job.effort!r} is none of {', '.join(REASONING_EFFORTS)}")
    transport = job.transport
    if transport in TRANSPORTS.values():
        transport = next(short for short, long in TRANSPORTS.items() if long == transport)
    if transport and transport not in TRANSPORTS:
        raise bad("transport", f"{job.transport!r} is none of {', '.join(TRANSPORTS)}")
    if job.topic_id and not job.chat_id:
        raise bad("topic_id", "a topic needs a chat (give the chat id too)")
    for field in ("chat_id", "topic_id", "dependency"):
        if any(char.isspace() for char in getattr(job, field)):
            raise bad(field, "must not contain spaces")
    dependency = dependency_problem(job.dependency)
    if dependency is not None:
        raise bad("dependency", dependency)
    return dataclasses.replace(job, transport=transport)


class JobStore(tomlstore.TomlStore[Job]):
    """The cron jobs of one agent, kept in ``STATE_DIR/cron_jobs.toml`` (mode 0600)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, _LAYOUT)

    def add(self, job: Job) -> Job:
        job = validate(job)
        with self._locked() as jobs:
            if job.name in jobs:
                raise UsageError(
                    f"a cron job named {job.name!r} exists already; change it with"
                    " `ductor cron edit` or pick another name"
                )
            stamp = tomlstore.now_iso()
            job = dataclasses.replace(
                job, created_at=job.created_at or stamp, updated_at=job.updated_at or stamp
            )
            jobs[job.name] = job
        return job

    def set_enabled(self, name: str, enabled: bool) -> Job:
        return self.update(name, enabled=enabled)

    def remove(self, name: str) -> Job:
        with self._locked() as jobs:
            self.require(jobs, name)
            return jobs.pop(name)


HEADER = """\
Cron jobs of this agent, written by `ductor cron` (and the agent's cron tool scripts).
Change them with `ductor cron edit AGENT NAME ...`; after editing by hand, run
`ductor cron sync AGENT` so the timers follow. Comments here are not kept."""


def _dependency_check(values: dict[str, Any]) -> tuple[str, str] | None:
    problem = dependency_problem(values.get("dependency", ""))
    return None if problem is None else (problem, "dependency")


_LAYOUT = tomlstore.TableFile(
    file_name=FILE_NAME,
    record=Job,
    table="jobs",
    key="name",
    key_pattern=JOB_NAME,
    title="cron job",
    noun="job",
    plural="jobs",
    validate=validate,
    required=("schedule", "prompt"),
    header=HEADER,
    check=_dependency_check,
)


def render(jobs: dict[str, Job]) -> str:
    """The TOML text of ``jobs``: one ``[jobs.NAME]`` table each, sorted by name."""
    return tomlstore.render(jobs, _LAYOUT)


def task_path(workspace: Path, name: str) -> Path:
    return workspace / TASKS_DIR / name


TASK_TEMPLATE = """\
# {title}
{description}
## What to do on every run

{prompt}
"""

TASK_RULES = """\
# Rules of a cron run

You are running as the scheduled job `{name}`, unattended: nobody reads along and nobody
can answer a question, so do not ask one. Each run is a single shot with a fresh
session; nothing of an earlier run is remembered except what is written down.

1. Read `TASK.md` in this folder: it says what to do.
2. Read `MEMORY.md` in this folder: notes of earlier runs.
3. Do the task.
4. Append what a later run needs to know (a short line starting with the date and time)
   to `MEMORY.md`. Never store secrets there.
5. End with the result for the user, and only that: your final answer is delivered to
   the chat automatically. Do not send it yourself and do not describe these steps.
"""

NO_PROMPT = "Do what the prompt of this run asks."

MEMORY_TEXT = """\
# Memory of this cron job

Notes for the next runs, one dated line each (`YYYY-MM-DD HH:MM: ...`).
"""


def task_folder(workspace: Path, name: str, job: Job | None = None) -> Path:
    """Create ``workspace/cron_tasks/NAME/`` with TASK.md, RULES.md and MEMORY.md.

    TASK.md holds ``job``'s title, description and prompt (a pointer to the job's prompt
    when no job is given). Files that exist already are never overwritten (the user or
    the agent may have refined them), so the folder outlives edits of the job.
    """
    from ductor.agent.workspace import DIRECTORY_MODE, write_if_missing

    folder = task_path(workspace, name)
    atomic.make_directories(folder, mode=DIRECTORY_MODE)
    if job is None:
        task = TASK_TEMPLATE.format(title=name, description="", prompt=NO_PROMPT)
    else:
        description = f"\n{job.description}\n" if job.description else ""
        task = TASK_TEMPLATE.format(
            title=job.title or name, description=description, prompt=job.prompt
        )
    write_if_missing(folder / "TASK.md", task)
    write_if_missing(folder / "RULES.md", TASK_RULES.format(name=name))
    write_if_missing(folder / "MEMORY.md", MEMORY_TEXT)
    return folder

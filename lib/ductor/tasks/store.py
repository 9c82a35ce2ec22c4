"""Task records and task folders.

One JSON file per task, ``STATE/AGENT/tasks/ID.json``: the agent (creating, cancelling)
and the task's own unit (running, finishing) both change a record, each under the
record's lock, read-modify-write, written atomically. An agent's records live in its
own state, so an agent sees only its own tasks.

The task's working folder is ``workspace/tasks/ID/``: ``TASKMEMORY.md`` (the task's
notes, handed back with its result) and the rule files of the task agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ductor import atomic
from ductor.errors import UsageError

TASK_ID = re.compile(r"[0-9a-f]{8}")
RECORDS_DIR = "tasks"
TASKMEMORY = "TASKMEMORY.md"
RULE_FILES = ("CLAUDE.md", "AGENTS.md", "GEMINI.md")


class Status(StrEnum):
    STARTING = "starting"  # created or resumed; its unit is being started
    RUNNING = "running"
    WAITING = "waiting"  # ended with a question to the parent pending
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({Status.STARTING, Status.RUNNING})
FINISHED = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})


class TaskKind(StrEnum):
    TASK = "task"
    SESSION = "session"  # a named session (/session): its result is posted, not injected


class Priority(StrEnum):
    INTERACTIVE = "interactive"  # not counted against tasks.max_parallel
    BACKGROUND = "background"
    BATCH = "batch"


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    prompt: str
    provider: str
    model: str
    effort: str = ""
    priority: str = Priority.BACKGROUND.value
    session: str = ""  # transport:chat[:topic] the task reports to; "" = no chat
    transport: str = ""  # with no chat: the outbox whose allowed users hear of it
    status: str = Status.STARTING.value
    created_at: float = 0.0
    started_at: float = 0.0
    completed_at: float = 0.0
    elapsed_seconds: float = 0.0
    error: str = ""
    result_preview: str = ""
    session_id: str = ""  # the task's own CLI session, resumed by resume_task.py
    run: int = 0  # runs started so far; names the result envelope of each run
    follow_up: str = ""  # the resume prompt of the next run ("" on the first)
    question_count: int = 0
    last_question: str = ""
    asked_in_run: int = 0  # the run that asked the parent something (ends as waiting)
    num_turns: int = 0
    cancel_requested: bool = False
    pid: int = 0  # the runner's pid when started as a plain process (no systemd)
    kind: str = "task"  # "task", or "session": a named session's background run
    ended: bool = False  # a named session the user ended
    interrupted: bool = False  # a named session's run a shutdown cut short: resumed at start

    @property
    def state(self) -> Status:
        try:
            return Status(self.status)
        except ValueError:
            return Status.FAILED

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def duration(self) -> float:
        if self.state in ACTIVE and self.started_at:
            return max(0.0, time.time() - self.started_at)
        return self.elapsed_seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Task:
        if not isinstance(data, dict):
            raise TypeError("a task record is a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("id", "name", "prompt", "provider", "model"):
            if not isinstance(values.get(key), str):
                raise TypeError(f"task record: {key!r} missing or not a string")
        return cls(**values)


def new_task_id() -> str:
    return secrets.token_hex(4)


def check_task_id(task_id: str) -> str:
    if not TASK_ID.fullmatch(task_id):
        raise UsageError(f"{task_id!r} is not a task id (8 hex digits, as list_tasks.py shows)")
    return task_id


class TaskStore:
    """The records of one agent (``STATE/AGENT/tasks/``) and its task folders."""

    def __init__(self, state_dir: Path, workspace: Path) -> None:
        self.directory = state_dir / RECORDS_DIR
        self.workspace = workspace

    def folder(self, task_id: str) -> Path:
        return self.workspace / "tasks" / task_id

    def memory_file(self, task_id: str) -> Path:
        return self.folder(task_id) / TASKMEMORY

    def _file(self, task_id: str) -> Path:
        return self.directory / f"{check_task_id(task_id)}.json"

    @contextlib.contextmanager
    def _locked(self, task_id: str) -> Iterator[None]:
        atomic.make_directories(self.directory)
        fd = atomic.open_lock_file(self.directory / f".{check_task_id(task_id)}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get(self, task_id: str) -> Task | None:
        try:
            return Task.from_dict(atomic.read_json(self._file(task_id)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None

    def require(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is None:
            raise UsageError(f"no task {task_id!r} (list_tasks.py shows this agent's tasks)")
        return task

    def all(self) -> list[Task]:
        tasks = []
        try:
            files = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        for file in files:
            if TASK_ID.fullmatch(file.stem) and (task := self.get(file.stem)) is not None:
                tasks.append(task)
        return sorted(tasks, key=lambda t: t.created_at)

    def save(self, task: Task) -> Task:
        with self._locked(task.id):
            atomic.write_json(self._file(task.id), task.to_dict(), mode=0o600)
        return task

    def update(self, task_id: str, **changes: Any) -> Task:
        """Change fields of a record under its lock; returns the new record."""
        with self._locked(task_id):
            task = self.get(task_id)
            if task is None:
                raise UsageError(f"no task {task_id!r}")
            task = dataclasses.replace(task, **changes)
            atomic.write_json(self._file(task_id), task.to_dict(), mode=0o600)
            return task

    def delete(self, task_id: str) -> None:
        with self._locked(task_id):
            self._file(task_id).unlink(missing_ok=True)
        (self.directory / f".{task_id}.lock").unlink(missing_ok=True)
        shutil.rmtree(self.folder(task_id), ignore_errors=True)

    def read_memory(self, task_id: str) -> str:
        try:
            return self.memory_file(task_id).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def prune(self, *, retention_hours: float, keep_last: int, now: float | None = None) -> int:
        """Remove finished tasks older than ``retention_hours`` or beyond the newest
        ``keep_last``, and task folders that belong to no record; returns how many went."""
        now = time.time() if now is None else now
        tasks = self.all()
        # A named session stays until it is ended, however long it idles.
        finished = sorted(
            (t for t in tasks if t.finished and (t.kind != TaskKind.SESSION or t.ended)),
            key=lambda t: t.completed_at,
            reverse=True,
        )
        doomed = {
            t.id
            for index, t in enumerate(finished)
            if index >= keep_last or now - (t.completed_at or t.created_at) > retention_hours * 3600
        }
        for task_id in doomed:
            self.delete(task_id)
        known = {t.id for t in tasks} - doomed
        orphans = 0
        with contextlib.suppress(OSError):
            for folder in (self.workspace / "tasks").iterdir():
                orphan = folder.name not in known and TASK_ID.fullmatch(folder.name)
                # Only folders old enough that no record is being written for them.
                if orphan and folder.is_dir() and now - folder.stat().st_mtime > 600:
                    shutil.rmtree(folder, ignore_errors=True)
                    orphans += 1
        return len(doomed) + orphans

"""The agent's side of background tasks: what the tool scripts and ``/tasks`` ask for.

Every verb works on this agent's own records only (they live in its state). Creating
or resuming a task writes its record first and then starts its run (see launch.py);
the run reports back through the agent's inbox. :meth:`TaskHub.reconcile` finds runs
whose unit or process is gone without a report (an agent that was down, a ``kill -9``
in foreground mode) and reports them once, and applies the retention settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ductor.config import AgentConfig
from ductor.errors import UsageError
from ductor.paths import Paths
from ductor.providers.models import provider_for_model
from ductor.spool import Envelope, Kind, Payload, Spool
from ductor.tasks import runner, texts
from ductor.tasks.launch import Launcher, unit_settings
from ductor.tasks.store import (
    ACTIVE,
    FINISHED,
    Priority,
    Status,
    Task,
    TaskKind,
    TaskStore,
    check_task_id,
    new_task_id,
)

log = logging.getLogger(__name__)

NAME_LIMIT = 40
STARTING_GRACE = 120.0  # seconds a run may take to show up as a unit or process
ASKED = (
    "Question forwarded to parent agent. Finish your current work — you will be resumed"
    " with the answer."
)


class TaskRefused(UsageError):
    """A task verb that cannot be done; the message says why, for the caller."""


@dataclass
class TaskHub:
    agent: str
    paths: Paths
    config: Callable[[], AgentConfig]
    env: Mapping[str, str]
    recovered: bool = False  # named sessions cut short by a shutdown were resumed

    @property
    def store(self) -> TaskStore:
        return TaskStore(self.paths.agent_state(self.agent), self.paths.workspace(self.agent))

    @property
    def launcher(self) -> Launcher:
        settings = unit_settings(self.paths, self.agent, self.config().limits)
        state = self.paths.agent_state(self.agent)
        return Launcher(self.agent, self.paths.mode, self.env, settings, state)

    # -- verbs ------------------------------------------------------------------------

    def default_session(self) -> str:
        config = self.config()
        users = config.telegram.allowed_user_ids
        if "telegram" in config.transports and users:
            return f"tg:{users[0]}"
        return ""

    def create(self, args: Mapping[str, Any], session: str) -> Task:
        config = self.config()
        if not config.tasks.enabled:
            raise TaskRefused("background tasks are turned off (tasks.enabled = false)")
        prompt = str(args.get("prompt") or "").strip()
        if not prompt:
            raise TaskRefused("the task needs a prompt: complete, self-contained instructions")
        priority = str(args.get("priority") or Priority.BACKGROUND.value)
        if priority not in {p.value for p in Priority}:
            raise TaskRefused(f"priority {priority!r} is not interactive, background or batch")
        session = session or self.default_session()
        if priority != Priority.INTERACTIVE:
            running = [
                t
                for t in self.store.all()
                if t.session == session and t.state in ACTIVE and t.priority != Priority.INTERACTIVE
            ]
            limit = config.tasks.max_parallel
            if len(running) >= limit:
                raise TaskRefused(f"Too many background tasks ({limit} max)")
        model = str(args.get("model") or "")
        provider = str(args.get("provider") or "")
        if not provider:
            provider = str(provider_for_model(model)) if model else config.provider
        if provider not in ("claude", "codex", "gemini"):
            raise TaskRefused(f"provider {provider!r} is not claude, codex or gemini")
        if not model:
            model = config.model if provider == config.provider else ""
        name = " ".join(str(args.get("name") or "").split())[:NAME_LIMIT] or _name_from(prompt)
        task = Task(
            id=self._free_id(),
            name=name,
            prompt=prompt,
            provider=provider,
            model=model,
            effort=str(args.get("thinking") or config.reasoning_effort or ""),
            priority=priority,
            session=session,
            transport=(config.outboxes or ("",))[0],
            created_at=time.time(),
            run=1,
        )
        self._seed_folder(task)
        self.store.save(task)
        return self._launch(task)

    def _free_id(self) -> str:
        while True:
            task_id = new_task_id()
            if self.store.get(task_id) is None and not self.store.folder(task_id).exists():
                return task_id

    def _seed_folder(self, task: Task) -> None:
        folder = self.store.folder(task.id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        memory = folder / "TASKMEMORY.md"
        if not memory.exists():
            memory.write_text(texts.memory_seed(task), encoding="utf-8")
        rules = texts.rules_text(self.agent, task.id)
        for name in ("CLAUDE.md", "AGENTS.md", "GEMINI.md"):
            (folder / name).write_text(rules, encoding="utf-8")

    def _run_again(self, task: Task, follow_up: str) -> Task:
        """Start the next run of ``task``: its CLI session resumed with ``follow_up``."""
        task = self.store.update(
            task.id,
            status=Status.STARTING.value,
            follow_up=follow_up,
            run=task.run + 1,
            cancel_requested=False,
            error="",
            started_at=0.0,
        )
        return self._launch(task)

    def _launch(self, task: Task) -> Task:
        try:
            pid = self.launcher.start(task.id)
        except Exception as exc:
            log.error("task %s could not be started: %s", task.id, exc)
            failed = self.store.update(
                task.id,
                status=Status.FAILED.value,
                error=f"could not start the task's unit: {exc}",
                completed_at=time.time(),
            )
            raise TaskRefused(failed.error) from exc
        return self.store.update(task.id, pid=pid) if pid else task

    def get(self, task_id: str) -> Task:
        return self.store.require(check_task_id(task_id))

    def list(self, session: str | None = None, kind: str = TaskKind.TASK) -> list[Task]:
        tasks = self.store.all()
        return [t for t in tasks if t.kind == kind and (session is None or t.session == session)]

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.state not in ACTIVE:
            raise TaskRefused(f"task {task_id} is {task.status}, not running")
        task = self.store.update(task_id, cancel_requested=True)
        if self.launcher.stop(task.id, task.pid):
            # Killed before the runner could report (say, while it was starting).
            fresh = self.store.get(task.id)
            if fresh is not None and fresh.state in ACTIVE:
                runner.abandon(self.agent, fresh, self.paths, "cancelled")
        return self.store.get(task.id) or task

    def cancel_session(self, session: str | None, kind: str = TaskKind.TASK) -> int:
        """Cancel the running tasks of ``session`` (None: of every chat)."""
        count = 0
        for task in self.list(session, kind):
            if task.state in ACTIVE:
                with contextlib.suppress(TaskRefused):  # it ended meanwhile
                    self.cancel(task.id)
                    count += 1
        return count

    def delete(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.state in ACTIVE:
            raise TaskRefused(f"task {task_id} is still running: cancel it first")
        self.store.delete(task.id)
        return task

    def delete_finished(self, session: str) -> int:
        doomed = [t for t in self.list(session) if t.state in FINISHED]
        for task in doomed:
            self.store.delete(task.id)
        return len(doomed)

    def resume(self, task_id: str, follow_up: str) -> Task:
        task = self.get(task_id)
        follow_up = follow_up.strip()
        if not follow_up:
            raise TaskRefused("resume needs the follow-up text (the answer or the next step)")
        if task.state in ACTIVE:
            raise TaskRefused(f"task {task_id} is still running; wait for its result")
        if not task.session_id:
            raise TaskRefused(f"task {task_id} has no CLI session to resume")
        return self._run_again(task, follow_up)

    def ask(self, task_id: str, question: str) -> str:
        task = self.get(task_id)
        question = question.strip()
        if not question:
            raise TaskRefused("ask_parent.py needs the question")
        if task.state not in ACTIVE:
            raise TaskRefused(f"task {task_id} is {task.status}: only a running task can ask")
        task = self.store.update(
            task.id,
            question_count=task.question_count + 1,
            last_question=question[:2000],
            asked_in_run=task.run,
        )
        envelope = texts.question_envelope(self.agent, task, question)
        Spool(self.paths.spool(self.agent)).inbox().put(envelope)
        return ASKED

    # -- named sessions ------------------------------------------------------------------

    def named(self, session: str, name: str) -> Task | None:
        """The chat's named session ``name`` that has not ended."""
        for task in self.list(session, TaskKind.SESSION):
            if task.name == name and not task.ended:
                return task
        return None

    def start_session(self, session: str, prompt: str, provider: str, model: str) -> Task:
        live = [t for t in self.list(session, TaskKind.SESSION) if not t.ended]
        if len(live) >= MAX_SESSIONS:
            raise TaskRefused(f"Too many sessions ({MAX_SESSIONS} max)")
        self._check_session_jobs(session)
        config = self.config()
        task = Task(
            id=self._free_id(),
            name=session_name({t.name for t in live}),
            prompt=prompt,
            provider=provider,
            model=model,
            effort=config.reasoning_effort,
            session=session,
            created_at=time.time(),
            run=1,
            kind=TaskKind.SESSION.value,
        )
        self.store.save(task)
        return self._launch(task)

    def follow_up(self, task: Task, text: str) -> Task:
        """A background follow-up in the named session's own CLI session."""
        if task.state in ACTIVE:
            raise TaskRefused(
                f"Session '{task.name}' is still processing. Wait or use /stop to cancel."
            )
        self._check_session_jobs(task.session)
        return self._run_again(task, text)

    def _check_session_jobs(self, session: str) -> None:
        """At most ``MAX_SESSION_JOBS`` named-session runs in the background per chat."""
        running = [t for t in self.list(session, TaskKind.SESSION) if t.state in ACTIVE]
        if len(running) >= MAX_SESSION_JOBS:
            raise TaskRefused(f"Too many background tasks ({MAX_SESSION_JOBS} max)")

    def end(self, task: Task) -> Task:
        """End a named session: stop its run (if any), keep it out of every list."""
        task = self.store.update(task.id, ended=True)
        if task.state in ACTIVE:
            with contextlib.suppress(TaskRefused):
                self.cancel(task.id)
        return self.store.get(task.id) or task

    def recover_sessions(self) -> int:
        """Resume the named sessions whose run a shutdown cut short; the chat is told."""
        resumed = 0
        for found in self.store.all():
            if found.kind != TaskKind.SESSION or not found.interrupted:
                continue
            task = self.store.update(found.id, interrupted=False)
            if task.ended or task.state in ACTIVE:
                continue
            routing = texts.routing_of(task)
            if routing is not None:
                Spool(self.paths.spool(self.agent), served=self.config().outboxes).post(
                    Envelope.create(
                        agent=self.agent,
                        kind=Kind.NOTICE,
                        envelope_id=f"task-{task.id}-{task.run}-recovery",
                        routing=routing,
                        payload=Payload(
                            text=f"**Auto-Recovery** {texts.SEP} Resuming background session"
                            f" **{task.name}**"
                        ),
                    )
                )
            with contextlib.suppress(TaskRefused):
                self.follow_up(task, task.follow_up or task.prompt)
                resumed += 1
        return resumed

    # -- upkeep -----------------------------------------------------------------------

    def reconcile(self, now: float | None = None) -> int:
        """Report runs whose runner is gone without a result; prune old tasks.

        Returns how many runs were reported here."""
        now = time.time() if now is None else now
        if not self.recovered:  # the first upkeep of this agent's run
            self.recovered = True
            self.recover_sessions()
        reported = 0
        for task in self.store.all():
            if task.state not in ACTIVE:
                continue
            if (
                task.state is Status.STARTING
                and now - max(task.created_at, task.completed_at) < STARTING_GRACE
            ):
                continue
            if self.launcher.is_running(task.id, task.pid):
                continue
            fresh = self.store.get(task.id)  # it may have finished meanwhile
            if fresh is None or fresh.state not in ACTIVE:
                continue
            runner.abandon(
                self.agent, fresh, self.paths, "the task's process ended without a result"
            )
            reported += 1
        tasks = self.config().tasks
        self.store.prune(
            retention_hours=tasks.finished_retention_hours,
            keep_last=tasks.finished_keep_last,
            now=now,
        )
        return reported


MAX_SESSIONS = 10
MAX_SESSION_JOBS = 5  # named-session runs in the background at once, per chat
ADJECTIVES = [
    "bold",
    "blue",
    "calm",
    "cool",
    "dark",
    "deep",
    "dry",
    "fair",
    "fast",
    "firm",
    "fond",
    "free",
    "glad",
    "gold",
    "gray",
    "green",
    "keen",
    "kind",
    "lean",
    "live",
    "loud",
    "mild",
    "neat",
    "new",
    "odd",
    "pale",
    "pink",
    "pure",
    "quick",
    "rare",
    "red",
    "rich",
    "safe",
    "shy",
    "slim",
    "soft",
    "tall",
    "tidy",
    "warm",
    "wide",
    "wild",
    "wise",
    "zinc",
]
NOUNS = [
    "ant",
    "ape",
    "bat",
    "bear",
    "bee",
    "boar",
    "cat",
    "cod",
    "cow",
    "crab",
    "crow",
    "deer",
    "dog",
    "dove",
    "duck",
    "eel",
    "elk",
    "emu",
    "fox",
    "frog",
    "gnu",
    "goat",
    "hare",
    "hawk",
    "hen",
    "ibis",
    "jay",
    "kiwi",
    "koi",
    "lark",
    "lion",
    "lynx",
    "mole",
    "moth",
    "mule",
    "newt",
    "owl",
    "ox",
    "pig",
    "puma",
    "ram",
    "rat",
    "seal",
    "swan",
    "wolf",
    "wren",
    "yak",
]


def session_name(taken: set[str]) -> str:
    """A compact ``adjectivenoun`` name, unique among ``taken``."""
    for _ in range(50):
        name = secrets.choice(ADJECTIVES) + secrets.choice(NOUNS)
        if name not in taken:
            return name
    base = secrets.choice(ADJECTIVES) + secrets.choice(NOUNS)
    return next(f"{base}{n}" for n in range(2, 1000) if f"{base}{n}" not in taken)


def _name_from(prompt: str) -> str:
    words = prompt.split()[:5]
    return " ".join(words)[:NAME_LIMIT] or "task"


def public(task: Task) -> dict[str, Any]:
    """A task as the tool scripts print it."""
    data = dataclasses.asdict(task)
    for key in ("pid", "follow_up", "asked_in_run", "cancel_requested"):
        data.pop(key, None)
    data["duration_seconds"] = round(task.duration, 1)
    return data

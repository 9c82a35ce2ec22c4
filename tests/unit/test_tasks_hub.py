"""ductor.tasks and the agent's inbox reader: caps, retention, reports once, injection once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.unit.test_sandbox import fake_manager

from ductor import paths, sandbox
from ductor.agent.core import Agent
from ductor.agent.inbox import InboxReader, inject_envelope
from ductor.agent.turns import TurnKind
from ductor.config import AgentConfig
from ductor.config.schema import LimitsConfig, TasksConfig
from ductor.spool import Routing, Spool
from ductor.tasks import launch, runner, texts
from ductor.tasks.hub import TaskHub, TaskRefused
from ductor.tasks.store import Status, Task, TaskStore


def env_for(root: Path) -> dict[str, str]:
    return {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }


class FakeLauncher:
    """Starts nothing; remembers what it was asked."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.running: set[str] = set()

    def start(self, task_id: str) -> int:
        self.started.append(task_id)
        self.running.add(task_id)
        return 0

    def stop(self, task_id: str, pid: int, *, wait: float = 0) -> bool:
        self.stopped.append(task_id)
        self.running.discard(task_id)
        return True

    def is_running(self, task_id: str, pid: int) -> bool:
        return task_id in self.running


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TaskHub, FakeLauncher]]:
    env = env_for(tmp_path)
    fake = FakeLauncher()
    config = AgentConfig(tasks=TasksConfig(max_parallel=2))
    task_hub = TaskHub("main", paths.resolve(env=env), lambda: config, env)
    monkeypatch.setattr(TaskHub, "launcher", property(lambda self: fake))
    yield task_hub, fake


def inbox_ids(task_hub: TaskHub) -> list[str]:
    return [e.id for e in Spool(task_hub.paths.spool("main")).inbox().list()]


def test_a_chat_gets_at_most_max_parallel_tasks_but_interactive_ones_bypass_the_cap(
    hub: tuple[TaskHub, FakeLauncher],
) -> None:
    task_hub, _ = hub
    task_hub.create({"prompt": "one"}, "tg:1")
    task_hub.create({"prompt": "two"}, "tg:1")
    with pytest.raises(TaskRefused, match=r"Too many background tasks \(2 max\)"):
        task_hub.create({"prompt": "three"}, "tg:1")
    task_hub.create({"prompt": "urgent", "priority": "interactive"}, "tg:1")
    task_hub.create({"prompt": "elsewhere"}, "tg:2")  # another chat has its own cap


def test_a_new_task_has_its_folder_memory_and_rules_and_its_run_started(
    hub: tuple[TaskHub, FakeLauncher],
) -> None:
    task_hub, fake = hub
    task = task_hub.create({"prompt": "Audit the deps.", "name": "audit"}, "tg:1")
    folder = task_hub.store.folder(task.id)
    assert (folder / "TASKMEMORY.md").read_text().startswith("# Task: audit")
    assert "Task Agent Rules" in (folder / "CLAUDE.md").read_text()
    assert fake.started == [task.id]
    assert (task.provider, task.model) == ("claude", AgentConfig().model)


def test_a_run_gone_without_a_result_is_reported_once(
    hub: tuple[TaskHub, FakeLauncher],
) -> None:
    task_hub, fake = hub
    task = task_hub.create({"prompt": "x", "name": "lost"}, "tg:1")
    task_hub.store.update(task.id, status=Status.RUNNING.value, started_at=time.time())
    assert task_hub.reconcile() == 0  # still running
    fake.running.clear()
    assert task_hub.reconcile() == 1
    assert task_hub.reconcile() == 0
    assert task_hub.get(task.id).state is Status.FAILED
    assert inbox_ids(task_hub) == [f"task-{task.id}-1"]
    # The unit's ExecStopPost comes too late: it finds nothing to report.
    runner.finish("main", task.id, task_hub.paths, env={"SERVICE_RESULT": "signal"})
    assert inbox_ids(task_hub) == [f"task-{task.id}-1"]


def test_a_cancelled_run_reports_cancelled_with_its_partial_memory(
    hub: tuple[TaskHub, FakeLauncher],
) -> None:
    task_hub, _ = hub
    task = task_hub.create({"prompt": "x", "name": "halfway"}, "tg:1")
    task_hub.store.memory_file(task.id).write_text("# Task: halfway\n\nStep 1 done.\n")
    task_hub.cancel(task.id)
    [entry] = Spool(task_hub.paths.spool("main")).inbox().list()
    assert entry.envelope is not None
    text = entry.envelope.payload.text
    assert text.startswith("**Task `halfway` cancelled**")
    assert "Step 1 done." in text
    assert entry.envelope.payload.metadata["prompt"] == ""  # not injected


def test_retention_drops_old_and_surplus_finished_tasks_and_orphan_folders(
    tmp_path: Path,
) -> None:
    store = TaskStore(tmp_path / "state", tmp_path / "workspace")
    now = time.time()
    for index, age_h in enumerate((1, 2, 3, 500)):
        store.save(
            Task(
                id=f"0000000{index}",
                name=f"t{index}",
                prompt="p",
                provider="claude",
                model="opus",
                status=Status.DONE.value,
                created_at=now - age_h * 3600,
                completed_at=now - age_h * 3600,
            )
        )
    running = store.save(
        Task(id="aaaaaaaa", name="r", prompt="p", provider="claude", model="", created_at=now)
    )
    orphan = tmp_path / "workspace" / "tasks" / "bbbbbbbb"
    orphan.mkdir(parents=True)
    old = now - 3600
    os.utime(orphan, (old, old))
    store.prune(retention_hours=168, keep_last=2, now=now)
    assert sorted(t.id for t in store.all()) == ["00000000", "00000001", running.id]
    assert not orphan.exists()


def test_the_task_unit_names_agent_and_task_as_systemd_escapes_them() -> None:
    assert launch.task_unit("main", "1f2e3d4c") == "ductor-task@main:1f2e3d4c.service"


def test_the_injected_result_is_framed_for_a_critical_review() -> None:
    task = Task(
        id="1f2e3d4c",
        name="audit",
        prompt="Audit it.",
        provider="claude",
        model="opus",
        status=Status.DONE.value,
        elapsed_seconds=37,
    )
    memory = Path("/w/tasks/1f2e3d4c/TASKMEMORY.md")
    prompt = texts.injection(task, "All fine.", "# Task: audit", memory)
    assert prompt.startswith("[BACKGROUND TASK COMPLETED: task_id='1f2e3d4c' name='audit']")
    assert "Provider: claude/opus | Duration: 37s" in prompt
    assert "[END TASK RESULT]\n\nOriginal task: Audit it." in prompt
    assert "Review this result critically" in prompt
    assert "CONTENT FROM TASKMEMORY.MD" in prompt
    notice = texts.notice(task, "", memory)
    assert notice == "**Task `audit` completed** (37s, claude/opus)"
    failed = replace(task, status=Status.FAILED.value, error="Timeout after 60s")
    assert texts.notice(failed, "", memory) == "**Task `audit` failed**\nReason: Timeout after 60s"


# -- the inbox reader ---------------------------------------------------------------------


def make_agent(root: Path) -> Agent:
    env = env_for(root)
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def test_an_inbox_envelope_posts_its_notice_and_injects_its_prompt_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        agent = make_agent(tmp_path)
        monkeypatch.setattr(agent, "_dispatch", lambda: None)  # turns stay queued
        envelope = inject_envelope(
            agent="main",
            routing=Routing(transport="tg", chat_id=5),
            prompt="CI failed: look at it",
            notice="**CI failed**",
            envelope_id="ci-1",
        )
        inbox = agent.spool.inbox()
        inbox.put(envelope)
        reader = InboxReader(agent)
        assert reader.drain() == 1
        [turn] = agent.turns.load()
        assert (turn.kind, turn.session, turn.text) == (
            TurnKind.INJECT,
            "tg:5",
            "CI failed: look at it",
        )
        notices = agent.spool.outbox("tg").list()
        assert [e.envelope.payload.text for e in notices if e.envelope] == ["**CI failed**"]
        # The same envelope again (a writer retried after its done/ copy expired, or a
        # crash before finish): neither the notice nor the turn comes twice.
        agent.spool.inbox().put(replace(envelope, id="ci-1"))
        reader.drain()
        assert len(agent.turns.load()) == 1
        assert len(agent.spool.outbox("tg").list()) == 1

    asyncio.run(body())


def test_an_inbox_envelope_for_a_malformed_session_is_set_aside(tmp_path: Path) -> None:
    async def body() -> None:
        agent = make_agent(tmp_path)
        envelope = inject_envelope(
            agent="main",
            routing=Routing(transport="tg", chat_id="not-a-number"),
            prompt="x",
        )
        agent.spool.inbox().put(envelope)
        InboxReader(agent).drain()
        assert agent.turns.load() == []
        [entry] = agent.spool.inbox().list()
        assert entry.state.value == "bad"

    asyncio.run(body())


def test_a_task_made_without_a_chat_reports_to_the_allowed_users_of_the_primary_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_for(tmp_path)
    config = AgentConfig(transports=("matrix",))
    task_hub = TaskHub("main", paths.resolve(env=env), lambda: config, env)
    monkeypatch.setattr(TaskHub, "launcher", property(lambda self: FakeLauncher()))
    task = task_hub.create({"prompt": "x", "name": "orphan"}, "")
    task_hub.cancel(task.id)
    [entry] = Spool(task_hub.paths.spool("main")).inbox().list()
    assert entry.envelope is not None
    assert entry.envelope.routing == Routing(transport="mx", broadcast=True, origin="task orphan")


def test_a_task_for_a_matrix_room_gets_the_whole_room_id_as_its_chat(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    task = Task(
        id="1f2e3d4c",
        name="m",
        prompt="p",
        provider="claude",
        model="opus",
        session="mx:!abc:example.org",
    )
    spec = runner.build_spec(task, "main", paths.resolve(env=env), AgentConfig(), env)
    assert spec.identity is not None
    variables = spec.identity.variables()
    assert variables["DUCTOR_CHAT_ID"] == "!abc:example.org"
    assert "DUCTOR_TOPIC_ID" not in variables
    assert variables["DUCTOR_TASK_ID"] == "1f2e3d4c"
    assert variables["DUCTOR_AGENT_SOCKET"].endswith("/main/agent.sock")


def test_a_chat_runs_at_most_five_named_sessions_in_the_background_at_once(
    hub: tuple[TaskHub, FakeLauncher],
) -> None:
    task_hub, fake = hub
    started = [task_hub.start_session("tg:1", f"job {n}", "claude", "opus") for n in range(5)]
    with pytest.raises(TaskRefused, match=r"Too many background tasks \(5 max\)"):
        task_hub.start_session("tg:1", "one more", "claude", "opus")
    task_hub.start_session("tg:2", "another chat", "claude", "opus")  # its own cap
    first = task_hub.store.update(started[0].id, status=Status.DONE.value)
    fake.running.discard(first.id)
    sixth = task_hub.start_session("tg:1", "now there is room", "claude", "opus")
    with pytest.raises(TaskRefused, match=r"Too many background tasks \(5 max\)"):
        task_hub.follow_up(first, "and a follow-up")  # a follow-up is a background run too
    task_hub.store.update(sixth.id, status=Status.DONE.value)
    assert task_hub.follow_up(first, "and a follow-up").run == 2


def test_a_task_unit_gets_the_agents_limits_and_in_system_mode_its_env_as_a_credential(
    tmp_path: Path,
) -> None:
    limits = LimitsConfig(memory_max="1G", tasks_max=64, cpu_weight=50)
    user = paths.resolve(paths.Mode.USER, env=env_for(tmp_path))
    assert launch.unit_settings(user, "main", limits) == (
        "[Service]\nMemoryMax=1G\nTasksMax=64\nCPUWeight=50\n"
    )
    assert launch.unit_settings(user, "main", LimitsConfig()) == ""
    system = paths.resolve(paths.Mode.SYSTEM, env={})
    assert launch.unit_settings(system, "main", LimitsConfig()) == (
        "[Service]\nLoadCredential=dotenv:/etc/ductor/credentials/main/.env\n"
    )


def test_a_starting_task_unit_gets_its_settings_and_finished_ones_lose_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    units = tmp_path / "systemd" / "user"
    old = units / "ductor-task@main:old.service.d"
    old.mkdir(parents=True)
    (old / sandbox.TASK_SETTINGS).write_text("[Service]\nMemoryMax=1G\n", encoding="utf-8")
    manager = fake_manager()
    settings = "[Service]\nMemoryMax=2G\n"
    sandbox.fence_task(manager, "main", "ductor-task@main:new.service", settings=settings)
    written = units / "ductor-task@main:new.service.d" / sandbox.TASK_SETTINGS
    assert written.read_text(encoding="utf-8").endswith(settings)
    assert not old.exists()
    assert manager.reloads == [1]
    sandbox.fence_task(manager, "main", "ductor-task@main:new.service")  # limits removed
    assert not written.exists()


def test_root_starts_and_stops_the_task_units_a_system_agent_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    env = env_for(tmp_path)
    where = paths.resolve(paths.Mode.USER, env=env)
    where.agent_config("main").parent.mkdir(parents=True)
    where.agent_config("main").write_text('[limits]\nmemory_max = "1G"\n', encoding="utf-8")
    store = TaskStore(where.agent_state("main"), where.workspace("main"))
    store.save(Task(id="1f2e3d4c", name="audit", prompt="x", provider="claude", model="opus"))
    requests = launch.requests_dir(where.agent_state("main"))
    for name in ("1f2e3d4c.start", "0badc0de.stop", "not-an-id.start", "0badc0de.start"):
        launch.ask_root(requests, *name.split("."))
    manager = fake_manager()
    calls: list[tuple[str, ...]] = []
    object.__setattr__(manager, "systemctl", lambda *args, **_: calls.append(args))
    monkeypatch.setattr(launch, "Manager", lambda mode: manager)

    assert launch.control("main", where) == 2
    assert calls == [
        ("stop", "--no-block", "ductor-task@main:0badc0de.service"),
        ("start", "--no-block", "ductor-task@main:1f2e3d4c.service"),
    ]  # 0badc0de has no record: not started
    dropin = tmp_path / "systemd" / "user" / "ductor-task@main:1f2e3d4c.service.d"
    assert "MemoryMax=1G" in (dropin / sandbox.TASK_SETTINGS).read_text(encoding="utf-8")
    assert list(requests.iterdir()) == []  # every request is done once, bad ones too


def test_a_system_agents_account_asks_root_for_its_task_units(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch.os, "geteuid", lambda: 990)
    state = tmp_path / "state"
    launcher = launch.Launcher("main", paths.Mode.SYSTEM, {"INVOCATION_ID": "x"}, state_dir=state)
    monkeypatch.setattr(launch.Launcher, "is_running", lambda self, task_id, pid: False)
    monkeypatch.setattr(launch, "uses_systemd", lambda env: True)
    assert launcher.start("1f2e3d4c") == 0
    assert launcher.stop("1f2e3d4c", 0) is True
    assert sorted(p.name for p in launch.requests_dir(state).iterdir()) == [
        "1f2e3d4c.start",
        "1f2e3d4c.stop",
    ]

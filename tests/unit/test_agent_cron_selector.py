"""ductor.agent.cron_selector: the /cron selector and its crn: buttons."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ductor import paths, protocol
from ductor.agent import commands, cron_selector, server
from ductor.agent.commands import CommandResult
from ductor.agent.core import Agent
from ductor.config import AgentConfig
from ductor.cron.jobs import Job, JobStore
from ductor.errors import UsageError
from ductor.paths import Paths
from ductor.protocol import Request, RequestType
from ductor.spool import Envelope, Execution, ExecutionStatus, Kind, Payload, Routing
from ductor.units import Manager

NOW = datetime(2025, 11, 21, 20, 0, 0, tzinfo=UTC)


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def job(name: str, **fields: object) -> Job:
    values: dict[str, object] = {"schedule": "0 8 * * *", "prompt": "do it"}
    values.update(fields)
    return Job(name=name, **values)  # type: ignore[arg-type]


class Syncs:
    """Stands in for sync_jobs: records the calls, fails when told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[Paths, Manager, str]] = []
        self.error: Exception | None = None

    def __call__(self, paths: Paths, manager: Manager, agent: str) -> None:
        self.calls.append((paths, manager, agent))
        if self.error is not None:
            raise self.error


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return make_agent(tmp_path)


@pytest.fixture
def store(agent: Agent) -> JobStore:
    return JobStore(agent.state_dir)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    fake = Syncs()
    monkeypatch.setattr(cron_selector, "sync_jobs", fake)
    monkeypatch.setattr(cron_selector, "_now", lambda: NOW)
    return fake


def command(text: str = "/cron", session: str = "tg:123") -> Request:
    return Request(RequestType.COMMAND, "r1", session=session, text=text)


def button(data: str, session: str = "tg:123") -> Request:
    return Request(RequestType.BUTTON, "r2", session=session, data=data)


def run_cron(agent: Agent, text: str = "/cron", session: str = "tg:123") -> CommandResult:
    async def run() -> CommandResult | None:
        return await commands.run_command_text(agent, command(text, session))

    result = asyncio.run(run())
    assert result is not None
    return result


def press(agent: Agent, data: str) -> CommandResult:
    result = asyncio.run(cron_selector.handle_button(agent, button(data)))
    assert result is not None
    return result


def datas(result: CommandResult) -> list[list[str]]:
    return [[b["data"] for b in row] for row in result.buttons]


def labels(result: CommandResult) -> list[list[str]]:
    return [[b["label"] for b in row] for row in result.buttons]


def record_run(agent: Agent, name: str, **fields: object) -> None:
    directory = agent.state_dir / "cron_runs"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(fields), encoding="utf-8")


def post(agent: Agent, envelope_id: str, *, chat: int = 123) -> Envelope:
    envelope = Envelope.create(
        agent=agent.name,
        kind=Kind.CRON,
        envelope_id=envelope_id,
        routing=Routing(transport="tg", chat_id=chat),
        payload=Payload(text="**news**\n\nhello"),
        execution=Execution(status=ExecutionStatus.OK, finished_at=NOW),
    )
    assert agent.spool.post(envelope)
    return envelope


# -- the list ----------------------------------------------------------------------------


def test_no_jobs_says_how_to_make_one(agent: Agent, syncs: Syncs) -> None:
    result = run_cron(agent)

    assert result.text == cron_selector.NO_JOBS
    assert "`ductor cron add`" in result.text
    assert result.buttons == []


def test_each_job_is_a_line_with_schedule_routing_and_last_run(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news", chat_id="123"))
    store.add(job("backup", schedule="*/15 * * * *", enabled=False))
    store.add(job("report", schedule="5 4 1,15 * *", chat_id="-100777", topic_id="7"))
    store.add(job("zz-matrix", transport="mx", chat_id="!room:example.org"))

    result = run_cron(agent)

    assert result.text.splitlines() == [
        "**Cron jobs** ─── 4 jobs, 3 enabled",
        "⏸ **backup** · every 15 minutes · → broadcast · never",
        "✅ **news** · every day at 08:00 · → this chat · never",
        "✅ **report** · 5 4 1,15 * * · → chat -100777 topic 7 · never",
        "✅ **zz-matrix** · every day at 08:00 · → chat !room:example.org (mx) · never",
    ]


def test_the_job_timezone_is_shown_with_the_schedule(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news", timezone="Europe/Berlin"))

    assert " · every day at 08:00 (Europe/Berlin) · " in run_cron(agent).text


def test_this_chat_means_the_same_topic_too(agent: Agent, store: JobStore, syncs: Syncs) -> None:
    store.add(job("news", chat_id="-100777", topic_id="7"))

    assert "→ this chat" in run_cron(agent, session="tg:-100777:7").text
    assert "→ chat -100777 topic 7" in run_cron(agent, session="tg:-100777").text
    assert "→ chat -100777 topic 7" in run_cron(agent, session="tg:-100777:8").text


def test_buttons_toggle_each_job_then_all_on_off_then_refresh(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    store.add(job("backup", enabled=False))

    result = run_cron(agent)

    assert labels(result) == [
        ["▶ backup"],
        ["⏸ news"],
        ["All on", "All off"],
        ["Refresh"],
    ]
    assert datas(result) == [
        ["crn:t:0:backup"],
        ["crn:t:0:news"],
        ["crn:ao:0", "crn:af:0"],
        ["crn:r:0"],
    ]


# -- paging ------------------------------------------------------------------------------


def test_five_jobs_a_page_with_prev_and_next(agent: Agent, store: JobStore, syncs: Syncs) -> None:
    for index in range(12):
        store.add(job(f"job-{index:02d}"))

    first = run_cron(agent)
    second = press(agent, "crn:n:0")
    third = press(agent, "crn:n:1")

    assert first.text.splitlines()[0] == "**Cron jobs** ─── 12 jobs, 12 enabled · page 1/3"
    assert [row[0] for row in datas(first)[:5]] == [f"crn:t:0:job-{i:02d}" for i in range(5)]
    assert datas(first)[-1] == ["crn:r:0", "crn:n:0"]
    assert "page 2/3" in second.text
    assert "**job-05**" in second.text and "**job-04**" not in second.text
    assert datas(second)[-1] == ["crn:p:1", "crn:r:1", "crn:n:1"]
    assert len(third.text.splitlines()) == 1 + 2
    assert datas(third)[-1] == ["crn:p:2", "crn:r:2"]
    assert press(agent, "crn:p:2").text == second.text
    assert press(agent, "crn:r:1").text == second.text
    assert "page 3/3" in press(agent, "crn:n:7").text, "a page past the end shows the last"
    assert "page 3/3" in run_cron(agent, "/cron 3").text


# -- changes -----------------------------------------------------------------------------


def test_toggling_pauses_the_job_and_syncs_the_timers(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    store.add(job("backup"))

    result = press(agent, "crn:t:0:news")

    assert store.get("news").enabled is False
    assert store.get("backup").enabled is True
    assert [(p, m.mode, name) for p, m, name in syncs.calls] == [
        (agent.paths, agent.paths.mode, "main")
    ]
    assert "⏸ **news**" in result.text
    assert "**Cron jobs** ─── 2 jobs, 1 enabled" in result.text
    assert result.text.endswith("news paused.")
    assert labels(result)[1] == ["▶ news"]

    again = press(agent, "crn:t:0:news")

    assert store.get("news").enabled is True
    assert again.text.endswith("news resumed.")
    assert len(syncs.calls) == 2


def test_a_failed_sync_is_told_and_the_change_stays(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    syncs.error = UsageError("systemctl said no")

    result = press(agent, "crn:t:0:news")

    assert store.get("news").enabled is False
    assert "news paused." in result.text
    assert "The timers could not be updated: systemctl said no" in result.text
    assert "`ductor cron sync main`" in result.text
    assert result.buttons, "the selector is still there"


def test_toggling_a_job_that_is_gone_changes_nothing(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))

    result = press(agent, "crn:t:0:gone")

    assert "Nothing changed: no cron job named 'gone'" in result.text
    assert syncs.calls == []


def test_all_off_and_all_on_switch_every_job_with_one_sync(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    for index in range(7):
        store.add(job(f"job-{index}", enabled=index != 6))

    off = press(agent, "crn:af:1")

    assert not any(j.enabled for j in store.load().values())
    assert len(syncs.calls) == 1
    assert off.text.endswith("6 jobs switched off.")
    assert "page 2/2" in off.text, "the page stays"

    on = press(agent, "crn:ao:0")

    assert all(j.enabled for j in store.load().values())
    assert len(syncs.calls) == 2
    assert on.text.endswith("7 jobs switched on.")

    again = press(agent, "crn:ao:0")

    assert again.text.endswith("Every job was on already.")
    assert len(syncs.calls) == 2, "nothing changed: no sync"


def test_stale_or_foreign_buttons(agent: Agent, store: JobStore, syncs: Syncs) -> None:
    store.add(job("news"))

    assert asyncio.run(cron_selector.handle_button(agent, button("ms:m:opus"))) is None
    assert press(agent, "crn:x:0").text == "This button is no longer valid."
    assert press(agent, "crn:t:zz:news").text == "This button is no longer valid."
    assert syncs.calls == []


# -- callback data -----------------------------------------------------------------------


def test_callback_data_fits_in_64_bytes(agent: Agent, store: JobStore, syncs: Syncs) -> None:
    long_name = "a" * 48
    store.add(job(long_name))

    result = run_cron(agent)

    assert all(len(data.encode()) <= 64 for row in datas(result) for data in row)
    assert datas(result)[0] == [f"crn:t:0:{long_name}"]
    assert labels(result)[0] == ["⏸ " + "a" * 39 + "…"]


def test_a_name_that_does_not_fit_goes_by_its_slot_and_fingerprint(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    name = "b" * 48
    store.add(job("a-first"))
    store.add(job(name))
    page = 10**9  # a page number this long leaves no room for the name

    data = cron_selector.toggle_data(page, 1, name)

    assert len(data.encode()) <= 64
    assert data == f"crn:t:{page}:#1.{cron_selector.fingerprint(name)}"
    assert cron_selector._resolve(agent, 0, data.rsplit(":", 1)[1]) == name

    result = press(agent, f"crn:t:0:#1.{cron_selector.fingerprint(name)}")

    assert store.get(name).enabled is False
    assert store.get("a-first").enabled is True
    assert len(syncs.calls) == 1
    assert result.text.endswith(f"{name} paused.")

    stale = press(agent, "crn:t:0:#0.00000000")

    assert stale.text.endswith("The job list changed; here it is again.")
    assert store.get("a-first").enabled is True
    assert len(syncs.calls) == 1


# -- last run and delivery ---------------------------------------------------------------


def line_of(result: CommandResult, name: str) -> str:
    [line] = [line for line in result.text.splitlines() if f"**{name}**" in line]
    return line


def test_last_run_and_delivery_from_the_run_state_and_the_spool(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    for name in ("delivered", "waiting", "retrying", "failed", "silent"):
        store.add(job(name, chat_id="123"))
    two_hours = (NOW - timedelta(hours=2)).isoformat()
    queue = agent.spool.outbox("tg")
    for name in ("delivered", "waiting", "retrying", "failed"):
        record_run(
            agent,
            name,
            last_started=two_hours,
            last_finished=two_hours,
            last_status="ok",
            last_error="",
            last_envelope=f"cron-{name}-1",
        )
        post(agent, f"cron-{name}-1")
    done = queue.claim("cron-delivered-1")
    assert done is not None
    queue.finish(queue.record_delivery(done, [42]))
    retried = queue.claim("cron-retrying-1")
    assert retried is not None
    queue.fail(retried, "network down")
    failed = queue.claim("cron-failed-1")
    assert failed is not None
    queue.fail(failed, "chat not found", permanent=True)
    record_run(
        agent,
        "silent",
        last_started=two_hours,
        last_finished=two_hours,
        last_status="ok",
        last_envelope=None,
    )

    result = run_cron(agent)

    assert line_of(result, "delivered").endswith(" · ok 2 h ago · delivered")
    assert line_of(result, "waiting").endswith(" · ok 2 h ago · waiting")
    assert line_of(result, "retrying").endswith(" · ok 2 h ago · retrying")
    assert line_of(result, "failed").endswith(" · ok 2 h ago · delivery failed")
    assert line_of(result, "silent").endswith(" · ok 2 h ago")


def test_errors_quiet_hours_running_and_failed_units(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    for name in ("broken", "quiet", "busy", "killed", "pruned"):
        store.add(job(name))
    started = (NOW - timedelta(minutes=5)).isoformat()
    yesterday = (NOW - timedelta(days=3)).isoformat()
    record_run(
        agent,
        "broken",
        last_started=started,
        last_finished=(NOW - timedelta(minutes=4)).isoformat(),
        last_status="error",
        last_error="exit code 2: `rm` said\nno such file " + "x" * 100,
        last_envelope="cron-broken-1",
    )
    post(agent, "cron-broken-1", chat=5)
    record_run(agent, "quiet", last_started=started, last_status="skipped_quiet")
    record_run(agent, "busy", last_started=started, last_status="running")
    record_run(agent, "killed", last_started=started, last_status="unit_failed:signal")
    record_run(
        agent,
        "pruned",
        last_started=yesterday,
        last_finished=yesterday,
        last_status="timeout",
        last_error="",
        last_envelope="cron-pruned-1",
    )

    result = run_cron(agent)

    broken = line_of(result, "broken")
    assert " · error: `exit code 2: 'rm' said no such file xxx" in broken
    assert broken.endswith("…` (4 min ago) · waiting")
    assert line_of(result, "quiet").endswith(" · skipped (quiet hours) 5 min ago")
    assert line_of(result, "busy").endswith(" · running for 5 min")
    assert line_of(result, "killed").endswith(" · run failed: `signal` (5 min ago)")
    assert line_of(result, "pruned").endswith(" · timeout (3 d ago)"), "no envelope left"


def test_an_unreadable_run_state_does_not_break_the_list(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    directory = agent.state_dir / "cron_runs"
    directory.mkdir(parents=True)
    (directory / "news.json").write_text("{not json", encoding="utf-8")

    assert line_of(run_cron(agent), "news").endswith(" · last run unknown")


def test_a_broken_job_file_is_said(agent: Agent, store: JobStore, syncs: Syncs) -> None:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("[jobs.news]\nschedule = 5\n", encoding="utf-8")

    result = run_cron(agent)

    assert result.text.startswith("**Cron jobs** ─── the job file cannot be read:")
    assert result.buttons == []


# -- dispatch ----------------------------------------------------------------------------


class Conn:
    def __init__(self) -> None:
        self.events: list[protocol.Event] = []

    def send(self, event: protocol.Event) -> None:
        self.events.append(event)


def test_the_server_routes_crn_buttons_to_the_selector(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    conn = Conn()

    asyncio.run(server._button(agent, button("crn:t:0:news"), conn))  # type: ignore[arg-type]

    [final] = conn.events
    assert final.type is protocol.EventType.FINAL
    assert final.text.endswith("news paused.")
    assert store.get("news").enabled is False


def test_cron_is_in_the_help() -> None:
    assert "\n/cron: " in commands.HELP
    assert commands.is_command("/cron@mybot")


def test_all_off_goes_on_past_a_job_that_cannot_be_changed(
    agent: Agent, store: JobStore, syncs: Syncs
) -> None:
    store.add(job("news"))
    text = store.path.read_text(encoding="utf-8")
    store.path.write_text(
        text + '\n[jobs.odd]\nschedule = "every tuesday"\nprompt = "x"\n', encoding="utf-8"
    )

    result = press(agent, "crn:af:0")

    assert store.get("news").enabled is False
    assert store.get("odd").enabled is True
    assert "1 job switched off.\nNot changed: cron job 'odd': schedule:" in result.text
    assert "✅ **odd** · every tuesday · " in result.text
    assert len(syncs.calls) == 1

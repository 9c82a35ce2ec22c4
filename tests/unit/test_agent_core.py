"""ductor.agent.core: answers reach the chat once, through the client or the outbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ductor import paths, protocol
from ductor.agent import core
from ductor.agent.core import Agent, Job
from ductor.agent.execute import Outcome
from ductor.agent.turns import TurnKind, TurnRecord
from ductor.config import AgentConfig
from ductor.protocol import ErrorCode, EventType
from ductor.spool import Entry, Kind, Spool, State

ACCEPTED = datetime(2025, 11, 21, 20, 0, 0, tzinfo=UTC)


class FakeSink:
    """A client connection: records the events the agent sends while it is connected."""

    def __init__(self, *, connected: bool = True) -> None:
        self.connected = connected
        self.events: list[protocol.Event] = []

    def send(self, event: protocol.Event) -> None:
        self.events.append(event)

    def of_type(self, kind: EventType) -> list[protocol.Event]:
        return [event for event in self.events if event.type is kind]


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


def in_loop(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())  # the agent creates futures and tasks: it lives in a loop


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return make_agent(tmp_path)


@pytest.fixture
def idle_lanes(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> Agent:
    """Submitted turns stay queued: no lane ever starts a CLI."""
    monkeypatch.setattr(agent, "_dispatch", lambda: None)
    return agent


def accept(agent: Agent, session: str = "tg:123", text: str = "hello") -> TurnRecord:
    seq = agent.turns.next_seq()
    return agent.turns.save(
        TurnRecord(
            id=f"t{seq:04d}",
            seq=seq,
            session=session,
            kind=TurnKind.MESSAGE,
            text=text,
            message_id=str(1000 + seq),
            accepted_at=ACCEPTED,
        )
    )


def outbox(agent: Agent, transport: str = "tg") -> list[Entry]:
    return Spool(agent.paths.spool(agent.name)).outbox(transport).list()


# -- delivery ----------------------------------------------------------------------------


def test_an_answer_for_a_client_that_acks_is_parked_until_the_ack(agent: Agent) -> None:
    sink = FakeSink()
    record = accept(agent)

    agent.deliver(Job(record, "r1", sink, want_ack=True), Outcome(text="the answer"))

    [final] = sink.events
    assert final.type is EventType.FINAL
    assert final.request_id == "r1"
    assert final.get_str("turn") == record.id
    assert final.text == "the answer"
    assert agent.turns.has_reply(record.id)
    assert agent.turns.load() == [], "the answer is safe: the turn is done"
    assert outbox(agent) == []


def test_an_acknowledged_answer_is_forgotten_and_never_reaches_the_outbox(agent: Agent) -> None:
    sink = FakeSink()
    record = accept(agent)
    agent.deliver(Job(record, "r1", sink, want_ack=True), Outcome(text="the answer"))

    assert agent.acknowledge(record.id) is True
    agent.client_gone(sink)

    assert not agent.turns.has_reply(record.id)
    assert agent.acks == {}
    assert outbox(agent) == []


def test_an_answer_for_a_client_that_does_not_ack_is_not_parked(agent: Agent) -> None:
    sink = FakeSink()
    record = accept(agent)

    agent.deliver(Job(record, "r1", sink, want_ack=False), Outcome(text="the answer"))

    assert len(sink.of_type(EventType.FINAL)) == 1
    assert not agent.turns.has_reply(record.id)
    assert agent.acks == {}


def test_answers_a_client_never_acknowledged_go_to_the_outbox_when_it_leaves(
    agent: Agent,
) -> None:
    leaving, staying = FakeSink(), FakeSink()
    first, second, third = accept(agent), accept(agent), accept(agent, session="tg:456")
    agent.deliver(Job(first, "r1", leaving, want_ack=True), Outcome(text="first answer"))
    agent.deliver(Job(second, "r2", leaving, want_ack=True), Outcome(text="second answer"))
    agent.deliver(Job(third, "r3", staying, want_ack=True), Outcome(text="third answer"))

    leaving.connected = False
    agent.client_gone(leaving)

    entries = outbox(agent)
    assert [e.state for e in entries] == [State.NEW, State.NEW]
    texts = sorted(e.envelope.payload.text for e in entries if e.envelope)
    assert texts == ["first answer", "second answer"]
    assert {e.id for e in entries} == {f"reply-{first.id}", f"reply-{second.id}"}
    assert not agent.turns.has_reply(first.id)
    assert agent.turns.has_reply(third.id), "the other client's answer waits for its ack"
    assert list(agent.acks) == [third.id]


def test_an_answer_whose_client_is_gone_goes_to_the_outbox_with_the_chat_and_topic(
    agent: Agent,
) -> None:
    record = accept(agent, session="tg:-100123:7")

    agent.deliver(Job(record, "r1", FakeSink(connected=False)), Outcome(text="late answer"))

    [entry] = outbox(agent)
    envelope = entry.envelope
    assert envelope is not None
    assert entry.state is State.NEW
    assert envelope.kind is Kind.REPLY
    assert envelope.payload.text == "late answer"
    assert envelope.routing.chat_id == -100123
    assert envelope.routing.topic_id == 7
    assert envelope.payload.metadata["turn"] == record.id
    assert envelope.payload.metadata["reply_to"] == record.message_id
    assert agent.turns.load() == []


def test_an_answer_without_any_client_goes_to_the_outbox_of_its_transport(agent: Agent) -> None:
    record = accept(agent, session="cli:alice")

    agent.deliver(Job(record, "", None), Outcome(text="for alice"))

    [entry] = outbox(agent, "cli")
    assert entry.envelope is not None
    assert entry.envelope.routing.chat_id == "alice"
    assert entry.envelope.routing.topic_id is None
    assert outbox(agent, "tg") == []


def test_an_answer_for_a_transport_without_outbox_is_dropped_when_nobody_listens(
    agent: Agent,
) -> None:
    record = accept(agent, session="ia:other-agent")

    agent.deliver(Job(record, "r1", FakeSink(connected=False)), Outcome(text="too late"))

    assert agent.spool.outbox_transports() == []
    assert agent.turns.load() == []


def test_a_recovery_notice_comes_before_the_answer_in_the_outbox(agent: Agent) -> None:
    record = accept(agent)
    outcome = Outcome(text="the answer", notice="Service restarted: resuming your last request.")

    agent.deliver(Job(record, "", None), outcome)

    [entry] = outbox(agent)
    assert entry.envelope is not None
    assert entry.envelope.payload.text == (
        "Service restarted: resuming your last request.\n\nthe answer"
    )


def test_a_heartbeat_answer_is_posted_as_a_heartbeat(agent: Agent) -> None:
    seq = agent.turns.next_seq()
    record = agent.turns.save(
        TurnRecord(
            id="t-heartbeat",
            seq=seq,
            session="tg:123",
            kind=TurnKind.HEARTBEAT,
            text="anything to report?",
            accepted_at=ACCEPTED,
        )
    )

    agent.deliver(Job(record, "", None), Outcome(text="all quiet"))

    [entry] = outbox(agent)
    assert entry.envelope is not None
    assert entry.envelope.kind is Kind.HEARTBEAT


def test_a_turn_stopped_before_it_said_anything_posts_nothing(agent: Agent) -> None:
    record = accept(agent)

    agent.deliver(Job(record, "r1", FakeSink(connected=False)), Outcome(text="", stopped="stop"))

    assert agent.spool.outbox_transports() == []
    assert agent.turns.load() == []


def test_a_stopped_turn_still_ends_a_connected_clients_request_without_parking(
    agent: Agent,
) -> None:
    sink = FakeSink()
    record = accept(agent)

    agent.deliver(Job(record, "r1", sink, want_ack=True), Outcome(text="", stopped="interrupt"))

    [final] = sink.events
    assert final.type is EventType.FINAL
    assert final.get_str("stopped") == "interrupt"
    assert not agent.turns.has_reply(record.id)
    assert agent.acks == {}


# -- queue aborts ------------------------------------------------------------------------


def test_cancelling_a_queued_message_tells_its_client_and_forgets_the_turn(
    idle_lanes: Agent,
) -> None:
    agent = idle_lanes
    first_sink, second_sink = FakeSink(), FakeSink()

    async def body() -> None:
        first = agent.submit(accept(agent, text="one"), request_id="r1", sink=first_sink)
        second = agent.submit(accept(agent, text="two"), request_id="r2", sink=second_sink)

        assert agent.cancel_queued("tg:123", second.record.id) is True

        [error] = second_sink.of_type(EventType.ERROR)
        assert error.type is EventType.ERROR
        assert error.request_id == "r2"
        assert error.get_str("kind") == ErrorCode.CANCELLED
        assert second.done is not None and second.done.cancelled()
        assert first_sink.of_type(EventType.ERROR) == []
        assert agent.turns.load() == [first.record]
        assert [job.record.id for job in agent.lanes["tg:123"].pending] == [first.record.id]

    in_loop(body)


def test_cancelling_an_unknown_entry_changes_nothing(idle_lanes: Agent) -> None:
    agent = idle_lanes

    async def body() -> None:
        job = agent.submit(accept(agent), request_id="r1", sink=FakeSink())

        assert agent.cancel_queued("tg:123", "t-no-such-turn") is False
        assert agent.cancel_queued("tg:999", job.record.id) is False
        assert agent.turns.load() == [job.record]

    in_loop(body)


def test_discarding_the_queue_tells_every_waiting_client_and_forgets_their_turns(
    idle_lanes: Agent,
) -> None:
    agent = idle_lanes
    sinks = [FakeSink(), FakeSink(), FakeSink()]

    async def body() -> None:
        jobs = [
            agent.submit(accept(agent), request_id=f"r{i}", sink=sink)
            for i, sink in enumerate(sinks)
        ]
        other = agent.submit(accept(agent, session="tg:456"), request_id="other", sink=FakeSink())

        assert agent.discard_queued("tg:123") == 3

        for job, sink in zip(jobs, sinks, strict=True):
            [error] = sink.of_type(EventType.ERROR)
            assert error.request_id == job.request_id
            assert error.get_str("kind") == ErrorCode.DISCARDED
            assert error.text == "Message discarded."
        assert agent.turns.load() == [other.record], "another session's queue is untouched"
        assert agent.discard_queued("tg:123") == 0
        assert agent.discard_queued("tg:999") == 0

    in_loop(body)


def test_a_message_behind_another_is_told_its_queue_position(idle_lanes: Agent) -> None:
    agent = idle_lanes
    first_sink, second_sink = FakeSink(), FakeSink()

    async def body() -> None:
        agent.submit(accept(agent), request_id="r1", sink=first_sink)
        second = agent.submit(accept(agent), request_id="r2", sink=second_sink)

        [queued] = second_sink.events
        assert queued.type is EventType.QUEUED
        assert queued.get_int("position") == 1
        assert queued.get_str("entry") == second.record.id
        assert first_sink.events == [], "the first in line is not queued behind anything"

    in_loop(body)


# -- status ------------------------------------------------------------------------------


def test_the_status_line_counts_sessions_and_running_turns(agent: Agent) -> None:
    assert agent.status_line() == "0 sessions, 0 running"

    agent.sessions.new_session("tg:123", default_provider="claude", default_model="opus")

    assert agent.status_line() == "1 session, 0 running"


def test_the_status_line_mentions_queued_turns_only_when_there_are_some(
    idle_lanes: Agent,
) -> None:
    agent = idle_lanes

    async def body() -> None:
        agent.sessions.new_session("tg:123", default_provider="claude", default_model="opus")
        agent.sessions.new_session("tg:456", default_provider="claude", default_model="opus")
        agent.submit(accept(agent), request_id="r1")
        agent.submit(accept(agent), request_id="r2")

        assert agent.status_line() == "2 sessions, 0 running, 2 queued"

    in_loop(body)


# -- slots -------------------------------------------------------------------------------


class GatedTurns:
    """Stands in for the CLI: a started turn runs until the test opens its gate."""

    def __init__(self, agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
        self.agent = agent
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        monkeypatch.setattr(agent, "_run", self.run)

    async def run(self, job: Job) -> None:
        job.emit(protocol.Events.accepted(job.request_id, job.record.id, job.record.session))
        self.started.append(job.record.text)
        await self.gates.setdefault(job.record.text, asyncio.Event()).wait()
        self.agent.turns.remove(job.record)

    async def finish(self, text: str) -> None:
        self.gates.setdefault(text, asyncio.Event()).set()
        for _ in range(5):  # let the lane task end and the next one start
            await asyncio.sleep(0)


def with_slots(agent: Agent, slots: int) -> Agent:
    limits = replace(agent.config.limits, max_parallel_sessions=slots)
    agent.apply_config(replace(agent.config, limits=limits))
    return agent


def test_with_every_slot_taken_a_new_chat_is_told_at_once_that_it_waits_for_a_slot(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = GatedTurns(with_slots(agent, 2), monkeypatch)
    sinks = [FakeSink() for _ in range(4)]

    async def body() -> None:
        for n, sink in enumerate(sinks):
            agent.submit(
                accept(agent, session=f"tg:{n}", text=f"m{n}"), request_id=f"r{n}", sink=sink
            )
        await asyncio.sleep(0)

        assert turns.started == ["m0", "m1"]
        for n, sink in enumerate(sinks[2:], start=1):
            [queued] = sink.events
            assert queued.type is EventType.QUEUED
            assert queued.get_str("reason") == "no_free_slot"
            assert queued.get_int("position") == n
            assert queued.text == "Waiting for a free slot: 2 chats are running."
        assert agent.running_count() == 2
        assert agent.queued_count() == 2

        await turns.finish("m0")
        assert turns.started == ["m0", "m1", "m2"]
        assert sinks[2].of_type(EventType.ACCEPTED)
        for text in ("m1", "m2", "m3"):
            await turns.finish(text)
        assert agent.lanes == {} and not agent.waiting

    in_loop(body)


def test_a_freed_slot_goes_to_the_chat_that_waited_not_to_the_next_message_of_the_same_chat(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = GatedTurns(with_slots(agent, 1), monkeypatch)
    second_sink = FakeSink()

    async def body() -> None:
        agent.submit(accept(agent, session="tg:1", text="a1"), request_id="a1", sink=FakeSink())
        agent.submit(accept(agent, session="tg:1", text="a2"), request_id="a2", sink=second_sink)
        agent.submit(accept(agent, session="tg:2", text="b1"), request_id="b1", sink=FakeSink())
        await asyncio.sleep(0)

        [queued] = second_sink.events
        assert queued.get_str("reason") == "session_busy"
        assert queued.text == "Queued behind your previous message."
        await turns.finish("a1")
        await turns.finish("b1")
        await turns.finish("a2")
        assert turns.started == ["a1", "b1", "a2"]

    in_loop(body)


def test_a_higher_parallel_limit_starts_waiting_chats_at_once(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = GatedTurns(with_slots(agent, 1), monkeypatch)

    async def body() -> None:
        for n in range(3):
            agent.submit(accept(agent, session=f"tg:{n}", text=f"m{n}"), request_id=f"r{n}")
        await asyncio.sleep(0)
        assert turns.started == ["m0"]

        with_slots(agent, 3)
        await asyncio.sleep(0)

        assert turns.started == ["m0", "m1", "m2"]
        for n in range(3):
            await turns.finish(f"m{n}")

    in_loop(body)


def test_a_session_is_idle_only_with_nothing_running_or_waiting(idle_lanes: Agent) -> None:
    agent = idle_lanes

    async def body() -> None:
        assert agent.idle("tg:123")
        agent.submit(accept(agent), request_id="r1")
        assert not agent.idle("tg:123")
        assert agent.idle("tg:456")

    in_loop(body)


# -- model discovery ---------------------------------------------------------------------


def test_model_discovery_of_a_cli_that_is_not_installed_logs_one_info_line_and_no_warning(
    agent: Agent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refreshed: list[str] = []
    monkeypatch.setattr(core, "cli_installed", lambda provider, env: provider == "codex")
    for provider, models in agent.models.items():

        def refresh(provider: str = str(provider)) -> tuple[()]:
            refreshed.append(provider)
            return ()

        monkeypatch.setattr(models, "refresh_if_stale", refresh)
    caplog.set_level(logging.DEBUG, logger="ductor")

    done = agent.start_model_discovery(interval=0.01)
    time.sleep(0.2)  # many rounds
    done.set()

    assert "codex" in refreshed and "gemini" not in refreshed
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    absent = [r.getMessage() for r in caplog.records if "not installed" in r.getMessage()]
    assert absent == ["gemini is not installed: using its built-in model list"]


def test_an_injected_turn_streams_to_its_transports_listener_else_to_the_outbox(
    agent: Agent,
) -> None:
    listener, elsewhere = FakeSink(), FakeSink()
    agent.listen("tg", listener)
    agent.listen("mx", elsewhere)
    injected = replace(accept(agent), kind=TurnKind.INJECT)
    job = Job(injected, "", None)
    agent._to_listener(job)  # as the turn starts
    agent.deliver(job, Outcome(text="about that task"))

    [final] = listener.events
    assert (final.request_id, final.get_str("turn")) == (injected.id, injected.id)
    assert elsewhere.events == [] and outbox(agent) == []
    assert agent.turns.has_reply(injected.id), "kept until the transport acknowledges it"

    listener.connected = False
    agent.client_gone(listener)  # never acknowledged: the outbox has it, once
    assert [e.id for e in outbox(agent)] == [f"reply-{injected.id}"]

    later = replace(accept(agent), kind=TurnKind.INJECT)
    job = Job(later, "", None)
    agent._to_listener(job)  # nobody listens any more
    agent.deliver(job, Outcome(text="and another"))
    assert [e.id for e in outbox(agent)] == [f"reply-{injected.id}", f"reply-{later.id}"]

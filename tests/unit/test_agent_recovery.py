"""ductor.agent.recovery: after a restart or reboot every accepted turn is answered once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ductor import paths
from ductor.agent import recovery
from ductor.agent.core import Agent, Sink
from ductor.agent.turns import TurnKind, TurnRecord, TurnState, new_turn_id
from ductor.config import AgentConfig
from ductor.spool import Entry, Envelope, Kind, Payload, Routing, Spool, State

BOOT = "11111111-2222-3333-4444-555555555555"
OTHER_BOOT = "99999999-8888-7777-6666-555555555555"
ACCEPTED = datetime(2025, 11, 21, 20, 0, 0, tzinfo=UTC)


@dataclass
class Submitted:
    record: TurnRecord
    persist: bool


@dataclass
class Harness:
    agent: Agent
    submitted: list[Submitted] = field(default_factory=list)

    def record(
        self,
        seq: int,
        *,
        session: str = "tg:123",
        state: TurnState = TurnState.QUEUED,
        recovery: bool = False,
    ) -> TurnRecord:
        return self.agent.turns.save(
            TurnRecord(
                id=f"t{seq:04d}",
                seq=seq,
                session=session,
                kind=TurnKind.MESSAGE,
                text=f"message {seq}",
                message_id=str(1000 + seq),
                state=state,
                recovery=recovery,
                recovery_reason="restart" if recovery else "",
                accepted_at=ACCEPTED + timedelta(seconds=seq),
                started_at=ACCEPTED if state is TurnState.RUNNING else None,
            )
        )

    def previous_start(self, boot: str) -> None:
        (self.agent.state_dir / "startup.json").write_text(json.dumps({"boot_id": boot}))

    def recover(self) -> recovery.Report:
        async def in_the_loop() -> recovery.Report:  # as the daemon calls it
            return self.agent.recover()

        return asyncio.run(in_the_loop())

    def outbox(self, transport: str = "tg") -> list[Entry]:
        return Spool(self.agent.paths.spool(self.agent.name)).outbox(transport).list()

    def texts(self, transport: str = "tg") -> list[str]:
        return [e.envelope.payload.text for e in self.outbox(transport) if e.envelope]


def make_agent(root: Path) -> Agent:
    env = {
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "runtime"),
        "DUCTOR_CACHE_DIR": str(root / "cache"),
        "HOME": str(root / "home"),
    }
    return Agent("main", paths.resolve(env=env), AgentConfig(), env=env)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setattr(recovery, "boot_id", lambda: BOOT)
    harness = Harness(make_agent(tmp_path))

    def submit(
        record: TurnRecord,
        *,
        request_id: str = "",
        sink: Sink | None = None,
        want_ack: bool = False,
        persist: bool = True,
    ) -> None:
        harness.submitted.append(Submitted(record, persist))

    monkeypatch.setattr(harness.agent, "submit", submit)
    return harness


# -- startup_kind ------------------------------------------------------------------------


def test_without_a_startup_file_it_is_a_first_start(tmp_path: Path) -> None:
    assert recovery.startup_kind(tmp_path, current_boot=BOOT) == recovery.FIRST_START


def test_the_same_boot_id_as_last_time_is_a_service_restart(tmp_path: Path) -> None:
    recovery.startup_kind(tmp_path, current_boot=BOOT)

    assert recovery.startup_kind(tmp_path, current_boot=BOOT) == recovery.RESTART


def test_another_boot_id_than_last_time_is_a_reboot(tmp_path: Path) -> None:
    recovery.startup_kind(tmp_path, current_boot=BOOT)

    assert recovery.startup_kind(tmp_path, current_boot=OTHER_BOOT) == recovery.REBOOT


def test_an_unknown_boot_id_is_taken_for_a_restart_not_a_reboot(tmp_path: Path) -> None:
    recovery.startup_kind(tmp_path, current_boot="")

    assert recovery.startup_kind(tmp_path, current_boot=BOOT) == recovery.RESTART


def test_every_start_rewrites_the_startup_file_so_the_next_one_compares_with_it(
    tmp_path: Path,
) -> None:
    file = tmp_path / "startup.json"
    recovery.startup_kind(tmp_path, current_boot=BOOT)
    first = json.loads(file.read_text())

    recovery.startup_kind(tmp_path, current_boot=OTHER_BOOT)
    second = json.loads(file.read_text())

    assert first["boot_id"] == BOOT
    assert second["boot_id"] == OTHER_BOOT
    assert second["started_at"] >= first["started_at"]
    assert recovery.startup_kind(tmp_path, current_boot=OTHER_BOOT) == recovery.RESTART


def test_the_notices_say_what_happened_and_that_the_request_resumes() -> None:
    assert recovery.notice_for("restart") == "Service restarted: resuming your last request."
    assert recovery.notice_for("reboot") == "Reboot detected: resuming your last request."
    assert recovery.notice_for("first_start") == recovery.notice_for("restart")


# -- recover -----------------------------------------------------------------------------


def test_an_interrupted_turn_is_rerun_once_as_a_recovery_and_the_chat_is_told(
    harness: Harness,
) -> None:
    harness.record(1, session="tg:-100123:7", state=TurnState.RUNNING)

    report = harness.recover()

    [submitted] = harness.submitted
    assert submitted.record.id == "t0001"
    assert submitted.record.state is TurnState.QUEUED
    assert submitted.record.recovery is True
    assert submitted.record.recovery_reason == "restart"
    assert submitted.persist is False, "recovery must not accept the turn a second time"
    assert harness.agent.turns.load() == [submitted.record], "the recovery mark is on disk"
    [notice] = harness.outbox()
    assert notice.envelope is not None
    assert notice.envelope.kind is Kind.NOTICE
    assert notice.envelope.payload.text == (
        "Service restarted: resuming your last request.\n“message 1”"
    )
    assert notice.envelope.routing.chat_id == -100123
    assert notice.envelope.routing.topic_id == 7
    assert report.resumed == ["t0001"]


def test_after_a_reboot_the_chat_is_told_a_reboot_was_detected(harness: Harness) -> None:
    harness.previous_start(OTHER_BOOT)
    harness.record(1, state=TurnState.RUNNING)

    report = harness.recover()

    assert report.kind == recovery.REBOOT
    assert harness.submitted[0].record.recovery_reason == "reboot"
    # the agent's start-up notice after a reboot, then the notice of the resumed turn
    assert harness.texts() == [
        "**Bot Started** — system reboot detected, back online.",
        "Reboot detected: resuming your last request.\n“message 1”",
    ]


def test_a_recovery_interrupted_again_is_given_up_and_the_chat_asked_to_resend(
    harness: Harness,
) -> None:
    harness.record(1, state=TurnState.RUNNING, recovery=True)

    report = harness.recover()

    assert harness.submitted == []
    assert harness.agent.turns.load() == []
    assert harness.texts() == [f"{recovery.GAVE_UP}\n“message 1”"]
    assert "send it again" in recovery.GAVE_UP
    assert report.abandoned == ["t0001"]


def test_the_recovery_notice_quotes_the_users_words_shortened_and_names_no_turn_id(
    harness: Harness,
) -> None:
    words = "Please refactor the whole billing module and   write tests for every path in it"
    record = TurnRecord(
        id=new_turn_id(),
        seq=1,
        session="tg:123",
        kind=TurnKind.MESSAGE,
        text=words,
        state=TurnState.RUNNING,
        started_at=ACCEPTED,
    )
    harness.agent.turns.save(record)

    harness.recover()

    [notice] = harness.outbox()
    assert notice.envelope is not None
    shown = f"{notice.envelope.routing.origin}\n{notice.envelope.payload.text}"
    assert record.id not in shown
    assert "Service restarted: resuming your last request." in shown
    assert "“Please refactor the whole billing module and write tests…”" in shown
    assert notice.envelope.routing.origin == "agent restart"


def test_a_recovery_notice_for_a_turn_the_user_did_not_write_quotes_nothing(
    harness: Harness,
) -> None:
    harness.agent.turns.save(
        TurnRecord(
            id=new_turn_id(),
            seq=1,
            session="tg:123",
            kind=TurnKind.INJECT,
            text="webhook payload with internals",
            state=TurnState.RUNNING,
        )
    )

    harness.recover()

    assert harness.texts() == ["Service restarted: resuming your last request."]


def test_queued_turns_are_resubmitted_in_acceptance_order_across_sessions(
    harness: Harness,
) -> None:
    harness.record(3, session="tg:1")
    harness.record(1, session="tg:2")
    harness.record(2, session="cli:alice")

    report = harness.recover()

    assert [s.record.id for s in harness.submitted] == ["t0001", "t0002", "t0003"]
    assert all(not s.record.recovery for s in harness.submitted)
    assert harness.outbox() == [], "queued turns never started: no notice"
    assert report.requeued == ["t0001", "t0002", "t0003"]


def test_a_turn_whose_answer_was_parked_is_delivered_and_never_rerun(harness: Harness) -> None:
    turn = harness.record(1, state=TurnState.RUNNING)
    answer = Envelope.create(
        agent="main",
        kind=Kind.REPLY,
        envelope_id=f"reply-{turn.id}",
        routing=Routing("tg", chat_id=123, origin="reply to 1001"),
        payload=Payload(text="the answer"),
    )
    harness.agent.turns.park_reply(turn.id, answer)

    report = harness.recover()
    harness.recover()  # and once more: a second restart right after

    assert harness.submitted == []
    assert harness.texts() == ["the answer"]
    assert harness.agent.turns.load() == []
    assert not harness.agent.turns.has_reply(turn.id)
    assert report.delivered == ["t0001"]


def test_a_parked_answer_already_in_the_outbox_is_not_queued_twice(harness: Harness) -> None:
    answer = Envelope.create(
        agent="main",
        kind=Kind.REPLY,
        envelope_id="reply-t0001",
        routing=Routing("tg", chat_id=123),
        payload=Payload(text="the answer"),
    )
    # The agent died between posting the answer and dropping the parked copy.
    harness.agent.spool.post(answer)
    harness.agent.turns.park_reply("t0001", answer)

    harness.recover()

    [entry] = harness.outbox()
    assert entry.state is State.NEW
    assert not harness.agent.turns.has_reply("t0001")


def test_the_report_counts_what_recovery_did(harness: Harness) -> None:
    harness.previous_start(BOOT)
    harness.record(1, state=TurnState.RUNNING)
    harness.record(2, state=TurnState.RUNNING, recovery=True)
    harness.record(3)
    harness.record(4, session="tg:456")
    harness.agent.turns.park_reply(
        "t0000",
        Envelope.create(
            agent="main",
            kind=Kind.REPLY,
            envelope_id="reply-t0000",
            routing=Routing("tg", chat_id=123),
            payload=Payload(text="old answer"),
        ),
    )

    report = harness.recover()

    assert report.summary() == (
        "restart: 1 interrupted turn(s) resumed, 2 queued turn(s) requeued,"
        " 1 answer(s) moved to the outbox, 1 given up"
    )


def test_nothing_left_behind_means_nothing_to_do(harness: Harness) -> None:
    report = harness.recover()

    assert report.kind == recovery.FIRST_START
    assert (report.resumed, report.requeued, report.delivered, report.abandoned) == (
        [],
        [],
        [],
        [],
    )
    assert harness.submitted == []
    assert harness.agent.spool.outbox_transports() == []

"""ductor.agent.turns: accepted turns and parked answers survive the agent's death."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ductor.agent.turns import TurnKind, TurnRecord, TurnState, TurnStore, new_turn_id
from ductor.spool import Envelope, Kind, Payload, Routing

ACCEPTED = datetime(2025, 11, 21, 20, 0, 0, tzinfo=UTC)


def record(seq: int, *, text: str = "hello") -> TurnRecord:
    return TurnRecord(
        id=f"t{seq:04d}",
        seq=seq,
        session="tg:123",
        kind=TurnKind.MESSAGE,
        text=text,
        accepted_at=ACCEPTED + timedelta(seconds=seq),
    )


def reply(turn_id: str, text: str = "the answer") -> Envelope:
    return Envelope.create(
        agent="main",
        kind=Kind.REPLY,
        envelope_id=f"reply-{turn_id}",
        routing=Routing("tg", chat_id=123, origin=f"reply to {turn_id}"),
        payload=Payload(text=text, metadata={"turn": turn_id}),
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> TurnStore:
    return TurnStore(state_dir)


def test_a_record_with_every_field_set_survives_to_dict_and_from_dict() -> None:
    original = TurnRecord(
        id="t20251121200000abcd1234",
        seq=42,
        session="tg:-100123:7",
        kind=TurnKind.ASK,
        text="what is the weather?",
        quoted="earlier message",
        files=("/tmp/a.png", "/tmp/b.pdf"),
        user_id="99",
        user_name="Alice",
        origin="agent other",
        chat_is_private=False,
        message_id="555",
        state=TurnState.RUNNING,
        recovery=True,
        recovery_reason="reboot",
        accepted_at=ACCEPTED,
        started_at=ACCEPTED + timedelta(seconds=3),
    )

    through_json = json.loads(json.dumps(original.to_dict()))

    assert TurnRecord.from_dict(through_json) == original


def test_a_record_without_optional_fields_reads_back_with_their_defaults() -> None:
    minimal = {
        "id": "t1",
        "seq": 1,
        "session": "cli:alice",
        "kind": "heartbeat",
        "accepted_at": ACCEPTED.isoformat(),
    }

    loaded = TurnRecord.from_dict(minimal)

    assert loaded.kind is TurnKind.HEARTBEAT
    assert loaded.state is TurnState.QUEUED
    assert loaded.chat_is_private is None
    assert loaded.started_at is None
    assert loaded.files == ()
    assert not loaded.recovery


def test_new_turn_ids_are_unique_and_start_with_t() -> None:
    ids = {new_turn_id() for _ in range(50)}

    assert len(ids) == 50
    assert all(turn_id.startswith("t") for turn_id in ids)


def test_records_load_in_acceptance_order_in_a_new_store(store: TurnStore, state_dir: Path) -> None:
    for seq in (3, 1, 2):
        store.save(record(seq, text=f"message {seq}"))

    reloaded = TurnStore(state_dir).load()

    assert [r.text for r in reloaded] == ["message 1", "message 2", "message 3"]


def test_sequence_numbers_continue_after_a_restart(store: TurnStore, state_dir: Path) -> None:
    for _ in range(3):
        store.save(record(store.next_seq()))

    after_restart = TurnStore(state_dir)

    assert after_restart.next_seq() > max(r.seq for r in after_restart.load())
    assert after_restart.next_seq() == 5


def test_mark_running_persists_the_state_and_start_time(store: TurnStore, state_dir: Path) -> None:
    queued = store.save(record(1))
    before = datetime.now(UTC)

    running = store.mark_running(queued)

    [loaded] = TurnStore(state_dir).load()
    assert loaded == running
    assert loaded.state is TurnState.RUNNING
    assert loaded.started_at is not None
    assert before <= loaded.started_at <= datetime.now(UTC)


def test_remove_deletes_the_record_and_tolerates_a_second_remove(
    store: TurnStore, state_dir: Path
) -> None:
    first, second = store.save(record(1)), store.save(record(2))

    store.remove(first)
    store.remove(first)

    assert TurnStore(state_dir).load() == [second]


def test_a_record_missing_a_field_is_moved_aside_and_the_others_still_load(
    store: TurnStore, state_dir: Path
) -> None:
    store.save(record(1))
    store.save(record(3))
    broken = store.turns_dir / "000000000002-t0002.json"
    broken.write_text(json.dumps({"id": "t0002", "seq": 2}))

    loaded = TurnStore(state_dir).load()

    assert [r.seq for r in loaded] == [1, 3]
    assert not broken.exists()
    assert broken.with_suffix(".bad").exists()


def test_a_record_that_is_not_json_is_moved_aside_and_the_others_still_load(
    store: TurnStore, state_dir: Path
) -> None:
    store.save(record(1))
    store.save(record(3))
    broken = store.turns_dir / "000000000002-t0002.json"
    broken.write_text('{"id": "t0002", "seq": 2, "sess')  # a torn or hand-edited file

    try:
        loaded = TurnStore(state_dir).load()
    except Exception as exc:
        pytest.fail(
            "BUG: one turn record that is not valid JSON stops the TurnStore (and so the"
            f" agent) from starting instead of being moved to .bad: {exc!r}"
        )
    assert [r.seq for r in loaded] == [1, 3]
    assert broken.with_suffix(".bad").exists()


def test_records_and_parked_replies_are_readable_only_by_the_owner(store: TurnStore) -> None:
    store.save(record(1))
    store.park_reply("t0001", reply("t0001"))

    files = [*store.turns_dir.iterdir(), *store.replies_dir.iterdir()]

    assert len(files) == 2
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_a_parked_reply_reads_back_as_the_same_envelope(store: TurnStore, state_dir: Path) -> None:
    envelope = reply("t0001", "forty-two")

    store.park_reply("t0001", envelope)

    assert store.has_reply("t0001")
    assert list(TurnStore(state_dir).parked_replies()) == [("t0001", envelope)]


def test_dropping_a_parked_reply_forgets_it_once(store: TurnStore) -> None:
    store.park_reply("t0001", reply("t0001"))
    store.park_reply("t0002", reply("t0002"))

    assert store.drop_reply("t0001") is True
    assert store.drop_reply("t0001") is False

    assert not store.has_reply("t0001")
    assert [turn_id for turn_id, _ in store.parked_replies()] == ["t0002"]


def test_an_unreadable_parked_reply_is_skipped_and_the_others_are_listed(
    store: TurnStore,
) -> None:
    store.park_reply("t0001", reply("t0001"))
    (store.replies_dir / "t0000.json").write_text("not an envelope")

    assert [turn_id for turn_id, _ in store.parked_replies()] == ["t0001"]

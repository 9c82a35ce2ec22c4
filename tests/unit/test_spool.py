"""ductor.spool: envelopes reach the chat once, survive crashes, and bad files never stop it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ductor.spool import (
    MEANT_FOR,
    Button,
    Envelope,
    EnvelopeError,
    Execution,
    ExecutionStatus,
    Kind,
    NotClaimedError,
    Payload,
    Queue,
    RetryPolicy,
    Routing,
    Spool,
    SpoolError,
    State,
    UnknownEnvelopeError,
    WakeSocketBusyError,
    new_envelope_id,
    send_wake,
)

T0 = datetime(2025, 11, 21, 20, 0, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(max_attempts=3, base_delay=10.0, max_delay=25.0, jitter=0.0)


def envelope(
    text: str = "hello", *, envelope_id: str | None = None, now: datetime = T0
) -> Envelope:
    return Envelope.create(
        agent="main",
        kind=Kind.CRON,
        routing=Routing("tg", chat_id=123456, origin="cron job daily-news"),
        payload=Payload(text=text),
        envelope_id=envelope_id,
        now=now,
    )


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    with Queue(tmp_path / "spool" / "outbox" / "tg") as opened:
        yield opened


def names(queue: Queue, state: State) -> list[str]:
    directory = queue.directory(state)
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def write_raw(queue: Queue, name: str, document: object) -> None:
    queue.ensure_directories()
    text = document if isinstance(document, str) else json.dumps(document)
    (queue.directory(State.NEW) / name).write_text(text)


# -- the envelope -----------------------------------------------------------------------


def test_envelope_survives_a_round_trip_through_its_json_file() -> None:
    original = Envelope.create(
        agent="research",
        kind=Kind.TASK,
        routing=Routing("mx", chat_id="!room:example.org", topic_id="$thread", origin="task 7"),
        payload=Payload(
            text="Task **done** ✅",
            files=(Path("/srv/out/report.pdf"),),
            buttons=((Button("Yes", "ns:a:yes"), Button("No", "ns:a:no")), (Button("Later", "l"),)),
            metadata={"model": "opus", "tokens": 1234, "nested": {"cost": 0.12}},
        ),
        execution=Execution(ExecutionStatus.TIMEOUT, "Timeout after 600s", T0),
        now=T0,
    )

    assert Envelope.from_json(original.to_json()) == original


def test_new_envelope_ids_sort_in_creation_order() -> None:
    moments = [
        T0,
        T0 + timedelta(microseconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(days=40),
    ]
    ids = [new_envelope_id(moment) for moment in reversed(moments)]

    assert sorted(ids) == list(reversed(ids))
    assert len(set(new_envelope_id(T0) for _ in range(100))) == 100


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a/b", ".hidden", "x.reason", "", "é"])
def test_envelope_id_that_is_not_a_plain_file_name_is_rejected(bad_id: str) -> None:
    with pytest.raises(EnvelopeError, match=r"id: .* is not a valid envelope id"):
        envelope(envelope_id=bad_id)


def test_file_to_send_must_be_an_absolute_path() -> None:
    with pytest.raises(EnvelopeError, match=r"payload\.files\[1\]: 'out\.png' is not absolute"):
        Payload(files=(Path("/ok.png"), Path("out.png")))


def test_broadcast_has_no_chat_and_unicast_needs_one() -> None:
    assert Routing("tg", broadcast=True, origin="cron job without origin").session_key is None
    assert Routing("tg", chat_id=-100123, topic_id=7).session_key == "tg:-100123:7"
    with pytest.raises(EnvelopeError, match=r"routing\.broadcast"):
        Routing("tg", chat_id=1, broadcast=True)
    with pytest.raises(EnvelopeError, match=r"routing\.chat_id: missing"):
        Routing("tg")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda doc: doc["routing"].update(chat_id=[1]), "routing.chat_id: expected an integer"),
        (lambda doc: doc.pop("kind"), "kind: missing"),
        (lambda doc: doc.update(kind="telegram"), "kind: 'telegram' is not one of"),
        (lambda doc: doc.update(created_at="2025-11-21T20:00:00"), "created_at: .*no timezone"),
        (lambda doc: doc.update(created_at="yesterday"), "created_at: expected an ISO 8601"),
        (lambda doc: doc["delivery"].update(message_ids=[1, True]), r"message_ids\[1\]"),
        (lambda doc: doc["delivery"].update(attempts="3"), "delivery.attempts: expected an int"),
        (
            lambda doc: doc["payload"].update(buttons=[[{"data": "x"}]]),
            r"payload\.buttons\[0\]\[0\]\.label: missing",
        ),
        (lambda doc: doc["payload"].update(files="/one/file"), "payload.files: expected a list"),
        (lambda doc: doc.update(version=2), "version: 2 is not a format"),
        (lambda doc: doc.update(routing="tg:1"), "routing: expected an object"),
    ],
)
def test_bad_field_in_an_envelope_file_is_named(
    change: Callable[[dict[str, Any]], object], field: str
) -> None:
    document: dict[str, Any] = json.loads(envelope().to_json())
    change(document)

    with pytest.raises(EnvelopeError, match=field):
        Envelope.from_dict(document)


def test_optional_fields_missing_from_an_older_file_take_their_defaults() -> None:
    minimal = {
        "version": 1,
        "id": "cron-news-1",
        "created_at": "2025-11-21T20:00:00+00:00",
        "agent": "main",
        "kind": "cron",
        "routing": {"transport": "tg", "chat_id": 42},
    }

    loaded = Envelope.from_dict(minimal)

    assert loaded.payload.text == ""
    assert loaded.delivery.attempts == 0
    assert loaded.execution.status is ExecutionStatus.OK


# -- writing and claiming -----------------------------------------------------------------


def test_put_then_claim_next_returns_the_same_envelope(queue: Queue) -> None:
    written = envelope("your daily news")

    assert queue.put(written) is True
    assert queue.claim_next() == written
    assert names(queue, State.CUR) == [written.id]
    assert names(queue, State.NEW) == []


def test_claim_when_envelope_already_claimed_returns_none(queue: Queue) -> None:
    written = envelope()
    queue.put(written)
    with Queue(queue.path) as other_reader:
        assert other_reader.claim(written.id) == written

    assert queue.claim(written.id) is None
    assert queue.claim_next() is None


def test_concurrent_claims_give_each_envelope_to_exactly_one_reader(queue: Queue) -> None:
    written = [envelope(f"message {n}") for n in range(40)]
    for item in written:
        queue.put(item)
    start = threading.Barrier(4)
    claimed: list[list[str]] = [[] for _ in range(4)]

    def reader(index: int) -> None:
        with Queue(queue.path) as own:
            start.wait()
            while (item := own.claim_next()) is not None:
                claimed[index].append(item.id)

    threads = [threading.Thread(target=reader, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [envelope_id for ids in claimed for envelope_id in ids]
    assert sorted(everything) == sorted(item.id for item in written)


def test_claim_next_takes_the_oldest_envelope_first(queue: Queue) -> None:
    later = envelope("second", now=T0 + timedelta(seconds=1))
    earlier = envelope("first", now=T0)
    queue.put(later)
    queue.put(earlier)

    first = queue.claim_next()
    second = queue.claim_next()
    assert first is not None
    assert second is not None
    assert [first.payload.text, second.payload.text] == ["first", "second"]


@pytest.mark.parametrize("state", [State.NEW, State.CUR, State.DONE, State.FAILED])
def test_writing_the_same_id_twice_is_a_no_op_in_every_state(queue: Queue, state: State) -> None:
    first = envelope("first", envelope_id="cron-news-20251121")
    queue.put(first)
    claimed = queue.claim_next()
    assert claimed is not None
    if state is State.NEW:
        queue.fail(claimed, "network down", policy=RetryPolicy(base_delay=0, jitter=0))
    elif state is State.DONE:
        queue.finish(claimed)
    elif state is State.FAILED:
        queue.fail(claimed, "chat not found", permanent=True)

    assert queue.put(envelope("second", envelope_id="cron-news-20251121")) is False

    entry = queue.get("cron-news-20251121")
    assert entry is not None
    assert entry.state is state
    assert entry.envelope is not None
    assert entry.envelope.payload.text == "first"


def test_envelope_files_and_directories_are_private(queue: Queue) -> None:
    written = envelope()
    queue.put(written)

    assert stat.S_IMODE(queue.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(queue.directory(State.NEW).stat().st_mode) == 0o700
    assert stat.S_IMODE((queue.directory(State.NEW) / written.id).stat().st_mode) == 0o600


# -- malformed files ----------------------------------------------------------------------


def test_malformed_envelope_is_moved_to_bad_and_the_next_one_is_delivered(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    write_raw(queue, "00000000-broken", "{not json")
    good = envelope("still delivered")
    queue.put(good)

    assert queue.claim_next() == good

    assert names(queue, State.BAD) == ["00000000-broken", "00000000-broken.reason"]
    assert (queue.directory(State.BAD) / "00000000-broken").read_text() == "{not json"
    reason = (queue.directory(State.BAD) / "00000000-broken.reason").read_text()
    assert "invalid JSON at line 1" in reason
    assert "moved new/00000000-broken aside" in caplog.text


def test_envelope_with_a_bad_field_is_moved_aside_with_the_field_named(queue: Queue) -> None:
    document = envelope(envelope_id="bad-chat").to_dict()
    document["routing"] = {"transport": "tg", "chat_id": {"id": 1}}
    write_raw(queue, "bad-chat", document)

    assert queue.claim_next() is None

    [entry] = queue.list([State.BAD])
    assert entry.id == "bad-chat"
    assert entry.problem is not None
    assert "routing.chat_id: expected an integer or a string, got an object" in entry.problem


def test_file_whose_id_differs_from_its_name_is_moved_aside(queue: Queue) -> None:
    write_raw(queue, "renamed-by-hand", envelope(envelope_id="original").to_dict())

    assert queue.claim_next() is None
    assert "renamed-by-hand" in names(queue, State.BAD)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[" * 1020, "nested too deeply"),
        ('{"version": 1, "padding": "' + "x" * 2048 + '"}', "larger than 1024 bytes"),
        (b"\xff\xfe not text", "not UTF-8"),
    ],
)
def test_hostile_file_is_moved_aside_without_stopping_the_reader(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, content: str | bytes, reason: str
) -> None:
    monkeypatch.setattr("ductor.spool.files.MAX_ENVELOPE_BYTES", 1024)
    queue.ensure_directories()
    hostile = queue.directory(State.NEW) / "00-hostile"
    if isinstance(content, bytes):
        hostile.write_bytes(content)
    else:
        hostile.write_text(content)
    good = envelope()
    queue.put(good)

    assert queue.claim_next() == good
    [entry] = queue.list([State.BAD])
    assert entry.problem is not None
    assert reason in entry.problem


def test_stray_file_with_a_name_that_is_no_id_is_moved_aside(queue: Queue) -> None:
    write_raw(queue, "notes.txt", "hello")

    assert queue.claim_next() is None
    assert "notes.txt" in names(queue, State.BAD)


@pytest.mark.timeout(20)
def test_a_fifo_in_new_is_moved_aside_without_blocking_the_reader(queue: Queue) -> None:
    queue.ensure_directories()
    os.mkfifo(queue.directory(State.NEW) / "00-a-fifo")
    good = envelope()
    queue.put(good)

    assert queue.next_wait(now=T0) == 0.0
    assert queue.claim_next() == good
    [entry] = queue.list([State.BAD])
    assert entry.id == "00-a-fifo"
    assert entry.problem is not None and "a FIFO, not a regular file" in entry.problem
    assert stat.S_ISFIFO((queue.directory(State.BAD) / "00-a-fifo").lstat().st_mode)


@pytest.mark.timeout(20)
def test_a_symlink_in_new_is_moved_aside_and_its_target_is_not_read(
    queue: Queue, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(envelope(envelope_id="00-link").to_json())
    queue.ensure_directories()
    (queue.directory(State.NEW) / "00-link").symlink_to(target)

    assert queue.claim_next() is None
    [entry] = queue.list([State.BAD])
    assert entry.problem is not None and "a symlink, not a regular file" in entry.problem
    assert target.exists()


@pytest.mark.timeout(20)
def test_listing_a_queue_with_fifos_in_every_state_does_not_hang(queue: Queue) -> None:
    queue.ensure_directories()
    for state in State:
        os.mkfifo(queue.directory(state) / f"fifo-{state.value}")
    os.mkfifo(queue.directory(State.BAD) / "fifo-bad.reason")

    listing = {entry.id: entry for entry in queue.list()}

    assert set(listing) == {f"fifo-{state.value}" for state in State}
    assert all(entry.envelope is None for entry in listing.values())
    assert "a FIFO" in (listing["fifo-new"].problem or "")
    assert queue.recover().moved_aside == ("fifo-cur",)


# -- delivery, failure, retries ---------------------------------------------------------------


def test_recorded_delivery_is_kept_in_done(queue: Queue) -> None:
    queue.put(envelope())
    claimed = queue.claim_next()
    assert claimed is not None

    recorded = queue.record_delivery(claimed, [101, 102], fallback_reason="topic was deleted")
    queue.finish(recorded)

    entry = queue.get(claimed.id)
    assert entry is not None
    assert entry.state is State.DONE
    assert entry.envelope is not None
    assert entry.envelope.delivery.message_ids == (101, 102)
    assert entry.envelope.delivery.attempts == 1
    assert entry.envelope.delivery.fallback_used is True
    assert entry.envelope.delivery.fallback_reason == "topic was deleted"


def test_record_delivery_of_an_unclaimed_envelope_is_refused(queue: Queue) -> None:
    written = envelope()
    queue.put(written)

    with pytest.raises(NotClaimedError, match="not in cur/"):
        queue.record_delivery(written, [1])
    with pytest.raises(NotClaimedError):
        queue.finish(written)


def test_failed_delivery_is_retried_after_a_backoff(queue: Queue) -> None:
    queue.put(envelope())
    claimed = queue.claim_next(now=T0)
    assert claimed is not None

    entry = queue.fail(claimed, "Telegram: 502 Bad Gateway", policy=NO_JITTER, now=T0)

    assert entry.state is State.NEW
    assert entry.envelope is not None
    assert entry.envelope.delivery.next_attempt_at == T0 + timedelta(seconds=10)
    assert queue.claim_next(now=T0 + timedelta(seconds=9)) is None
    assert queue.next_wait(now=T0 + timedelta(seconds=9)) == pytest.approx(1.0)
    retried = queue.claim_next(now=T0 + timedelta(seconds=10))
    assert retried is not None
    assert retried.delivery.attempts == 1
    assert retried.delivery.last_error == "Telegram: 502 Bad Gateway"


def test_delivery_gives_up_after_the_last_attempt(queue: Queue) -> None:
    queue.put(envelope())
    now = T0
    states = []
    for _ in range(NO_JITTER.max_attempts):
        claimed = queue.claim_next(now=now)
        assert claimed is not None
        states.append(queue.fail(claimed, "chat unreachable", policy=NO_JITTER, now=now).state)
        now += timedelta(hours=1)

    assert states == [State.NEW, State.NEW, State.FAILED]
    assert queue.claim_next(now=now) is None
    [entry] = queue.list([State.FAILED])
    assert entry.envelope is not None
    assert entry.envelope.delivery.attempts == 3


def test_permanent_failure_goes_straight_to_failed(queue: Queue) -> None:
    queue.put(envelope())
    claimed = queue.claim_next()
    assert claimed is not None

    entry = queue.fail(claimed, "bot was blocked by the user", permanent=True)

    assert entry.state is State.FAILED
    assert names(queue, State.FAILED) == [claimed.id]


def test_retry_delay_doubles_up_to_its_cap_and_jitter_stays_in_bounds() -> None:
    assert [NO_JITTER.delay(attempt) for attempt in (1, 2, 3, 4)] == [10.0, 20.0, 25.0, 25.0]
    jittery = RetryPolicy(base_delay=100.0, max_delay=1000.0, jitter=0.2)
    delays = {jittery.delay(1) for _ in range(200)}
    assert all(80.0 <= delay <= 120.0 for delay in delays)
    assert len(delays) > 1


def test_next_wait_is_zero_when_something_is_due_and_capped_otherwise(queue: Queue) -> None:
    assert queue.next_wait(max_wait=30.0) == 30.0
    queue.put(envelope())
    assert queue.next_wait() == 0.0


# -- resend (`ductor outbox resend`) -----------------------------------------------------------


def test_requeue_of_a_failed_envelope_keeps_its_execution_state(queue: Queue) -> None:
    failed_job = Envelope.create(
        agent="main",
        kind=Kind.CRON,
        routing=Routing("tg", chat_id=1),
        execution=Execution(ExecutionStatus.ERROR, "exit 1", T0),
        now=T0,
    )
    queue.put(failed_job)
    claimed = queue.claim_next()
    assert claimed is not None
    queue.fail(claimed, "chat not found", permanent=True)

    requeued = queue.requeue(failed_job.id)

    assert requeued.execution == failed_job.execution
    assert requeued.delivery.attempts == 0
    assert requeued.delivery.requeues == 1
    assert requeued.delivery.last_error == "chat not found"
    assert queue.claim_next() == requeued


def test_requeue_of_a_delivered_envelope_delivers_it_again_even_after_a_crash(
    queue: Queue,
) -> None:
    queue.put(envelope())
    claimed = queue.claim_next()
    assert claimed is not None
    queue.finish(queue.record_delivery(claimed, [7]))

    queue.requeue(claimed.id)
    assert queue.claim_next() is not None
    queue.close()  # the reader dies while sending the copy

    with Queue(queue.path) as restarted:
        recovery = restarted.recover()
        assert recovery.returned == (claimed.id,)
        assert restarted.claim_next() is not None


def test_requeue_refuses_unknown_and_still_queued_envelopes(queue: Queue) -> None:
    written = envelope()
    queue.put(written)

    with pytest.raises(UnknownEnvelopeError):
        queue.requeue("no-such-envelope")
    with pytest.raises(SpoolError, match="already queued"):
        queue.requeue(written.id)


def test_repaired_bad_envelope_can_be_requeued(queue: Queue) -> None:
    document = envelope(envelope_id="hand-edited").to_dict()
    document["kind"] = "cron-job"
    write_raw(queue, "hand-edited", document)
    assert queue.claim_next() is None
    document["kind"] = "cron"
    (queue.directory(State.BAD) / "hand-edited").write_text(json.dumps(document))

    queue.requeue("hand-edited")

    assert names(queue, State.BAD) == []
    claimed = queue.claim_next()
    assert claimed is not None
    assert claimed.id == "hand-edited"


# -- crash recovery -----------------------------------------------------------------------------


def test_recover_returns_an_undelivered_claim_to_new(queue: Queue) -> None:
    queue.put(envelope())
    with Queue(queue.path) as crashed:
        claimed = crashed.claim_next()
    assert claimed is not None

    recovery = queue.recover()

    assert recovery.returned == (claimed.id,)
    assert queue.claim_next() == claimed


def test_recover_finishes_a_recorded_delivery_instead_of_sending_it_twice(queue: Queue) -> None:
    queue.put(envelope())
    with Queue(queue.path) as crashed:
        claimed = crashed.claim_next()
        assert claimed is not None
        crashed.record_delivery(claimed, [555])

    recovery = queue.recover()

    assert recovery.completed == (claimed.id,)
    assert queue.claim_next() is None
    assert names(queue, State.DONE) == [claimed.id]


def test_recover_leaves_the_claims_of_a_live_reader_alone(queue: Queue) -> None:
    queue.put(envelope())
    with Queue(queue.path) as live_reader:
        claimed = live_reader.claim_next()
        assert claimed is not None

        recovery = queue.recover()

        assert recovery.other_reader_active is True
        assert names(queue, State.CUR) == [claimed.id]
        live_reader.finish(claimed)


def test_recover_after_claiming_is_refused(queue: Queue) -> None:
    queue.put(envelope())
    assert queue.claim_next() is not None

    with pytest.raises(SpoolError, match="before the first claim"):
        queue.recover()


def test_recover_removes_stale_temporary_files_but_keeps_fresh_ones(queue: Queue) -> None:
    queue.ensure_directories()
    stale = queue.tmp_dir / "crashed-writer"
    fresh = queue.tmp_dir / "writer-at-work"
    stale.write_text("{")
    fresh.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    recovery = queue.recover(stale_temp_after=3600)

    assert recovery.removed_temp_files == 1
    assert not stale.exists()
    assert fresh.exists()


# -- listing and housekeeping ------------------------------------------------------------------


def test_list_shows_every_envelope_with_its_state(queue: Queue) -> None:
    for text in ("waiting", "delivered", "failed"):
        queue.put(envelope(text, envelope_id=text))
    for _ in range(2):
        claimed = queue.claim_next()
        assert claimed is not None
        if claimed.id == "delivered":
            queue.finish(claimed)
        else:
            queue.fail(claimed, "blocked", permanent=True)
    write_raw(queue, "a-broken", "[]")
    queue.claim_next()  # moves a-broken aside, leaves "waiting" claimed
    claimed_last = queue.list([State.CUR])

    listing = {entry.id: entry.state for entry in queue.list()}

    assert listing == {
        "delivered": State.DONE,
        "failed": State.FAILED,
        "waiting": State.CUR,
        "a-broken": State.BAD,
    }
    assert [entry.id for entry in claimed_last] == ["waiting"]
    assert queue.counts()[State.BAD] == 1


def test_prune_done_removes_only_envelopes_finished_long_enough_ago(queue: Queue) -> None:
    for text in ("old", "recent"):
        queue.put(envelope(text, envelope_id=text))
        claimed = queue.claim_next()
        assert claimed is not None
        queue.finish(claimed)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(queue.directory(State.DONE) / "old", (ten_days_ago, ten_days_ago))

    assert queue.prune_done(timedelta(days=7)) == 1
    assert names(queue, State.DONE) == ["recent"]


def test_spool_posts_to_the_outbox_of_the_envelope_transport(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    matrix = Envelope.create(agent="main", kind=Kind.NOTICE, routing=Routing("mx", chat_id="!r"))

    assert spool.post(matrix) is True
    assert spool.post(matrix.for_transport("tg")) is True

    assert spool.outbox_transports() == ["mx", "tg"]
    assert spool.outbox("mx").get(matrix.id) is not None
    assert spool.inbox().path == tmp_path / "spool" / "inbox"
    with pytest.raises(EnvelopeError, match=r"routing\.transport"):
        spool.outbox("../tg")


# -- waking the reader ---------------------------------------------------------------------------


def test_wait_returns_as_soon_as_a_writer_puts_an_envelope(queue: Queue) -> None:
    queue.listen()
    writer = threading.Timer(0.05, lambda: Queue(queue.path).put(envelope()))
    writer.start()
    started = time.monotonic()

    woken = queue.wait(timeout=10)

    writer.join()
    assert woken is True
    assert time.monotonic() - started < 5  # woken by the datagram, not by the timeout
    assert queue.claim_next() is not None


def test_wait_times_out_when_nobody_writes(queue: Queue) -> None:
    queue.listen()

    assert queue.wait(timeout=0.05) is False


def test_wait_async_wakes_an_asyncio_reader(queue: Queue) -> None:
    listener = queue.listen()

    async def scenario() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: Queue(queue.path).put(envelope()))
        woken = await listener.wait_async(timeout=10)
        timed_out = await listener.wait_async(timeout=0.05)
        return woken, timed_out

    assert asyncio.run(scenario()) == (True, False)


def test_writer_without_a_listening_reader_still_queues_the_envelope(queue: Queue) -> None:
    assert send_wake(queue.path / "wake.sock") is False
    assert queue.put(envelope()) is True
    assert len(names(queue, State.NEW)) == 1


def test_wake_socket_is_private_and_removed_when_the_reader_stops(queue: Queue) -> None:
    queue.listen()
    mode = queue.wake_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600

    queue.close()

    assert not queue.wake_socket.exists()


def test_wake_socket_left_by_a_killed_reader_is_taken_over(queue: Queue) -> None:
    queue.ensure_directories()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(queue.wake_socket))
    dead.close()  # a SIGKILLed reader leaves its socket file behind

    queue.listen()

    assert send_wake(queue.wake_socket) is True
    assert queue.wait(timeout=5) is True


def test_second_reader_cannot_steal_the_wake_socket_of_a_live_one(queue: Queue) -> None:
    queue.listen()

    with Queue(queue.path) as second, pytest.raises(WakeSocketBusyError):
        second.listen()
    assert send_wake(queue.wake_socket) is True


def test_queue_deeper_than_a_socket_path_allows_still_wakes_its_reader(tmp_path: Path) -> None:
    deep = tmp_path / ("state-" * 20) / "main" / "spool" / "outbox" / "tg"
    assert len(str(deep / "wake.sock")) > 108
    with Queue(deep) as reader:
        reader.listen()

        Queue(deep).put(envelope())

        assert reader.wait(timeout=5) is True


def test_post_moves_an_envelope_for_a_messenger_the_agent_does_not_run_to_its_primary(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, served=("mx", "tg"))
    unicast = Envelope.create(agent="a", kind=Kind.CRON, routing=Routing("tg", chat_id=42))
    spool.served = ("mx",)
    assert spool.post(unicast)
    [entry] = spool.outbox("mx").list()
    assert entry.envelope is not None
    assert entry.envelope.routing.transport == "mx"
    assert entry.envelope.payload.metadata[MEANT_FOR] == "tg:42"
    broadcast = Envelope.create(agent="a", kind=Kind.CRON, routing=Routing("tg", broadcast=True))
    spool.post(broadcast)
    moved = spool.outbox("mx").get(broadcast.id)
    assert moved is not None and moved.envelope is not None
    assert moved.envelope.routing.broadcast  # to every allowed user of the primary
    terminal = Envelope.create(agent="a", kind=Kind.REPLY, routing=Routing("cli", chat_id="al"))
    spool.post(terminal)  # `ductor outbox` shows these; no messenger takes them
    assert spool.outbox("cli").get(terminal.id) is not None
    assert Spool(tmp_path).reroute(unicast) is unicast  # nothing served: nothing moved


def test_adopting_orphans_moves_each_envelope_once_even_when_retried(tmp_path: Path) -> None:
    Spool(tmp_path).outbox("tg").put(
        Envelope.create(agent="a", kind=Kind.CRON, routing=Routing("tg", chat_id=1))
    )
    spool = Spool(tmp_path, served=("mx",))
    assert spool.adopt_orphans() == 1
    assert spool.adopt_orphans() == 0
    assert [e.state for e in spool.outbox("mx").list()] == [State.NEW]
    assert [e.state for e in spool.outbox("tg").list()] == [State.DONE]

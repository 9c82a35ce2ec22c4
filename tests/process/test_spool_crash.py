"""The spool survives kill -9 at every step: real writer and reader processes, killed.

Each test runs tests/process/spool_actor.py as child processes. A reader "sends" to a
fake messenger that appends one line per message to a log file, so the log is what the
user would have seen in the chat. Processes are killed either at a named step through
``DUCTOR_SPOOL_CRASH_AT`` (the library SIGKILLs itself there) or by the test with SIGKILL
at random moments.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ductor.spool import Queue, Spool, State

HELPER = Path(__file__).with_name("spool_actor.py")
LIB = Path(__file__).resolve().parents[2] / "lib"
KILLED = -signal.SIGKILL


def actor_env(crash_at: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIB), env.get("PYTHONPATH")]))
    env.pop("DUCTOR_SPOOL_CRASH_AT", None)
    if crash_at is not None:
        env["DUCTOR_SPOOL_CRASH_AT"] = crash_at
    return env


def run(*args: str | Path, crash_at: str | None = None) -> int:
    completed = subprocess.run(
        [sys.executable, HELPER, *map(str, args)],
        env=actor_env(crash_at),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return completed.returncode


def start(*args: str | Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, HELPER, *map(str, args)], env=actor_env(None), stdin=subprocess.DEVNULL
    )


def deliveries(log: Path) -> Counter[str]:
    if not log.exists():
        return Counter()
    return Counter(line.split()[0] for line in log.read_text().splitlines())


def outbox(spool: Path) -> Queue:
    return Spool(spool).outbox("tg")


def states(spool: Path) -> dict[State, int]:
    return outbox(spool).counts()


def wait_until_done(spool: Path, expected: int, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while states(spool)[State.DONE] < expected:
        if time.monotonic() > deadline:
            pytest.fail(
                f"only {states(spool)[State.DONE]} of {expected} delivered: {states(spool)}"
            )
        time.sleep(0.05)


IDS = [f"envelope-{n}" for n in range(1, 6)]


@pytest.mark.parametrize("step", ["put:tmp-written", "put:linked"])
def test_writer_killed_at_any_step_and_retried_delivers_each_envelope_once(
    tmp_path: Path, step: str
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"

    assert run("write", spool, *IDS, crash_at=step) == KILLED
    assert run("write", spool, *IDS) == 0  # systemd retries the oneshot with the same ids
    assert run("read", spool, "--log", log, "--until-idle", "--stale-temp-after", "0") == 0

    assert deliveries(log) == Counter(IDS)
    assert states(spool)[State.DONE] == len(IDS)
    assert list((spool / "outbox" / "tg" / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "step",
    [
        "claim:moved",
        "record:replaced",
        "finish:moved",
        "fail:tmp-written",
        "fail:replaced",
    ],
)
def test_reader_killed_at_any_step_then_restarted_delivers_each_envelope_exactly_once(
    tmp_path: Path, step: str
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    assert run("write", spool, *IDS) == 0
    # For the fail:* steps the messenger refuses each envelope's first attempt.
    failing = ["--fail-attempts", "1"] if step.startswith("fail:") else []

    assert run("read", spool, "--log", log, "--until-idle", *failing, crash_at=step) == KILLED
    assert run("read", spool, "--log", log, "--until-idle", *failing) == 0

    assert deliveries(log) == Counter(IDS)
    assert states(spool) == {
        State.NEW: 0,
        State.CUR: 0,
        State.DONE: len(IDS),
        State.FAILED: 0,
        State.BAD: 0,
    }


def test_reader_killed_between_sending_and_recording_sends_that_one_envelope_again(
    tmp_path: Path,
) -> None:
    """The one window the spool cannot close: the messenger accepted the message but the
    reader died before record_delivery() made that durable. Delivery is at-least-once,
    so that envelope (and only that one) reaches the chat twice; docs/spool.md says so."""
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    assert run("write", spool, *IDS) == 0

    assert run("read", spool, "--log", log, "--until-idle", crash_at="record:tmp-written") == KILLED
    assert run("read", spool, "--log", log, "--until-idle") == 0

    assert deliveries(log) == Counter(IDS) + Counter([IDS[0]])


def test_reader_killed_again_during_recovery_loses_nothing(tmp_path: Path) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    assert run("write", spool, *IDS) == 0
    assert run("read", spool, "--log", log, crash_at="claim:moved") == KILLED
    assert states(spool)[State.CUR] == 1

    assert run("read", spool, "--log", log, crash_at="recover:moved") == KILLED
    assert run("read", spool, "--log", log, "--until-idle") == 0

    assert deliveries(log) == Counter(IDS)


def test_resend_killed_midway_and_retried_delivers_the_failed_envelope_once(
    tmp_path: Path,
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    assert run("write", spool, "cron-result") == 0
    outage = ["--fail-attempts", "1", "--max-attempts", "1"]
    assert run("read", spool, "--log", log, "--until-idle", *outage) == 0
    assert states(spool)[State.FAILED] == 1

    assert run("requeue", spool, "cron-result", crash_at="requeue:reset") == KILLED
    assert run("requeue", spool, "cron-result") == 0
    assert run("read", spool, "--log", log, "--until-idle") == 0

    assert deliveries(log) == Counter(["cron-result"])


def test_reader_killed_at_random_moments_loses_nothing_and_repeats_at_most_one_per_kill(
    tmp_path: Path,
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    ids = [f"random-kill-{n:03d}" for n in range(200)]
    assert run("write", spool, *ids) == 0
    rng = random.Random(20251121)
    kills = 10
    for _ in range(kills):
        # Kill mid-stream: once the reader has sent a few more messages, plus a moment.
        target = sum(deliveries(log).values()) + rng.randint(1, 12)
        reader = start("read", spool, "--log", log)
        while sum(deliveries(log).values()) < target and reader.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.005))
        reader.send_signal(signal.SIGKILL)
        assert reader.wait() == KILLED
    assert sum(deliveries(log).values()) < len(ids), "the last reader should have work left"

    assert run("read", spool, "--log", log, "--until-idle") == 0

    seen = deliveries(log)
    assert set(seen) == set(ids)
    assert sum(seen.values()) - len(ids) <= kills


def test_writers_killed_at_random_moments_and_retried_deliver_each_envelope_once(
    tmp_path: Path,
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    batches = [[f"writer{w}-{n:02d}" for n in range(40)] for w in range(3)]
    reader = start("read", spool, "--log", log)
    rng = random.Random(7)
    try:
        for batch in batches:
            queued_before = sum(states(spool).values())
            target = queued_before + rng.randint(1, 30)
            writer = start("write", spool, *batch)
            while sum(states(spool).values()) < target and writer.poll() is None:
                time.sleep(0.001)
            writer.send_signal(signal.SIGKILL)
            assert writer.wait() == KILLED
            assert run("write", spool, *batch) == 0  # the retry after the crash
        wait_until_done(spool, sum(map(len, batches)))
    finally:
        reader.terminate()
        assert reader.wait(timeout=30) == 0

    assert deliveries(log) == Counter(id_ for batch in batches for id_ in batch)


def test_two_readers_and_five_writers_deliver_two_hundred_envelopes_exactly_once(
    tmp_path: Path,
) -> None:
    spool, log = tmp_path / "spool", tmp_path / "messenger.log"
    outbox(spool).ensure_directories()
    readers = [start("read", spool, "--log", log, "--poll-interval", "0.02") for _ in range(2)]
    batches = [[f"w{w}-{n:02d}" for n in range(40)] for w in range(5)]
    try:
        writers = [start("write", spool, *batch) for batch in batches]
        assert [writer.wait(timeout=60) for writer in writers] == [0] * 5
        wait_until_done(spool, 200)
    finally:
        for reader in readers:
            reader.terminate()
        assert [reader.wait(timeout=30) for reader in readers] == [0, 0]

    seen = deliveries(log)
    assert len(seen) == 200
    assert set(seen.values()) == {1}
    senders = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert len(senders) == 2, "both readers should have delivered some envelopes"

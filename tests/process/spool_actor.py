"""A spool writer, reader or resender as a real process, for tests/process/test_spool_crash.py.

    spool_actor.py write SPOOL ID...            put one envelope per id in outbox/tg
    spool_actor.py read SPOOL --log FILE        deliver to a fake messenger: one line per
                                                message, "ENVELOPE_ID PID", appended to FILE
    spool_actor.py requeue SPOOL ID             what `ductor outbox resend ID` does

The reader recovers on start, then claims, "sends" (appends to the log), records the
delivery and finishes, like a transport does. ``DUCTOR_SPOOL_CRASH_AT`` in the environment
makes the library SIGKILL the process at that step (ductor/spool/_crash.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from ductor.spool import (
    Envelope,
    Kind,
    Payload,
    Queue,
    RetryPolicy,
    Routing,
    Spool,
    State,
    WakeSocketBusyError,
)


def outbox(spool: Path, max_attempts: int = 12) -> Queue:
    policy = RetryPolicy(max_attempts=max_attempts, base_delay=0.0, jitter=0.0)
    return Spool(spool).outbox("tg", retry_policy=policy)


def write(spool: Path, ids: list[str]) -> int:
    queue = outbox(spool)
    for envelope_id in ids:
        queue.put(
            Envelope.create(
                agent="main",
                kind=Kind.CRON,
                routing=Routing("tg", chat_id=42, origin="test writer"),
                payload=Payload(text=f"message {envelope_id}"),
                envelope_id=envelope_id,
            )
        )
    return 0


class FakeMessenger:
    """Stands in for the Telegram Bot API: every accepted message is one log line."""

    def __init__(self, log: Path, fail_attempts: int) -> None:
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.fail_attempts = fail_attempts
        self.sent = 0

    def send(self, envelope: Envelope) -> int:
        if envelope.delivery.attempts < self.fail_attempts:
            raise ConnectionError("simulated outage")
        os.write(self.fd, f"{envelope.id} {os.getpid()}\n".encode())
        self.sent += 1
        return os.getpid() * 1000 + self.sent


def read(args: argparse.Namespace) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    queue = outbox(args.spool, args.max_attempts)
    # With another reader on wake.sock, this one rescans every poll interval instead.
    with contextlib.suppress(WakeSocketBusyError):
        queue.listen()
    queue.recover(stale_temp_after=args.stale_temp_after)
    messenger = FakeMessenger(args.log, args.fail_attempts)
    while not stopping:
        while not stopping and (envelope := queue.claim_next()) is not None:
            try:
                message_id = messenger.send(envelope)
            except ConnectionError as exc:
                queue.fail(envelope, str(exc))
                continue
            queue.record_delivery(envelope, [message_id])
            queue.finish(envelope)
        if args.until_idle and queue.counts()[State.NEW] == 0:
            break
        queue.wait(min(args.poll_interval, queue.next_wait()))
    queue.close()
    return 0


def requeue(spool: Path, envelope_id: str) -> int:
    outbox(spool).requeue(envelope_id)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    writer = commands.add_parser("write")
    writer.add_argument("spool", type=Path)
    writer.add_argument("ids", nargs="+")
    reader = commands.add_parser("read")
    reader.add_argument("spool", type=Path)
    reader.add_argument("--log", type=Path, required=True)
    reader.add_argument("--until-idle", action="store_true")
    reader.add_argument("--fail-attempts", type=int, default=0)
    reader.add_argument("--max-attempts", type=int, default=12)
    reader.add_argument("--poll-interval", type=float, default=0.05)
    reader.add_argument("--stale-temp-after", type=float, default=3600.0)
    resender = commands.add_parser("requeue")
    resender.add_argument("spool", type=Path)
    resender.add_argument("id")
    args = parser.parse_args(argv)
    if args.command == "write":
        return write(args.spool, args.ids)
    if args.command == "read":
        return read(args)
    return requeue(args.spool, args.id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

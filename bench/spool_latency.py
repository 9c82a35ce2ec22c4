"""How long an envelope takes from being written to a waiting reader holding it.

    .venv/bin/python bench/spool_latency.py [--runs 300] [--dir DIR] [--asyncio]

A reader runs as a child process (like a transport): it binds wake.sock, waits, and on
each wake-up claims, records a fake delivery and finishes the envelope. The parent
writes one envelope at a time (like a cron oneshot) and waits for the reader to report,
so every run meets a reader that is idle and waiting. Times come from CLOCK_MONOTONIC,
which is shared by all processes. Results are medians and percentiles in milliseconds,
from the start of put() to: put() returning, the reader waking, the reader holding the
envelope (claim), and the delivery recorded and finished. The budget (design §9) is 1 s
from write to the messenger, median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ductor.spool import Envelope, Kind, Payload, Queue, Routing, Spool


def reader(spool: Path, use_asyncio: bool) -> None:
    queue = Spool(spool).outbox("tg")
    listener = queue.listen()
    queue.recover()
    print("ready", flush=True)

    def deliver(woken_at: int) -> None:
        while (envelope := queue.claim_next()) is not None:
            claimed_at = time.monotonic_ns()
            queue.finish(queue.record_delivery(envelope, [1]))
            done_at = time.monotonic_ns()
            written_at = envelope.payload.metadata["written_at"]
            print(f"{written_at} {woken_at} {claimed_at} {done_at}", flush=True)

    if use_asyncio:

        async def loop() -> None:
            while True:
                if await listener.wait_async(queue.next_wait()):
                    deliver(time.monotonic_ns())

        asyncio.run(loop())
    while True:
        if listener.wait(queue.next_wait()):
            deliver(time.monotonic_ns())


def filesystem_of(path: Path) -> str:
    best = ("?", "")
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _device, mount_point, fs_type, *_ = line.split()
            if str(path).startswith(mount_point) and len(mount_point) >= len(best[1]):
                best = (fs_type, mount_point)
    return f"{best[0]} (mounted on {best[1]})"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--asyncio", action="store_true", help="reader uses wait_async()")
    parser.add_argument("--reader", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader is not None:
        reader(args.reader, args.asyncio)
        return

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="spool-latency-") as scratch:
        spool = Path(scratch) / "spool"
        command = [sys.executable, __file__, "--reader", str(spool)]
        if args.asyncio:
            command.append("--asyncio")
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        queue: Queue = Spool(spool).outbox("tg")
        samples: dict[str, list[float]] = {"put": [], "wake": [], "claim": [], "delivered": []}
        try:
            for run in range(args.runs):
                written_at = time.monotonic_ns()
                queue.put(
                    Envelope.create(
                        agent="bench",
                        kind=Kind.NOTICE,
                        routing=Routing("tg", chat_id=1),
                        payload=Payload(text=f"run {run}", metadata={"written_at": written_at}),
                    )
                )
                returned_at = time.monotonic_ns()
                fields = [int(value) for value in child.stdout.readline().split()]
                assert fields[0] == written_at, fields
                _, woken_at, claimed_at, done_at = fields
                for name, at in (
                    ("put", returned_at),
                    ("wake", woken_at),
                    ("claim", claimed_at),
                    ("delivered", done_at),
                ):
                    samples[name].append((at - written_at) / 1e6)
                time.sleep(0.002)  # let the reader go back to waiting
        finally:
            child.kill()
            child.wait()

    reader_kind = "asyncio wait_async()" if args.asyncio else "blocking wait()"
    python = sys.version.split()[0]
    print(f"spool latency, {args.runs} runs, reader: {reader_kind}, python {python}")
    print(f"spool on {filesystem_of(Path(args.dir).resolve())}, {os.cpu_count()} CPUs")
    print(f"{'from start of put() to':<34}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}  (ms)")
    labels = {
        "put": "put() returned (writer done)",
        "wake": "reader woken",
        "claim": "reader holds it (claimed)",
        "delivered": "delivery recorded + finished",
    }
    for name, label in labels.items():
        values = samples[name]
        print(
            f"  {label:<32}{statistics.median(values):9.3f}{percentile(values, 0.9):9.3f}"
            f"{percentile(values, 0.99):9.3f}{max(values):9.3f}"
        )


if __name__ == "__main__":
    main()

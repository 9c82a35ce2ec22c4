"""The outbox loop every transport shares survives any one envelope: one whose handling
raises goes to bad/ with the reason, the others are delivered, the loop goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import ductor.transports.drain as drain_module
from ductor.spool import Envelope, Kind, Payload, Queue, Routing, State
from ductor.transports.drain import DrainLoop


class Drain(DrainLoop):
    """Delivers by remembering the text; "poison" raises like a bug would."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.delivered: list[str] = []

    async def _handle(self, envelope: Envelope) -> None:
        if envelope.payload.text == "poison":
            raise KeyError("routing.chat_id")
        self.delivered.append(envelope.payload.text)
        self.queue.record_delivery(envelope, [1])
        self.queue.finish(envelope)

    def refusal(self, envelope: Envelope) -> str | None:
        return None

    async def tell_main_user(self, text: str) -> None:
        return None


def put(queue: Queue, text: str) -> Envelope:
    envelope = Envelope.create(
        agent="main", kind=Kind.CRON, routing=Routing("tg", chat_id=1), payload=Payload(text)
    )
    queue.put(envelope)
    return envelope


def test_an_envelope_whose_handling_raises_goes_to_bad_with_the_reason_and_the_rest_go_out(
    tmp_path: Path,
) -> None:
    queue = Queue(tmp_path / "outbox" / "tg")
    poison = put(queue, "poison")
    put(queue, "after it")
    drain = Drain(queue)

    async def body() -> int:
        queue.recover()
        try:
            return await drain.process_due()
        finally:
            queue.close()

    assert asyncio.run(body()) == 2
    assert drain.delivered == ["after it"]
    entry = queue.get(poison.id)
    assert entry is not None and entry.state is State.BAD
    assert entry.problem is not None and "KeyError" in entry.problem


def test_the_loop_goes_on_when_a_pass_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drain_module, "RETRY_AFTER_FAILURE", 0.05)
    queue = Queue(tmp_path / "outbox" / "tg")
    drain = Drain(queue)
    passes = 0
    real = drain.process_due

    async def flaky(stop: asyncio.Event | None = None) -> int:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise OSError("Input/output error")
        put(queue, "later")
        return await real(stop)

    drain.process_due = flaky  # type: ignore[method-assign]

    async def body() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(drain.run(stop))
        for _ in range(400):
            await asyncio.sleep(0.025)
            if drain.delivered:
                break
        stop.set()
        await runner

    asyncio.run(body())
    assert drain.delivered[:1] == ["later"]

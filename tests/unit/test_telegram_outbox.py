"""ductor.transports.telegram.outbox: the agent's envelopes reach the right chats once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ductor.errors import DuctorError, TemporaryError
from ductor.spool import (
    Button,
    Envelope,
    Kind,
    Payload,
    Queue,
    RetryPolicy,
    Routing,
    Spool,
    State,
)
from ductor.transports.telegram.outbox import OutboxDrain

Rows = list[list[tuple[str, str]]]
USERS = [111, 222]
GROUPS = [555, -100555, -100777, -100999]  # allowed_group_ids (555: a test chat)


@dataclass
class Call:
    what: str
    chat: int
    thread: int | None
    content: str  # the HTML, or the file's path
    buttons: Rows | None = None
    as_photo: bool = False
    at: float = field(default_factory=time.monotonic)


class FakeSender:
    """Telegram's side: accepts every message, except for the chats told to refuse."""

    def __init__(self) -> None:
        self.calls: list[Call] = []  # accepted
        self.attempts: list[Call] = []  # accepted or refused
        self.refuse: dict[int, DuctorError] = {}
        self.next_id = 1000

    def _accept(self, call: Call) -> int:
        self.attempts.append(call)
        error = self.refuse.get(call.chat)
        if error is not None:
            raise error
        self.calls.append(call)
        self.next_id += 1
        return self.next_id

    async def send_text(
        self,
        chat_id: int,
        html: str,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        buttons: Rows | None = None,
    ) -> int:
        return self._accept(Call("text", chat_id, thread_id, html, buttons))

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        html: str,
        *,
        buttons: Rows | None = None,
        final: bool = False,
    ) -> None:
        raise AssertionError("the drain never edits")

    async def delete(self, chat_id: int, message_id: int) -> None:
        raise AssertionError("the drain never deletes")

    async def send_file(
        self,
        chat_id: int,
        path: Path,
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        caption: str = "",
        as_photo: bool = False,
    ) -> int:
        return self._accept(Call("file", chat_id, thread_id, str(path), as_photo=as_photo))

    async def chat_action(self, chat_id: int, thread_id: int | None = None) -> None:
        pass

    async def react(self, chat_id: int, message_id: int, emoji: str | None) -> None:
        pass


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def queue(tmp_path: Path) -> Queue:
    return Spool(tmp_path / "spool").outbox("tg")


def envelope(
    routing: Routing,
    text: str = "hello **world**",
    *,
    kind: Kind = Kind.REPLY,
    buttons: tuple[tuple[Button, ...], ...] = (),
    files: tuple[Path, ...] = (),
) -> Envelope:
    return Envelope.create(
        agent="main",
        kind=kind,
        routing=routing,
        payload=Payload(text=text, buttons=buttons, files=files),
    )


def drain_for(
    queue: Queue,
    sender: FakeSender,
    known_chat: Callable[[int], bool] = lambda chat: True,
    *,
    main_chat: int | None = None,
) -> OutboxDrain:
    return OutboxDrain(
        queue,
        sender,
        allowed_user_ids=USERS,
        main_chat=main_chat,
        known_chat=known_chat,
        chat_allowed=lambda chat: chat in (*USERS, *GROUPS),
    )


def deliver_all(drain: OutboxDrain) -> int:
    async def body() -> int:
        drain.queue.recover()
        try:
            return await drain.process_due()
        finally:
            drain.queue.close()

    return int(run(body()))


def state_of(queue: Queue, envelope_id: str) -> State:
    entry = queue.get(envelope_id)
    assert entry is not None
    return entry.state


def test_unicast_goes_to_the_chat_and_topic_and_records_the_message_ids(queue: Queue) -> None:
    sender = FakeSender()
    sent = envelope(Routing("tg", chat_id=-100555, topic_id=7, origin="cron job news"))
    queue.put(sent)
    assert deliver_all(drain_for(queue, sender)) == 1
    assert [(c.chat, c.thread, c.content) for c in sender.calls] == [
        (-100555, 7, "hello <b>world</b>")
    ]
    entry = queue.get(sent.id)
    assert entry is not None and entry.state is State.DONE
    assert entry.envelope is not None
    assert list(entry.envelope.delivery.message_ids) == [1001]
    assert not entry.envelope.delivery.fallback_used


def test_broadcast_reaches_every_allowed_user_in_private(queue: Queue) -> None:
    sender = FakeSender()
    sent = envelope(Routing("tg", broadcast=True), "update")
    queue.put(sent)
    deliver_all(drain_for(queue, sender))
    assert [(c.chat, c.thread) for c in sender.calls] == [(111, None), (222, None)]
    entry = queue.get(sent.id)
    assert entry is not None and entry.envelope is not None
    assert list(entry.envelope.delivery.message_ids) == [1001, 1002]


def test_broadcast_user_who_cannot_be_reached_now_gets_a_copy_and_nobody_a_repeat(
    tmp_path: Path,
) -> None:
    queue = Spool(tmp_path / "spool").outbox("tg", retry_policy=RetryPolicy(base_delay=0.3))
    sender = FakeSender()
    sender.refuse[222] = TemporaryError("network down")
    sent = envelope(Routing("tg", broadcast=True), "update")
    queue.put(sent)
    deliver_all(drain_for(queue, sender))
    assert state_of(queue, sent.id) is State.DONE
    copy = queue.get(f"{sent.id}-to-222")
    assert copy is not None and copy.state is State.NEW and copy.envelope is not None
    assert copy.envelope.routing.chat_id == 222
    assert copy.envelope.delivery.attempts == 1
    assert copy.envelope.delivery.next_attempt_at is not None
    del sender.refuse[222]
    time.sleep(0.5)  # the copy's backoff
    deliver_all(drain_for(queue, sender))
    assert [c.chat for c in sender.calls] == [111, 222]


def test_unknown_chat_falls_back_to_the_main_user_with_an_explanation(queue: Queue) -> None:
    sender = FakeSender()
    sent = envelope(Routing("tg", chat_id=-100999, topic_id=3), "result")
    queue.put(sent)
    deliver_all(drain_for(queue, sender, known_chat=lambda chat: chat != -100999))
    [call] = sender.calls
    assert call.chat == 111 and call.thread is None
    assert call.content.startswith(
        "<i>(This was meant for chat -100999 (topic 3), which I can no longer reach.)</i>"
    )
    assert call.content.endswith("result")
    entry = queue.get(sent.id)
    assert entry is not None and entry.envelope is not None
    assert entry.envelope.delivery.fallback_used
    assert "-100999" in (entry.envelope.delivery.fallback_reason or "")


@pytest.mark.parametrize(
    "answer",
    [
        "Bad Request: chat not found",
        "Forbidden: bot was kicked from the supergroup chat",
        "Forbidden: bot is not a member of the channel chat",
    ],
)
def test_chat_telegram_says_is_gone_falls_back_to_the_main_user(queue: Queue, answer: str) -> None:
    sender = FakeSender()
    sender.refuse[-100777] = DuctorError(f"sendMessage: Telegram refused: {answer}")
    sent = envelope(Routing("tg", chat_id=-100777), "result")
    queue.put(sent)
    deliver_all(drain_for(queue, sender))
    assert [c.chat for c in sender.calls] == [111]
    entry = queue.get(sent.id)
    assert entry is not None and entry.state is State.DONE and entry.envelope is not None
    assert entry.envelope.delivery.fallback_used


def test_when_the_main_chat_itself_is_gone_the_envelope_fails_for_good(queue: Queue) -> None:
    sender = FakeSender()
    sender.refuse[111] = DuctorError("Forbidden: bot was blocked by the user")
    sent = envelope(Routing("tg", chat_id=111))
    queue.put(sent)
    deliver_all(drain_for(queue, sender))
    assert state_of(queue, sent.id) is State.FAILED


def test_failed_send_goes_back_to_new_with_a_backoff_and_is_not_resent_at_once(
    queue: Queue,
) -> None:
    sender = FakeSender()
    sender.refuse[555] = TemporaryError("sendMessage: connection reset")
    sent = envelope(Routing("tg", chat_id=555))
    queue.put(sent)

    async def body() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drain_for(queue, sender).run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)

    run(body())
    assert len(sender.attempts) == 1
    entry = queue.get(sent.id)
    assert entry is not None and entry.state is State.NEW and entry.envelope is not None
    delivery = entry.envelope.delivery
    assert delivery.attempts == 1
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > datetime.now(UTC)
    assert "connection reset" in (delivery.last_error or "")


def test_delivery_recorded_before_a_crash_is_finished_without_a_second_send(
    queue: Queue,
) -> None:
    sent = envelope(Routing("tg", chat_id=555))
    queue.put(sent)
    # A reader that sent it and recorded the delivery, then died before finish().
    crashed = Queue(queue.path)
    claimed = crashed.claim_next()
    assert claimed is not None
    crashed.record_delivery(claimed, [42])
    crashed.close()
    sender = FakeSender()
    assert deliver_all(drain_for(queue, sender)) == 0
    assert sender.calls == []
    assert state_of(queue, sent.id) is State.DONE


def test_envelope_in_new_with_a_recorded_delivery_is_finished_without_sending(
    queue: Queue,
) -> None:
    sent = envelope(Routing("tg", chat_id=555))
    queue.put(sent)
    crashed = Queue(queue.path)
    claimed = crashed.claim_next()
    assert claimed is not None
    recorded = crashed.record_delivery(claimed, [42])
    # Back in new/ with its record, as a hand-repaired or restored file would be.
    (queue.path / "cur" / sent.id).rename(queue.path / "new" / sent.id)
    crashed.close()
    assert recorded.delivery.delivered
    sender = FakeSender()
    assert deliver_all(drain_for(queue, sender)) == 1
    assert sender.calls == []
    assert state_of(queue, sent.id) is State.DONE


def test_buttons_hang_under_the_last_message_only(queue: Queue) -> None:
    sender = FakeSender()
    long_text = "\n\n".join(f"paragraph {n} " + "x" * 900 for n in range(10))
    buttons = ((Button("More", "cron:news:more"), Button("Stop", "cron:news:stop")),)
    queue.put(envelope(Routing("tg", chat_id=555), long_text, buttons=buttons))
    deliver_all(drain_for(queue, sender))
    assert len(sender.calls) >= 3
    assert [c.buttons for c in sender.calls[:-1]] == [None] * (len(sender.calls) - 1)
    assert sender.calls[-1].buttons == [[("More", "cron:news:more"), ("Stop", "cron:news:stop")]]


def test_files_follow_the_text_photos_as_photos(queue: Queue, tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    Image.new("RGB", (300, 200), (10, 120, 200)).save(chart)
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 ...")
    missing = tmp_path / "gone.txt"
    sender = FakeSender()
    sent = envelope(Routing("tg", chat_id=555, topic_id=9), files=(chart, report, missing))
    queue.put(sent)
    deliver_all(drain_for(queue, sender))
    assert [(c.what, c.thread) for c in sender.calls] == [
        ("text", 9),
        ("file", 9),
        ("file", 9),
        ("text", 9),
    ]
    assert (sender.calls[1].content, sender.calls[1].as_photo) == (str(chart), True)
    assert (sender.calls[2].content, sender.calls[2].as_photo) == (str(report), False)
    assert "gone.txt" in sender.calls[3].content
    assert state_of(queue, sent.id) is State.DONE


def test_cron_results_get_a_header_unless_they_bring_their_own(queue: Queue) -> None:
    sender = FakeSender()
    routing = Routing("tg", chat_id=555, origin="cron job daily-news")
    queue.put(envelope(routing, "3 new items", kind=Kind.CRON))
    queue.put(envelope(routing, "**TASK: Daily news**\n\n3 new items", kind=Kind.CRON))
    deliver_all(drain_for(queue, sender))
    assert sender.calls[0].content == "<b>Cron: cron job daily-news</b>\n\n3 new items"
    assert sender.calls[1].content == "<b>TASK: Daily news</b>\n\n3 new items"


def test_running_drain_delivers_within_a_second_of_a_put(queue: Queue) -> None:
    sender = FakeSender()

    async def body() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(drain_for(queue, sender).run(stop))
        await asyncio.sleep(0.3)  # idle, waiting on wake.sock
        assert sender.calls == []
        writer = Queue(queue.path)  # a separate writer, as a cron oneshot would be
        started = time.monotonic()
        writer.put(envelope(Routing("tg", chat_id=555), "now"))
        while not sender.calls and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert sender.calls, "never delivered"
        return sender.calls[0].at - started

    assert run(body()) < 1.0


def test_stop_ends_an_idle_drain_promptly_and_releases_the_queue(queue: Queue) -> None:
    async def body() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(drain_for(queue, FakeSender()).run(stop))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        return time.monotonic() - started

    assert run(body()) < 1.0
    assert not (queue.path / "wake.sock").exists()


def test_a_matrix_result_on_a_telegram_only_agent_reaches_the_main_user_with_a_note(
    tmp_path: Path,
) -> None:
    """A cron job created from a Matrix room, after Matrix was taken off the agent: the
    spool moves the result to Telegram and the drain gives it to the main user."""
    spool = Spool(tmp_path / "spool", served=("tg",))
    sender = FakeSender()
    meant = envelope(Routing("mx", chat_id="!room", origin="cron job news"), "result")
    assert spool.post(meant)
    assert spool.outbox_transports() == ["tg"]
    drain = OutboxDrain(
        spool.outbox("tg"), sender, allowed_user_ids=USERS, main_chat=111, known_chat=lambda c: True
    )
    deliver_all(drain)
    [call] = sender.calls
    assert call.chat == 111
    assert call.content.startswith(
        "<i>(This was meant for Matrix chat !room, but this agent does not run Matrix.)</i>"
    )
    assert call.content.endswith("result")
    entry = drain.queue.get(meant.id)
    assert entry is not None and entry.envelope is not None
    assert entry.envelope.delivery.fallback_used


def test_a_running_drain_adopts_what_waited_in_an_outbox_the_agent_no_longer_runs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "spool"
    waiting = envelope(Routing("mx", chat_id="!old", origin="heartbeat"), "left behind")
    Spool(root).outbox("mx").put(waiting)  # written while Matrix was still configured
    spool = Spool(root, served=("tg",))
    sender = FakeSender()
    drain = OutboxDrain(
        spool.outbox("tg"), sender, allowed_user_ids=USERS, main_chat=111, known_chat=lambda c: True
    )
    drain.spool = spool

    async def body() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drain.run(stop))
        deadline = time.monotonic() + 5
        while not sender.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    run(body())
    assert [c.chat for c in sender.calls] == [111]
    assert "left behind" in sender.calls[0].content
    orphan = Spool(root).outbox("mx").get(waiting.id)
    assert orphan is not None and orphan.state is State.DONE
    assert Spool(root).outbox("mx").get(waiting.id) is not None
    run(body())  # a restart moves nothing twice
    assert len(sender.calls) == 1


# -- only allowed chats ------------------------------------------------------------------


def test_an_envelope_for_a_chat_that_is_not_allowed_goes_to_bad_and_the_main_user_is_told(
    queue: Queue,
) -> None:
    sender = FakeSender()
    stranger = envelope(Routing("tg", chat_id=-100666, origin="cron job leak"), "secret plans")
    queue.put(stranger)
    deliver_all(drain_for(queue, sender, main_chat=111))
    assert all("secret plans" not in call.content for call in sender.calls)
    assert [call.chat for call in sender.attempts] == [111]
    assert "was not delivered: chat -100666 is not in allowed_user_ids" in sender.calls[0].content
    assert stranger.id in sender.calls[0].content
    [bad] = queue.list([State.BAD])
    assert bad.id == stranger.id and bad.envelope == stranger
    assert "chat -100666 is not in allowed_user_ids" in (bad.problem or "")


def test_an_envelope_for_a_user_who_is_not_allowed_is_not_sent_by_default(queue: Queue) -> None:
    """Without the transport's allowlists at hand, a drain delivers to allowed users only."""
    sender = FakeSender()
    queue.put(envelope(Routing("tg", chat_id=999, topic_id=2), "hi"))
    drain = OutboxDrain(queue, sender, allowed_user_ids=USERS, main_chat=None)
    deliver_all(drain)
    assert [call.chat for call in sender.attempts] == [111]
    assert queue.counts()[State.BAD] == 1


def test_a_refused_envelope_is_delivered_after_the_chat_is_allowed_and_it_is_resent(
    queue: Queue,
) -> None:
    sender = FakeSender()
    allowed = set(USERS)
    sent = envelope(Routing("tg", chat_id=-100666), "for the new group")
    queue.put(sent)
    drain = OutboxDrain(
        queue, sender, allowed_user_ids=USERS, main_chat=111, chat_allowed=allowed.__contains__
    )
    deliver_all(drain)
    assert state_of(queue, sent.id) is State.BAD
    allowed.add(-100666)  # the user edits allowed_group_ids; the transport reloads
    queue.requeue(sent.id)
    deliver_all(drain)
    assert state_of(queue, sent.id) is State.DONE
    assert sender.calls[-1].chat == -100666 and "for the new group" in sender.calls[-1].content

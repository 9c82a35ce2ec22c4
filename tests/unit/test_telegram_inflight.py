"""ductor.transports.telegram.inflight (and its use by the stream editor and the outbox
drain): what a dead stream left in the chat is finished by the next run, and a long
envelope arrives like a long live answer."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.unit.test_telegram_stream import FakeSender as StreamSender
from tests.unit.test_telegram_stream import Message

from ductor.protocol import Events
from ductor.spool import Envelope, Kind, Payload, Routing, Spool
from ductor.transports.telegram.answer import LongAnswers
from ductor.transports.telegram.formatting import html_to_plain
from ductor.transports.telegram.inflight import KEEP_SECONDS, InflightTurns
from ductor.transports.telegram.outbox import OutboxDrain
from ductor.transports.telegram.stream import StreamEditor, StreamOptions

CHAT = 4242
QUESTION = 41  # the user's message


@dataclass
class FakeSender(StreamSender):
    """The stream tests' fake chat, plus documents (their text read at upload)."""

    documents: list[tuple[str, str]] = field(default_factory=list)  # (name, text)

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
        self.documents.append((path.name, path.read_text(encoding="utf-8")))
        message_id = len(self.messages) + 100
        self.messages[message_id] = Message(f"[file {path.name}]", reply_to, None)
        return message_id


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def reply(turn: str, text: str, *, reply_to: str = str(QUESTION)) -> Envelope:
    return Envelope.create(
        agent="main",
        kind=Kind.REPLY,
        envelope_id=f"reply-{turn}",
        routing=Routing("tg", chat_id=CHAT, origin=f"reply to {reply_to}"),
        payload=Payload(text=text, metadata={"turn": turn, "reply_to": reply_to}),
    )


def drain(
    tmp_path: Path,
    sender: FakeSender,
    inflight: InflightTurns | None = None,
    max_messages: int = 4,
) -> OutboxDrain:
    return OutboxDrain(
        Spool(tmp_path / "spool").outbox("tg"),
        sender,
        allowed_user_ids=[CHAT],
        main_chat=CHAT,
        inflight=inflight,
        long_answers=LongAnswers(max_messages, tmp_path / "tmp"),
    )


# -- the record ------------------------------------------------------------------------


def test_the_messages_of_a_turn_being_shown_survive_a_restart_of_the_transport(
    tmp_path: Path,
) -> None:
    turns = InflightTurns(tmp_path)
    turns.begin("t1", CHAT, thread_id=7, user_message=QUESTION)
    turns.messages("t1", [100, 101])

    [left] = InflightTurns(tmp_path).all()

    assert (left.turn, left.chat_id, left.thread_id) == ("t1", CHAT, 7)
    assert left.user_message == QUESTION
    assert left.messages == (100, 101)
    assert not left.shown
    assert (tmp_path / "inflight.json").stat().st_mode & 0o777 == 0o600


def test_a_turn_shown_and_acknowledged_leaves_nothing_behind(tmp_path: Path) -> None:
    turns = InflightTurns(tmp_path)
    turns.begin("t1", CHAT, thread_id=None, user_message=QUESTION)
    turns.shown("t1", [100])
    turns.end("t1")

    assert InflightTurns(tmp_path).all() == []


def test_a_record_nobody_claims_is_forgotten_after_a_week(tmp_path: Path) -> None:
    InflightTurns(tmp_path, clock=lambda: 1000.0).begin(
        "t1", CHAT, thread_id=None, user_message=QUESTION
    )

    later = InflightTurns(tmp_path, clock=lambda: 1000.0 + KEEP_SECONDS + 1)

    assert later.all() == []


def test_a_damaged_record_file_is_ignored_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "inflight.json").write_text("{not json")

    assert InflightTurns(tmp_path).all() == []


# -- the stream editor says which messages are in the chat ---------------------------------


def test_the_stream_editor_reports_every_message_it_sends_and_deletes() -> None:
    sender = FakeSender()
    reported: list[list[int]] = []

    async def scenario() -> None:
        stream = StreamEditor(
            sender,
            CHAT,
            thread_id=None,
            reply_to=QUESTION,
            options=StreamOptions(edit_interval=0.0),
            on_messages=reported.append,
        )
        await stream.on_event(Events.text("r", "x" * 5000))  # two messages
        await stream.finish(Events.final("r", text="short now", turn="t1"))  # one left

    run(scenario())

    assert reported[:2] == [[100], [100, 101]]
    assert reported[-1] == [100], "the message no longer needed was deleted"
    assert [m.deleted for m in sender.messages.values()] == [False, True]


# -- the outbox finishes what a dead stream began ---------------------------------------


def test_an_answer_from_the_outbox_replaces_the_partial_message_a_dead_stream_left(
    tmp_path: Path,
) -> None:
    sender = FakeSender()
    sender.messages[100] = Message("One two thr", QUESTION, None)  # the partial answer
    turns = InflightTurns(tmp_path)
    turns.begin("t1", CHAT, thread_id=None, user_message=QUESTION)
    turns.messages("t1", [100])

    run(drain(tmp_path, sender, InflightTurns(tmp_path)).deliver(reply("t1", "One two three")))

    [answer] = sender.visible()
    assert html_to_plain(answer.html) == "One two three"
    assert answer.reply_to == QUESTION
    assert sender.messages[100].deleted
    assert InflightTurns(tmp_path).all() == []


def test_an_answer_shown_in_full_whose_ack_was_lost_is_not_sent_again(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.messages[100] = Message("One two three", QUESTION, None)
    turns = InflightTurns(tmp_path)
    turns.begin("t1", CHAT, thread_id=None, user_message=QUESTION)
    turns.shown("t1", [100])

    again = drain(tmp_path, sender, InflightTurns(tmp_path))
    ids = run(again.deliver(reply("t1", "One two three")))

    assert ids == [100]
    assert sender.texts() == ["One two three"]
    assert sender.calls == []
    assert InflightTurns(tmp_path).all() == []


def test_an_answer_from_the_outbox_replies_to_the_users_message(tmp_path: Path) -> None:
    sender = FakeSender()

    run(drain(tmp_path, sender).deliver(reply("t1", "the answer", reply_to="57")))

    [answer] = sender.visible()
    assert answer.reply_to == 57


# -- a long envelope is a summary and a document, like a long live answer -------------------


def test_a_megabyte_envelope_arrives_as_a_summary_and_one_document(tmp_path: Path) -> None:
    sender = FakeSender()
    text = "A first paragraph that sums it up.\n\n" + "word " * 200_000  # about 1 MB

    run(drain(tmp_path, sender, max_messages=4).deliver(reply("t1", text)))

    messages = sender.visible()
    assert len(messages) == 2, "one summary and one document, not 250 messages"
    assert html_to_plain(messages[0].html).startswith("A first paragraph that sums it up.")
    assert "Full answer attached" in html_to_plain(messages[0].html)
    assert sender.documents == [("answer-t1.md", text)]
    assert list((tmp_path / "tmp").iterdir()) == [], "the upload's file is removed"


def test_an_envelope_within_max_messages_is_sent_as_messages(tmp_path: Path) -> None:
    sender = FakeSender()
    text = "word " * 2000  # about 10 000 characters: three messages

    run(drain(tmp_path, sender, max_messages=4).deliver(reply("t1", text)))

    assert len(sender.visible()) == 3
    assert sender.documents == []

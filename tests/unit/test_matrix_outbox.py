"""ductor.transports.matrix.outbox: envelopes reach only the rooms the bot may serve.

The transport is a stand-in holding the rooms matrix-nio would know after a sync (the
delivery to a real homeserver is tested in tests/matrix/)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ductor.config import AgentConfig
from ductor.config.schema import MatrixConfig
from ductor.spool import Envelope, Kind, Payload, Queue, Routing, Spool, State
from ductor.transports.matrix.outbox import MatrixOutbox
from ductor.transports.matrix.richtext import TooLarge
from ductor.transports.matrix.rooms import Room

if TYPE_CHECKING:
    from ductor.transports.matrix.app import MatrixTransport

BOT, ALICE, MALLORY = "@bot:hs", "@alice:hs", "@mallory:hs"
DM, TEAM, MALLORY_DM, TRIO = "!dm:hs", "!team:hs", "!mallorydm:hs", "!trio:hs"


@dataclass
class FakeClient:
    rooms: dict[str, object] = field(default_factory=dict)


@dataclass
class FakeTransport:
    """What the drain asks of the Matrix transport: its rooms, allowlists and sends."""

    rooms: list[Room]
    config: AgentConfig = field(
        default_factory=lambda: AgentConfig(
            matrix=MatrixConfig(allowed_users=(ALICE,), allowed_rooms=(TEAM,))
        )
    )
    bot_id: str = BOT
    allowed_room_ids: set[str] = field(default_factory=lambda: {TEAM})
    sent: list[tuple[str, str]] = field(default_factory=list)
    client: FakeClient = field(default_factory=FakeClient)

    def __post_init__(self) -> None:
        self.client.rooms = {room.room_id: room for room in self.rooms}

    def joined_rooms(self) -> list[Room]:
        return list(self.rooms)

    def direct_room(self, user_id: str) -> str | None:
        return next(
            (r.room_id for r in self.rooms if len(r.members) <= 2 and user_id in r.members), None
        )

    async def send_markdown(self, room: str, markdown: str, *, thread: str = "") -> list[str]:
        self.sent.append((room, markdown))
        return [f"$event{len(self.sent)}"]


def room(room_id: str, *members: str) -> Room:
    return Room(room_id, "", frozenset((BOT, *members)))


def drain(tmp_path: Path) -> tuple[MatrixOutbox, FakeTransport, Queue]:
    transport = FakeTransport(
        [
            room(DM, ALICE),
            room(TEAM, ALICE, MALLORY),
            room(MALLORY_DM, MALLORY),
            room(TRIO, ALICE, MALLORY),
        ]
    )
    queue = Spool(tmp_path / "spool").outbox("mx")
    outbox = MatrixOutbox(queue, cast("MatrixTransport", transport), allowed_users=[ALICE])
    return outbox, transport, queue


def post(queue: Queue, room_id: str, text: str) -> Envelope:
    envelope = Envelope.create(
        agent="main",
        kind=Kind.CRON,
        routing=Routing("mx", chat_id=room_id, origin="cron job news"),
        payload=Payload(text=text),
    )
    queue.put(envelope)
    return envelope


def deliver_all(outbox: MatrixOutbox) -> None:
    async def body() -> None:
        outbox.queue.recover()
        try:
            await outbox.process_due()
        finally:
            outbox.queue.close()

    asyncio.run(body())


def test_listed_rooms_and_direct_chats_with_allowed_users_get_their_envelopes(
    tmp_path: Path,
) -> None:
    outbox, transport, queue = drain(tmp_path)
    for_team, for_dm = post(queue, TEAM, "team news"), post(queue, DM, "dm news")
    deliver_all(outbox)
    assert {(room_id, text.rsplit("\n\n", 1)[-1]) for room_id, text in transport.sent} == {
        (TEAM, "team news"),
        (DM, "dm news"),
    }
    assert all(queue.get(e.id).state is State.DONE for e in (for_team, for_dm))  # type: ignore[union-attr]


def test_an_envelope_for_a_room_that_is_not_allowed_goes_to_bad_and_the_main_user_is_told(
    tmp_path: Path,
) -> None:
    outbox, transport, queue = drain(tmp_path)
    to_mallory = post(queue, MALLORY_DM, "secret plans")
    to_trio = post(queue, TRIO, "more secret plans")
    deliver_all(outbox)
    assert [room_id for room_id, _ in transport.sent] == [DM, DM]
    assert all("secret plans" not in text for _, text in transport.sent)
    assert all("was not delivered" in text for _, text in transport.sent)
    bad = {entry.id: entry for entry in queue.list([State.BAD])}
    assert set(bad) == {to_mallory.id, to_trio.id}
    assert f"room {TRIO} is not in allowed_rooms" in (bad[to_trio.id].problem or "")


def test_an_envelope_the_homeserver_refuses_as_too_large_goes_to_bad_at_once_with_a_note(
    tmp_path: Path,
) -> None:
    outbox, transport, queue = drain(tmp_path)
    refusals = 0

    async def refuse_big(room_id: str, markdown: str, *, thread: str = "") -> list[str]:
        nonlocal refusals
        if "huge" in markdown:
            refusals += 1
            raise TooLarge("event too large (M_TOO_LARGE)")
        transport.sent.append((room_id, markdown))
        return ["$note"]

    transport.send_markdown = refuse_big  # type: ignore[method-assign]
    huge = post(queue, DM, "huge")
    deliver_all(outbox)
    deliver_all(outbox)  # nothing is retried
    assert refusals == 1
    assert queue.get(huge.id).state is State.BAD  # type: ignore[union-attr]
    assert [room_id for room_id, _ in transport.sent] == [DM]
    assert "too large for Matrix" in transport.sent[0][1]

"""Which rooms the Matrix bot serves, leaves on an audit, lists and leaves on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from ductor.transports.matrix.rooms import (
    AuditState,
    Room,
    allowlists_key,
    format_where,
    parse_leave,
    to_leave,
    would_leave,
)

BOT, ALICE, EVE, BOB = "@bot:hs", "@alice:hs", "@eve:hs", "@bob:hs"
ALLOWED = {"allowed_room_ids": {"!team:hs"}, "allowed_users": [ALICE]}


def room(room_id: str, *members: str, name: str = "", aliases: tuple[str, ...] = ()) -> Room:
    return Room(room_id, name, frozenset((BOT, *members)), frozenset(aliases))


def test_the_audit_keeps_listed_rooms_and_direct_chats_with_allowed_users_only() -> None:
    rooms = [
        room("!team:hs", ALICE, EVE, BOB, name="team"),  # listed
        room("!dm:hs", ALICE),  # direct chat with an allowed user
        room("!evedm:hs", EVE),  # direct chat with a stranger
        room("!trio:hs", ALICE, EVE),  # a group room that is not listed
        room("!alone:hs"),  # everyone else left
    ]
    left = to_leave(rooms, bot_id=BOT, **ALLOWED)
    assert [r.room_id for r in left] == ["!alone:hs", "!evedm:hs", "!trio:hs"]


def test_where_sorts_served_rooms_before_the_others() -> None:
    text = format_where(
        [room("!trio:hs", ALICE, EVE, name="Trio"), room("!dm:hs", ALICE, name="Alice")],
        bot_id=BOT,
        **ALLOWED,
    )
    served, other = text.split("\n\n")
    assert served == "**Served**\n`!dm:hs` — Alice (direct chat)"
    assert other.endswith("`!trio:hs` — Trio (3 members)")
    assert format_where([], bot_id=BOT, **ALLOWED) == "The bot is in no room."


def test_leave_takes_a_room_id_or_alias_of_a_joined_room() -> None:
    rooms = [room("!team:hs", ALICE, EVE, aliases=("#team:hs",))]
    assert parse_leave("/leave !team:hs", rooms) == "!team:hs"
    assert parse_leave("/leave #team:hs", rooms) == "!team:hs"
    with pytest.raises(ValueError, match="not in !other:hs"):
        parse_leave("/leave !other:hs", rooms)
    with pytest.raises(ValueError, match="Usage"):
        parse_leave("/leave", rooms)


def test_a_change_of_the_allowlists_leaves_rooms_only_when_a_second_reload_confirms(
    tmp_path: Path,
) -> None:
    file = tmp_path / "audit.json"
    before, after = allowlists_key(["@a:hs"], []), allowlists_key([], [])
    dm = Room("!dm:hs", "chat", frozenset({"@bot:hs", "@a:hs"}))
    assert AuditState.load(file).decide(before, [], confirmed=False) == []
    assert AuditState.load(file).decide(after, [dm], confirmed=True) == []  # only named
    assert would_leave(tmp_path) == ["!dm:hs (chat)"]
    assert AuditState.load(file).decide(after, [dm], confirmed=False) == []  # a restart
    assert AuditState.load(file).decide(after, [dm], confirmed=True) == [dm]  # confirmed
    assert would_leave(tmp_path) == []
    third = Room("!dm:hs", "chat", frozenset({"@bot:hs", "@a:hs", "@c:hs"}))
    assert AuditState.load(file).decide(after, [third], confirmed=False) == [third]

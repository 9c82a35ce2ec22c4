"""The rooms the bot is in: which it should leave (the audit), ``!where`` and ``!leave``.

Matrix keeps the membership itself, so unlike Telegram's chat record this needs no file:
after the transport's first (full-state) sync, matrix-nio knows every joined room, its
name and its members. A room is served when it is in ``allowed_rooms`` or is a direct
chat (two members) with an allowed user; the audit names every other joined room.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

__all__ = ["LEAVE_USAGE", "Room", "format_where", "parse_leave", "to_leave"]

LEAVE_USAGE = (
    "Usage: !leave <room> (its id or alias as !where shows it, e.g. !leave !abc:example.org)"
)


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    members: frozenset[str]
    aliases: frozenset[str] = frozenset()

    def is_served(
        self, *, bot_id: str, allowed_room_ids: Collection[str], allowed_users: Collection[str]
    ) -> bool:
        if self.room_id in allowed_room_ids:
            return True
        others = self.members - {bot_id}
        return len(self.members) <= 2 and bool(others & set(allowed_users))


def to_leave(
    rooms: Iterable[Room],
    *,
    bot_id: str,
    allowed_room_ids: Collection[str],
    allowed_users: Collection[str],
) -> list[Room]:
    """The joined rooms the bot does not serve (any more), by room id."""
    return sorted(
        (
            room
            for room in rooms
            if not room.is_served(
                bot_id=bot_id, allowed_room_ids=allowed_room_ids, allowed_users=allowed_users
            )
        ),
        key=lambda room: room.room_id,
    )


def format_where(
    rooms: Iterable[Room],
    *,
    bot_id: str,
    allowed_room_ids: Collection[str],
    allowed_users: Collection[str],
) -> str:
    """The ``!where`` answer in Markdown: served rooms, then the others."""
    served: list[str] = []
    other: list[str] = []
    for room in sorted(rooms, key=lambda r: (r.name.lower(), r.room_id)):
        ok = room.is_served(
            bot_id=bot_id, allowed_room_ids=allowed_room_ids, allowed_users=allowed_users
        )
        kind = "direct chat" if len(room.members) <= 2 else f"{len(room.members)} members"
        line = f"`{room.room_id}` — {room.name or 'untitled'} ({kind})"
        (served if ok else other).append(line)
    if not (served or other):
        return "The bot is in no room."
    sections = []
    if served:
        sections.append("\n".join(["**Served**", *served]))
    if other:
        sections.append("\n".join(["**Not allowed** (the audit leaves these)", *other]))
    return "\n\n".join(sections)


def parse_leave(text: str, rooms: Iterable[Room]) -> str:
    """The room id of ``/leave <room id or alias>``; ValueError with the usage otherwise."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(LEAVE_USAGE)
    wanted = parts[1]
    for room in rooms:
        if wanted == room.room_id or wanted in room.aliases:
            return room.room_id
    raise ValueError(f"The bot is not in {wanted}. {LEAVE_USAGE}")

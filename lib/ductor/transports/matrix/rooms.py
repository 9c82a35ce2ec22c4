"""The rooms the bot is in: which it should leave (the audit), ``!where`` and ``!leave``.

Matrix keeps the membership itself, so unlike Telegram's chat record this needs no file:
after the transport's first (full-state) sync, matrix-nio knows every joined room, its
name and its members. A room is served when it is in ``allowed_rooms`` or is a direct
chat (two members) with an allowed user; the audit names every other joined room.
Deny by default: ``allowed_users = []`` is nobody, ``allowed_rooms = []`` is no group
room (direct chats with allowed users only).

A change of the allowlists never makes the bot leave rooms on its own: the audit after
it (:class:`AuditState`, ``matrix/audit.json``) only logs the rooms it would leave and
keeps them for ``ductor doctor``; a second reload with the same allowlists confirms, and
restoring the old ones forgets them. Rooms that stop being served while the allowlists
stay as they are (a third member in a direct chat) are left at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ductor import atomic

__all__ = [
    "LEAVE_USAGE",
    "AuditState",
    "Room",
    "allowlists_key",
    "format_where",
    "parse_leave",
    "to_leave",
    "would_leave",
]

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


def allowlists_key(allowed_users: Collection[str], allowed_room_ids: Collection[str]) -> str:
    """A short fingerprint of the allowlists: whether they changed since an audit."""
    data = json.dumps([sorted(allowed_users), sorted(allowed_room_ids)])
    return hashlib.sha256(data.encode()).hexdigest()[:16]


@dataclass
class AuditState:
    """``matrix/audit.json``: the allowlists the last audit settled on, and the rooms a
    later change of them would make the bot leave (waiting for a confirmation)."""

    file: Path
    allowlists: str = ""
    pending_allowlists: str = ""
    pending: list[dict[str, str]] = field(default_factory=list)  # room_id, name

    @classmethod
    def load(cls, file: Path) -> AuditState:
        state = cls(file)
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            return state
        if isinstance(data, dict):
            state.allowlists = str(data.get("allowlists", ""))
            state.pending_allowlists = str(data.get("pending_allowlists", ""))
            rooms = data.get("pending")
            if isinstance(rooms, list):
                state.pending = [
                    {"room_id": str(r.get("room_id", "")), "name": str(r.get("name", ""))}
                    for r in rooms
                    if isinstance(r, dict)
                ]
        return state

    def decide(self, key: str, rooms: list[Room], *, confirmed: bool) -> list[Room]:
        """The rooms to leave now; the others of ``rooms`` wait for a confirmation."""
        if not rooms or key == self.allowlists or (confirmed and key == self.pending_allowlists):
            self.allowlists, self.pending_allowlists, self.pending = key, "", []
            self.save()
            return rooms
        self.pending_allowlists = key
        self.pending = [{"room_id": r.room_id, "name": r.name} for r in rooms]
        self.save()
        return []

    def save(self) -> None:
        data = {
            "allowlists": self.allowlists,
            "pending_allowlists": self.pending_allowlists,
            "pending": self.pending,
        }
        atomic.write_json(self.file, data, mode=0o600)


def would_leave(state_dir: Path) -> list[str]:
    """For ``ductor doctor``: the rooms an unconfirmed change of the allowlists would
    make the bot leave (``!id (name)``)."""
    state = AuditState.load(state_dir / "audit.json")
    return [f"{r['room_id']} ({r['name'] or 'untitled'})" for r in state.pending]

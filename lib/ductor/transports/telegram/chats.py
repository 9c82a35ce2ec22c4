"""The groups the bot has been in, for ``/where``, ``/leave`` and the group audit.

:class:`ChatActivity` keeps one record per chat in ``chat_activity.json`` (written
atomically): its title and type, when it was first and last seen, its status (active,
rejected, left, kicked, auto_left) and how often a message from it was rejected.
:meth:`ChatActivity.audit` names the groups the bot is still in although they are no
longer allowed; the transport leaves them at start, on a config change and daily.
Stdlib only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ductor import atomic

__all__ = [
    "ACTIVITY_FILE",
    "LEAVE_USAGE",
    "STATUSES",
    "ChatActivity",
    "ChatRecord",
    "parse_leave_args",
]

log = logging.getLogger(__name__)

ACTIVITY_FILE = "chat_activity.json"
STATUSES = ("active", "rejected", "left", "kicked", "auto_left")
LEFT_STATUSES = frozenset({"left", "kicked", "auto_left"})
LEAVE_USAGE = "Usage: /leave <group_id> (the id as /where shows it, e.g. /leave -1001234567890)"


@dataclass(frozen=True)
class ChatRecord:
    chat_id: int
    chat_type: str = ""
    title: str = ""
    status: str = "active"
    first_seen: str = ""  # ISO 8601, UTC
    last_seen: str = ""
    rejected_count: int = 0


def _now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds")


class ChatActivity:
    """The chat records of one agent's Telegram transport, kept in ``directory``."""

    def __init__(self, directory: Path, *, clock: Callable[[], str] = _now) -> None:
        self.path = directory / ACTIVITY_FILE
        self._clock = clock
        self._records = self._load()

    def _load(self) -> dict[int, ChatRecord]:
        try:
            data = atomic.read_json(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, atomic.CorruptFileError) as exc:
            # Only /where and the audit use this: start afresh rather than not at all.
            log.warning("ignoring %s: %s", self.path, exc)
            return {}
        records: dict[int, ChatRecord] = {}
        raw = data.get("records") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            log.warning("ignoring %s: no 'records' object", self.path)
            return {}
        for key, value in raw.items():
            try:
                record = _record_from_json(int(key), value)
            except (TypeError, ValueError) as exc:
                log.warning("%s: skipping the record of chat %s: %s", self.path, key, exc)
                continue
            records[record.chat_id] = record
        return records

    def _save(self) -> None:
        records = {str(chat): asdict(record) for chat, record in sorted(self._records.items())}
        atomic.write_json(self.path, {"records": records})

    def record(self, chat_id: int, *, title: str, chat_type: str, status: str) -> ChatRecord:
        """Note that ``chat_id`` was seen with ``status``; a rejection is counted.

        An empty title or type keeps the one already known (the audit and ``/leave``
        know only the id).
        """
        if status not in STATUSES:
            raise ValueError(f"unknown chat status {status!r} (expected one of {STATUSES})")
        now = self._clock()
        old = self._records.get(chat_id) or ChatRecord(chat_id, first_seen=now)
        new = replace(
            old,
            chat_type=chat_type or old.chat_type,
            title=title or old.title,
            status=status,
            last_seen=now,
            rejected_count=old.rejected_count + (status == "rejected"),
        )
        self._records[chat_id] = new
        # A busy group would mean a disk write per message: last_seen alone is written
        # at most once an hour (and with any other change).
        if replace(new, last_seen=old.last_seen) != old or new.last_seen[:13] != old.last_seen[:13]:
            self._save()
        return new

    def get(self, chat_id: int) -> ChatRecord | None:
        return self._records.get(chat_id)

    def records(self) -> list[ChatRecord]:
        return [self._records[chat] for chat in sorted(self._records)]

    def audit(self, allowed_group_ids: Iterable[int]) -> list[int]:
        """Groups recorded as active that are no longer allowed: the ones to leave."""
        allowed = set(allowed_group_ids)
        return [
            record.chat_id
            for record in self.records()
            if record.status == "active"
            and record.chat_type != "private"
            and record.chat_id not in allowed
        ]

    def format_where(self) -> str:
        """The ``/where`` answer: the chats by status, in Markdown."""
        active = [r for r in self.records() if r.status == "active"]
        rejected = [r for r in self.records() if r.status == "rejected"]
        left = [r for r in self.records() if r.status in LEFT_STATUSES]
        if not (active or rejected or left):
            return "No chats recorded yet."
        sections: list[str] = []
        for heading, records in (("Active", active), ("Rejected", rejected), ("Left", left)):
            if records:
                lines = [f"**{heading}**", *(_where_line(record) for record in records)]
                sections.append("\n".join(lines))
        return "\n\n".join(sections)


def _where_line(record: ChatRecord) -> str:
    line = f"`{record.chat_id}` — {record.title or 'untitled'} ({record.chat_type or 'unknown'})"
    if record.status == "rejected":
        line += f" ({record.rejected_count}x rejected)"
    elif record.status in LEFT_STATUSES and record.status != "left":
        line += f" [{record.status}]"
    return line


def _record_from_json(chat_id: int, value: object) -> ChatRecord:
    if not isinstance(value, dict):
        raise TypeError("not an object")

    def text(key: str) -> str:
        item = value.get(key, "")
        if not isinstance(item, str):
            raise TypeError(f"{key!r} must be a string")
        return item

    status = text("status") or "active"
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    count = value.get("rejected_count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise TypeError("'rejected_count' must be a non-negative integer")
    return ChatRecord(
        chat_id,
        chat_type=text("chat_type"),
        title=text("title"),
        status=status,
        first_seen=text("first_seen"),
        last_seen=text("last_seen"),
        rejected_count=count,
    )


def parse_leave_args(text: str) -> int:
    """The group id of ``/leave <group_id>``; ValueError with the usage otherwise."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(LEAVE_USAGE)
    try:
        group = int(parts[1])
    except ValueError:
        raise ValueError(f"{parts[1]!r} is not a chat id. {LEAVE_USAGE}") from None
    if group >= 0:
        raise ValueError(f"{group} is not a group id: group ids are negative. {LEAVE_USAGE}")
    return group

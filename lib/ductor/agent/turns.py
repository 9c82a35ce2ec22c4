"""The durable record of every turn the agent has accepted and not yet answered.

A message is *accepted* only once its record is on disk (``turns/``); the record moves
from ``queued`` to ``running`` when its CLI starts and is deleted once the answer is
safe: either handed to a connected client or written to the spool outbox. After a crash,
restart or reboot the records tell the agent what to do (``Agent.recover``): queued turns
run in their order, running turns are re-run once as recoveries.

An answer handed to a client that promised an acknowledgement is parked in ``replies/``
until the ack arrives; a client that goes away first leaves it there and the agent moves
it to the outbox. Each file is written atomically (temp + fsync + rename).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ductor import atomic
from ductor.spool import Envelope, EnvelopeError

log = logging.getLogger(__name__)


class TurnKind(StrEnum):
    MESSAGE = "message"  # a user message (or a pressed button's label)
    INJECT = "inject"  # a prompt from elsewhere into the session (webhook, task result)
    HEARTBEAT = "heartbeat"
    ASK = "ask"  # another agent asks and waits


class TurnState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"


def new_turn_id() -> str:
    now = datetime.now(UTC)
    return f"t{now:%Y%m%d%H%M%S}{os.urandom(4).hex()}"


@dataclass(frozen=True)
class TurnRecord:
    id: str
    seq: int
    session: str
    kind: TurnKind
    text: str
    quoted: str = ""
    files: tuple[str, ...] = ()
    user_id: str = ""
    user_name: str = ""
    origin: str = ""
    chat_is_private: bool | None = None
    message_id: str = ""
    state: TurnState = TurnState.QUEUED
    recovery: bool = False  # this run repeats a turn a restart interrupted
    recovery_reason: str = ""  # "restart" or "reboot"
    accepted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "seq": self.seq,
            "session": self.session,
            "kind": str(self.kind),
            "text": self.text,
            "quoted": self.quoted,
            "files": list(self.files),
            "user_id": self.user_id,
            "user_name": self.user_name,
            "origin": self.origin,
            "chat_is_private": self.chat_is_private,
            "message_id": self.message_id,
            "state": str(self.state),
            "recovery": self.recovery,
            "recovery_reason": self.recovery_reason,
            "accepted_at": self.accepted_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TurnRecord:
        started = data.get("started_at")
        private = data.get("chat_is_private")
        return cls(
            id=str(data["id"]),
            seq=int(data["seq"]),
            session=str(data["session"]),
            kind=TurnKind(str(data["kind"])),
            text=str(data.get("text", "")),
            quoted=str(data.get("quoted", "")),
            files=tuple(str(f) for f in data.get("files", ())),
            user_id=str(data.get("user_id", "")),
            user_name=str(data.get("user_name", "")),
            origin=str(data.get("origin", "")),
            chat_is_private=private if isinstance(private, bool) else None,
            message_id=str(data.get("message_id", "")),
            state=TurnState(str(data.get("state", TurnState.QUEUED))),
            recovery=bool(data.get("recovery", False)),
            recovery_reason=str(data.get("recovery_reason", "")),
            accepted_at=datetime.fromisoformat(str(data["accepted_at"])),
            started_at=datetime.fromisoformat(str(started)) if started else None,
        )


class TurnStore:
    """``turns/`` (accepted turns) and ``replies/`` (answers waiting for an ack)."""

    def __init__(self, state_dir: Path) -> None:
        self.turns_dir = state_dir / "turns"
        self.replies_dir = state_dir / "replies"
        for directory in (self.turns_dir, self.replies_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._seq = max((r.seq for r in self.load()), default=0)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _path(self, record: TurnRecord) -> Path:
        return self.turns_dir / f"{record.seq:012d}-{record.id}.json"

    def save(self, record: TurnRecord) -> TurnRecord:
        atomic.write_json(self._path(record), record.to_dict(), mode=0o600)
        return record

    def mark_running(self, record: TurnRecord) -> TurnRecord:
        return self.save(replace(record, state=TurnState.RUNNING, started_at=datetime.now(UTC)))

    def remove(self, record: TurnRecord) -> None:
        try:
            self._path(record).unlink()
        except FileNotFoundError:
            pass
        else:
            atomic.fsync_directory(self.turns_dir)

    def load(self) -> list[TurnRecord]:
        """Every record on disk in acceptance order; unreadable files are set aside."""
        records: list[TurnRecord] = []
        for file in sorted(self.turns_dir.glob("*.json")):
            try:
                data = atomic.read_json(file)
                records.append(TurnRecord.from_dict(data if isinstance(data, dict) else {}))
            except (OSError, ValueError, KeyError, TypeError, atomic.CorruptFileError) as exc:
                bad = file.with_suffix(".bad")
                log.error("cannot read turn record %s (%s); moved it to %s", file, exc, bad.name)
                file.rename(bad)
        records.sort(key=lambda r: r.seq)
        return records

    # -- answers waiting for an acknowledgement ------------------------------------------

    def park_reply(self, turn_id: str, envelope: Envelope) -> None:
        atomic.write_text(self.replies_dir / f"{turn_id}.json", envelope.to_json(), mode=0o600)

    def drop_reply(self, turn_id: str) -> bool:
        try:
            (self.replies_dir / f"{turn_id}.json").unlink()
        except FileNotFoundError:
            return False
        return True

    def has_reply(self, turn_id: str) -> bool:
        return (self.replies_dir / f"{turn_id}.json").exists()

    def parked_replies(self) -> Iterator[tuple[str, Envelope]]:
        for file in sorted(self.replies_dir.glob("*.json")):
            try:
                yield file.stem, Envelope.from_json(file.read_bytes())
            except (OSError, EnvelopeError) as exc:
                log.error("cannot read parked reply %s: %s", file, exc)

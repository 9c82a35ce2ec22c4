"""The envelope: one thing that must reach a chat (or the agent) later, as one JSON file.

An envelope carries where it goes (:class:`Routing`), what it says (:class:`Payload`),
how the work that produced it ended (:class:`Execution`) and, separately, how its
delivery is going (:class:`Delivery`): a job can succeed while its delivery fails, and a
failed delivery can be re-sent without re-running the job. docs/spool.md lists the
JSON fields.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from ductor.jsontypes import describe
from ductor.spool._fields import Fields, id_value
from ductor.spool.errors import EnvelopeError

FORMAT_VERSION = 1

ChatId = int | str
MessageId = int | str

# Envelope ids are file names: no '/', no '.', nothing a shell or `ls` would trip over.
_ENVELOPE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:-]{0,127}")
_TRANSPORT = re.compile(r"[a-z][a-z0-9_-]{0,15}")
_E = TypeVar("_E", bound=StrEnum)


class Kind(StrEnum):
    """What produced the envelope; transports format some kinds differently."""

    REPLY = "reply"  # a turn's answer whose client went away or whose transport was down
    CRON = "cron"
    HEARTBEAT = "heartbeat"
    TASK = "task"  # a background task's result
    TASK_QUESTION = "task_question"  # a background task asks its parent something
    SESSION = "session"  # a named/background session's result
    WEBHOOK = "webhook"
    INTERAGENT = "interagent"
    NOTICE = "notice"  # anything else ductor itself tells the user
    INJECT = "inject"  # inbox: run payload.metadata["prompt"] in the routed session


class ExecutionStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_envelope_id(now: datetime | None = None) -> str:
    """A unique id whose string order is creation order: ``20251121-201300-123456-9f8e…``."""
    now = (now or now_utc()).astimezone(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond:06d}-{os.urandom(6).hex()}"


def validate_envelope_id(envelope_id: str) -> str:
    if not isinstance(envelope_id, str) or not _ENVELOPE_ID.fullmatch(envelope_id):
        raise EnvelopeError(
            "id",
            f"{envelope_id!r} is not a valid envelope id (1-128 letters, digits, '_', ':' or"
            " '-', starting with a letter or digit)",
        )
    return envelope_id


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Button:
    """One inline button: what it shows and the callback data it sends back."""

    label: str
    data: str


@dataclass(frozen=True)
class Routing:
    """Where the envelope goes.

    Unicast: ``transport`` + ``chat_id`` (+ ``topic_id`` for a forum topic or thread).
    Broadcast (``broadcast=True``, no chat): every allowed user of ``transport``; used
    when the work has no origin. ``origin`` says in words where it came from
    ("cron job daily-news"), for fallbacks and ``ductor outbox``.
    """

    transport: str
    chat_id: ChatId | None = None
    topic_id: ChatId | None = None
    origin: str = ""
    broadcast: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.transport, str) or not _TRANSPORT.fullmatch(self.transport):
            raise EnvelopeError(
                "routing.transport", f"{self.transport!r} is not a transport name like 'tg'"
            )
        if self.chat_id is not None:
            id_value(self.chat_id, "routing.chat_id")
        if self.topic_id is not None:
            id_value(self.topic_id, "routing.topic_id")
        if self.broadcast and (self.chat_id is not None or self.topic_id is not None):
            raise EnvelopeError("routing.broadcast", "a broadcast has no chat_id or topic_id")
        if not self.broadcast and self.chat_id is None:
            raise EnvelopeError("routing.chat_id", "missing (set broadcast for no origin)")

    @property
    def session_key(self) -> str | None:
        """``transport:chat[:topic]`` as the agent names sessions, None for a broadcast."""
        if self.chat_id is None:
            return None
        key = f"{self.transport}:{self.chat_id}"
        return key if self.topic_id is None else f"{key}:{self.topic_id}"


@dataclass(frozen=True)
class Payload:
    text: str = ""
    files: tuple[Path, ...] = ()
    buttons: tuple[tuple[Button, ...], ...] = ()  # rows of buttons
    metadata: Mapping[str, Any] = field(default_factory=dict)  # JSON values; read-only

    def __post_init__(self) -> None:
        for index, path in enumerate(self.files):
            if not Path(path).is_absolute():
                raise EnvelopeError(f"payload.files[{index}]", f"{str(path)!r} is not absolute")


@dataclass(frozen=True)
class Execution:
    """How the work that produced the envelope ended (not how its delivery went)."""

    status: ExecutionStatus = ExecutionStatus.OK
    error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """How delivering the envelope is going; only the spool's reader side changes it."""

    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: due now
    last_error: str | None = None
    delivered_at: datetime | None = None
    message_ids: tuple[MessageId, ...] = ()
    fallback_used: bool = False
    fallback_reason: str | None = None
    requeues: int = 0  # times `ductor outbox resend` put it back

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None or bool(self.message_ids)


@dataclass(frozen=True)
class Envelope:
    id: str
    created_at: datetime
    agent: str
    kind: Kind
    routing: Routing
    payload: Payload = field(default_factory=Payload)
    execution: Execution = field(default_factory=Execution)
    delivery: Delivery = field(default_factory=Delivery)

    def __post_init__(self) -> None:
        validate_envelope_id(self.id)
        if self.created_at.tzinfo is None:
            raise EnvelopeError("created_at", "timestamp has no timezone")
        if not self.agent:
            raise EnvelopeError("agent", "must not be empty")

    @classmethod
    def create(
        cls,
        *,
        agent: str,
        kind: Kind,
        routing: Routing,
        payload: Payload | None = None,
        execution: Execution | None = None,
        envelope_id: str | None = None,
        now: datetime | None = None,
    ) -> Envelope:
        """A new envelope. Pass ``envelope_id`` to make a retried writer idempotent."""
        now = now or now_utc()
        return cls(
            id=new_envelope_id(now) if envelope_id is None else envelope_id,
            created_at=now,
            agent=agent,
            kind=kind,
            routing=routing,
            payload=payload or Payload(),
            execution=execution or Execution(finished_at=now),
        )

    def is_due(self, now: datetime) -> bool:
        due = self.delivery.next_attempt_at
        return due is None or due <= now

    def for_transport(self, transport: str) -> Envelope:
        """The same envelope routed to another transport (broadcast copies, fallbacks)."""
        return replace(self, routing=replace(self.routing, transport=transport))

    def to_dict(self) -> dict[str, object]:
        routing, payload = self.routing, self.payload
        execution, delivery = self.execution, self.delivery
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "created_at": _timestamp(self.created_at),
            "agent": self.agent,
            "kind": str(self.kind),
            "routing": {
                "transport": routing.transport,
                "chat_id": routing.chat_id,
                "topic_id": routing.topic_id,
                "origin": routing.origin,
                "broadcast": routing.broadcast,
            },
            "payload": {
                "text": payload.text,
                "files": [str(path) for path in payload.files],
                "buttons": [
                    [{"label": button.label, "data": button.data} for button in row]
                    for row in payload.buttons
                ],
                "metadata": dict(payload.metadata),
            },
            "execution": {
                "status": str(execution.status),
                "error": execution.error,
                "finished_at": _timestamp(execution.finished_at),
            },
            "delivery": {
                "attempts": delivery.attempts,
                "next_attempt_at": _timestamp(delivery.next_attempt_at),
                "last_error": delivery.last_error,
                "delivered_at": _timestamp(delivery.delivered_at),
                "message_ids": list(delivery.message_ids),
                "fallback_used": delivery.fallback_used,
                "fallback_reason": delivery.fallback_reason,
                "requeues": delivery.requeues,
            },
        }

    def to_json(self) -> str:
        try:
            return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        except (TypeError, ValueError) as exc:
            raise EnvelopeError("payload.metadata", f"not JSON-serialisable: {exc}") from None

    @classmethod
    def from_dict(cls, data: object) -> Envelope:
        """Build an envelope from parsed JSON; EnvelopeError names the first bad field."""
        doc = Fields(data)
        version = doc.integer("version")
        if version != FORMAT_VERSION:
            raise EnvelopeError("version", f"{version} is not a format this ductor reads (1)")
        routing = doc.child("routing")
        payload = doc.child("payload", optional=True)
        execution = doc.child("execution", optional=True)
        delivery = doc.child("delivery", optional=True)
        return cls(
            id=validate_envelope_id(doc.string("id")),
            created_at=doc.timestamp("created_at"),
            agent=doc.string("agent"),
            kind=_enum(Kind, doc.string("kind"), "kind"),
            routing=Routing(
                transport=routing.string("transport"),
                chat_id=routing.optional_id("chat_id"),
                topic_id=routing.optional_id("topic_id"),
                origin=routing.string("origin", ""),
                broadcast=routing.boolean("broadcast", False),
            ),
            payload=Payload(
                text=payload.string("text", ""),
                files=tuple(_files(payload.array("files"), payload.path("files"))),
                buttons=tuple(_button_rows(payload.array("buttons"), payload.path("buttons"))),
                metadata=payload.mapping("metadata"),
            ),
            execution=Execution(
                status=_enum(
                    ExecutionStatus, execution.string("status", "ok"), execution.path("status")
                ),
                error=execution.optional_string("error"),
                finished_at=execution.optional_timestamp("finished_at"),
            ),
            delivery=Delivery(
                attempts=delivery.integer("attempts", 0),
                next_attempt_at=delivery.optional_timestamp("next_attempt_at"),
                last_error=delivery.optional_string("last_error"),
                delivered_at=delivery.optional_timestamp("delivered_at"),
                message_ids=tuple(
                    id_value(value, f"{delivery.path('message_ids')}[{index}]")
                    for index, value in enumerate(delivery.array("message_ids"))
                ),
                fallback_used=delivery.boolean("fallback_used", False),
                fallback_reason=delivery.optional_string("fallback_reason"),
                requeues=delivery.integer("requeues", 0),
            ),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            data = json.loads(text)
        except UnicodeDecodeError as exc:
            raise EnvelopeError("(document)", f"not UTF-8 (bad byte at {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise EnvelopeError(
                "(document)", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise EnvelopeError("(document)", "JSON nested too deeply") from None
        return cls.from_dict(data)


def _enum(enum: type[_E], value: str, field: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(member.value for member in enum)
        raise EnvelopeError(field, f"{value!r} is not one of: {known}") from None


def _files(values: Sequence[object], field: str) -> Iterable[Path]:
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise EnvelopeError(f"{field}[{index}]", f"expected a path, got {describe(value)}")
        yield Path(value)


def _button_rows(rows: Sequence[object], field: str) -> Iterable[tuple[Button, ...]]:
    for row_index, row in enumerate(rows):
        if not isinstance(row, list):
            raise EnvelopeError(f"{field}[{row_index}]", f"expected a row, got {describe(row)}")
        buttons = []
        for index, value in enumerate(row):
            button = Fields(value, f"{field}[{row_index}][{index}]")
            buttons.append(Button(label=button.string("label"), data=button.string("data")))
        yield tuple(buttons)

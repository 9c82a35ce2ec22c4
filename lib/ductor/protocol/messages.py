"""Requests a client sends to the agent socket, and the vocabulary both sides share.

Everything here is plain data: frozen dataclasses and ``StrEnum``s that turn into one
JSON object each and back. Parsing names the bad field, so an agent can answer a wrong
request with an ``error`` event that says what to fix. docs/protocol.md is the
reference for the wire format.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Final

from ductor.errors import DuctorError
from ductor.jsontypes import describe

PROTOCOL_VERSION: Final = 1
DEFAULT_FRAME_MAX: Final = 1024 * 1024
"""Longest line (without its newline) either side accepts; ``limits.frame_max_bytes``."""

SESSION_KEY_MAX: Final = 255

_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TRANSPORT = re.compile(r"[a-z][a-z0-9_-]{0,15}")
_INTEGER = re.compile(r"-?[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestType(StrEnum):
    MESSAGE = "message"
    COMMAND = "command"
    BUTTON = "button"
    ABORT = "abort"
    CANCEL = "cancel"
    INJECT = "inject"
    HEARTBEAT = "heartbeat"
    ASK = "ask"
    STATUS = "status"
    HEALTH = "health"
    ACK = "ack"
    TASK = "task"  # a background-task verb from the workspace's tool scripts
    AGENT = "agent"  # an inter-agent verb from the workspace's agent tool scripts
    LISTEN = "listen"  # a transport shows the turns the agent starts itself (text: which)


class EventType(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    TEXT = "text"
    THINKING = "thinking"
    TOOL = "tool"
    STATUS = "status"
    BUTTONS = "buttons"
    FILE = "file"
    FINAL = "final"
    ERROR = "error"


TERMINAL_EVENTS: Final = frozenset({EventType.FINAL, EventType.ERROR})


class AbortMode(StrEnum):
    STOP = "stop"  # SIGTERM the CLI's process group, drop the session's queue
    INTERRUPT = "interrupt"  # SIGINT the CLI, the queue goes on
    STOP_ALL = "stop_all"  # every CLI process of the agent


class QueueReason(StrEnum):
    """Why a ``queued`` request waits (its ``reason`` field)."""

    SESSION_BUSY = "session_busy"  # behind an earlier message of the same session
    NO_FREE_SLOT = "no_free_slot"  # every ``limits.max_parallel_sessions`` slot is taken


class ErrorCode(StrEnum):
    """The ``kind`` of an ``error`` event."""

    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"
    BUSY = "busy"
    INTERNAL = "internal"
    SHUTTING_DOWN = "shutting_down"
    # what the CLI run itself ended with
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    CONTEXT_TOO_LONG = "context_too_long"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    OTHER = "other"


class ProtocolError(DuctorError):
    """A line that breaks the protocol; ``field`` names the offending field.

    ``request_id`` is the id of the request the line carried, when it had a valid one,
    so an agent can address its ``error`` event to it.
    """

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.request_id = ""
        super().__init__(f"{field}: {message}" if field else message)


def _bad(field: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message, field)


def check_version(data: Mapping[str, object]) -> None:
    """Refuse a line whose ``v`` is missing or not :data:`PROTOCOL_VERSION`."""
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        shown = "missing" if version is None else repr(version)
        error = ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {shown} is not supported; this side speaks version"
            f" {PROTOCOL_VERSION}",
            "v",
        )
        error.request_id = request_id_of(data)
        raise error


def new_request_id() -> str:
    return secrets.token_hex(8)


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def request_id_of(data: object) -> str:
    """The ``id`` of a decoded line when it is a valid request id, else ``""``."""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and is_request_id(value) else ""


@dataclass(frozen=True)
class User:
    id: str
    name: str = ""


@dataclass(frozen=True)
class SessionKey:
    """``transport:chat[:topic]``; build one from text with :func:`parse_session_key`."""

    transport: str
    chat: str
    topic: str | None = None

    @property
    def key(self) -> str:
        base = f"{self.transport}:{self.chat}"
        return base if self.topic is None else f"{base}:{self.topic}"

    def __str__(self) -> str:
        return self.key


def parse_session_key(text: str) -> SessionKey:
    """Parse ``tg:123456``, ``tg:-100123:7``, ``mx:!room:server``,
    ``mx:!room:server:$root``, ``cli:alice``.

    Telegram keys carry integer chat and topic ids (normalised: ``tg:+05`` is refused,
    ``tg:007`` becomes ``tg:7``). A Matrix room id has colons of its own; a thread of the
    room is its own session, keyed by the event id of the thread's root, which starts
    with ``$``. For every other transport the whole rest is the chat.
    """

    def bad(problem: str) -> ProtocolError:
        return _bad(
            "session",
            f"{text!r} is not a session key: {problem} (expected transport:chat[:topic],"
            " e.g. tg:123456 or cli:alice)",
        )

    if not isinstance(text, str):
        raise _bad("session", f"expected a string, got {describe(text)}")
    if len(text) > SESSION_KEY_MAX:
        raise bad(f"longer than {SESSION_KEY_MAX} characters")
    if _CONTROL.search(text):
        raise bad("contains control characters")
    transport, sep, rest = text.partition(":")
    if not sep:
        raise bad("no ':' after the transport")
    if not _TRANSPORT.fullmatch(transport):
        raise bad("the transport must be 1-16 of a-z 0-9 _ - starting with a letter")
    if not rest:
        raise bad("the chat is empty")
    if transport == "mx":
        room, sep, thread = rest.partition(":$")
        if sep and not (room and thread):
            raise bad("a Matrix thread is :$<event id> after the room id")
        return SessionKey(transport, room, f"${thread}" if sep else None)
    if transport != "tg":
        return SessionKey(transport, rest)
    chat, sep, topic = rest.partition(":")
    if not _INTEGER.fullmatch(chat):
        raise bad("a Telegram chat id is an integer")
    if sep and not (_INTEGER.fullmatch(topic) and not topic.startswith("-")):
        raise bad("a Telegram topic id is a positive integer")
    return SessionKey(transport, str(int(chat)), str(int(topic)) if sep else None)


class _Fields:
    """Typed getters over a request object that name the bad field."""

    def __init__(self, data: Mapping[str, object]) -> None:
        self.data = data

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise _bad(key, f"expected a string, got {describe(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.string(key)

    def id_text(self, key: str) -> str:
        """A transport id: Telegram sends integers, Matrix strings; kept as text."""
        value = self.data.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _bad(key, f"expected an integer or a string, got {describe(value)}")
        return str(value)

    def optional_bool(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise _bad(key, f"expected true or false, got {describe(value)}")

    def files(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _bad(key, f"expected a list of absolute paths, got {describe(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise _bad(f"{key}[{index}]", f"expected a path, got {describe(item)}")
        return tuple(value)

    def user(self, key: str) -> User | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _bad(key, f"expected an object with id and name, got {describe(value)}")
        user_id = value.get("id")
        if user_id is None or user_id == "":
            raise _bad(f"{key}.id", "required")
        if isinstance(user_id, bool) or not isinstance(user_id, int | str):
            raise _bad(f"{key}.id", f"expected an integer or a string, got {describe(user_id)}")
        name = value.get("name")
        if name is not None and not isinstance(name, str):
            raise _bad(f"{key}.name", f"expected a string, got {describe(name)}")
        return User(str(user_id), name or "")

    def mode(self, key: str) -> AbortMode | None:
        value = self.string(key)
        if not value:
            return None
        try:
            return AbortMode(value)
        except ValueError:
            choices = ", ".join(mode.value for mode in AbortMode)
            raise _bad(key, f"{value!r} is not one of {choices}") from None


@dataclass(frozen=True)
class Request:
    """One request line; constructing one checks what its type needs."""

    type: RequestType
    id: str
    session: str | None = None
    text: str = ""
    quoted: str = ""
    files: tuple[str, ...] = ()
    user: User | None = None
    data: str = ""
    mode: AbortMode | None = None
    entry: str = ""
    want_ack: bool = False
    origin: str = ""
    sender: str = ""
    chat_is_private: bool | None = None
    message_id: str = ""
    topic_name: str = ""  # the forum topic's name, where the transport knows it

    def __post_init__(self) -> None:
        if not is_request_id(self.id):
            raise _bad("id", f"{self.id!r} is not 1-64 characters of A-Z a-z 0-9 _ . : -")
        if self.session is not None:
            parse_session_key(self.session)
        for index, path in enumerate(self.files):
            if "\0" in path or not PurePosixPath(path).is_absolute():
                raise _bad(f"files[{index}]", f"{path!r} is not an absolute path")
        self._check_required()

    def _check_required(self) -> None:
        kind = self.type
        needs_session = {
            RequestType.MESSAGE,
            RequestType.COMMAND,
            RequestType.BUTTON,
            RequestType.CANCEL,
            RequestType.INJECT,
            RequestType.HEARTBEAT,
        }
        if kind is RequestType.ABORT:
            if self.mode is None:
                raise _bad("mode", "required for an abort request (stop, interrupt, stop_all)")
            if self.mode is not AbortMode.STOP_ALL and self.session is None:
                raise _bad("session", f"required for an abort request with mode {self.mode}")
        if kind in needs_session and self.session is None:
            raise _bad("session", f"required for a {kind} request")
        if kind is RequestType.MESSAGE and not (self.text or self.files):
            raise _bad("text", "a message request needs text or files")
        if kind is RequestType.COMMAND and not self.text.startswith("/"):
            raise _bad("text", "a command starts with '/'")
        if kind is RequestType.BUTTON and not self.data:
            raise _bad("data", "required for a button request (the button's callback data)")
        if kind in (RequestType.INJECT, RequestType.ASK) and not self.text:
            raise _bad("text", f"required for an {kind} request")
        if kind is RequestType.ASK and not self.sender:
            raise _bad("sender", "required for an ask request (the asking agent's name)")
        if kind is RequestType.CANCEL and not self.entry:
            raise _bad("entry", "required for a cancel request (the queued entry's id)")
        if kind is RequestType.AGENT and not (self.text and self.sender):
            raise _bad("text", "an agent request needs the verb (text) and the sender")
        if kind is RequestType.TASK and not self.text:
            raise _bad("text", "required for a task request (the verb: create, list, ...)")
        if kind is RequestType.LISTEN and not self.text:
            raise _bad("text", "required for a listen request (the transport: tg, mx, ...)")
        if kind is RequestType.ACK and not self.entry:
            raise _bad("entry", "required for an ack request (the turn id of the final event)")

    @property
    def session_key(self) -> SessionKey | None:
        return None if self.session is None else parse_session_key(self.session)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"v": PROTOCOL_VERSION, "type": str(self.type), "id": self.id}
        if self.session is not None:
            out["session"] = self.session
        for key in (
            "text",
            "quoted",
            "data",
            "entry",
            "origin",
            "sender",
            "message_id",
            "topic_name",
        ):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.files:
            out["files"] = list(self.files)
        if self.user is not None:
            out["user"] = {"id": self.user.id, "name": self.user.name}
        if self.mode is not None:
            out["mode"] = str(self.mode)
        if self.want_ack:
            out["want_ack"] = True
        if self.chat_is_private is not None:
            out["chat_is_private"] = self.chat_is_private
        return out

    def encode(self) -> bytes:
        return encode_line(self.to_dict())

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Parse a decoded request line; a ``v`` other than 1 is refused, a missing one
        is not (:func:`ductor.protocol.framing.decode_line` checks it on the wire)."""
        if not isinstance(data, dict):
            raise _bad("(request)", f"expected an object, got {describe(data)}")
        try:
            if "v" in data:
                check_version(data)
            return cls._parse(data)
        except ProtocolError as exc:
            exc.request_id = request_id_of(data)
            raise

    @classmethod
    def _parse(cls, data: Mapping[str, object]) -> Request:
        fields = _Fields(data)
        raw_type = data.get("type")
        if raw_type is None:
            raise _bad("type", "required")
        if not isinstance(raw_type, str):
            raise _bad("type", f"expected a string, got {describe(raw_type)}")
        try:
            kind = RequestType(raw_type)
        except ValueError:
            choices = ", ".join(t.value for t in RequestType)
            raise _bad("type", f"{raw_type!r} is not one of {choices}") from None
        request_id = data.get("id")
        if request_id is None:
            raise _bad("id", "required")
        if not isinstance(request_id, str):
            raise _bad("id", f"expected a string, got {describe(request_id)}")
        session = fields.optional_string("session")
        want_ack = fields.optional_bool("want_ack")
        return cls(
            type=kind,
            id=request_id,
            session=None if session is None else parse_session_key(session).key,
            text=fields.string("text"),
            quoted=fields.string("quoted"),
            files=fields.files("files"),
            user=fields.user("user"),
            data=fields.string("data"),
            mode=fields.mode("mode"),
            entry=fields.string("entry"),
            want_ack=bool(want_ack),
            origin=fields.string("origin"),
            sender=fields.string("sender"),
            chat_is_private=fields.optional_bool("chat_is_private"),
            message_id=fields.id_text("message_id"),
            topic_name=fields.string("topic_name"),
        )


def encode_line(obj: Mapping[str, object]) -> bytes:
    """One JSON object as one UTF-8 line with its ``\\n``.

    Text that cannot be UTF-8 (lone surrogates from undecodable file names) is sent
    as ASCII escapes instead of failing the whole line.
    """
    try:
        return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    except UnicodeEncodeError:
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

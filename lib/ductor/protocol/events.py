"""Events the agent answers a request with, one JSON line each.

Build them with the :class:`Events` constructors (``Events.text(rid, "Hello")``),
read them with the typed getters of :class:`Event`. A decoded event is checked against
the fields docs/protocol.md documents for its type; fields nobody documents pass
through untouched, so the agent can add some without breaking older clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from ductor.jsontypes import describe
from ductor.protocol.messages import (
    PROTOCOL_VERSION,
    TERMINAL_EVENTS,
    ErrorCode,
    EventType,
    ProtocolError,
    QueueReason,
    check_version,
    encode_line,
)

_RESERVED: Final = frozenset({"v", "event", "id"})
_EVENT_NAMES: Final = frozenset(event.value for event in EventType)


@dataclass(frozen=True)
class Button:
    """An abstract button: transports draw it, a press sends ``data`` back."""

    label: str
    data: str

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "data": self.data}


class LabelledButton(Protocol):
    """Anything with a label and callback data (ours, or ``ductor.spool.Button``)."""

    @property
    def label(self) -> str: ...

    @property
    def data(self) -> str: ...


ButtonLike = LabelledButton | Mapping[str, str]
Rows = Sequence[Sequence[ButtonLike]]


def rows_to_json(rows: Rows) -> list[list[dict[str, str]]]:
    def one(button: ButtonLike) -> dict[str, str]:
        if isinstance(button, Mapping):
            return {"label": str(button["label"]), "data": str(button["data"])}
        return {"label": button.label, "data": button.data}

    return [[one(button) for button in row] for row in rows]


def _bad(field_name: str, message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message, field_name)


# -- what each documented field must hold ------------------------------------------------

Check = Callable[[object, str], None]


def _string(value: object, where: str) -> None:
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {describe(value)}")


def _optional_string(value: object, where: str) -> None:
    if value is not None and not isinstance(value, str):
        raise _bad(where, f"expected a string or null, got {describe(value)}")


def _integer(value: object, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, f"expected an integer, got {describe(value)}")


def _optional_integer(value: object, where: str) -> None:
    if value is not None:
        _integer(value, where)


def _optional_number(value: object, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _bad(where, f"expected a number or null, got {describe(value)}")


def _boolean(value: object, where: str) -> None:
    if not isinstance(value, bool):
        raise _bad(where, f"expected true or false, got {describe(value)}")


def _strings(value: object, where: str) -> None:
    if not isinstance(value, list):
        raise _bad(where, f"expected a list of strings, got {describe(value)}")
    for index, item in enumerate(value):
        _string(item, f"{where}[{index}]")


def _rows(value: object, where: str) -> None:
    if not isinstance(value, list):
        raise _bad(where, f"expected a list of button rows, got {describe(value)}")
    for r, row in enumerate(value):
        if not isinstance(row, list):
            raise _bad(f"{where}[{r}]", f"expected a list of buttons, got {describe(row)}")
        for b, button in enumerate(row):
            at = f"{where}[{r}][{b}]"
            if not isinstance(button, dict):
                raise _bad(at, f"expected an object with label and data, got {describe(button)}")
            for key in ("label", "data"):
                if key not in button:
                    raise _bad(f"{at}.{key}", "required")
                _string(button[key], f"{at}.{key}")


def _position(value: object, where: str) -> None:
    _integer(value, where)
    assert isinstance(value, int)
    if value < 1:
        raise _bad(where, f"a queue position starts at 1, got {value}")


# field -> (check, required)
_SCHEMA: Final[Mapping[EventType, Mapping[str, tuple[Check, bool]]]] = {
    EventType.ACCEPTED: {"turn": (_string, True), "session": (_string, False)},
    EventType.QUEUED: {
        "position": (_position, True),
        "entry": (_string, True),
        "session": (_string, False),
        "reason": (_string, False),
        "text": (_string, False),
    },
    EventType.TEXT: {"text": (_string, True)},
    EventType.THINKING: {"text": (_string, True)},
    EventType.TOOL: {"name": (_string, True), "detail": (_string, False)},
    EventType.STATUS: {"status": (_string, True), "text": (_string, False)},
    EventType.BUTTONS: {"rows": (_rows, True)},
    EventType.FILE: {"path": (_string, True)},
    EventType.FINAL: {
        "text": (_string, False),
        "turn": (_string, False),
        "session": (_string, False),
        "provider": (_string, False),
        "model": (_string, False),
        "session_id": (_optional_string, False),  # null: the CLI never gave one
        "input_tokens": (_optional_integer, False),
        "output_tokens": (_optional_integer, False),
        "cost_usd": (_optional_number, False),
        "duration_ms": (_optional_integer, False),
        "buttons": (_rows, False),
        "files": (_strings, False),
        "is_error": (_boolean, False),
        "notice": (_string, False),
    },
    EventType.ERROR: {"kind": (_string, True), "text": (_string, True), "turn": (_string, False)},
}


_FINAL_DEFAULTS: Final[Mapping[str, object]] = {
    "text": "",
    "turn": "",
    "session": "",
    "provider": "",
    "model": "",
    "session_id": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cost_usd": None,
    "duration_ms": None,
    "buttons": [],
    "files": [],
    "is_error": False,
    "notice": "",
}


@dataclass(frozen=True)
class Event:
    """One event line: its type, the id of the request it answers, its other fields."""

    type: EventType
    request_id: str
    data: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = _RESERVED & set(self.data)
        if clash:
            raise ValueError(f"event data must not set {', '.join(sorted(clash))}")
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    @property
    def text(self) -> str:
        return self.get_str("text")

    def get_str(self, key: str) -> str:
        value = self.data.get(key)
        return value if isinstance(value, str) else ""

    def get_int(self, key: str) -> int | None:
        value = self.data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get_float(self, key: str) -> float | None:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def get_bool(self, key: str) -> bool:
        return self.data.get(key) is True

    def get_strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if not isinstance(value, list):
            return []
        return [item for item in value if isinstance(item, str)]

    def button_rows(self) -> list[list[Button]]:
        """The ``rows`` of a ``buttons`` event or the ``buttons`` of a ``final``."""
        value = self.data.get("rows" if self.type is EventType.BUTTONS else "buttons")
        if not isinstance(value, list):
            return []
        rows: list[list[Button]] = []
        for row in value:
            if not isinstance(row, list):
                continue
            rows.append(
                [
                    Button(str(b.get("label", "")), str(b.get("data", "")))
                    for b in row
                    if isinstance(b, dict)
                ]
            )
        return rows

    def to_dict(self) -> dict[str, object]:
        return {"v": PROTOCOL_VERSION, "event": str(self.type), "id": self.request_id, **self.data}

    def encode(self) -> bytes:
        return encode_line(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object) -> Event:
        """Parse a decoded event line, checking the documented fields of its type."""
        if not isinstance(obj, dict):
            raise _bad("(event)", f"expected an object, got {describe(obj)}")
        if "v" in obj:
            check_version(obj)
        raw_type = obj.get("event")
        if raw_type is None:
            raise _bad("event", "required")
        if not isinstance(raw_type, str):
            raise _bad("event", f"expected a string, got {describe(raw_type)}")
        try:
            kind = EventType(raw_type)
        except ValueError:
            raise _bad("event", f"{raw_type!r} is not a known event type") from None
        request_id = obj.get("id", "")
        _string(request_id, "id")
        assert isinstance(request_id, str)
        data = {key: value for key, value in obj.items() if key not in _RESERVED}
        for key, (check, required) in _SCHEMA[kind].items():
            if key in data:
                check(data[key], key)
            elif required:
                raise _bad(key, f"required in a {kind} event")
        return cls(kind, request_id, data)


def is_known_event(obj: Mapping[str, object]) -> bool:
    """Whether a decoded line names an event type this version knows (clients skip
    unknown ones, so the agent can add event types within version 1)."""
    value = obj.get("event")
    return isinstance(value, str) and value in _EVENT_NAMES


class Events:
    """Constructors for every event type."""

    @staticmethod
    def accepted(request_id: str, turn: str, session: str) -> Event:
        return Event(EventType.ACCEPTED, request_id, {"turn": turn, "session": session})

    @staticmethod
    def queued(
        request_id: str,
        position: int,
        entry: str,
        session: str,
        *,
        reason: str = QueueReason.SESSION_BUSY,
        text: str = "",
    ) -> Event:
        data: dict[str, object] = {
            "position": position,
            "entry": entry,
            "session": session,
            "reason": str(reason),
        }
        if text:
            data["text"] = text
        return Event(EventType.QUEUED, request_id, data)

    @staticmethod
    def text(request_id: str, text: str) -> Event:
        return Event(EventType.TEXT, request_id, {"text": text})

    @staticmethod
    def thinking(request_id: str, text: str) -> Event:
        return Event(EventType.THINKING, request_id, {"text": text})

    @staticmethod
    def tool(request_id: str, name: str, detail: str = "") -> Event:
        return Event(EventType.TOOL, request_id, {"name": name, "detail": detail})

    @staticmethod
    def status(request_id: str, status: str, text: str = "") -> Event:
        return Event(EventType.STATUS, request_id, {"status": status, "text": text})

    @staticmethod
    def buttons(request_id: str, rows: Rows) -> Event:
        return Event(EventType.BUTTONS, request_id, {"rows": rows_to_json(rows)})

    @staticmethod
    def file(request_id: str, path: str) -> Event:
        return Event(EventType.FILE, request_id, {"path": path})

    @staticmethod
    def final(request_id: str, **fields: object) -> Event:
        """The terminal answer; documented fields left out get their empty defaults.

        ``buttons`` may hold :class:`Button` objects; extra fields pass through (the
        answer to ``status`` and ``health`` carries its details this way).
        """
        data: dict[str, object] = {**_FINAL_DEFAULTS, **fields}
        buttons = data["buttons"]
        if isinstance(buttons, list | tuple):
            data["buttons"] = rows_to_json(buttons)
        files = data["files"]
        if isinstance(files, tuple):
            data["files"] = list(files)
        return Event(EventType.FINAL, request_id, data)

    @staticmethod
    def error(request_id: str, code: ErrorCode | str, text: str, **fields: object) -> Event:
        return Event(EventType.ERROR, request_id, {"kind": str(code), "text": text, **fields})

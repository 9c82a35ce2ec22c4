"""Typed getters over parsed JSON that name the bad field when a file is wrong.

``Fields(data, "routing").integer("chat_id")`` returns an int or raises
``EnvelopeError("routing.chat_id", "expected an integer, got a list")``. Optional fields
take a default when missing; a present field of the wrong type is always an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from ductor.jsontypes import describe
from ductor.spool.errors import EnvelopeError

_MISSING: Final = object()


def parse_timestamp(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise EnvelopeError(field, f"expected an ISO 8601 timestamp, got {describe(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EnvelopeError(field, f"expected an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise EnvelopeError(field, f"timestamp {value!r} has no timezone")
    return parsed


def id_value(value: object, field: str) -> int | str:
    """A chat, topic or message id: Telegram uses integers, Matrix strings."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise EnvelopeError(field, f"expected an integer or a string, got {describe(value)}")
    if isinstance(value, str) and not value:
        raise EnvelopeError(field, "must not be empty")
    return value


class Fields:
    """One JSON object and its dotted path inside the document."""

    def __init__(self, data: object, where: str = "") -> None:
        if not isinstance(data, dict):
            raise EnvelopeError(where or "(document)", f"expected an object, got {describe(data)}")
        self.data: Mapping[str, object] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: object) -> object:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise EnvelopeError(self.path(key), "missing")
            return default
        return value

    def string(self, key: str, default: object = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise EnvelopeError(self.path(key), f"expected a string, got {describe(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key, None)
        if value is None:
            return None
        return self.string(key)

    def integer(self, key: str, default: object = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EnvelopeError(self.path(key), f"expected an integer, got {describe(value)}")
        return value

    def boolean(self, key: str, default: object = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise EnvelopeError(self.path(key), f"expected true or false, got {describe(value)}")
        return value

    def optional_id(self, key: str) -> int | str | None:
        value = self._get(key, None)
        if value is None:
            return None
        return id_value(value, self.path(key))

    def timestamp(self, key: str) -> datetime:
        return parse_timestamp(self._get(key, _MISSING), self.path(key))

    def optional_timestamp(self, key: str) -> datetime | None:
        value = self._get(key, None)
        if value is None:
            return None
        return parse_timestamp(value, self.path(key))

    def child(self, key: str, *, optional: bool = False) -> Fields:
        value = self._get(key, {} if optional else _MISSING)
        return Fields(value, self.path(key))

    def array(self, key: str) -> list[object]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise EnvelopeError(self.path(key), f"expected a list, got {describe(value)}")
        return value

    def mapping(self, key: str) -> dict[str, object]:
        value = self._get(key, {})
        if not isinstance(value, dict):
            raise EnvelopeError(self.path(key), f"expected an object, got {describe(value)}")
        return value

"""Rules for values beyond their type, and the checks that a range cannot express.

Each check takes an already type-checked value and returns ``None`` when it is fine, or
the "expected ..." half of an error message when it is not.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

Check = Callable[[object], str | None]
T = TypeVar("T")
INT64_MAX = 2**63 - 1  # TOML integers are 64-bit

_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
_MATRIX_USER = re.compile(r"^@[^:\s]+:\S+$")
# systemd MemoryMax=: bytes with an optional 1024-based suffix, a percentage, or infinity.
_MEMORY_MAX = re.compile(r"^(infinity|\d+(\.\d+)?[KMGT]?|\d+(\.\d+)?%)$")


def non_empty(value: object) -> str | None:
    if isinstance(value, str) and not value.strip():
        return "expected a non-empty string"
    return None


def listen_address(value: object) -> str | None:
    """``""``, an absolute Unix socket path, or ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    if not isinstance(value, str) or not value or value.startswith("/"):
        return None
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 1 <= int(port) <= 65535:
        return None
    return "expected HOST:PORT (e.g. 127.0.0.1:8742) or an absolute Unix socket path"


def time_zone(value: object) -> str | None:
    if not isinstance(value, str) or value == "":
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return (
            'expected an IANA time zone name such as "Europe/Berlin"'
            ' (or "" for the system time zone)'
        )
    return None


def http_url(value: object) -> str | None:
    if isinstance(value, str) and not _HTTP_URL.match(value):
        return 'expected an http:// or https:// URL such as "https://api.telegram.org"'
    return None


def optional_http_url(value: object) -> str | None:
    if value == "":
        return None
    if isinstance(value, str) and not _HTTP_URL.match(value):
        return 'expected an http:// or https:// URL such as "https://matrix.org" (or "")'
    return None


def matrix_user_id(value: object) -> str | None:
    if value == "" or not isinstance(value, str) or _MATRIX_USER.match(value):
        return None
    return 'expected a full Matrix user id such as "@ductor:example.org" (or "")'


def memory_max(value: object) -> str | None:
    if value == "" or not isinstance(value, str) or _MEMORY_MAX.match(value):
        return None
    return (
        'expected a systemd MemoryMax= value such as "2G", "512M", "80%" or "infinity"'
        ' (or "" for no limit)'
    )


def workspace_relative(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    path = PurePosixPath(value)
    if value == "" or path.is_absolute() or ".." in path.parts or value.startswith("~"):
        return 'expected a path relative to the workspace, such as "notes/STYLE.md"'
    return None


def placeholders(*allowed: str) -> Check:
    """Only ``{name}`` placeholders from ``allowed``; literal braces written ``{{ }}``."""
    names = ", ".join("{" + name + "}" for name in allowed)
    expected = f"expected a text whose only placeholders are {names} (write {{{{ }}}} for a brace)"

    def check(value: object) -> str | None:
        if not isinstance(value, str):
            return None
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError:
            return expected
        if any(name not in allowed for name in fields):
            return expected
        return None

    return check


HOUR = (0, 23)


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type."""

    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    check: Check | None = None
    unique: bool = False


NO_RULE = Rule()


def setting(
    default: T,
    *,
    choices: tuple[str, ...] = (),
    min: float | None = None,
    max: float | None = None,
    check: Check | None = None,
    unique: bool = False,
) -> T:
    rule = Rule(choices=choices, min=min, max=max, check=check, unique=unique)
    value: T = field(default=default, metadata={"rule": rule})
    return value


def hour(default: int) -> int:
    return setting(default, min=HOUR[0], max=HOUR[1])

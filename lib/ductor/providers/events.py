"""The normalised event model every provider's stream is turned into.

One turn of a CLI becomes a sequence of these events. The contract, whatever the CLI:

- at most one :class:`SessionStarted`, as early as the CLI reveals its session id;
- any number of deltas, tool events and status events;
- exactly one :class:`Result`, always the last event; when the turn failed it has
  ``is_error=True`` and an :class:`Error` comes immediately before it.

``Result.text`` is the final answer: the text streamed since the last tool use. Text
streamed before a tool use was shown to the user as it came and is not repeated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import ClassVar


class EventKind(StrEnum):
    SESSION_STARTED = "session_started"
    TEXT_DELTA = "text_delta"
    THINKING_DELTA = "thinking_delta"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    STATUS = "status"
    COMPACTION = "compaction"
    RESULT = "result"
    ERROR = "error"


class ErrorKind(StrEnum):
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    CONTEXT_TOO_LONG = "context_too_long"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    OTHER = "other"


class StatusKind(StrEnum):
    REQUESTING = "requesting"  # a model request is on its way
    RETRYING = "retrying"  # the CLI retries a failed API call
    COMPACTING = "compacting"  # the CLI is compacting its context
    PERMISSION_DENIED = "permission_denied"  # a tool call was refused by the CLI
    WARNING = "warning"  # something the user may want to know, the turn goes on
    OTHER = "other"


class ToolName(StrEnum):
    """Platform-neutral tool names; a tool ductor does not know keeps its raw name."""

    SHELL = "Shell"
    READ = "Read"
    WRITE = "Write"
    EDIT = "Edit"
    SEARCH = "Search"  # content search (grep)
    FIND = "Find"  # file name search (glob)
    LIST = "List"
    WEB_FETCH = "WebFetch"
    WEB_SEARCH = "WebSearch"
    AGENT = "Agent"
    CHECKLIST = "Todo"
    PLAN = "Plan"
    MEMORY = "Memory"


@dataclass(frozen=True)
class _Event:
    kind: ClassVar[EventKind]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict with the event kind under ``"kind"``."""
        data: dict[str, object] = {"kind": str(self.kind)}
        data.update(asdict(self))
        return data


@dataclass(frozen=True)
class SessionStarted(_Event):
    kind: ClassVar[EventKind] = EventKind.SESSION_STARTED
    session_id: str
    model: str = ""


@dataclass(frozen=True)
class TextDelta(_Event):
    kind: ClassVar[EventKind] = EventKind.TEXT_DELTA
    text: str


@dataclass(frozen=True)
class ThinkingDelta(_Event):
    kind: ClassVar[EventKind] = EventKind.THINKING_DELTA
    text: str


@dataclass(frozen=True)
class ToolUse(_Event):
    kind: ClassVar[EventKind] = EventKind.TOOL_USE
    tool_id: str
    name: str  # a ToolName value, or the raw name for tools ductor does not know
    raw_name: str
    detail: str = ""  # one human line: the command, the path, the pattern, the URL
    input: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolResult(_Event):
    kind: ClassVar[EventKind] = EventKind.TOOL_RESULT
    tool_id: str
    output: str = ""
    is_error: bool = False


@dataclass(frozen=True)
class Status(_Event):
    kind: ClassVar[EventKind] = EventKind.STATUS
    status: StatusKind
    text: str = ""


@dataclass(frozen=True)
class Compaction(_Event):
    kind: ClassVar[EventKind] = EventKind.COMPACTION
    trigger: str = ""  # "auto" or "manual"
    pre_tokens: int | None = None


@dataclass(frozen=True)
class Result(_Event):
    kind: ClassVar[EventKind] = EventKind.RESULT
    text: str
    session_id: str | None = None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None  # this turn only; None when the CLI reports no cost
    duration_ms: int | None = None
    num_turns: int | None = None
    is_error: bool = False


@dataclass(frozen=True)
class Error(_Event):
    kind: ClassVar[EventKind] = EventKind.ERROR
    error: ErrorKind
    text: str
    http_status: int | None = None


Event = (
    SessionStarted
    | TextDelta
    | ThinkingDelta
    | ToolUse
    | ToolResult
    | Status
    | Compaction
    | Result
    | Error
)

# Exit statuses that mean "stopped by a signal": negative from Popen, 128+N from a shell
# or from a CLI that re-raises the signal as its exit code (Claude exits 143 on SIGTERM).
SIGNAL_EXIT_CODES = frozenset({-2, -9, -15, 130, 137, 143})

_CONTEXT_WORDS = re.compile(
    r"prompt is too long|context[ _-]?(length|window)|too many tokens|input is too long"
    r"|maximum context|exceeds the context",
    re.IGNORECASE,
)
_RATE_WORDS = re.compile(
    r"rate[ _-]?limit|too many requests|resource[ _]exhausted|quota|overloaded",
    re.IGNORECASE,
)
_AUTH_WORDS = re.compile(
    r"unauthori[sz]ed|unauthenticated|authenticat|invalid[ _-]?api[ _-]?key|not logged in"
    r"|permission[ _]denied|forbidden|/login",
    re.IGNORECASE,
)


def error_kind_for_status(status: int | None) -> ErrorKind | None:
    """The error kind an HTTP status of a model API means, or None when it says nothing."""
    if status in (401, 403):
        return ErrorKind.AUTH
    if status in (429, 529):  # 529: Anthropic "overloaded", retry later like a 429
        return ErrorKind.RATE_LIMIT
    if status == 413:
        return ErrorKind.CONTEXT_TOO_LONG
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    return None


def error_kind_for_text(text: str) -> ErrorKind | None:
    """Guess the error kind from an error message; None when nothing matches."""
    if _CONTEXT_WORDS.search(text):
        return ErrorKind.CONTEXT_TOO_LONG
    if _RATE_WORDS.search(text):
        return ErrorKind.RATE_LIMIT
    if _AUTH_WORDS.search(text):
        return ErrorKind.AUTH
    return None


def classify_error(text: str, http_status: int | None = None) -> ErrorKind:
    """The error kind for a failure, from its HTTP status first, then from its text."""
    return error_kind_for_status(http_status) or error_kind_for_text(text) or ErrorKind.OTHER


_STATUS_IN_TEXT = re.compile(
    r"(?:\bstatus:?\s*|\bHTTP\s+|\"code\":\s*|\berror:?\s+)([1-5]\d\d)\b", re.IGNORECASE
)


def http_status_in(text: str) -> int | None:
    """The first HTTP status a CLI's error message mentions ("status 401", "(HTTP 429)")."""
    match = _STATUS_IN_TEXT.search(text)
    return int(match.group(1)) if match else None

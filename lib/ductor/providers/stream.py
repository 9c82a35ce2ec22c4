"""What every provider's stream parser shares: line handling, the turn's bookkeeping
and the rule that a turn ends with exactly one :class:`Result`.

A parser is fed one stdout line at a time and then told how the process ended::

    parser = ClaudeParser()
    for line in stdout:
        events = parser.feed(line)
    # (stderr lines may go to parser.feed_stderr(line) as they come)
    events = parser.finish(exit_code, stderr_text)

Lines that are not JSON objects and event types a parser does not know are logged at
debug level and otherwise ignored: a new CLI version must never crash a turn.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

from ductor.providers.events import (
    SIGNAL_EXIT_CODES,
    Error,
    ErrorKind,
    Event,
    Result,
    SessionStarted,
    TextDelta,
    classify_error,
)

log = logging.getLogger(__name__)

JsonObject = Mapping[str, object]

TOOL_OUTPUT_LIMIT = 4000  # characters of tool output kept in a ToolResult
ERROR_TEXT_LIMIT = 500  # characters of stderr kept in an error message


def get_str(obj: JsonObject, key: str, default: str = "") -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else default


def get_int(obj: JsonObject, key: str) -> int | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def get_float(obj: JsonObject, key: str) -> float | None:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def get_obj(obj: JsonObject, key: str) -> JsonObject:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def get_list(obj: JsonObject, key: str) -> list[object]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Usage:
    """What a turn cost, as far as the CLI tells."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StreamParser(ABC):
    """Base of the per-CLI parsers; subclasses implement :meth:`handle`."""

    cli_name = "the CLI"

    def __init__(self, model: str = "") -> None:
        self.session_id: str | None = None
        self.model = model  # what the request asked for, until the CLI says otherwise
        self._segment: list[str] = []  # text since the last tool use
        self._finished = False

    # -- public -----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the turn's Result has been emitted."""
        return self._finished

    def feed(self, line: str) -> list[Event]:
        """Parse one stdout line into the events it carries (often none)."""
        stripped = line.strip()
        if not stripped:
            return []
        if self._finished:
            log.debug("%s: ignoring output after the result: %.200s", self.cli_name, stripped)
            return []
        try:
            obj = json.loads(stripped)
        except ValueError:
            log.debug("%s: ignoring a non-JSON line: %.200s", self.cli_name, stripped)
            return []
        if not isinstance(obj, dict):
            log.debug("%s: ignoring a JSON line that is not an object", self.cli_name)
            return []
        try:
            return self.handle(obj)
        except (TypeError, ValueError, KeyError, AttributeError):
            # The typed getters make this unreachable for the formats we know; a future
            # format must still only cost one line, never the turn.
            log.warning("%s: could not parse %.200s", self.cli_name, stripped, exc_info=True)
            return []

    def feed_stderr(self, line: str) -> list[Event]:
        """Events for one stderr line while the CLI runs (most CLIs print nothing there
        that the user needs before the end); the whole stderr also goes to :meth:`finish`."""
        return []

    def finish(
        self, exit_code: int, stderr_text: str = "", *, stopped_by: ErrorKind | None = None
    ) -> list[Event]:
        """Events for the end of the process; they close the turn if the stream did not.

        ``stopped_by`` is what the runner knows and the stream may not: it sent the
        signal itself, for ``/interrupt`` or ``/stop`` (INTERRUPTED) or a timeout
        (TIMEOUT).
        """
        if self._finished:
            if exit_code != 0:
                log.debug("%s exited with %s after its result", self.cli_name, exit_code)
            return []
        if stopped_by is not None:
            text = (
                f"{self.cli_name} timed out"
                if stopped_by is ErrorKind.TIMEOUT
                else f"{self.cli_name} was stopped"
            )
            return self.fail(stopped_by, text)
        if exit_code in SIGNAL_EXIT_CODES or exit_code < 0:
            return self.fail(ErrorKind.INTERRUPTED, f"{self.cli_name} was stopped by a signal")
        return self.exit_failure(exit_code, stderr_text)

    # -- for subclasses ---------------------------------------------------------------

    @abstractmethod
    def handle(self, obj: JsonObject) -> list[Event]:
        """Events for one decoded JSON object from stdout."""

    def exit_failure(self, exit_code: int, stderr_text: str) -> list[Event]:
        """The process ended without a result and without being stopped."""
        detail = last_lines(stderr_text)
        if exit_code == 0:
            text = f"{self.cli_name} ended without an answer"
        else:
            text = detail or f"{self.cli_name} exited with code {exit_code}"
        return self.fail(classify_error(text), text)

    @property
    def segment_text(self) -> str:
        return "".join(self._segment)

    def start_session(self, session_id: str, model: str = "") -> list[Event]:
        if model:
            self.model = model
        if not session_id or self.session_id is not None:
            if session_id:
                self.session_id = session_id
            return []
        self.session_id = session_id
        return [SessionStarted(session_id=session_id, model=model or self.model)]

    def text(self, text: str) -> list[Event]:
        if not text:
            return []
        self._segment.append(text)
        return [TextDelta(text=text)]

    def tool_started(self) -> None:
        """Text after a tool use starts a new segment: the final answer is the last one."""
        self.new_segment()

    def new_segment(self) -> None:
        """The text so far is not part of the final answer (a tool use came, or the CLI
        started its answer over)."""
        self._segment.clear()

    def result(
        self, usage: Usage | None = None, *, text: str | None = None, is_error: bool = False
    ) -> list[Event]:
        """The closing Result; the text defaults to the text streamed since the last tool."""
        if self._finished:
            return []
        self._finished = True
        usage = usage or Usage()
        return [
            Result(
                text=self.segment_text if text is None else text,
                session_id=self.session_id,
                model=self.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                cost_usd=usage.cost_usd,
                duration_ms=usage.duration_ms,
                num_turns=usage.num_turns,
                is_error=is_error,
            )
        ]

    def fail(
        self,
        error: ErrorKind,
        text: str,
        http_status: int | None = None,
        usage: Usage | None = None,
    ) -> list[Event]:
        """An Error and the closing Result (is_error) that always follows it."""
        if self._finished:
            return []
        closing = self.result(usage, is_error=True)
        return [Error(error=error, text=text, http_status=http_status), *closing]


def last_lines(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """The end of a stderr text, trimmed to ``limit`` characters."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


_DETAIL_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")


def tool_detail(tool_input: JsonObject) -> str:
    """One human line about a tool call: its command, path, pattern, URL or query."""
    for key in _DETAIL_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return truncate(value.strip().splitlines()[0], 200)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return truncate(" ".join(str(v) for v in value), 200)
    return ""

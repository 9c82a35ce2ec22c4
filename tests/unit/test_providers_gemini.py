"""Gemini's stream parser on cases the recordings do not cover."""

from __future__ import annotations

import json

import pytest

from ductor.providers.events import (
    Error,
    ErrorKind,
    Event,
    Result,
    Status,
    StatusKind,
    TextDelta,
    ToolResult,
    ToolUse,
)
from ductor.providers.gemini import GeminiParser


def feed(parser: GeminiParser, *objects: dict[str, object]) -> list[Event]:
    events: list[Event] = []
    for obj in objects:
        events += parser.feed(json.dumps(obj))
    return events


INIT = {"type": "init", "session_id": "g-1", "model": "auto"}


@pytest.mark.parametrize(
    ("exit_code", "kind", "status"),
    [
        (145, ErrorKind.AUTH, 401),
        (147, ErrorKind.AUTH, 403),
        (173, ErrorKind.RATE_LIMIT, 429),
        (244, ErrorKind.OTHER, 500),
        (248, ErrorKind.TIMEOUT, 504),
    ],
)
def test_exit_code_without_a_result_is_read_as_http_status_modulo_256(
    exit_code: int, kind: ErrorKind, status: int
) -> None:
    parser = GeminiParser()
    feed(parser, INIT)

    events = parser.finish(exit_code, "Warning: 256-color support not detected.\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.http_status) == (kind, status)


def test_invalid_auth_method_exit_is_an_auth_error() -> None:
    events = GeminiParser().finish(41, "Invalid auth method selected.\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.AUTH


def test_untrusted_workspace_exit_says_so() -> None:
    events = GeminiParser().finish(55, "")

    error = events[-2]
    assert isinstance(error, Error)
    assert "trust" in error.text


def test_api_error_message_is_made_readable() -> None:
    parser = GeminiParser()
    raw = '[API Error: {"error":{"code":403,"message":"PERMISSION_DENIED","status":"x"}}]'

    events = feed(parser, INIT, {"type": "result", "status": "error", "error": {"message": raw}})

    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.http_status, error.text) == (
        ErrorKind.AUTH,
        403,
        "API error 403: PERMISSION_DENIED",
    )


def test_model_asked_for_is_reported_when_gemini_says_auto() -> None:
    parser = GeminiParser(model="gemini-2.5-pro")

    events = feed(
        parser,
        INIT,
        {"type": "message", "role": "assistant", "content": "Hi", "delta": True},
        {"type": "result", "status": "success", "stats": {"input_tokens": 3}},
    )

    final = events[-1]
    assert isinstance(final, Result)
    assert (final.model, final.text, final.input_tokens) == ("gemini-2.5-pro", "Hi", 3)


def test_user_messages_are_not_echoed_as_answer_text() -> None:
    parser = GeminiParser()

    events = feed(parser, {"type": "message", "role": "user", "content": "hello"})

    assert events == []


def test_message_content_blocks_carry_text_and_tool_calls() -> None:
    parser = GeminiParser()
    content = [
        {"type": "text", "text": "Reading."},
        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "a.md"}},
        {"type": "text", "text": "Done."},
    ]

    events = feed(parser, {"type": "message", "role": "model", "content": content})

    assert [type(e) for e in events] == [TextDelta, ToolUse, TextDelta]
    use = events[1]
    assert isinstance(use, ToolUse)
    assert (use.name, use.detail) == ("Read", "a.md")
    assert parser.segment_text == "Done."


def test_failed_tool_result_is_marked_as_an_error() -> None:
    parser = GeminiParser()
    failed = {
        "type": "tool_result",
        "tool_id": "t1",
        "status": "error",
        "error": {"message": "denied"},
    }

    (event,) = feed(parser, failed)

    assert event == ToolResult(tool_id="t1", output="denied", is_error=True)


def test_error_event_of_warning_severity_is_a_status_not_a_failure() -> None:
    parser = GeminiParser()

    events = feed(parser, {"type": "error", "severity": "warning", "message": "Slow response"})

    assert events == [Status(StatusKind.WARNING, "Slow response")]
    assert not parser.finished


# What Gemini 0.61 prints to stderr, and nowhere else, while it retries a failed API call
# (fixture gemini-error-429); the stack trace lines that follow each one say nothing new.
RETRY_429 = (
    "Attempt 2 failed with status 429. Retrying with backoff... _ApiError:"
    ' {"error":{"code":429,"message":"fake RESOURCE_EXHAUSTED (HTTP 429)",'
    '"status":"RESOURCE_EXHAUSTED"}}\n'
)


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (RETRY_429, "API error 429 (RESOURCE_EXHAUSTED), retry 2"),
        (
            "Attempt 1 failed. Retrying with backoff... GaxiosError: request to"
            " https://example.invalid failed, reason: read ECONNRESET\n",
            "API call failed (GaxiosError: request to https://example.invalid failed,"
            " reason: read ECONNRESET), retry 1",
        ),
    ],
)
def test_api_retries_gemini_prints_on_stderr_are_shown_like_claudes(line: str, shown: str) -> None:
    parser = GeminiParser()

    events = parser.feed_stderr(line)

    assert events == [Status(StatusKind.RETRYING, shown)]


@pytest.mark.parametrize(
    "line",
    [
        "    at throwErrorIfNotOK (file:///x/bundle/chunk.js:267833:24)\n",
        "Attempt 5 failed: fake RESOURCE_EXHAUSTED (HTTP 429). Max attempts reached\n",
        "Ripgrep is not available. Falling back to GrepTool.\n",
    ],
)
def test_stderr_lines_that_are_not_retries_show_nothing(line: str) -> None:
    assert GeminiParser().feed_stderr(line) == []


@pytest.mark.parametrize(
    "message",
    [
        "No previous sessions found for this project.",
        'Invalid session identifier "g-1".\n  Use --list-sessions to see available sessions',
    ],
)
def test_a_session_gemini_cannot_resume_is_reported_in_gemini_words(message: str) -> None:
    events = GeminiParser().finish(42, f"Warning: x\nError resuming session: {message}\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert error.text.startswith(f"Error resuming session: {message.splitlines()[0]}")


def test_an_auth_method_headless_gemini_cannot_use_says_how_to_fix_it() -> None:
    events = GeminiParser().finish(41, "Invalid auth method selected.\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.AUTH
    assert "GEMINI_API_KEY" in error.text

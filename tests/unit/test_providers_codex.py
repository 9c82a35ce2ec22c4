"""Codex's stream parser on cases the recordings do not cover."""

from __future__ import annotations

import json

from ductor.providers.codex import CodexParser
from ductor.providers.events import (
    Error,
    ErrorKind,
    Event,
    Result,
    Status,
    StatusKind,
    TextDelta,
    ThinkingDelta,
    ToolResult,
    ToolUse,
)


def feed(parser: CodexParser, *objects: dict[str, object]) -> list[Event]:
    events: list[Event] = []
    for obj in objects:
        events += parser.feed(json.dumps(obj))
    return events


def item(kind: str, item_type: str, **fields: object) -> dict[str, object]:
    return {"type": f"item.{kind}", "item": {"type": item_type, **fields}}


STARTED = {"type": "thread.started", "thread_id": "t-1"}
COMPLETED = {"type": "turn.completed", "usage": {"input_tokens": 30, "output_tokens": 5}}


def test_consecutive_messages_are_separated_by_a_blank_line() -> None:
    parser = CodexParser(model="gpt-5.5")

    events = feed(
        parser,
        STARTED,
        item("completed", "agent_message", id="i0", text="Part one."),
        item("completed", "agent_message", id="i1", text="Part two."),
        COMPLETED,
    )

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Part one.", "\n\nPart two."]
    final = events[-1]
    assert isinstance(final, Result)
    assert (final.text, final.model, final.session_id) == (
        "Part one.\n\nPart two.",
        "gpt-5.5",
        "t-1",
    )
    assert (final.input_tokens, final.output_tokens, final.cost_usd) == (30, 5, None)


def test_reasoning_items_become_thinking() -> None:
    parser = CodexParser()

    events = feed(
        parser,
        item("started", "reasoning", id="r0", text=""),
        item("completed", "reasoning", id="r0", text="**Planning**"),
    )

    assert events == [ThinkingDelta("**Planning**")]


def test_shell_command_shows_without_its_bash_wrapper_and_fails_on_nonzero_exit() -> None:
    parser = CodexParser()
    command = "/bin/bash -lc 'touch x'"

    events = feed(
        parser,
        item("started", "command_execution", id="c0", command=command, status="in_progress"),
        item(
            "completed",
            "command_execution",
            id="c0",
            command=command,
            aggregated_output="Read-only file system",
            exit_code=1,
            status="failed",
        ),
    )

    use, done = events
    assert isinstance(use, ToolUse)
    assert (use.name, use.raw_name, use.detail) == ("Shell", "command_execution", "touch x")
    assert isinstance(done, ToolResult)
    assert (done.tool_id, done.is_error, done.output) == ("c0", True, "Read-only file system")


def test_file_change_seen_only_when_complete_still_reports_the_tool_use() -> None:
    parser = CodexParser()

    events = feed(
        parser,
        item(
            "completed",
            "file_change",
            id="f0",
            changes=[{"path": "a.py", "kind": "update"}, {"path": "b.py", "kind": "add"}],
            status="completed",
        ),
    )

    use, done = events
    assert isinstance(use, ToolUse)
    assert (use.name, use.detail) == ("Edit", "a.py, b.py")
    assert isinstance(done, ToolResult)
    assert not done.is_error


def test_mcp_tool_calls_are_named_after_server_and_tool() -> None:
    parser = CodexParser()

    (use,) = feed(
        parser,
        item("started", "mcp_tool_call", id="m0", server="github", tool="search", arguments={}),
    )

    assert isinstance(use, ToolUse)
    assert use.name == "github.search"


def test_reconnect_notices_are_retries_and_the_final_error_fails_the_turn() -> None:
    parser = CodexParser()
    message = "stream error: Your input exceeds the context window of this model"

    events = feed(
        parser,
        STARTED,
        {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected)"},
        {"type": "error", "message": message},
        {"type": "turn.failed", "error": {"message": message}},
    )

    assert events[1] == Status(StatusKind.RETRYING, "Reconnecting... 1/5 (stream disconnected)")
    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.text) == (ErrorKind.CONTEXT_TOO_LONG, message)


def test_warning_items_do_not_end_the_turn() -> None:
    parser = CodexParser()

    events = feed(parser, item("completed", "error", id="e0", message="Model metadata missing"))

    assert events == [Status(StatusKind.WARNING, "Model metadata missing")]
    assert not parser.finished


def test_exit_without_turn_failed_explains_with_the_last_error_not_the_stdin_notice() -> None:
    parser = CodexParser()
    feed(parser, STARTED, {"type": "error", "message": "unexpected status 401 Unauthorized"})

    events = parser.finish(1, "Reading additional input from stdin...\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.http_status) == (ErrorKind.AUTH, 401)


def test_exit_with_only_the_stdin_notice_on_stderr_names_the_exit_code() -> None:
    parser = CodexParser()

    events = parser.finish(3, "Reading prompt from stdin...\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert error.text == "Codex exited with code 3"

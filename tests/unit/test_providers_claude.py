"""Claude's stream parser on cases the recordings do not cover."""

from __future__ import annotations

import json
from pathlib import Path

from ductor.providers.claude import ClaudeParser
from ductor.providers.events import (
    Compaction,
    Error,
    ErrorKind,
    Event,
    Result,
    SessionStarted,
    Status,
    StatusKind,
    TextDelta,
    ThinkingDelta,
    ToolUse,
)


def fixtures_dir() -> Path:
    """The recorded CLI runs (tests/record-cli writes them)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "cli"


def feed(parser: ClaudeParser, *objects: dict[str, object]) -> list[Event]:
    events: list[Event] = []
    for obj in objects:
        events += parser.feed(json.dumps(obj) + "\n")
    return events


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def init(session_id: str = "s-1") -> dict[str, object]:
    return {"type": "system", "subtype": "init", "session_id": session_id, "model": "opus-x"}


def delta(text: str, message_id: str = "m1", kind: str = "text_delta") -> dict[str, object]:
    key = "thinking" if kind == "thinking_delta" else "text"
    return {
        "type": "stream_event",
        "api_message_id": message_id,
        "parent_tool_use_id": None,
        "event": {"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: text}},
    }


def assistant(*blocks: dict[str, object], message_id: str = "m1", **extra: object) -> dict:
    message = {"id": message_id, "model": "claude-x", "content": list(blocks)}
    return {"type": "assistant", "message": message, "parent_tool_use_id": None, **extra}


def text_block(text: str) -> dict[str, object]:
    return {"type": "text", "text": text}


def result(**fields: object) -> dict[str, object]:
    return {"type": "result", "subtype": "success", "is_error": False, "session_id": "s-1"} | fields


def test_partial_messages_stream_every_token_once_as_it_arrives() -> None:
    lines = (fixtures_dir() / "claude-partial.jsonl").read_text().splitlines()
    parser = ClaudeParser()

    per_line = [texts(parser.feed(line)) for line in lines]

    streamed = [t for chunk in per_line for t in chunk]
    assert len(streamed) == 14  # the stub's 4-character deltas
    assert "".join(streamed) == "ECHO: One two three four five six seven eight nine ten"
    assistant_line = next(i for i, line in enumerate(lines) if '"type":"assistant"' in line)
    assert per_line[assistant_line] == []


def test_full_message_adds_only_the_text_the_deltas_missed() -> None:
    parser = ClaudeParser()

    events = feed(parser, init(), delta("Hello "), assistant(text_block("Hello world")))

    assert texts(events) == ["Hello ", "world"]


def test_full_message_arriving_before_the_last_deltas_does_not_repeat_them() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        delta("Hel"),
        assistant(text_block("Hello")),
        delta("lo"),
        result(result="Hello"),
    )

    assert texts(events) == ["Hel", "lo"]
    final = events[-1]
    assert isinstance(final, Result)
    assert final.text == "Hello"


def test_without_partial_messages_each_full_message_becomes_one_delta() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        assistant(text_block("First.")),
        assistant(text_block("Second."), message_id="m2"),
    )

    assert texts(events) == ["First.", "Second."]


def test_streamed_thinking_is_not_repeated_by_the_full_message() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        delta("hmm", kind="thinking_delta"),
        assistant({"type": "thinking", "thinking": "hmm"}),
        assistant({"type": "thinking", "thinking": "later"}, message_id="m2"),
    )

    assert [e.text for e in events if isinstance(e, ThinkingDelta)] == ["hmm", "later"]


def test_tool_use_gets_a_neutral_name_and_starts_a_new_answer_segment() -> None:
    parser = ClaudeParser()
    tool = {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a/b.py"}}

    events = feed(
        parser,
        init(),
        assistant(text_block("Let me look.")),
        assistant(tool),
        assistant(tool),
        assistant(text_block("It is fine."), message_id="m2"),
        result(result="It is fine."),
    )

    uses = [e for e in events if isinstance(e, ToolUse)]
    assert [(u.name, u.raw_name, u.detail) for u in uses] == [("Read", "Read", "/a/b.py")]
    final = events[-1]
    assert isinstance(final, Result)
    assert final.text == "It is fine."


def test_unknown_tools_keep_their_raw_name() -> None:
    parser = ClaudeParser()
    tool = {"type": "tool_use", "id": "t1", "name": "mcp__db__query", "input": {"sql": "x"}}

    (use,) = feed(parser, assistant(tool))

    assert isinstance(use, ToolUse)
    assert (use.name, use.raw_name) == ("mcp__db__query", "mcp__db__query")


def test_sub_agent_messages_are_not_part_of_the_answer() -> None:
    parser = ClaudeParser()
    sub = assistant(text_block("sub-agent chatter"))
    sub["parent_tool_use_id"] = "t1"

    assert feed(parser, init(), sub) == [SessionStarted("s-1", "opus-x")]


def test_compaction_shows_as_status_and_boundary() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        {"type": "system", "subtype": "status", "status": "compacting"},
        {"type": "system", "subtype": "status", "status": None},
        {
            "type": "system",
            "subtype": "compact_boundary",
            "compact_metadata": {"trigger": "auto", "pre_tokens": 155000},
        },
    )

    assert events == [
        Status(StatusKind.COMPACTING, "compacting"),
        Compaction(trigger="auto", pre_tokens=155000),
    ]


def test_api_retries_are_shown_while_claude_waits() -> None:
    parser = ClaudeParser()
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "error_status": 529,
        "error": "overloaded",
    }

    (status,) = feed(parser, retry)

    assert isinstance(status, Status)
    assert status.status is StatusKind.RETRYING
    assert "529" in status.text
    assert "1/10" in status.text


def test_lines_that_are_not_json_objects_or_are_unknown_are_ignored() -> None:
    parser = ClaudeParser()

    events = [
        *parser.feed("Warning: something on stdout\n"),
        *parser.feed("[1, 2]\n"),
        *parser.feed("\n"),
        *feed(parser, {"type": "brand_new_event"}, {"type": "assistant", "message": "oops"}),
        *feed(parser, {"type": "assistant", "message": {"content": [1, {"type": "text"}]}}),
    ]

    assert events == []
    assert not parser.finished


def test_hitting_the_turn_limit_is_an_error_with_claudes_reason() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        result(
            subtype="error_max_turns", is_error=True, errors=["Reached maximum number of turns"]
        ),
    )

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.OTHER
    assert "maximum number of turns" in error.text


def test_a_prompt_too_long_is_reported_as_context_too_long() -> None:
    parser = ClaudeParser()
    error_message = assistant(
        text_block("Prompt is too long"), is_api_error_message=True, api_error_status=400
    )

    events = feed(parser, error_message, result(is_error=True, result="Prompt is too long"))

    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.http_status) == (ErrorKind.CONTEXT_TOO_LONG, 400)
    assert texts(events) == []


def test_exit_without_result_uses_stderr_to_explain_the_failure() -> None:
    parser = ClaudeParser()
    feed(parser, init())

    events = parser.finish(1, "Invalid API key · Please run /login\n")

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.AUTH
    assert error.text == "Invalid API key · Please run /login"


def test_timeout_keeps_the_partial_answer_and_the_session() -> None:
    parser = ClaudeParser()
    feed(parser, init("s-9"), delta("Half an ans"))

    events = parser.finish(143, "", stopped_by=ErrorKind.TIMEOUT)

    error, final = events
    assert isinstance(error, Error)
    assert error.error is ErrorKind.TIMEOUT
    assert isinstance(final, Result)
    assert (final.text, final.session_id, final.is_error) == ("Half an ans", "s-9", True)


def test_nothing_more_is_emitted_after_the_result() -> None:
    parser = ClaudeParser()
    feed(parser, init(), result(result=""))

    assert feed(parser, result(result="again")) == []
    assert parser.finish(1, "late noise", stopped_by=ErrorKind.INTERRUPTED) == []


def test_cost_of_a_resumed_session_counts_this_turn_only() -> None:
    lines = (fixtures_dir() / "claude-resume.jsonl").read_text().splitlines()
    parser = ClaudeParser()
    events = [e for line in lines for e in parser.feed(line)]

    final = events[-1]
    raw = json.loads(lines[-1])
    new = json.loads((fixtures_dir() / "claude-new.jsonl").read_text().splitlines()[-1])
    assert isinstance(final, Result)
    assert final.cost_usd is not None
    # Claude reports the whole session: the first turn's cost is taken off.
    assert raw["total_cost_usd"] > final.cost_usd > 0
    assert abs(final.cost_usd - (raw["total_cost_usd"] - new["total_cost_usd"])) < 1e-9
    usage = raw["usage"]
    assert (final.input_tokens, final.output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )


def test_an_interrupt_marker_without_a_result_ends_as_interrupted_not_as_no_answer() -> None:
    # Claude 2.1.330 sometimes exits 0 right after the interrupt marker, without the
    # error_during_execution result the recorded transcript has.
    lines = (fixtures_dir() / "claude-interrupt.jsonl").read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if "[Request interrupted by user" in line)
    parser = ClaudeParser()
    for line in lines[: marker + 1]:
        parser.feed(line)
    events = parser.finish(0, "")
    errors = [e for e in events if isinstance(e, Error)]
    assert [e.error for e in errors] == [ErrorKind.INTERRUPTED]
    assert isinstance(events[-1], Result) and events[-1].is_error


# A cut stream, as the real Claude Code 2.1.330 prints it with --include-partial-messages
# when the API sends an SSE error mid-answer: the cut message's deltas, a message_stop
# naming the abandoned blocks, then the retried request's whole message (new id).
def block_delta(text: str, index: int, message_id: str = "m1") -> dict[str, object]:
    event = delta(text, message_id)
    event["event"] = {**event["event"], "index": index}  # type: ignore[dict-item]
    return event


def cut(message_id: str = "m1", from_block: int = 0) -> dict[str, object]:
    return {
        "type": "stream_event",
        "api_message_id": message_id,
        "parent_tool_use_id": None,
        "event": {"type": "message_stop"},
        "abandoned_blocks": {"api_message_id": message_id, "from_block_index": from_block},
    }


def test_an_answer_cut_mid_stream_and_asked_again_is_shown_exactly_once() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        delta("This answer "),
        delta("will be cut"),
        cut(),
        assistant(text_block("This answer will be cut by an SSE error event"), message_id="m2"),
        result(result="This answer will be cut by an SSE error event"),
    )

    assert "".join(texts(events)) == "This answer will be cut by an SSE error event"
    assert not [e for e in events if isinstance(e, Status)]
    final = events[-1]
    assert isinstance(final, Result)
    assert final.text == "This answer will be cut by an SSE error event"


def test_a_retried_answer_streamed_again_token_by_token_is_not_repeated() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        delta("Hello "),
        delta("wor"),
        cut(),
        delta("Hel", "m2"),
        delta("lo wor", "m2"),
        delta("ld.", "m2"),
        assistant(text_block("Hello world."), message_id="m2"),
    )

    assert texts(events) == ["Hello ", "wor", "ld."]


def test_a_retried_answer_that_says_something_else_starts_over_with_a_note() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        delta("First try"),
        cut(),
        assistant(text_block("Second answer"), message_id="m2"),
        result(result="Second answer"),
    )

    kinds = [(type(e).__name__, getattr(e, "text", "")) for e in events[1:]]
    assert kinds == [
        ("TextDelta", "First try"),
        ("Status", "The answer was cut off; Claude started it over"),
        ("TextDelta", "Second answer"),
        ("Result", "Second answer"),
    ]
    status = events[2]
    assert isinstance(status, Status) and status.status is StatusKind.RETRYING


def test_blocks_before_the_abandoned_one_stay_part_of_the_answer() -> None:
    parser = ClaudeParser()

    events = feed(
        parser,
        init(),
        block_delta("Kept. ", 0),
        block_delta("Cut", 1),
        cut(from_block=1),
        assistant(text_block("Cut short no more."), message_id="m2"),
    )

    assert "".join(texts(events)) == "Kept. Cut short no more."

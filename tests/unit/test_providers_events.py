"""The normalised event model and the error classification shared by all CLIs."""

from __future__ import annotations

import json

import pytest

from ductor.providers.events import (
    Error,
    ErrorKind,
    EventKind,
    Result,
    ToolUse,
    classify_error,
    http_status_in,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ErrorKind.AUTH),
        (403, ErrorKind.AUTH),
        (429, ErrorKind.RATE_LIMIT),
        (529, ErrorKind.RATE_LIMIT),
        (413, ErrorKind.CONTEXT_TOO_LONG),
        (504, ErrorKind.TIMEOUT),
        (500, ErrorKind.OTHER),
    ],
)
def test_http_status_decides_the_error_kind(status: int, kind: ErrorKind) -> None:
    assert classify_error("whatever went wrong", status) is kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Prompt is too long", ErrorKind.CONTEXT_TOO_LONG),
        ("This model's maximum context length is 200000 tokens", ErrorKind.CONTEXT_TOO_LONG),
        ("exceeded retry limit: Too Many Requests", ErrorKind.RATE_LIMIT),
        ("You exceeded your current quota", ErrorKind.RATE_LIMIT),
        ("Invalid API key · Please run /login", ErrorKind.AUTH),
        ("fake UNAUTHENTICATED", ErrorKind.AUTH),
        ("Error loading config.toml", ErrorKind.OTHER),
    ],
)
def test_error_text_decides_the_error_kind_when_there_is_no_status(
    text: str, kind: ErrorKind
) -> None:
    assert classify_error(text) is kind


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("API Error: 500 fake api_error", 500),
        ("unexpected status 401 Unauthorized: bad key", 401),
        ("exceeded retry limit, last status: 429 Too Many Requests", 429),
        ("fake RESOURCE_EXHAUSTED (HTTP 429)", 429),
        ('{"error":{"code":403,"message":"x"}}', 403),
        ("exited with error 1 after 200 tries", None),
    ],
)
def test_http_status_is_found_in_the_wording_each_cli_uses(text: str, status: int | None) -> None:
    assert http_status_in(text) == status


def test_events_serialise_to_json_with_their_kind() -> None:
    events = [
        ToolUse("t1", "Shell", "Bash", "ls", {"command": "ls"}),
        Error(ErrorKind.RATE_LIMIT, "slow down", 429),
        Result("done", session_id="s", cost_usd=0.5),
    ]

    decoded = [json.loads(json.dumps(e.as_dict())) for e in events]

    assert [d["kind"] for d in decoded] == [
        EventKind.TOOL_USE,
        EventKind.ERROR,
        EventKind.RESULT,
    ]
    assert decoded[0]["input"] == {"command": "ls"}
    assert decoded[1]["error"] == "rate_limit"
    assert decoded[2]["text"] == "done"


def test_events_are_immutable() -> None:
    result = Result("done")

    with pytest.raises(AttributeError):
        result.text = "changed"  # type: ignore[misc]

"""Every recorded run of the real CLIs, replayed through its provider's parser.

The fixtures live in tests/fixtures/cli (recorded by tests/record-cli):
``<name>.jsonl`` is the CLI's stdout, ``<name>.stderr`` its stderr and
``<name>.meta.json`` its argv, environment and exit code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from ductor.providers import spec_for
from ductor.providers.events import (
    Error,
    ErrorKind,
    Event,
    Result,
    SessionStarted,
    TextDelta,
    ToolResult,
    ToolUse,
)


def fixtures_dir() -> Path:
    """The recorded CLI runs (tests/record-cli writes them)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "cli"


FIXTURES = fixtures_dir()
NAMES = sorted(p.stem for p in FIXTURES.glob("*.jsonl"))


@dataclass(frozen=True)
class Recorded:
    name: str
    provider: str
    lines: list[str]
    stderr: str
    meta: dict[str, object]

    @property
    def exit_code(self) -> int:
        rc = self.meta["rc"]
        assert isinstance(rc, int)
        return rc

    @property
    def signalled(self) -> bool:
        return bool(self.meta.get("signal"))

    def objects(self) -> list[dict[str, object]]:
        found = []
        for line in self.lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
        return found


def recorded(name: str) -> Recorded:
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    stderr_file = FIXTURES / f"{name}.stderr"
    return Recorded(
        name=name,
        provider=name.split("-", maxsplit=1)[0],
        lines=(FIXTURES / f"{name}.jsonl").read_text().splitlines(),
        stderr=stderr_file.read_text() if stderr_file.exists() else "",
        meta=meta,
    )


def replay(run: Recorded, *, runner_sent_signal: bool | None = None) -> list[Event]:
    """Feed the recorded stdout, then finish as the runner would have.

    The runner knows when it signalled the CLI itself; by default that is when the
    recorder did.
    """
    sent = run.signalled if runner_sent_signal is None else runner_sent_signal
    parser = spec_for(run.provider).new_parser("")
    events: list[Event] = []
    for line in run.lines:
        events += parser.feed(line + "\n")
    stopped_by = ErrorKind.INTERRUPTED if sent else None
    events += parser.finish(run.exit_code, run.stderr, stopped_by=stopped_by)
    return events


def final_segment(events: list[Event]) -> str:
    """The text the user saw stream in after the last tool use."""
    last_tool = max((i for i, e in enumerate(events) if isinstance(e, ToolUse)), default=-1)
    return "".join(e.text for e in events[last_tool + 1 :] if isinstance(e, TextDelta))


def first_session_id(run: Recorded) -> str | None:
    for obj in run.objects():
        for key in ("session_id", "thread_id"):
            value = obj.get(key)
            if isinstance(value, str):
                return value
    return None


# Failed runs: the error kind and HTTP status the user must be told about.
ERRORS: dict[str, tuple[ErrorKind, int | None]] = {
    "claude-error-401": (ErrorKind.AUTH, 401),
    "claude-error-401-default-retries": (ErrorKind.AUTH, 401),
    "claude-error-429": (ErrorKind.RATE_LIMIT, 429),
    "claude-error-500": (ErrorKind.OTHER, 500),
    "claude-error-500-default-retries": (ErrorKind.OTHER, 500),
    "claude-error-midstream": (ErrorKind.OTHER, None),  # every stream breaks: it gives up
    "claude-tool-bypass-as-root-refused": (ErrorKind.OTHER, None),
    "codex-error-401": (ErrorKind.AUTH, 401),
    "codex-error-429": (ErrorKind.RATE_LIMIT, 429),
    "codex-error-500": (ErrorKind.OTHER, None),
    "codex-error-500-noretry": (ErrorKind.OTHER, None),
    "codex-error-midstream": (ErrorKind.OTHER, None),
    "codex-wire-api-chat-unsupported": (ErrorKind.OTHER, None),
    "gemini-error-401": (ErrorKind.AUTH, 401),
    "gemini-error-429": (ErrorKind.RATE_LIMIT, 429),
    "gemini-error-500": (ErrorKind.OTHER, 500),
    "gemini-error-500-default-retries": (ErrorKind.OTHER, 500),
    "gemini-error-500-json": (ErrorKind.OTHER, 500),
    "gemini-error-midstream": (ErrorKind.OTHER, None),
}

# Output formats ductor never asks for: they must not crash a turn, nothing more.
OTHER_FORMATS = {
    "codex-plain-text",
    "gemini-json-format",
    "gemini-tool-json-format",
    "gemini-text-format",
    "gemini-list-sessions",
}

# Successful runs: the final answer the user gets (a prefix where it carries a PID).
ANSWERS: dict[str, str] = {
    "claude-continue": "ECHO: third question",
    "claude-json-format": "ECHO: hello",
    "claude-model": "ECHO: hello",
    "claude-model-alias": "ECHO: hello",
    "claude-new": "ECHO: hello",
    "claude-partial": "ECHO: One two three four five six seven eight nine ten",
    "claude-resume": "ECHO: second question",
    "claude-tool": "Tool said: hi",
    "claude-tool-allowed": "Tool said: (Bash completed with no output)",
    "claude-tool-default-perms": "Tool said: hi",
    "claude-tool-denied": "Tool said: touch in '/tmp/ductor-record-cli/projects/claude/created_by",
    "claude-tool-skip-perms": "Tool said: hi",
    "codex-builtin-provider-openai-base-url": "ECHO: hello",
    "codex-ephemeral": "ECHO: hello",
    "codex-model": "ECHO: hello",
    "codex-model-unknown": "ECHO: hello",
    "codex-new": "ECHO: hello",
    "codex-resume": "ECHO: second question",
    "codex-resume-last": "ECHO: third question",
    "codex-slow": "ECHO: One two three four five six seven eight nine ten",
    "codex-tool": "Tool said: hi",
    "codex-tool-bypass": "Tool said: hi",
    # No command events in the read-only sandbox: the text before the tool stays.
    "codex-tool-write-readonly": "I'll run a command.\n\nTool said: touch: cannot touch",
    "codex-tool-write-workspace": "Tool said: ",
    "gemini-model": "ECHO: hello",
    "gemini-new": "ECHO: hello",
    "gemini-resume": "ECHO: second question",
    "gemini-resume-latest": "ECHO: third question",
    "gemini-slow": "ECHO: One two three four five six seven eight nine ten",
    "gemini-tool": "Tool said: <untrusted_context>\nOutput: hi\n",
    "gemini-tool-approval-yolo": "Tool said: <untrusted_context>\nOutput: hi\n",
    "gemini-tool-default": "ECHO: run echo hi",  # no shell tool offered: the stub echoes
    "gemini-tool-write-yolo": "Tool said: <untrusted_context>\nOutput: (empty)\n",
}

# Interrupted runs: what the user had seen when the interrupt came.
PARTIAL_TEXTS: dict[str, str] = {
    "claude-interrupt": "ECHO: stre",
    "claude-interrupt-group": "ECHO: stre",
    "claude-interrupt-partial": "ECHO: stre",
    "claude-interrupt-during-tool": "",
    "claude-interrupt-sigterm": "",
    "codex-interrupt": "",
    "codex-interrupt-group": "",
    "codex-interrupt-native": "",
    "codex-interrupt-during-tool": "",
    "codex-interrupt-sigterm": "",
    "codex-interrupt-sigterm-native": "",
    "gemini-interrupt": "ECHO: s",
    "gemini-interrupt-group": "ECHO: s",
    "gemini-interrupt-sigterm": "ECHO: s",
    "gemini-interrupt-sigterm-group": "ECHO: s",
    "gemini-interrupt-parent-only": "ECHO: stream ",
}


def test_fixture_directory_holds_recorded_runs_of_all_three_clis() -> None:
    assert FIXTURES.is_dir(), f"no fixtures at {FIXTURES}: run tests/record-cli"
    assert {name.split("-", maxsplit=1)[0] for name in NAMES} == {"claude", "codex", "gemini"}


def test_every_fixture_has_an_expected_outcome() -> None:
    known = set(ERRORS) | OTHER_FORMATS | set(ANSWERS) | set(PARTIAL_TEXTS)
    assert set(NAMES) == known


@pytest.mark.parametrize("name", NAMES)
def test_turn_ends_with_exactly_one_result_preceded_by_its_error(name: str) -> None:
    events = replay(recorded(name))

    results = [i for i, e in enumerate(events) if isinstance(e, Result)]
    errors = [i for i, e in enumerate(events) if isinstance(e, Error)]
    assert results == [len(events) - 1]
    final = events[-1]
    assert isinstance(final, Result)
    if final.is_error:
        assert errors == [len(events) - 2]
    else:
        assert errors == []


@pytest.mark.parametrize("name", NAMES)
def test_final_text_equals_the_text_streamed_since_the_last_tool(name: str) -> None:
    events = replay(recorded(name))

    final = events[-1]
    assert isinstance(final, Result)
    assert final.text == final_segment(events)


@pytest.mark.parametrize("name", NAMES)
def test_session_id_is_announced_once_and_reaches_the_result(name: str) -> None:
    run = recorded(name)
    events = replay(run)

    expected = first_session_id(run)
    started = [e for e in events if isinstance(e, SessionStarted)]
    final = events[-1]
    assert isinstance(final, Result)
    assert final.session_id == expected
    if expected is not None and run.objects()[0].get("type") != "result":
        assert [e.session_id for e in started] == [expected]
        assert isinstance(events[0], SessionStarted)


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_successful_run_delivers_the_answer_with_its_usage(name: str) -> None:
    run = recorded(name)
    events = replay(run)

    final = events[-1]
    assert isinstance(final, Result)
    assert not final.is_error
    assert final.text.startswith(ANSWERS[name])
    assert final.input_tokens > 0
    assert final.output_tokens > 0
    if run.provider == "claude":
        assert final.model.startswith("claude-")
        assert final.cost_usd is not None
        assert final.cost_usd > 0
        assert final.duration_ms is not None
        assert final.num_turns is not None
    if run.provider == "gemini":
        assert final.model.startswith("gemini-")
        assert final.duration_ms is not None


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n in ANSWERS
        if n.startswith("claude-")
        and any(o.get("type") == "assistant" for o in recorded(n).objects())
    ),
)
def test_claude_streamed_deltas_add_up_to_claudes_own_result_text(name: str) -> None:
    run = recorded(name)
    claude_result = next(o for o in run.objects() if o.get("type") == "result")

    assert final_segment(replay(run)) == claude_result["result"]


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_failed_run_reports_the_right_error_kind(name: str) -> None:
    events = replay(recorded(name))

    kind, status = ERRORS[name]
    error = events[-2]
    assert isinstance(error, Error)
    assert (error.error, error.http_status) == (kind, status)
    assert error.text.strip()
    final = events[-1]
    assert isinstance(final, Result)
    assert final.is_error


@pytest.mark.parametrize("name", sorted(PARTIAL_TEXTS))
def test_interrupted_run_ends_as_interrupted_with_the_partial_text(name: str) -> None:
    events = replay(recorded(name))

    error = events[-2]
    final = events[-1]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED
    assert isinstance(final, Result)
    assert final.is_error
    assert final.text == PARTIAL_TEXTS[name]


@pytest.mark.parametrize("name", ["claude-interrupt", "claude-interrupt-partial"])
def test_claude_reports_an_interrupt_even_when_the_runner_did_not_say(name: str) -> None:
    events = replay(recorded(name), runner_sent_signal=False)

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED


@pytest.mark.parametrize("name", ["claude-interrupt-sigterm", "codex-interrupt-sigterm"])
def test_exit_by_sigterm_counts_as_interrupted_even_when_the_runner_did_not_say(
    name: str,
) -> None:
    events = replay(recorded(name), runner_sent_signal=False)

    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED


@pytest.mark.parametrize("name", sorted(OTHER_FORMATS))
def test_output_in_another_format_ends_the_turn_with_an_error_instead_of_crashing(
    name: str,
) -> None:
    events = replay(recorded(name))

    assert not any(isinstance(e, TextDelta) for e in events)
    final = events[-1]
    assert isinstance(final, Result)
    assert final.is_error


@pytest.mark.parametrize("name", ["claude-tool", "codex-tool", "gemini-tool"])
def test_shell_tool_of_every_cli_is_reported_as_shell_with_its_command_and_output(
    name: str,
) -> None:
    events = replay(recorded(name))

    uses = [e for e in events if isinstance(e, ToolUse)]
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(u.name, u.detail) for u in uses] == [("Shell", "echo hi")]
    assert [r.tool_id for r in results] == [uses[0].tool_id]
    assert "hi" in results[0].output
    assert not results[0].is_error

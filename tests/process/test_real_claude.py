"""The real Claude Code CLI, driven through ductor's provider module, against the stub.

Each test builds the argv and the environment as the agent does (``spec.build_argv``,
``child_env`` with ``spec.provider_env``), runs the pinned CLI in its own process group
with stdin closed, and feeds its stdout to the provider's parser. The events that come
out are what a user would see in the chat; the stub's received requests are what the
model would have been asked.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from tests.process.conftest import claude_env
from tests.stubs import anthropic_api
from tests.stubs.anthropic_api import (
    ECHO_PREFIX,
    TOOL_ANSWER_PREFIX,
    TOOL_PREAMBLE,
    AnthropicStub,
    ClientGone,
    last_user_text,
)

from ductor.providers import PermissionMode, TurnRequest, spec_for
from ductor.providers.env import child_env
from ductor.providers.events import (
    Error,
    ErrorKind,
    Event,
    Result,
    SessionStarted,
    Status,
    StatusKind,
    TextDelta,
    ToolName,
    ToolResult,
    ToolUse,
)

pytestmark = pytest.mark.timeout(90)

SPEC = spec_for("claude")
MODEL = "claude-sonnet-4-5"
TURN_TIMEOUT = 20.0  # seconds for one CLI run, from spawn to exit
EXIT_AFTER_SIGNAL = 5.0  # seconds the CLI may take to exit after SIGINT

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Turn:
    """One CLI run as the user would have seen it."""

    events: list[tuple[float, Event]]  # (seconds since spawn, event)
    exit_code: int
    stderr: str
    signalled_at: float | None = None  # seconds since spawn when SIGINT was sent
    exited_at: float = 0.0

    def all(self, kind: type[E]) -> list[E]:
        return [event for _, event in self.events if isinstance(event, kind)]

    def times(self, kind: type[Event]) -> list[float]:
        return [at for at, event in self.events if isinstance(event, kind)]

    @property
    def text(self) -> str:
        return "".join(delta.text for delta in self.all(TextDelta))

    @property
    def result(self) -> Result:
        """The turn's one Result, which must be the last event."""
        results = self.all(Result)
        assert len(results) == 1, f"{len(results)} results in {self.describe()}"
        assert self.events[-1][1] is results[0], f"the Result is not last in {self.describe()}"
        return results[0]

    def describe(self) -> str:
        lines = [f"{at:6.2f}s {event!r}" for at, event in self.events]
        return "\n".join([f"exit {self.exit_code}", *lines, f"stderr: {self.stderr[-2000:]}"])


OnEvents = Callable[[list[Event], "Controls"], None]


@dataclass
class Controls:
    """What a test may do to the running CLI from its ``on_events`` callback."""

    process: subprocess.Popen[str]
    started: float
    signalled_at: float | None = None

    def interrupt(self) -> None:
        """SIGINT to the CLI's process group, as the agent's /interrupt does."""
        if self.signalled_at is None:
            self.signalled_at = time.monotonic() - self.started
            os.killpg(self.process.pid, signal.SIGINT)


class ClaudeRunner:
    """Runs turns of the real CLI with one HOME and one working directory, so a later
    turn can resume an earlier one."""

    def __init__(self, executable: Path, stub: AnthropicStub, tmp_path: Path) -> None:
        self.executable = executable
        self.stub = stub
        self.home = tmp_path / "home"
        self.workdir = tmp_path / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def env(self, request: TurnRequest, extra: dict[str, str]) -> dict[str, str]:
        # The test's claude_env plays the agent's own environment; child_env must keep
        # every variable Claude needs to reach the stub.
        parent = claude_env(self.stub, self.home, **extra)
        provider_env = SPEC.provider_env(request, is_root=os.geteuid() == 0)
        return child_env(parent, provider_env=provider_env)

    def run(
        self,
        request: TurnRequest,
        *,
        extra_env: dict[str, str] | None = None,
        on_events: OnEvents | None = None,
    ) -> Turn:
        argv = SPEC.build_argv(request, str(self.executable))
        stdin_text = SPEC.stdin_text(request)
        parser = SPEC.new_parser(request.model)
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env(request, extra_env or {}),
            stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        controls = Controls(process, started)
        events: list[tuple[float, Event]] = []
        try:
            if stdin_text is not None and process.stdin is not None:
                process.stdin.write(stdin_text)
                process.stdin.close()
            stderr_parts: list[str] = []
            stderr_reader = threading.Thread(
                target=lambda: stderr_parts.append(_read_all(process.stderr)), daemon=True
            )
            stderr_reader.start()
            for line in _lines(process, started + TURN_TIMEOUT):
                new = parser.feed(line)
                now = time.monotonic() - started
                events += [(now, event) for event in new]
                if on_events is not None:
                    on_events(new, controls)
            exit_code = process.wait(timeout=max(0.1, started + TURN_TIMEOUT - time.monotonic()))
            exited_at = time.monotonic() - started
            stderr_reader.join(timeout=5)
            stderr = "".join(stderr_parts)
            events += [(exited_at, event) for event in parser.finish(exit_code, stderr)]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return Turn(events, exit_code, stderr, controls.signalled_at, exited_at)


def _read_all(stream: IO[str] | None) -> str:
    return stream.read() if stream is not None else ""


def _lines(process: subprocess.Popen[str], deadline: float) -> Iterator[str]:
    """The CLI's stdout lines as they come; fails the test at ``deadline``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"Claude did not finish within {TURN_TIMEOUT} s")
        if line is None:
            return
        yield line


def texts_by_role(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every text block of a Messages API request, in order."""
    pairs = []
    for message in body.get("messages", []):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        pairs += [
            (message["role"], block["text"]) for block in blocks if block.get("type") == "text"
        ]
    return pairs


@pytest.fixture
def claude(real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path) -> ClaudeRunner:
    return ClaudeRunner(real_claude, anthropic_stub, tmp_path)


def test_new_turn_streams_the_answer_token_by_token_and_ends_with_a_result(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("echo", chunk_size=2, chunk_delay=0.1)

    turn = claude.run(TurnRequest(prompt="hello", model=MODEL))

    assert turn.exit_code == 0, turn.describe()
    started = turn.all(SessionStarted)
    assert len(started) == 1, turn.describe()
    assert isinstance(turn.events[0][1], SessionStarted), turn.describe()
    assert started[0].session_id
    assert started[0].model == MODEL
    deltas = turn.all(TextDelta)
    assert len(deltas) > 1, f"the answer did not stream:\n{turn.describe()}"
    assert turn.text == "ECHO: hello"
    # Six chunks 0.1 s apart: the first must reach the parser well before the last.
    delta_times = turn.times(TextDelta)
    assert delta_times[-1] - delta_times[0] >= 0.25, turn.describe()
    assert not turn.all(Error), turn.describe()
    result = turn.result
    assert not result.is_error
    assert result.text == "ECHO: hello"
    assert result.session_id == started[0].session_id
    assert result.model == MODEL
    assert result.input_tokens > 0
    assert result.output_tokens > 0
    (request,) = anthropic_stub.requests
    assert request["model"] == MODEL
    assert request["stream"] is True
    assert last_user_text(request) == "hello"


def test_resumed_turn_keeps_the_session_and_sends_the_earlier_conversation(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub
) -> None:
    first = claude.run(TurnRequest(prompt="hello", model=MODEL))
    session_id = first.result.session_id
    assert session_id, first.describe()

    second = claude.run(TurnRequest(prompt="second question", model=MODEL, session_id=session_id))

    assert second.exit_code == 0, second.describe()
    assert [s.session_id for s in second.all(SessionStarted)] == [session_id]
    assert second.result.session_id == session_id
    assert second.result.text == "ECHO: second question"
    assert second.text == "ECHO: second question"
    assert len(anthropic_stub.requests) == 2
    conversation = texts_by_role(anthropic_stub.requests[1])
    user_texts = [text for role, text in conversation if role == "user"]
    assistant_texts = [text for role, text in conversation if role == "assistant"]
    assert "hello" in user_texts
    assert assistant_texts == ["ECHO: hello"]
    assert user_texts[-1] == "second question"
    hello_at = conversation.index(("user", "hello"))
    assert hello_at < conversation.index(("assistant", "ECHO: hello")), conversation


def _interrupt_after_first_delta(events: list[Event], controls: Controls) -> None:
    if any(isinstance(event, TextDelta) for event in events):
        controls.interrupt()


def _interrupt_when_stub_stalls(stub: AnthropicStub) -> OnEvents:
    def on_events(events: list[Event], controls: Controls) -> None:
        requesting = [e for e in events if isinstance(e, Status)]
        if any(e.status is StatusKind.REQUESTING for e in requesting):
            stub.wait_for_requests(1, timeout=10)
            time.sleep(0.5)  # let message_start reach the CLI: it is mid-stream now
            controls.interrupt()

    return on_events


@pytest.mark.parametrize("moment", ["mid-answer", "stalled-stream"])
def test_interrupt_ends_the_turn_with_an_interrupted_error_within_seconds(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub, moment: str
) -> None:
    prompt = "count slowly to ten"
    on_events: OnEvents
    if moment == "mid-answer":
        anthropic_stub.set_behaviour("echo", chunk_size=1, chunk_delay=0.2)
        on_events = _interrupt_after_first_delta
    else:
        anthropic_stub.set_behaviour("stall")
        on_events = _interrupt_when_stub_stalls(anthropic_stub)

    turn = claude.run(TurnRequest(prompt=prompt, model=MODEL), on_events=on_events)

    assert turn.signalled_at is not None, f"never interrupted:\n{turn.describe()}"
    assert turn.exited_at - turn.signalled_at < EXIT_AFTER_SIGNAL, turn.describe()
    errors = turn.all(Error)
    assert [e.error for e in errors] == [ErrorKind.INTERRUPTED], turn.describe()
    assert turn.result.is_error
    assert turn.result.session_id == turn.all(SessionStarted)[0].session_id
    # What streamed before the signal was shown, and nothing after it.
    full_answer = ECHO_PREFIX + prompt
    assert full_answer.startswith(turn.text), turn.describe()
    assert turn.text != full_answer, turn.describe()
    if moment == "mid-answer":
        assert turn.text, turn.describe()


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, ErrorKind.AUTH), (429, ErrorKind.RATE_LIMIT), (500, ErrorKind.OTHER)],
)
def test_api_error_without_retries_gives_an_error_of_its_kind(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub, status: int, kind: ErrorKind
) -> None:
    anthropic_stub.set_behaviour("error", status=status)

    turn = claude.run(
        TurnRequest(prompt="hello", model=MODEL), extra_env={"CLAUDE_CODE_MAX_RETRIES": "0"}
    )

    assert turn.exit_code != 0, turn.describe()
    (error,) = turn.all(Error)
    assert error.error is kind, turn.describe()
    assert error.http_status == status, turn.describe()
    assert str(status) in error.text
    assert turn.result.is_error
    assert turn.result.session_id
    assert not turn.all(TextDelta), "the CLI's synthetic error message reached the chat"
    assert len(anthropic_stub.requests) == 1


def test_bypass_mode_as_any_user_runs_the_tool_and_answers_after_it(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("tool", command="echo hi")

    turn = claude.run(
        TurnRequest(prompt="run echo hi", model=MODEL, permission_mode=PermissionMode.BYPASS)
    )

    assert turn.exit_code == 0, turn.describe()
    (tool_use,) = turn.all(ToolUse)
    assert tool_use.name == ToolName.SHELL
    assert tool_use.detail == "echo hi"
    (tool_result,) = turn.all(ToolResult)
    assert tool_result.tool_id == tool_use.tool_id
    assert tool_result.output.strip() == "hi"
    assert not tool_result.is_error
    assert turn.text == TOOL_PREAMBLE + TOOL_ANSWER_PREFIX + "hi"
    assert turn.result.text == TOOL_ANSWER_PREFIX + "hi"
    assert len(anthropic_stub.requests) == 2


def test_prompt_too_big_for_argv_reaches_the_model_through_stdin(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub
) -> None:
    prompt = "word " * 25_000 + "END"  # 125 kB: over ARGV_TEXT_LIMIT
    request = TurnRequest(prompt=prompt, model=MODEL)
    assert SPEC.stdin_text(request) == prompt, "the test needs the stdin path"

    turn = claude.run(request)

    assert turn.exit_code == 0, turn.describe()[:2000]
    assert last_user_text(anthropic_stub.requests[0]) == prompt
    assert turn.result.text == ECHO_PREFIX + prompt


def test_system_prompt_file_is_added_to_the_system_prompt(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub, tmp_path: Path
) -> None:
    memory = tmp_path / "memory.md"
    memory.write_text("The user's cat is called Ziggy.\n", encoding="utf-8")

    turn = claude.run(TurnRequest(prompt="hello", model=MODEL, append_system_prompt_file=memory))

    assert turn.exit_code == 0, turn.describe()
    system = anthropic_stub.requests[0].get("system")
    assert isinstance(system, list), system
    assert any("The user's cat is called Ziggy." in block.get("text", "") for block in system)


def test_the_prompt_reaches_the_model_through_stdin_and_is_in_no_argv(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub
) -> None:
    anthropic_stub.set_behaviour("stall")
    prompt = "my private question about the merger"
    seen: list[str] = []

    def on_events(events: list[Event], controls: Controls) -> None:
        if any(isinstance(e, Status) and e.status is StatusKind.REQUESTING for e in events):
            anthropic_stub.wait_for_requests(1, timeout=10)
            cmdline = Path(f"/proc/{controls.process.pid}/cmdline").read_bytes()
            seen.append(cmdline.replace(b"\0", b" ").decode())
            controls.interrupt()

    turn = claude.run(TurnRequest(prompt=prompt, model=MODEL), on_events=on_events)

    assert seen, turn.describe()
    assert "--include-partial-messages" in seen[0]  # the running CLI's own argv
    assert prompt not in seen[0]
    assert last_user_text(anthropic_stub.requests[0]) == prompt


def cut_every_stream_halfway(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamed answers break off halfway with an SSE ``error`` event, as when the API is
    overloaded mid-answer; Claude Code then asks again without streaming, and the stub
    answers that request in full."""

    def stream_block(self: Any, index: int, block: dict[str, Any], behaviour: object) -> None:
        half = block["text"][: len(block["text"]) // 2]
        self._event("content_block_start", {"index": index, "content_block": {"type": "text"}})
        delta = {"type": "text_delta", "text": half}
        self._event("content_block_delta", {"index": index, "delta": delta})
        self._event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
        self.end_stream()
        raise ClientGone

    monkeypatch.setattr(anthropic_api._Handler, "_stream_block", stream_block)


def test_an_answer_cut_mid_stream_and_asked_again_is_shown_exactly_once(
    claude: ClaudeRunner, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_every_stream_halfway(monkeypatch)

    turn = claude.run(TurnRequest(prompt="hello", model=MODEL))

    assert turn.exit_code == 0, turn.describe()
    assert [r.get("stream") for r in anthropic_stub.requests] == [True, False]
    assert turn.text == "ECHO: hello", turn.describe()
    assert turn.result.text == "ECHO: hello"
    assert not turn.all(Error)

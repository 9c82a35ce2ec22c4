"""Claude Code (``claude``): argv, environment and the ``stream-json`` parser.

A turn runs as::

    claude -p --output-format stream-json --verbose --include-partial-messages
           [--permission-mode MODE] [--model MODEL] [--effort EFFORT]
           [--append-system-prompt-file PATH | --append-system-prompt TEXT]
           [--max-turns N] [--max-budget-usd X] [--resume SESSION_ID]
           [cli_parameters ...]

**The prompt is written to stdin** (:func:`stdin_text`) and stdin closed: ``claude -p``
reads its prompt from there when argv has none. In argv any local user could read it
with ``ps``; on stdin its size is not limited by argv either. ``--output-format
stream-json`` with ``-p`` requires ``--verbose`` (without it Claude exits 1).
``--include-partial-messages`` makes Claude print the model's tokens as ``stream_event``
lines as they arrive, before the full ``assistant`` message. The runner passes the
appended system prompt (memory, rules) as a file for the same reason.

As root, Claude refuses the bypass mode ("--dangerously-skip-permissions cannot be used
with root/sudo privileges") unless ``IS_SANDBOX=1`` is set: :func:`provider_env`.
"""

from __future__ import annotations

import logging

from ductor.providers.events import (
    Compaction,
    ErrorKind,
    Event,
    Status,
    StatusKind,
    ThinkingDelta,
    ToolName,
    ToolResult,
    ToolUse,
    classify_error,
    http_status_in,
)
from ductor.providers.models import CLAUDE_EFFORTS
from ductor.providers.request import PermissionMode, TurnRequest, needs_file
from ductor.providers.stream import (
    TOOL_OUTPUT_LIMIT,
    JsonObject,
    StreamParser,
    Usage,
    get_float,
    get_int,
    get_list,
    get_obj,
    get_str,
    tool_detail,
    truncate,
)

log = logging.getLogger(__name__)

EXECUTABLE = "claude"

TOOL_NAMES: dict[str, ToolName] = {
    "Bash": ToolName.SHELL,
    "Read": ToolName.READ,
    "Write": ToolName.WRITE,
    "Edit": ToolName.EDIT,
    "MultiEdit": ToolName.EDIT,
    "NotebookEdit": ToolName.EDIT,
    "Grep": ToolName.SEARCH,
    "Glob": ToolName.FIND,
    "LS": ToolName.LIST,
    "WebFetch": ToolName.WEB_FETCH,
    "WebSearch": ToolName.WEB_SEARCH,
    "Task": ToolName.AGENT,
    "Agent": ToolName.AGENT,
    "TodoWrite": ToolName.CHECKLIST,
    "ExitPlanMode": ToolName.PLAN,
}

_STATUS_KINDS = {
    "compacting": StatusKind.COMPACTING,
    "requesting": StatusKind.REQUESTING,
}


def build_argv(request: TurnRequest, executable: str = EXECUTABLE) -> list[str]:
    """The argv of one Claude turn (see the module docstring for the shape)."""
    argv = [executable, "-p", "--output-format", "stream-json"]
    if "--verbose" not in request.extra_args:
        argv.append("--verbose")
    argv.append("--include-partial-messages")
    if request.permission_mode is not PermissionMode.DEFAULT:
        argv += ["--permission-mode", request.permission_mode.value]
    if request.model:
        argv += ["--model", request.model]
    effort = request.effective_effort
    if effort in CLAUDE_EFFORTS:
        argv += ["--effort", effort]
    elif effort:
        log.warning("Claude has no reasoning effort %r; running without --effort", effort)
    if request.append_system_prompt_file is not None:
        argv += ["--append-system-prompt-file", str(request.append_system_prompt_file)]
    elif request.append_system_prompt:
        if needs_file(request.append_system_prompt):
            raise ValueError(
                "the appended system prompt is too big for argv: write it to a file and"
                " pass it as append_system_prompt_file"
            )
        argv += ["--append-system-prompt", request.append_system_prompt]
    if request.max_turns is not None:
        argv += ["--max-turns", str(request.max_turns)]
    if request.max_budget_usd is not None:
        argv += ["--max-budget-usd", format(request.max_budget_usd, "g")]
    if request.session_id:
        argv += ["--resume", request.session_id]
    argv += request.extra_args
    return argv


def stdin_text(request: TurnRequest) -> str | None:
    """What to write to Claude's stdin: always the prompt, never argv (see the module)."""
    return request.prompt


def provider_env(request: TurnRequest, *, is_root: bool) -> dict[str, str]:
    """Claude's own environment: ``IS_SANDBOX=1`` only for root in bypass mode."""
    if is_root and request.permission_mode is PermissionMode.BYPASS:
        return {"IS_SANDBOX": "1"}
    return {}


class ClaudeParser(StreamParser):
    """Claude Code's ``--output-format stream-json --verbose`` stream.

    With ``--include-partial-messages`` the text arrives twice: token by token in
    ``stream_event`` lines, then whole in the ``assistant`` line (one content block per
    line). Per message id the parser remembers what it has shown and emits only text
    that neither source has shown yet, so each word reaches the user once and as early
    as possible, with or without partial messages.

    When the connection breaks mid-answer, Claude asks again (non-streaming) and the
    stream says so: the cut message's ``message_stop`` carries ``abandoned_blocks``
    (its id and the first block index given up). The text of those blocks was shown
    already; the retried message usually says the same words again, so only what it
    adds beyond them is shown. If it says something else, a status line tells the user
    the answer starts over, and the new text becomes the answer.
    """

    cli_name = "Claude"

    def __init__(self, model: str = "") -> None:
        super().__init__(model)
        self._shown: dict[str, str] = {}  # message id -> text emitted for it
        self._streamed: dict[str, str] = {}  # message id -> text from stream_event deltas
        self._complete: dict[str, str] = {}  # message id -> text from assistant lines
        self._streamed_thinking: set[str] = set()
        self._block_starts: dict[tuple[str, int], int] = {}  # (id, block) -> offset in text
        self._abandoned: tuple[str, str] | None = None  # (cut message id, its shown text)
        self._tool_ids: set[str] = set()
        self._api_error: tuple[str, int | None] | None = None  # synthetic error message
        self._retry_status: int | None = None
        self._interrupted = False

    def handle(self, obj: JsonObject) -> list[Event]:
        kind = get_str(obj, "type")
        if kind == "system":
            return self._system(obj)
        if kind == "stream_event":
            return self._stream_event(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "result":
            return self._result(obj)
        log.debug("Claude: ignoring event type %r", kind)
        return []

    def _system(self, obj: JsonObject) -> list[Event]:
        subtype = get_str(obj, "subtype")
        if subtype == "init":
            return self.start_session(get_str(obj, "session_id"), get_str(obj, "model"))
        if subtype == "status":
            status = get_str(obj, "status")
            if not status:
                return []
            return [Status(_STATUS_KINDS.get(status, StatusKind.OTHER), status)]
        if subtype == "compact_boundary":
            meta = get_obj(obj, "compact_metadata")
            return [Compaction(get_str(meta, "trigger"), get_int(meta, "pre_tokens"))]
        if subtype == "api_retry":
            self._retry_status = get_int(obj, "error_status")
            text = (
                f"API error {self._retry_status or ''} ({get_str(obj, 'error', 'unknown')}),"
                f" retry {get_int(obj, 'attempt')}/{get_int(obj, 'max_retries')}"
            )
            return [Status(StatusKind.RETRYING, text)]
        if subtype == "permission_denied":
            return [Status(StatusKind.PERMISSION_DENIED, get_str(obj, "message"))]
        log.debug("Claude: ignoring system event %r", subtype)
        return []

    def _stream_event(self, obj: JsonObject) -> list[Event]:
        if obj.get("parent_tool_use_id"):
            return []  # a sub-agent's tokens; its work shows up as the Task tool's result
        event = get_obj(obj, "event")
        message_id = get_str(obj, "api_message_id")
        if get_str(event, "type") == "message_stop":
            abandoned = get_obj(obj, "abandoned_blocks")
            if abandoned:
                self._abandon(get_str(abandoned, "api_message_id") or message_id, abandoned)
            return []
        if get_str(event, "type") != "content_block_delta":
            return []
        delta = get_obj(event, "delta")
        delta_type = get_str(delta, "type")
        if delta_type == "text_delta":
            streamed = self._streamed.get(message_id, "")
            self._block_starts.setdefault((message_id, get_int(event, "index") or 0), len(streamed))
            self._streamed[message_id] = streamed + get_str(delta, "text")
            return self._catch_up(message_id, self._streamed[message_id])
        if delta_type == "thinking_delta":
            self._streamed_thinking.add(message_id)
            thinking = get_str(delta, "thinking")
            return [ThinkingDelta(thinking)] if thinking else []
        return []

    def _abandon(self, message_id: str, abandoned: JsonObject) -> None:
        """Claude gave up the blocks from ``from_block_index`` of a cut message; their
        text, already shown, is what a retried message may repeat."""
        first = get_int(abandoned, "from_block_index") or 0
        offsets = [
            at
            for (block_message, index), at in self._block_starts.items()
            if block_message == message_id and index >= first
        ]
        if not offsets:
            return  # no text of those blocks was shown
        cut = min(offsets)
        shown = self._shown.get(message_id, "")
        self._abandoned = (message_id, shown[cut:])
        self._shown[message_id] = shown[:cut]
        self._streamed[message_id] = self._streamed.get(message_id, "")[:cut]

    def _after_retry(self, message_id: str, known: str) -> list[Event]:
        """The first text after a cut message: skip the words the user has seen already."""
        assert self._abandoned is not None
        cut_id, seen = self._abandoned
        if message_id == cut_id:
            return []
        if seen.startswith(known):
            self._shown[message_id] = known  # nothing new yet
            return []
        self._abandoned = None
        if known.startswith(seen):
            self._shown[message_id] = seen
            return []
        # The retry says something else: the text shown before is not the answer.
        log.info("Claude's retried answer differs from the cut one; starting it over")
        self._shown[message_id] = ""
        self.new_segment()
        return [Status(StatusKind.RETRYING, "The answer was cut off; Claude started it over")]

    def _catch_up(self, message_id: str, known: str) -> list[Event]:
        """Emit what ``known`` (all text of the message so far) adds to what was shown."""
        events: list[Event] = []
        if self._abandoned is not None:
            events = self._after_retry(message_id, known)
            if self._abandoned is not None:  # still within the words seen before the cut
                return events
        shown = self._shown.get(message_id, "")
        if len(known) <= len(shown) or not known.startswith(shown):
            return events
        self._shown[message_id] = known
        return [*events, *self.text(known[len(shown) :])]

    def _assistant(self, obj: JsonObject) -> list[Event]:
        if obj.get("parent_tool_use_id"):
            return []
        message = get_obj(obj, "message")
        model = get_str(message, "model")
        if obj.get("is_api_error_message") or model == "<synthetic>":
            texts = [get_str(b, "text") for b in _blocks(message) if get_str(b, "type") == "text"]
            status = get_int(obj, "api_error_status")
            self._api_error = ("".join(texts), status)
            return []
        if model:
            self.model = model
        message_id = get_str(message, "id")
        events: list[Event] = []
        for block in _blocks(message):
            block_type = get_str(block, "type")
            if block_type == "text":
                self._complete[message_id] = self._complete.get(message_id, "") + get_str(
                    block, "text"
                )
                events += self._catch_up(message_id, self._complete[message_id])
            elif block_type == "thinking" and message_id not in self._streamed_thinking:
                thinking = get_str(block, "thinking")
                if thinking:
                    events.append(ThinkingDelta(thinking))
            elif block_type == "tool_use":
                events += self._tool_use(block)
        return events

    def _tool_use(self, block: JsonObject) -> list[Event]:
        tool_id = get_str(block, "id")
        if tool_id in self._tool_ids:
            return []
        self._tool_ids.add(tool_id)
        self.tool_started()
        raw = get_str(block, "name")
        tool_input = get_obj(block, "input")
        return [
            ToolUse(
                tool_id=tool_id,
                name=TOOL_NAMES.get(raw, raw),
                raw_name=raw,
                detail=tool_detail(tool_input),
                input=tool_input,
            )
        ]

    def _user(self, obj: JsonObject) -> list[Event]:
        if obj.get("parent_tool_use_id"):
            return []
        events: list[Event] = []
        for block in _blocks(get_obj(obj, "message")):
            block_type = get_str(block, "type")
            if block_type == "tool_result":
                events.append(
                    ToolResult(
                        tool_id=get_str(block, "tool_use_id"),
                        output=truncate(_content_text(block.get("content")), TOOL_OUTPUT_LIMIT),
                        is_error=block.get("is_error") is True,
                    )
                )
            elif block_type == "text" and get_str(block, "text").startswith(
                "[Request interrupted by user"
            ):
                self._interrupted = True
        return events

    def _result(self, obj: JsonObject) -> list[Event]:
        if get_str(obj, "session_id"):
            self.session_id = get_str(obj, "session_id")
        usage = _usage(obj)
        if not self.model:
            self.model = next(iter(get_obj(obj, "modelUsage")), "")
        final_text = obj.get("result")
        if obj.get("is_error") is not True:
            if not isinstance(final_text, str):
                return self.result(usage)
            # Text that never streamed (``--output-format json``, a lost line) still
            # reaches the user as a delta before the result.
            shown = self.segment_text
            catch_up = self.text(final_text[len(shown) :]) if final_text.startswith(shown) else []
            return [*catch_up, *self.result(usage, text=final_text)]
        if get_str(obj, "terminal_reason").startswith("aborted") or self._interrupted:
            return self.fail(ErrorKind.INTERRUPTED, "Claude was interrupted", usage=usage)
        api_text, api_status = self._api_error or ("", None)
        status = get_int(obj, "api_error_status") or api_status or self._retry_status
        errors = "; ".join(e for e in get_list(obj, "errors") if isinstance(e, str))
        text = (
            (final_text if isinstance(final_text, str) else "")
            or api_text
            or errors
            or f"Claude failed ({get_str(obj, 'subtype', 'error')})"
        )
        status = status or http_status_in(text)
        return self.fail(classify_error(text, status), text, status, usage)

    def exit_failure(self, exit_code: int, stderr_text: str) -> list[Event]:
        # On SIGINT Claude prints "[Request interrupted by user]" and then, now and then
        # (about one run in 30 with a stalled stream), exits 0 without the result line.
        if self._interrupted:
            return self.fail(ErrorKind.INTERRUPTED, "Claude was interrupted")
        return super().exit_failure(exit_code, stderr_text)


def _blocks(message: JsonObject) -> list[JsonObject]:
    return [b for b in get_list(message, "content") if isinstance(b, dict)]


def _content_text(content: object) -> str:
    """A tool result's content: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            get_str(b, "text") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _usage(obj: JsonObject) -> Usage:
    """This turn's usage. ``total_cost_usd`` and ``modelUsage`` are totals for the whole
    session when it was resumed; ``model_usage_since_last_result`` is this turn only and
    also counts a request that an interrupt cut short (``usage`` is zero then).
    """
    duration = get_int(obj, "duration_ms")
    turns = get_int(obj, "num_turns")
    per_model = [m for m in get_obj(obj, "model_usage_since_last_result").values()]
    models = [m for m in per_model if isinstance(m, dict)]
    if models:
        return Usage(
            input_tokens=sum(get_int(m, "inputTokens") or 0 for m in models),
            output_tokens=sum(get_int(m, "outputTokens") or 0 for m in models),
            cache_read_tokens=sum(get_int(m, "cacheReadInputTokens") or 0 for m in models),
            cache_write_tokens=sum(get_int(m, "cacheCreationInputTokens") or 0 for m in models),
            cost_usd=sum(get_float(m, "costUSD") or 0.0 for m in models),
            duration_ms=duration,
            num_turns=turns,
        )
    usage = get_obj(obj, "usage")
    return Usage(
        input_tokens=get_int(usage, "input_tokens") or 0,
        output_tokens=get_int(usage, "output_tokens") or 0,
        cache_read_tokens=get_int(usage, "cache_read_input_tokens") or 0,
        cache_write_tokens=get_int(usage, "cache_creation_input_tokens") or 0,
        cost_usd=get_float(obj, "total_cost_usd"),
        duration_ms=duration,
        num_turns=turns,
    )

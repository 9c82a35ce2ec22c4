"""OpenAI Codex CLI (``codex exec``): argv, environment and the ``--json`` parser.

A new turn runs as::

    codex exec --json --color never --skip-git-repo-check [SANDBOX] [-m MODEL]
               [-c model_reasoning_effort=EFFORT] [cli_parameters ...] -

and a resumed one as the same with ``resume SESSION_ID -`` in place of the final ``-``.
Options go before ``resume``: ``codex exec`` applies them to the resumed session too.

**The prompt is written to stdin** (``-`` tells Codex to read it from there), so its size
is never limited by argv. Codex has no flag to append to its system prompt, so the
appended system prompt follows the user's prompt on stdin, after a blank line.

SANDBOX comes from the permission mode: ``bypassPermissions`` →
``--dangerously-bypass-approvals-and-sandbox``, ``acceptEdits`` → ``-s workspace-write``,
``plan`` → ``-s read-only``, ``default`` → nothing (Codex's own config decides; out of the
box that is read-only). ``codex exec`` never asks for approval, so there is no approval
flag to set.
"""

from __future__ import annotations

import logging
import re

from ductor.providers.events import (
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
from ductor.providers.request import PermissionMode, TurnRequest, prompt_with_context
from ductor.providers.stream import (
    TOOL_OUTPUT_LIMIT,
    JsonObject,
    StreamParser,
    Usage,
    get_int,
    get_list,
    get_obj,
    get_str,
    last_lines,
    tool_detail,
    truncate,
)

log = logging.getLogger(__name__)

EXECUTABLE = "codex"

_SANDBOX_FLAGS: dict[PermissionMode, tuple[str, ...]] = {
    PermissionMode.DEFAULT: (),
    PermissionMode.PLAN: ("-s", "read-only"),
    PermissionMode.ACCEPT_EDITS: ("-s", "workspace-write"),
    PermissionMode.BYPASS: ("--dangerously-bypass-approvals-and-sandbox",),
    PermissionMode.DONT_ASK: (),  # `codex exec` never asks: its own sandbox settings apply
}

# item.type of the items that are tool calls
TOOL_NAMES: dict[str, ToolName] = {
    "command_execution": ToolName.SHELL,
    "file_change": ToolName.EDIT,
    "web_search": ToolName.WEB_SEARCH,
    "todo_list": ToolName.CHECKLIST,
}

# What Codex prints to stderr whenever stdin is not a terminal; never an error message.
_STDIN_NOTICES = ("Reading additional input from stdin", "Reading prompt from stdin")
_SHELL_WRAPPER = re.compile(r"^(?:/\S*/)?(?:ba|z)?sh -lc '(.*)'$", re.DOTALL)


def build_argv(request: TurnRequest, executable: str = EXECUTABLE) -> list[str]:
    """The argv of one Codex turn (see the module docstring for the shape)."""
    argv = [executable, "exec", "--json", "--color", "never", "--skip-git-repo-check"]
    argv += _SANDBOX_FLAGS[request.permission_mode]
    if request.model:
        argv += ["-m", request.model]
    if request.effective_effort:
        argv += ["-c", f"model_reasoning_effort={request.effective_effort}"]
    argv += request.extra_args
    if request.session_id:
        argv += ["resume", request.session_id]
    argv.append("-")
    return argv


def stdin_text(request: TurnRequest) -> str | None:
    """What to write to Codex's stdin: always the prompt (plus the appended context)."""
    return prompt_with_context(request)


def provider_env(request: TurnRequest, *, is_root: bool) -> dict[str, str]:
    """Codex needs nothing beyond the common child environment."""
    return {}


class CodexParser(StreamParser):
    """Codex's ``exec --json`` stream.

    Codex prints no token deltas: an ``agent_message`` item arrives whole when it is
    complete. Consecutive messages are separated by a blank line. There is no final
    result line: ``turn.completed`` (with the usage) or ``turn.failed`` ends the turn.
    """

    cli_name = "Codex"

    def __init__(self, model: str = "") -> None:
        super().__init__(model)
        self._started_tools: set[str] = set()
        self._last_error = ""

    def handle(self, obj: JsonObject) -> list[Event]:
        kind = get_str(obj, "type")
        if kind == "thread.started":
            return self.start_session(get_str(obj, "thread_id"))
        if kind in ("item.started", "item.completed"):
            return self._item(get_obj(obj, "item"), completed=kind == "item.completed")
        if kind == "turn.completed":
            return self.result(_usage(get_obj(obj, "usage")))
        if kind == "turn.failed":
            message = get_str(get_obj(obj, "error"), "message") or self._last_error
            return self._fail_with(message or "Codex failed")
        if kind == "error":
            message = get_str(obj, "message")
            if message.startswith("Reconnecting"):
                return [Status(StatusKind.RETRYING, message)]
            self._last_error = message or self._last_error
            return []
        if kind not in ("turn.started", "item.updated"):
            log.debug("Codex: ignoring event type %r", kind)
        return []

    def _item(self, item: JsonObject, *, completed: bool) -> list[Event]:
        item_type = get_str(item, "type")
        item_id = get_str(item, "id")
        if item_type == "agent_message":
            if not completed:
                return []
            text = get_str(item, "text")
            return self.text(f"\n\n{text}" if self.segment_text and text else text)
        if item_type == "reasoning":
            text = get_str(item, "text")
            return [ThinkingDelta(text)] if completed and text else []
        if item_type == "error":
            return [Status(StatusKind.WARNING, get_str(item, "message"))] if completed else []
        if item_type not in TOOL_NAMES and item_type != "mcp_tool_call":
            log.debug("Codex: ignoring item type %r", item_type)
            return []
        events: list[Event] = []
        if item_id not in self._started_tools:
            self._started_tools.add(item_id)
            events.append(self._tool_use(item_id, item_type, item))
        if completed:
            status = get_str(item, "status")
            exit_code = get_int(item, "exit_code")
            events.append(
                ToolResult(
                    tool_id=item_id,
                    output=truncate(get_str(item, "aggregated_output"), TOOL_OUTPUT_LIMIT),
                    is_error=status in ("failed", "declined") or exit_code not in (None, 0),
                )
            )
        return events

    def _tool_use(self, item_id: str, item_type: str, item: JsonObject) -> ToolUse:
        self.tool_started()
        if item_type == "mcp_tool_call":
            tool = get_str(item, "tool") or get_str(item, "name") or "MCP"
            raw = f"{get_str(item, 'server')}.{tool}" if get_str(item, "server") else tool
            arguments = get_obj(item, "arguments")
            return ToolUse(item_id, raw, raw, tool_detail(arguments), arguments)
        tool_input: JsonObject = {
            key: value
            for key, value in item.items()
            if key not in ("id", "type", "status", "aggregated_output", "exit_code")
        }
        detail = tool_detail(tool_input)
        if item_type == "command_execution":
            wrapped = _SHELL_WRAPPER.match(get_str(item, "command"))
            detail = truncate(wrapped.group(1), 200) if wrapped else detail
        elif item_type == "file_change":
            paths = [get_str(c, "path") for c in get_list(item, "changes") if isinstance(c, dict)]
            detail = truncate(", ".join(p for p in paths if p), 200)
        return ToolUse(item_id, TOOL_NAMES[item_type], item_type, detail, tool_input)

    def _fail_with(self, message: str) -> list[Event]:
        status = http_status_in(message)
        return self.fail(classify_error(message, status), message, status)

    def exit_failure(self, exit_code: int, stderr_text: str) -> list[Event]:
        if exit_code == 0:
            return super().exit_failure(exit_code, stderr_text)
        lines = [line for line in stderr_text.splitlines() if not line.startswith(_STDIN_NOTICES)]
        message = (
            self._last_error
            or last_lines("\n".join(lines))
            or f"Codex exited with code {exit_code}"
        )
        return self._fail_with(message)


def _usage(usage: JsonObject) -> Usage:
    return Usage(
        input_tokens=get_int(usage, "input_tokens") or 0,
        output_tokens=get_int(usage, "output_tokens") or 0,
        cache_read_tokens=get_int(usage, "cached_input_tokens") or 0,
        cache_write_tokens=get_int(usage, "cache_write_input_tokens") or 0,
    )

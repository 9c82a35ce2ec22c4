"""Google Gemini CLI (``gemini``): argv, environment and the ``stream-json`` parser.

A turn runs as::

    gemini --output-format stream-json [--approval-mode MODE] [-m MODEL]
           [--resume SESSION_ID] [cli_parameters ...]

**The prompt is written to stdin** and stdin closed: with stdin not a terminal Gemini
runs headless and reads its prompt from there, so its size is never limited by argv.
The appended system prompt follows the user's prompt on stdin, after a blank line:
``GEMINI_SYSTEM_MD`` would *replace* Gemini's own system prompt (and its tool
instructions) rather than add to it. Gemini has no reasoning-effort setting.

MODE comes from the permission mode: ``bypassPermissions`` → ``yolo``, ``acceptEdits``
→ ``auto_edit``, ``plan`` → ``plan``, ``default`` → no flag. In the default mode headless
Gemini does not even offer its shell tool to the model.

The environment sets ``GEMINI_CLI_NO_RELAUNCH=true``: otherwise ``gemini`` re-launches
itself as a child node process and the parent ignores SIGINT/SIGTERM without forwarding
them, so ``/interrupt`` sent to the PID would do nothing (it also starts about 0.9 s
faster and uses about 145 MB less). ``GEMINI_CLI_TRUST_WORKSPACE=true`` keeps Gemini from
refusing to run in a folder it has not been told to trust (exit 55).
"""

from __future__ import annotations

import json
import logging
import re

from ductor.providers.events import (
    ErrorKind,
    Event,
    Status,
    StatusKind,
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
    get_obj,
    get_str,
    last_lines,
    tool_detail,
    truncate,
)

log = logging.getLogger(__name__)

EXECUTABLE = "gemini"

_APPROVAL_MODES: dict[PermissionMode, str | None] = {
    PermissionMode.DEFAULT: None,
    PermissionMode.PLAN: "plan",
    PermissionMode.ACCEPT_EDITS: "auto_edit",
    PermissionMode.BYPASS: "yolo",
    PermissionMode.DONT_ASK: None,  # headless Gemini never asks: unapproved tools are denied
}

TOOL_NAMES: dict[str, ToolName] = {
    "run_shell_command": ToolName.SHELL,
    "read_file": ToolName.READ,
    "read_many_files": ToolName.READ,
    "write_file": ToolName.WRITE,
    "replace": ToolName.EDIT,
    "edit": ToolName.EDIT,
    "grep_search": ToolName.SEARCH,
    "search_file_content": ToolName.SEARCH,
    "glob": ToolName.FIND,
    "list_directory": ToolName.LIST,
    "web_fetch": ToolName.WEB_FETCH,
    "google_web_search": ToolName.WEB_SEARCH,
    "invoke_agent": ToolName.AGENT,
    "write_todos": ToolName.CHECKLIST,
    "enter_plan_mode": ToolName.PLAN,
    "exit_plan_mode": ToolName.PLAN,
    "save_memory": ToolName.MEMORY,
}

# Gemini exits with the HTTP status of a failed API call, modulo 256 (500 → 244).
_STATUSES = (400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504)
EXIT_CODE_STATUS = {status % 256: status for status in _STATUSES}
EXIT_AUTH_METHOD = 41  # "Invalid auth method selected." (headless cannot use that auth)
EXIT_INPUT = 42  # bad input, e.g. "Error resuming session: No previous sessions found ..."
EXIT_UNTRUSTED = 55  # "not running in a trusted directory"

_API_ERROR = re.compile(r"\[API Error: (.*?)\](?=\s|$)", re.DOTALL)
_STDERR_API_ERROR = re.compile(r"_ApiError: (\{.*\})")
# Gemini's retries are printed to stderr only, one line per failed attempt:
#   Attempt 1 failed with status 429. Retrying with backoff... _ApiError: {"error": ...}
#   Attempt 1 failed. Retrying with backoff... GaxiosError: request to ... ECONNRESET
_RETRY_LINE = re.compile(
    r"^Attempt (?P<attempt>\d+) failed(?: with status (?P<status>\d+))?.*?\bRetrying\b"
    r"(?:[^.]*\.+)?\s*(?P<reason>.*)$"
)
# "Error resuming session: No previous sessions found for this project." or
# "Error resuming session: Invalid session identifier "...".": the session is gone.
_RESUME_ERROR = re.compile(r"Error resuming session: (.*)")


def build_argv(request: TurnRequest, executable: str = EXECUTABLE) -> list[str]:
    """The argv of one Gemini turn (see the module docstring for the shape)."""
    argv = [executable, "--output-format", "stream-json"]
    approval = _APPROVAL_MODES[request.permission_mode]
    if approval is not None:
        argv += ["--approval-mode", approval]
    if request.model:
        argv += ["-m", request.model]
    if request.session_id:
        argv += ["--resume", request.session_id]
    argv += request.extra_args
    return argv


def stdin_text(request: TurnRequest) -> str | None:
    """What to write to Gemini's stdin: always the prompt (plus the appended context)."""
    return prompt_with_context(request)


def provider_env(request: TurnRequest, *, is_root: bool) -> dict[str, str]:
    """Gemini's own environment: one process that gets our signals, a trusted workspace."""
    return {"GEMINI_CLI_NO_RELAUNCH": "true", "GEMINI_CLI_TRUST_WORKSPACE": "true"}


class GeminiParser(StreamParser):
    """Gemini's ``--output-format stream-json`` stream.

    Assistant text arrives as ``message`` lines with ``delta: true``. After a dropped
    connection Gemini retries by itself and streams the answer again from the start, so
    a failed turn's partial text may contain a repetition.
    """

    cli_name = "Gemini"

    def __init__(self, model: str = "") -> None:
        super().__init__(model)
        self._last_error = ""

    def handle(self, obj: JsonObject) -> list[Event]:
        kind = get_str(obj, "type")
        if kind == "init":
            model = get_str(obj, "model")
            return self.start_session(get_str(obj, "session_id"), "" if model == "auto" else model)
        if kind == "message":
            if get_str(obj, "role") not in ("assistant", "model"):
                return []
            return self._message(obj.get("content"))
        if kind == "tool_use":
            return self._tool_use(
                get_str(obj, "tool_id") or get_str(obj, "id"),
                get_str(obj, "tool_name") or get_str(obj, "name"),
                get_obj(obj, "parameters") or get_obj(obj, "input"),
            )
        if kind == "tool_result":
            error = get_obj(obj, "error")
            output = get_str(obj, "output") or get_str(error, "message")
            return [
                ToolResult(
                    tool_id=get_str(obj, "tool_id"),
                    output=truncate(output, TOOL_OUTPUT_LIMIT),
                    is_error=get_str(obj, "status", "success") != "success",
                )
            ]
        if kind == "error":
            message = get_str(obj, "message")
            if get_str(obj, "severity", "error") == "error":
                self._last_error = message or self._last_error
                return []
            return [Status(StatusKind.WARNING, message)]
        if kind == "result":
            return self._result(obj)
        log.debug("Gemini: ignoring event type %r", kind)
        return []

    def feed_stderr(self, line: str) -> list[Event]:
        """Gemini's API retries, which it prints only to stderr, as they happen."""
        match = _RETRY_LINE.match(line.strip())
        if match is None:
            return []
        status = int(match.group("status")) if match.group("status") else None
        reason = match.group("reason")
        api = _STDERR_API_ERROR.search(reason)
        if api is not None:
            try:
                error = get_obj(json.loads(api.group(1)), "error")
            except ValueError:
                error = {}
            status = status or get_int(error, "code")
            reason = get_str(error, "status") or get_str(error, "message") or reason
        reason = truncate(reason.strip(), 120) or "no detail"
        what = f"API error {status}" if status else "API call failed"
        return [Status(StatusKind.RETRYING, f"{what} ({reason}), retry {match.group('attempt')}")]

    def _message(self, content: object) -> list[Event]:
        if isinstance(content, str):
            return self.text(content)
        events: list[Event] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                events += self.text(get_str(block, "text"))
            elif block.get("type") == "tool_use":
                events += self._tool_use(
                    get_str(block, "id"), get_str(block, "name"), get_obj(block, "input")
                )
        return events

    def _tool_use(self, tool_id: str, raw: str, parameters: JsonObject) -> list[Event]:
        self.tool_started()
        name = TOOL_NAMES.get(raw, raw)
        return [ToolUse(tool_id, name, raw, tool_detail(parameters), parameters)]

    def _result(self, obj: JsonObject) -> list[Event]:
        if get_str(obj, "session_id"):
            self.session_id = get_str(obj, "session_id")
        stats = get_obj(obj, "stats")
        if not self.model:
            # Without -m Gemini routes each turn; the routed model is the last one listed
            # (the router's own small model comes first).
            self.model = next(reversed(list(get_obj(stats, "models"))), "")
        usage = Usage(
            input_tokens=get_int(stats, "input_tokens") or 0,
            output_tokens=get_int(stats, "output_tokens") or 0,
            cache_read_tokens=get_int(stats, "cached") or 0,
            duration_ms=get_int(stats, "duration_ms"),
        )
        if get_str(obj, "status", "success") != "error" and obj.get("is_error") is not True:
            return self.result(usage)
        error = get_obj(obj, "error")
        raw = get_str(error, "message") or self._last_error or "Gemini failed"
        text, status = _api_error(raw)
        return self.fail(classify_error(text, status), text, status, usage)

    def exit_failure(self, exit_code: int, stderr_text: str) -> list[Event]:
        if exit_code == 0:
            return super().exit_failure(exit_code, stderr_text)
        resume = _RESUME_ERROR.search(stderr_text)
        if resume is not None:
            # Gemini no longer has the session: the caller may start a fresh one.
            return self.fail(ErrorKind.OTHER, f"Error resuming session: {resume.group(1).strip()}")
        if exit_code == EXIT_AUTH_METHOD:
            text = (
                "Gemini cannot use its configured auth method in headless mode (exit 41):"
                " set GEMINI_API_KEY in the agent's .env, or pick an API key login in"
                " `gemini` once"
            )
            return self.fail(ErrorKind.AUTH, text)
        if exit_code == EXIT_UNTRUSTED:
            return self.fail(ErrorKind.OTHER, "Gemini does not trust the workspace (exit 55)")
        text, status = _stderr_error(stderr_text)
        status = status or EXIT_CODE_STATUS.get(exit_code)
        text = text or f"Gemini exited with code {exit_code}"
        return self.fail(classify_error(text, status), text, status)


def _api_error(message: str) -> tuple[str, int | None]:
    """A readable text and the HTTP status of Gemini's ``[API Error: {json}]`` message."""
    match = _API_ERROR.search(message)
    if match is None:
        return message, http_status_in(message)
    inner = match.group(1)
    after = message[match.end() :].strip()
    try:
        error = get_obj(json.loads(inner), "error")
    except ValueError:
        error = {}
    status = get_int(error, "code") or http_status_in(inner)
    text = get_str(error, "message") or inner
    text = f"API error {status}: {text}" if status and str(status) not in text else text
    return (f"{text}\n{after}" if after else text), status


def _stderr_error(stderr_text: str) -> tuple[str, int | None]:
    """The last API error Gemini logged to stderr, else the last line that is not noise."""
    for line in reversed(stderr_text.splitlines()):
        match = _STDERR_API_ERROR.search(line)
        if match is None:
            continue
        try:
            error = get_obj(json.loads(match.group(1)), "error")
        except ValueError:
            continue
        status = get_int(error, "code")
        message = get_str(error, "message")
        if message:
            return (f"API error {status}: {message}" if status else message), status
    meaningful = [line for line in stderr_text.splitlines() if line.strip() and not _is_noise(line)]
    text = last_lines(meaningful[-1]) if meaningful else ""
    return text, http_status_in(text)


def _is_noise(line: str) -> bool:
    stripped = line.strip()
    return (
        stripped.startswith(("at ", "Warning:", "Ripgrep is not available", "YOLO mode"))
        or stripped in ("{", "}")
        or stripped.startswith("status:")
    )

"""A local stand-in for the Anthropic Messages API, for running the real Claude Code CLI.

Stdlib only. It listens on 127.0.0.1 on a free port and answers ``POST /v1/messages``
(Claude Code adds ``?beta=true``) streaming (SSE) or not, as the request asks::

    with AnthropicStub() as stub:
        env = {"ANTHROPIC_BASE_URL": stub.base_url, "ANTHROPIC_API_KEY": "sk-fake"}
        stub.set_behaviour("echo", chunk_size=2, chunk_delay=0.05)
        ...  # run claude
        stub.requests  # the JSON bodies it received, oldest first

Behaviours (:class:`Mode`):

- ``echo``: answer ``ECHO: <the last user text block>``, in text deltas of
  ``chunk_size`` characters (0: one delta) with ``chunk_delay`` seconds between them,
  after ``first_byte_delay`` seconds of silence;
- ``stall``: send the response headers and ``message_start``, then nothing until the
  client goes away (an interrupt) or the stub is closed;
- ``error``: fail with HTTP ``status`` and an error body in Anthropic's shape;
- ``tool``: ask for one ``Bash`` call running ``command``; the follow-up request, which
  carries the tool result, is answered ``Tool said: <its output>``;
- ``midstream``: a streamed answer stops after half its text with an SSE ``error`` event
  (``overloaded_error``); a request without ``stream`` gets the whole answer.

Other endpoints get a harmless answer (``count_tokens`` a token count, anything else an
empty object) and unknown paths are logged to stderr.

Standalone: ``python -m tests.stubs.anthropic_api --port 0`` prints the base URL and
serves until interrupted.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tests.stubs.model_stub import (
    ECHO_PREFIX,
    TOOL_ANSWER_PREFIX,
    TOOL_PREAMBLE,
    Behaviour,
    ClientGone,
    JsonDict,
    Mode,
    ModelStub,
    StubHandler,
    chunks,
    serve_standalone,
    standalone_options,
    token_estimate,
)

__all__ = [
    "ECHO_PREFIX",
    "TOOL_ANSWER_PREFIX",
    "TOOL_PREAMBLE",
    "AnthropicStub",
    "Behaviour",
    "ClientGone",
    "Mode",
    "last_user_text",
]

# Anthropic's error "type" for each HTTP status it uses.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str | None = None) -> JsonDict:
    """An error response body as the Anthropic API sends it."""
    kind = ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message or f"stub {kind}"},
    }


def last_user_text(body: Mapping[str, Any]) -> str:
    """The last text block of the last user message: the prompt of this turn.

    Claude Code puts system reminders first and the prompt last; a message whose content
    is a plain string counts as one text block.
    """
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [
            block.get("text", "")
            for block in content or []
            if isinstance(block, dict) and block.get("type") == "text"
        ]
        if texts:
            return str(texts[-1])
    return ""


_SYSTEM_REMINDER = re.compile(r"\s*<system-reminder>.*?</system-reminder>\s*", re.DOTALL)


def last_tool_result(body: Mapping[str, Any]) -> str | None:
    """The output of the tool result in the last user message, None when there is none.

    Claude Code appends ``<system-reminder>`` blocks to tool output for some models (the
    token budget left); they are not the tool's output and are left out.
    """
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), list):
        return None
    for block in users[-1]["content"]:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                content = "".join(
                    str(part.get("text", ""))
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "text"
                )
            return _SYSTEM_REMINDER.sub("", str(content or ""))
    return None


class AnthropicStub(ModelStub):
    name = "Anthropic"

    def handler_class(self) -> type[StubHandler]:
        return _Handler


class _Handler(StubHandler):
    # -- routing ----------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self.read_json()
        if path == "/v1/messages":
            behaviour = self.stub.record("POST", self.path, body)
            self.guarded(lambda: self._messages(body, behaviour))
            return
        self.stub.record("POST", self.path, None)
        if path == "/v1/messages/count_tokens":
            self.send_json(200, {"input_tokens": token_estimate(json.dumps(body))})
            return
        self.unknown()

    def do_GET(self) -> None:
        self.stub.record("GET", self.path, None)
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/v1/models":
            self.send_json(200, {"data": [], "has_more": False, "first_id": None})
            return
        self.unknown()

    def do_HEAD(self) -> None:
        self.stub.record("HEAD", self.path, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def unknown(self) -> None:
        """Claude Code asks for more than the stub serves: an empty object, not a 404."""
        print(f"anthropic stub: unknown {self.command} {self.path}", file=sys.stderr, flush=True)
        self.send_json(200, {})

    def send_json(self, status: int, body: Mapping[str, Any], **headers: str) -> None:
        super().send_json(status, body, **{"request_id": "req_stub", **headers})

    # -- /v1/messages -----------------------------------------------------------------

    def _messages(self, body: JsonDict, behaviour: Behaviour) -> None:
        self.sleep(behaviour.first_byte_delay)
        if behaviour.mode is Mode.ERROR:
            self.send_json(behaviour.status, error_body(behaviour.status))
            return
        model = str(body.get("model") or "claude-stub")
        message_id = f"msg_stub_{self.stub.next_id():04d}"
        blocks = _answer_blocks(body, behaviour, message_id)
        input_tokens = token_estimate(json.dumps(body.get("messages", [])))
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        if not body.get("stream"):
            message = _message(message_id, model, input_tokens, blocks)
            message["stop_reason"] = stop_reason
            message["usage"]["output_tokens"] = sum(map(_block_tokens, blocks))
            self.send_json(200, message)
            return
        self.start_stream(request_id=f"req_{message_id}")
        self._event("message_start", {"message": _message(message_id, model, input_tokens, [])})
        if behaviour.mode is Mode.STALL:
            self.wait_for_client_to_leave()
            return
        self._event("ping", {})
        if behaviour.mode is Mode.MIDSTREAM:
            half = {"type": "text", "text": blocks[0]["text"][: len(blocks[0]["text"]) // 2]}
            self._stream_block(0, half, behaviour)
            self.sse(error_body(529, "stub mid-stream failure"), "error")
            self.end_stream()
            return
        for index, block in enumerate(blocks):
            self._stream_block(index, block, behaviour)
        self._event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": sum(map(_block_tokens, blocks))},
            },
        )
        self._event("message_stop", {})
        self.end_stream()

    def _stream_block(self, index: int, block: JsonDict, behaviour: Behaviour) -> None:
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            self._event("content_block_start", {"index": index, "content_block": start})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            self._event("content_block_delta", {"index": index, "delta": delta})
        else:
            start = {"type": "text", "text": ""}
            self._event("content_block_start", {"index": index, "content_block": start})
            for number, piece in enumerate(chunks(block["text"], behaviour.chunk_size)):
                if number:
                    self.sleep(behaviour.chunk_delay)
                delta = {"type": "text_delta", "text": piece}
                self._event("content_block_delta", {"index": index, "delta": delta})
        self._event("content_block_stop", {"index": index})

    def _event(self, name: str, data: JsonDict) -> None:
        self.sse({"type": name, **data}, name)


def _answer_blocks(body: JsonDict, behaviour: Behaviour, message_id: str) -> list[JsonDict]:
    if behaviour.mode is Mode.TOOL:
        output = last_tool_result(body)
        if output is None:
            return [
                {"type": "text", "text": TOOL_PREAMBLE},
                {
                    "type": "tool_use",
                    "id": message_id.replace("msg_", "toolu_"),
                    "name": "Bash",
                    "input": {
                        "command": behaviour.command,
                        "description": "Run the stub's test command",
                    },
                },
            ]
        return [{"type": "text", "text": TOOL_ANSWER_PREFIX + output}]
    return [{"type": "text", "text": ECHO_PREFIX + last_user_text(body)}]


def _message(message_id: str, model: str, input_tokens: int, content: list[JsonDict]) -> JsonDict:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _block_tokens(block: Mapping[str, Any]) -> int:
    return token_estimate(json.dumps(block.get("text") or block.get("input") or ""))


def main(argv: list[str] | None = None) -> int:
    parser = standalone_options("tests.stubs.anthropic_api", "the Anthropic Messages API")
    parser.add_argument("--chunk-size", type=int, default=0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--first-byte-delay", type=float, default=0.0)
    parser.add_argument("--command", default="echo hi", help="the Bash call of --mode tool")
    return serve_standalone(AnthropicStub, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

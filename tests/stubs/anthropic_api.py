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

import argparse
import itertools
import json
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

JsonDict = dict[str, Any]

ECHO_PREFIX = "ECHO: "
TOOL_ANSWER_PREFIX = "Tool said: "
TOOL_PREAMBLE = "I'll run a command."


class Mode(StrEnum):
    ECHO = "echo"
    STALL = "stall"
    ERROR = "error"
    TOOL = "tool"
    MIDSTREAM = "midstream"


@dataclass(frozen=True)
class Behaviour:
    """How the stub answers the next model requests."""

    mode: Mode = Mode.ECHO
    chunk_size: int = 0  # characters per text delta; 0 sends the whole text in one delta
    chunk_delay: float = 0.0  # seconds between two deltas
    first_byte_delay: float = 0.0  # seconds before the response starts
    status: int = 500  # the HTTP status of the error mode
    command: str = "echo hi"  # the Bash command the tool mode asks for


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


def chunks(text: str, size: int) -> list[str]:
    if size <= 0 or not text:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def token_estimate(text: str) -> int:
    return max(1, len(text) // 4)


class AnthropicStub:
    """The stub server: a context manager, one thread per connection."""

    def __init__(self, port: int = 0, behaviour: Behaviour | None = None) -> None:
        self._lock = threading.Condition()
        self._behaviour = behaviour or Behaviour()
        self._message_ids = itertools.count(1)
        self._closing = threading.Event()
        self.requests: list[JsonDict] = []  # JSON bodies of POST /v1/messages, in order
        self.calls: list[tuple[str, str]] = []  # (method, path) of every HTTP request
        self._server = _Server(("127.0.0.1", port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="anthropic-stub",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    def set_behaviour(
        self,
        mode: Mode | str = Mode.ECHO,
        *,
        chunk_size: int = 0,
        chunk_delay: float = 0.0,
        first_byte_delay: float = 0.0,
        status: int = 500,
        command: str = "echo hi",
    ) -> Behaviour:
        """Answer the next requests this way (see :class:`Behaviour` for the options)."""
        behaviour = Behaviour(
            Mode(mode), chunk_size, chunk_delay, first_byte_delay, status, command
        )
        with self._lock:
            self._behaviour = behaviour
        return behaviour

    def wait_for_requests(self, count: int = 1, timeout: float = 10.0) -> list[JsonDict]:
        """Block until ``count`` model requests have arrived; the requests so far."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(
                    f"the Anthropic stub got {len(self.requests)} of {count} model requests"
                    f" in {timeout} s; calls seen: {self.calls}"
                )
            return list(self.requests)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # ends stalled and slow answers
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- for the handler --------------------------------------------------------------

    def _record(self, method: str, path: str, body: JsonDict | None) -> Behaviour:
        with self._lock:
            self.calls.append((method, path))
            if body is not None:
                self.requests.append(body)
                self._lock.notify_all()
            return self._behaviour

    def _next_message_id(self) -> str:
        with self._lock:
            return f"msg_stub_{next(self._message_ids):04d}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], stub: AnthropicStub
    ) -> None:
        super().__init__(address, handler)
        self.stub = stub


class ClientGone(Exception):
    """The client closed the connection (an interrupted CLI) or the stub is closing."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streaming, as the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is noise; unknown paths are logged on their own

    # -- routing ----------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_json()
        stub = self.server.stub
        if path == "/v1/messages":
            behaviour = stub._record("POST", self.path, body)
            try:
                self._messages(body, behaviour)
            except (ClientGone, BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        stub._record("POST", self.path, None)
        if path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": token_estimate(json.dumps(body))})
            return
        self._unknown()

    def do_GET(self) -> None:
        self.server.stub._record("GET", self.path, None)
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/v1/models":
            self._send_json(200, {"data": [], "has_more": False, "first_id": None})
            return
        self._unknown()

    def do_HEAD(self) -> None:
        self.server.stub._record("HEAD", self.path, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _unknown(self) -> None:
        print(f"anthropic stub: unknown {self.command} {self.path}", file=sys.stderr, flush=True)
        self._send_json(200, {})

    # -- /v1/messages -----------------------------------------------------------------

    def _messages(self, body: JsonDict, behaviour: Behaviour) -> None:
        self._sleep(behaviour.first_byte_delay)
        if behaviour.mode is Mode.ERROR:
            self._send_json(behaviour.status, error_body(behaviour.status))
            return
        model = str(body.get("model") or "claude-stub")
        message_id = self.server.stub._next_message_id()
        blocks = _answer_blocks(body, behaviour, message_id)
        input_tokens = token_estimate(json.dumps(body.get("messages", [])))
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        if not body.get("stream"):
            message = _message(message_id, model, input_tokens, blocks)
            message["stop_reason"] = stop_reason
            message["usage"]["output_tokens"] = sum(map(_block_tokens, blocks))
            self._send_json(200, message)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", f"req_{message_id}")
        self.end_headers()
        self._event("message_start", {"message": _message(message_id, model, input_tokens, [])})
        if behaviour.mode is Mode.STALL:
            self._wait_for_client_to_leave()
            return
        self._event("ping", {})
        if behaviour.mode is Mode.MIDSTREAM:
            half = {"type": "text", "text": blocks[0]["text"][: len(blocks[0]["text"]) // 2]}
            self._stream_block(0, half, behaviour)
            error = error_body(529, "stub mid-stream failure")
            self._write_chunk(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
            self._write_chunk(b"")
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
        self._write_chunk(b"")  # the last chunk of a chunked body

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
                    self._sleep(behaviour.chunk_delay)
                delta = {"type": "text_delta", "text": piece}
                self._event("content_block_delta", {"index": index, "delta": delta})
        self._event("content_block_stop", {"index": index})

    # -- wire -------------------------------------------------------------------------

    def _read_json(self) -> JsonDict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _send_json(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_stub")
        self.end_headers()
        self.wfile.write(data)

    def _event(self, name: str, data: JsonDict) -> None:
        payload = json.dumps({"type": name, **data})
        self._write_chunk(f"event: {name}\ndata: {payload}\n\n".encode())

    def _write_chunk(self, data: bytes) -> None:
        if self.server.stub._closing.is_set():
            raise ClientGone
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sleep(self, seconds: float) -> None:
        """Wait, but give up as soon as the client leaves or the stub closes."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._client_left(min(left, 0.05)):
                raise ClientGone

    def _wait_for_client_to_leave(self) -> None:
        while not self._client_left(0.1):
            pass

    def _client_left(self, timeout: float) -> bool:
        """Whether the peer closed the connection (or the stub is closing), waiting up to
        ``timeout`` seconds for it."""
        if self.server.stub._closing.is_set():
            return True
        sock: socket.socket = self.connection
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


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


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.stubs.anthropic_api",
        description="Serve a stub of the Anthropic Messages API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.ECHO.value)
    parser.add_argument("--chunk-size", type=int, default=0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--first-byte-delay", type=float, default=0.0)
    parser.add_argument("--status", type=int, default=500, help="HTTP status of --mode error")
    parser.add_argument("--command", default="echo hi", help="the Bash call of --mode tool")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _options().parse_args(argv)
    behaviour = Behaviour(
        mode=Mode(args.mode),
        chunk_size=args.chunk_size,
        chunk_delay=args.chunk_delay,
        first_byte_delay=args.first_byte_delay,
        status=args.status,
        command=args.command,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with AnthropicStub(args.port, behaviour) as stub:
        print(stub.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

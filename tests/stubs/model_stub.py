"""What the stubs of the model APIs share: a threaded HTTP server on 127.0.0.1 that
records the requests it gets and answers them as its current :class:`Behaviour` says.

Stdlib only. Subclasses (``anthropic_api.AnthropicStub``, ``openai_api.OpenAIStub``,
``gemini_api.GeminiStub``) route the paths of their API; the handler helpers stream
SSE, sleep while watching whether the client left (an interrupted CLI), stall and cut a
stream in the middle.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self

JsonDict = dict[str, Any]

ECHO_PREFIX = "ECHO: "
TOOL_ANSWER_PREFIX = "Tool said: "
TOOL_PREAMBLE = "I'll run a command."


class Mode(StrEnum):
    ECHO = "echo"  # answer ECHO: <the prompt>
    STALL = "stall"  # start the answer, then send nothing until the client leaves
    ERROR = "error"  # fail with an HTTP status
    MIDSTREAM = "midstream"  # stream part of the answer, then fail inside the stream
    TOOL = "tool"  # ask for one shell call; answer "Tool said: <output>" after it


@dataclass(frozen=True)
class Behaviour:
    """How a stub answers the next model requests."""

    mode: Mode = Mode.ECHO
    chunk_size: int = 0  # characters per text delta; 0 sends the whole text in one delta
    chunk_delay: float = 0.0  # seconds between two deltas
    first_byte_delay: float = 0.0  # seconds before the response starts
    status: int = 500  # the HTTP status of the error mode
    command: str = "echo hi"  # the shell command the tool mode asks for


def chunks(text: str, size: int) -> list[str]:
    if size <= 0 or not text:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def token_estimate(text: str) -> int:
    return max(1, len(text) // 4)


class ClientGone(Exception):
    """The client closed the connection (an interrupted CLI) or the stub is closing."""


class ModelStub:
    """The server: a context manager, one thread per connection."""

    name: ClassVar[str] = "model"

    def __init__(self, port: int = 0, behaviour: Behaviour | None = None) -> None:
        self._lock = threading.Condition()
        self._behaviour = behaviour or Behaviour()
        self._ids = 0
        self.closing = threading.Event()
        self.requests: list[JsonDict] = []  # JSON bodies of the model requests, in order
        self.calls: list[tuple[str, str]] = []  # (method, path) of every HTTP request
        self._server = _Server(("127.0.0.1", port), self.handler_class(), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-stub",
            daemon=True,
        )

    def handler_class(self) -> type[StubHandler]:
        raise NotImplementedError

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

    def set_behaviour(self, mode: Mode | str = Mode.ECHO, **options: Any) -> Behaviour:
        """Answer the next requests this way (see :class:`Behaviour` for the options)."""
        behaviour = replace(Behaviour(), mode=Mode(mode), **options)
        with self._lock:
            self._behaviour = behaviour
        return behaviour

    def wait_for_requests(self, count: int = 1, timeout: float = 10.0) -> list[JsonDict]:
        """Block until ``count`` model requests have arrived; the requests so far."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(
                    f"the {self.name} stub got {len(self.requests)} of {count} model requests"
                    f" in {timeout} s; calls seen: {self.calls}"
                )
            return list(self.requests)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()  # ends stalled and slow answers
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

    def record(self, method: str, path: str, body: JsonDict | None) -> Behaviour:
        """Note a call (and a model request's body); the behaviour to answer it with."""
        with self._lock:
            self.calls.append((method, path))
            if body is not None:
                self.requests.append(body)
                self._lock.notify_all()
            return self._behaviour

    def next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[StubHandler], stub: ModelStub
    ) -> None:
        super().__init__(address, handler)
        self.stub = stub


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streaming, as the real APIs
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is noise; unknown paths are logged on their own

    @property
    def stub(self) -> ModelStub:
        return self.server.stub

    def unknown(self) -> None:
        name = self.stub.name
        print(f"{name} stub: unknown {self.command} {self.path}", file=sys.stderr, flush=True)
        self.send_json(404, {"error": {"code": 404, "message": "not served by the stub"}})

    def guarded(self, answer: Callable[[], None]) -> None:
        """Run ``answer``; a client that left mid-answer only closes the connection."""
        try:
            answer()
        except (ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- wire -------------------------------------------------------------------------

    def read_json(self) -> JsonDict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def send_json(self, status: int, body: Mapping[str, Any], **headers: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def sse(self, data: Mapping[str, Any], event: str | None = None) -> None:
        head = f"event: {event}\n" if event else ""
        self.write_chunk(f"{head}data: {json.dumps(data)}\n\n".encode())

    def end_stream(self) -> None:
        self.write_chunk(b"")  # the last chunk of a chunked body

    def cut_stream(self) -> None:
        """Drop the connection in the middle of the body, as a failing proxy does."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def write_chunk(self, data: bytes) -> None:
        if self.stub.closing.is_set():
            raise ClientGone
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sleep(self, seconds: float) -> None:
        """Wait, but give up as soon as the client leaves or the stub closes."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.client_left(min(left, 0.05)):
                raise ClientGone

    def wait_for_client_to_leave(self) -> None:
        while not self.client_left(0.1):
            pass

    def client_left(self, timeout: float) -> bool:
        """Whether the peer closed the connection (or the stub is closing), waiting up to
        ``timeout`` seconds for it."""
        if self.stub.closing.is_set():
            return True
        sock: socket.socket = self.connection
        readable, _, _ = select.select([sock], [], [], timeout)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def standalone_options(module: str, api: str) -> argparse.ArgumentParser:
    """The options of ``python -m MODULE``: the port, the mode and the error status."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=f"Serve a stub of {api} on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.ECHO.value)
    parser.add_argument("--status", type=int, default=500, help="HTTP status of --mode error")
    return parser


def serve_standalone(stub_class: type[ModelStub], args: argparse.Namespace) -> int:
    """Serve ``stub_class`` on ``args.port`` with the behaviour the other options give."""
    options = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(Behaviour)
        if field.name != "mode" and hasattr(args, field.name)
    }
    return serve_until_signalled(stub_class(args.port, Behaviour(Mode(args.mode), **options)))


def serve_until_signalled(stub: ModelStub) -> int:
    """Run ``stub`` in the foreground, printing its base URL, until SIGINT or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with stub:
        print(stub.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0

"""``ductor-webhook serve NAME``: the HTTP endpoint of an agent's webhooks.

Under systemd, ``ductor-webhook@NAME.socket`` listens and passes the socket
(``LISTEN_FDS``); the first request starts this service, which exits after a while
without requests (the socket keeps listening). In the foreground it binds
``[webhooks] listen`` itself. It never runs a CLI: an accepted request is written to
the spool (``dispatch``) and answered 202 at once.

Per request, cheapest check first: method (405), path and hook (404), the hook's rate
limit (429 with ``Retry-After``), content type (415), length (411, 413), credentials
(401), JSON object (400). A refused request runs nothing and is logged without its body.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ductor import config
from ductor.errors import ConfigError, DuctorError
from ductor.notify import Notifier
from ductor.paths import Paths
from ductor.webhooks import dispatch
from ductor.webhooks.auth import authorized
from ductor.webhooks.render import render
from ductor.webhooks.store import Hook, HookStore
from ductor.webhooks.units import listen_address

log = logging.getLogger("ductor.webhook")

HOOK_PREFIX = "/hooks/"
LISTEN_FDS_START = 3
DRAIN_LIMIT = 16 * 1024 * 1024  # read (and drop) this much of a refused body, no more
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
WINDOW = 60.0  # the rate limit counts requests in the last minute


class RateLimiter:
    """A sliding window per hook: at most ``limit`` requests in ``WINDOW`` seconds."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: dict[str, collections.deque[float]] = {}
        self.lock = threading.Lock()

    def retry_after(self, key: str, now: float | None = None) -> int:
        """0 when the request may go on (and is counted), else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self.lock:
            calls = self.calls.setdefault(key, collections.deque())
            while calls and calls[0] <= now - WINDOW:
                calls.popleft()
            if len(calls) >= self.limit:
                return max(1, int(calls[0] + WINDOW - now + 0.999))
            calls.append(now)
            return 0


class Refused(Exception):
    def __init__(self, status: int, error: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})


class App:
    """What the handler threads share: the agent, its config, the limiter, activity."""

    def __init__(self, agent: str, paths: Paths, agent_config: config.AgentConfig) -> None:
        self.agent = agent
        self.paths = paths
        self.config = agent_config
        self.store = HookStore(paths.agent_state(agent))
        self.limiter = RateLimiter(agent_config.webhooks.rate_limit_per_minute)
        self.shared_token = shared_token(paths, agent)
        self.active = 0
        self.last_activity = time.monotonic()
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            self.active += 1
            self.last_activity = time.monotonic()

    def end(self) -> None:
        with self.lock:
            self.active -= 1
            self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            return 0.0 if self.active else time.monotonic() - self.last_activity

    def hook(self, path: str) -> Hook:
        if not path.startswith(HOOK_PREFIX):
            raise Refused(404, "not_found")
        hook_id = path[len(HOOK_PREFIX) :].split("?", 1)[0]
        try:
            hooks = self.store.load()
        except (ConfigError, OSError) as exc:
            log.error("cannot read the webhooks: %s", exc)
            raise Refused(503, "webhooks_unreadable") from None
        hook = hooks.get(hook_id)
        if hook is None or not hook.enabled:
            raise Refused(404, "hook_not_found")
        return hook

    def accept(self, handler: Handler, hook: Hook) -> dict[str, object]:
        wait = self.limiter.retry_after(hook.id)
        if wait:
            raise Refused(429, "rate_limited", {"Retry-After": str(wait)})
        content_type = handler.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise Refused(415, "json_only")
        body = handler.read_body(self.config.webhooks.max_body_bytes)
        headers = {k: v for k, v in handler.headers.items()}
        if not authorized(hook, headers, body, shared_token=self.shared_token):
            raise Refused(401, "unauthorized")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "invalid_json") from None
        if not isinstance(payload, dict):
            raise Refused(400, "body_must_be_object")
        prompt = render(hook.prompt_template, payload, title=hook.title or hook.id)
        envelope = dispatch.accept(self.agent, self.paths, self.config, hook, prompt)
        self.store.record_call(
            hook.id,
            last_called_at=_now(),
            last_status=202,
            last_envelope=envelope,
            last_result="queued",
            calls=int(self.store.last_call(hook.id).get("calls", 0)) + 1,
        )
        log.info("webhook %s accepted (%s): %s", hook.id, hook.mode, envelope)
        return {"accepted": True, "hook_id": hook.id}


MIN_SHARED_TOKEN = 16
PLACEHOLDER = "unset"  # what the system units set when there is no webhook-token


def shared_token(paths: Paths, agent: str) -> str:
    """The agent's ``webhook-token`` secret, which every bearer hook also accepts; "" when
    it is not set or too short to be a token (a guessable token is worse than none)."""
    token = (config.read_secret(paths, agent, config.WEBHOOK_TOKEN) or "").strip()
    if token and len(token) < MIN_SHARED_TOKEN:
        if token != PLACEHOLDER:
            log.warning(
                "the webhook-token secret of %s is shorter than %d characters: ignored",
                agent,
                MIN_SHARED_TOKEN,
            )
        return ""
    return token


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    app: App


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "ductor-webhook"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    body_read = False

    def handle_one_request(self) -> None:
        self.body_read = False
        self.server.app.begin()
        try:
            super().handle_one_request()
        finally:
            self.server.app.end()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.peer, format % args)

    @property
    def peer(self) -> str:
        address = self.client_address
        return f"{address[0]}" if isinstance(address, tuple) and address else "unix"

    def do_POST(self) -> None:
        app = self.server.app
        hook_id = "-"
        try:
            hook = app.hook(self.path)
            hook_id = hook.id
            self.answer(202, app.accept(self, hook))
        except Refused as refused:
            self.refuse(refused, hook_id)
        except (DuctorError, OSError) as exc:
            log.error("webhook %s: could not queue the request: %s", hook_id, exc)
            self.refuse(Refused(503, "unavailable", {"Retry-After": "30"}), hook_id)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(200, {"status": "ok"})
        else:
            self.not_post()

    def not_post(self) -> None:
        status = 405 if self.path.startswith(HOOK_PREFIX) else 404
        error = "method_not_allowed" if status == 405 else "not_found"
        self.refuse(Refused(status, error, {"Allow": "POST"} if status == 405 else {}), "-")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = not_post

    def read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refused(411, "length_required")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            raise Refused(411, "length_required")
        length = int(length_text)
        if length > limit:
            raise Refused(413, "body_too_large")
        body = self.rfile.read(length)
        self.body_read = True
        if len(body) != length:
            raise Refused(400, "incomplete_body")
        return body

    def refuse(self, refused: Refused, hook_id: str) -> None:
        log.warning(
            "%s %s from %s: %d %s",
            self.command,
            _printable(self.path),
            self.peer,
            refused.status,
            refused.error,
        )
        if hook_id != "-" and refused.status in (401, 429):
            store = self.server.app.store
            store.record_call(hook_id, last_refused_at=_now(), last_refused=refused.status)
        self._drain()
        self.answer(refused.status, {"error": refused.error}, refused.headers, close=True)

    def _drain(self) -> None:
        """Read what is left of a refused body (up to DRAIN_LIMIT): a client that is still
        sending when the socket closes sees a reset instead of the answer."""
        try:
            remaining = min(int(self.headers.get("Content-Length", "0") or 0), DRAIN_LIMIT)
        except ValueError:
            return
        if self.body_read:
            return
        self.body_read = True
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def answer(
        self,
        status: int,
        body: Mapping[str, object],
        headers: Mapping[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _printable(path: str) -> str:
    """The path for a log line: without its query (a caller may put a secret there),
    cut, and with control characters escaped."""
    return repr(path.split("?", 1)[0][:120])[1:-1]


def inherited_socket(env: Mapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed, or None outside socket activation."""
    if env.get("LISTEN_PID") != str(os.getpid()) or int(env.get("LISTEN_FDS", "0") or 0) < 1:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return socket.socket(fileno=LISTEN_FDS_START)


def bind(listen: str) -> socket.socket:
    """A listening socket for ``listen``: ``HOST:PORT`` or an absolute Unix socket path."""
    if listen.startswith("/"):
        path = Path(listen)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.chmod(0o660)
    else:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(64)
    return sock


def serve(agent: str, paths: Paths, *, idle_exit: float, env: Mapping[str, str]) -> int:
    agent_config = config.load_agent_config(paths, agent)
    sock = inherited_socket(env)
    if sock is None:
        sock = bind(listen_address(agent_config.webhooks))
    server = Server(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.address_family = sock.family
    server.app = App(agent, paths, agent_config)
    notifier = Notifier(env)
    hooks = len(server.app.store.load())
    notifier.ready(f"{hooks} webhook{'s' * (hooks != 1)}")
    log.info("webhooks of %s: listening on %s", agent, sock.getsockname() or "a Unix socket")
    if idle_exit > 0:
        threading.Thread(target=_exit_when_idle, args=(server, idle_exit), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        notifier.stopping()
        server.server_close()
    log.info("idle for %.0f s: exiting (the socket stays open)", idle_exit)
    return 0


def _exit_when_idle(server: Server, idle_exit: float) -> None:
    while True:
        time.sleep(min(1.0, idle_exit / 4))
        if server.app.idle_for() >= idle_exit:
            server.shutdown()
            return

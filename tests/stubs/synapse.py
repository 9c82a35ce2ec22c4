"""A real Synapse homeserver for the Matrix tests, plus a small client to drive it.

Stdlib only: the server runs in its own virtual environment (tests/install-synapse prints
its python), and the helpers here talk to it over plain HTTP with urllib::

    with Synapse(python) as server:
        alice = server.register("alice", "pw")
        bot = server.register("bot", "pw")
        room = server.create_room(alice.access_token, invite=[bot.user_id])
        server.join(bot.access_token, room)
        event_id = server.send_text(alice.access_token, room, "hi", formatted="<b>hi</b>")
        server.messages(bot.access_token, room)  # newest first, as /messages?dir=b gives

The server is ``localhost`` on 127.0.0.1 (a free port), SQLite, no federation listener,
no public registration (users come from the shared-secret admin API), rate limits raised
so a test never waits on them. Its config, database, media and log live in ``workdir``
(a temporary directory unless given). When it fails to start, or a request fails, the
exception carries the tail of its log.

Facts worth knowing when writing tests against it: room ids of the default room version
(12) carry no ``:server`` suffix; media uploaded now is only served by the authenticated
endpoints (``/_matrix/client/v1/media/...``), which :meth:`Synapse.download` uses.

Standalone: ``python -m tests.stubs.synapse --python .cache/synapse-venv/bin/python``
prints the base URL and the shared secret and serves until interrupted (``--port`` and
``--shared-secret`` fix them in advance). Another process drives that server with
``Synapse.attach(port_or_base_url, shared_secret)``: the same client, no process of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode, urlsplit

JsonDict = dict[str, Any]

SERVER_NAME = "localhost"
START_TIMEOUT = 90.0  # seconds; a byte-compiled Synapse starts in a few
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0
LOG_TAIL_LINES = 40

# Plenty for any test, so a burst of messages or logins is never answered 429.
_GENEROUS = {"per_second": 10_000, "burst_count": 10_000}


class SynapseError(RuntimeError):
    """Synapse did not start, or stopped, or answered what it should not."""


class MatrixError(SynapseError):
    """A request answered with an HTTP error; ``errcode`` is Matrix's (``M_FORBIDDEN``)."""

    def __init__(self, method: str, path: str, status: int, body: JsonDict | str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.errcode = body.get("errcode", "") if isinstance(body, dict) else ""
        super().__init__(f"{method} {path} answered {status}: {body}")


@dataclass(frozen=True)
class MatrixUser:
    localpart: str
    user_id: str
    access_token: str
    password: str
    device_id: str

    def __iter__(self) -> Iterator[str]:
        """``user_id, access_token = user``: the two a client needs."""
        return iter((self.user_id, self.access_token))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def homeserver_config(workdir: Path, port: int, shared_secret: str) -> JsonDict:
    """The homeserver.yaml for a test server in ``workdir`` (JSON, which YAML reads)."""
    return {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # The admin API (shared-secret registration) and media are served with it.
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "media_store_path": str(workdir / "media"),
        # Synapse writes a fresh key here on its first start.
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "url_preview_enabled": False,
        "presence": {"enabled": False},
        # Passwords are test fixtures; the default 12 rounds cost a quarter second a login.
        "bcrypt_rounds": 4,
        "rc_message": _GENEROUS,
        "rc_registration": _GENEROUS,
        "rc_registration_token_validity": _GENEROUS,
        "rc_login": {
            "address": _GENEROUS,
            "account": _GENEROUS,
            "failed_attempts": _GENEROUS,
        },
        "rc_admin_redaction": _GENEROUS,
        "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
        "rc_joins_per_room": _GENEROUS,
        "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
        "rc_3pid_validation": _GENEROUS,
        "rc_third_party_invite": _GENEROUS,
        "rc_media_create": _GENEROUS,
        "rc_key_requests": _GENEROUS,
        "rc_room_creation": _GENEROUS,
        "rc_reports": _GENEROUS,
        "rc_user_directory": _GENEROUS,
        "rc_profile": _GENEROUS,
        "rc_delayed_event_mgmt": _GENEROUS,
        "rc_presence": {"per_user": _GENEROUS},
    }


class Synapse:
    """One Synapse process, started on ``__enter__`` (or :meth:`start`) and stopped after.

    ``python`` is the interpreter of the virtual environment Synapse is installed in.
    ``workdir`` keeps config, database, media and ``homeserver.log``; when not given, a
    temporary directory is made and removed on stop. ``port`` and ``shared_secret`` are
    a free port and a random secret unless given.

    :meth:`attach` makes a client for a server that is already running elsewhere.
    """

    def __init__(
        self,
        python: Path | str,
        workdir: Path | None = None,
        *,
        start_timeout: float = START_TIMEOUT,
        port: int | None = None,
        shared_secret: str | None = None,
    ) -> None:
        # absolute(), not resolve(): the venv is found through the unresolved symlink.
        self.python: Path | None = Path(python).absolute()
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="ductor-synapse-")) if workdir is None else workdir
        )
        self.start_timeout = start_timeout
        self._client_state(
            port if port is not None else free_port(),
            shared_secret if shared_secret is not None else secrets.token_hex(32),
        )

    @classmethod
    def attach(cls, server: int | str, shared_secret: str, *, workdir: Path | None = None) -> Self:
        """A client for a server already running on 127.0.0.1: ``server`` is its port or
        base URL (``http://127.0.0.1:PORT``), ``shared_secret`` its registration secret
        (for :meth:`register`). It has no process: :meth:`stop` leaves the server alone and
        :meth:`start` refuses. ``workdir``, where given, is the server's, for
        :meth:`log_tail`."""
        if isinstance(server, int):
            port = server
        else:
            parts = urlsplit(server)
            if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
                raise ValueError(f"not a loopback base URL with a port: {server!r}")
            port = parts.port
        client = cls.__new__(cls)
        client.python = None
        client._own_workdir = False
        client.workdir = workdir if workdir is not None else Path(os.devnull)
        client.start_timeout = START_TIMEOUT
        client._client_state(port, shared_secret)
        return client

    def _client_state(self, port: int, shared_secret: str) -> None:
        self.port = port
        self.shared_secret = shared_secret
        self.log_path = self.workdir / "homeserver.log"
        self.config_path = self.workdir / "homeserver.yaml"
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._txn = itertools.count(1)
        # Loopback only: never through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server_name(self) -> str:
        return SERVER_NAME

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{SERVER_NAME}"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        if self.python is None:
            raise SynapseError(f"attached to the server on {self.base_url}: it runs elsewhere")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "media").mkdir(exist_ok=True)
        config = homeserver_config(self.workdir, self.port, self.shared_secret)
        self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # One prctl call, no locks taken: safe after fork even with threads.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        try:
            self._wait_until_ready(started)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _wait_until_ready(self, started: float) -> None:
        assert self._process is not None
        deadline = started + self.start_timeout
        while True:
            status = self._process.poll()
            if status is not None:
                raise SynapseError(f"Synapse exited ({status}) while starting{self.log_tail()}")
            try:
                self._call("GET", "/_matrix/client/versions", timeout=2.0)
                return
            except (OSError, SynapseError):
                pass
            if time.monotonic() > deadline:
                raise SynapseError(
                    f"Synapse did not answer on {self.base_url} within "
                    f"{self.start_timeout:.0f}s{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` of the server log, ready to append to an error message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of homeserver.log ---\n{tail}" if tail else ""

    # -- HTTP -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
        query: Mapping[str, str | int] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[bytes, str]:
        """One request; the raw answer and its content type. HTTP errors raise MatrixError."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            raw = error.read().decode("utf-8", errors="replace")
            try:
                parsed: JsonDict | str = json.loads(raw)
            except ValueError:
                parsed = raw
            raise MatrixError(method, path, error.code, parsed) from None

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> JsonDict:
        """A JSON request to any endpoint, for what the helpers below do not cover."""
        raw, _ = self._call(method, path, token=token, body=body, query=query)
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise SynapseError(f"{method} {path} answered {answer!r}, not a JSON object")
        return answer

    def _txn_id(self) -> str:
        return f"ductor-test-{time.time_ns()}-{next(self._txn)}"

    # -- users ------------------------------------------------------------------------

    def register(self, localpart: str, password: str, admin: bool = False) -> MatrixUser:
        """A new user through the shared-secret admin API (public registration is off).

        Unpacks as ``user_id, access_token = server.register(...)`` too.
        """
        path = "/_synapse/admin/v1/register"
        nonce = self.request("GET", path)["nonce"]
        signed = "\x00".join((nonce, localpart, password, "admin" if admin else "notadmin"))
        mac = hmac.new(self.shared_secret.encode(), signed.encode(), hashlib.sha1)
        answer = self.request(
            "POST",
            path,
            body={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return MatrixUser(
            localpart=localpart,
            user_id=answer["user_id"],
            access_token=answer["access_token"],
            password=password,
            device_id=answer.get("device_id", ""),
        )

    def login(self, localpart: str, password: str, device_id: str | None = None) -> MatrixUser:
        """A fresh access token (and device) for an existing user."""
        body: JsonDict = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        }
        if device_id is not None:
            body["device_id"] = device_id
        answer = self.request("POST", "/_matrix/client/v3/login", body=body)
        return MatrixUser(
            localpart=localpart,
            user_id=answer["user_id"],
            access_token=answer["access_token"],
            password=password,
            device_id=answer.get("device_id", ""),
        )

    def whoami(self, token: str) -> str:
        return str(self.request("GET", "/_matrix/client/v3/account/whoami", token)["user_id"])

    # -- rooms ------------------------------------------------------------------------

    def create_room(
        self,
        token: str,
        *,
        invite: Sequence[str] = (),
        is_direct: bool = False,
        name: str | None = None,
        preset: str | None = None,
    ) -> str:
        """A new room; the preset defaults to a trusted private chat for DMs, else private."""
        body: JsonDict = {
            "invite": list(invite),
            "is_direct": is_direct,
            "preset": preset or ("trusted_private_chat" if is_direct else "private_chat"),
        }
        if name is not None:
            body["name"] = name
        return str(self.request("POST", "/_matrix/client/v3/createRoom", token, body)["room_id"])

    def invite(self, token: str, room: str, user_id: str) -> None:
        self.request(
            "POST", f"/_matrix/client/v3/rooms/{_q(room)}/invite", token, {"user_id": user_id}
        )

    def join(self, token: str, room: str) -> str:
        """Join by room id or alias; the room id."""
        return str(
            self.request("POST", f"/_matrix/client/v3/join/{_q(room)}", token, {})["room_id"]
        )

    def leave(self, token: str, room: str) -> None:
        self.request("POST", f"/_matrix/client/v3/rooms/{_q(room)}/leave", token, {})

    def joined_members(self, token: str, room: str) -> list[str]:
        answer = self.request("GET", f"/_matrix/client/v3/rooms/{_q(room)}/joined_members", token)
        return sorted(answer["joined"])

    # -- events -----------------------------------------------------------------------

    def send_event(self, token: str, room: str, event_type: str, content: Mapping[str, Any]) -> str:
        """Send any room event; its event id."""
        path = f"/_matrix/client/v3/rooms/{_q(room)}/send/{_q(event_type)}/{self._txn_id()}"
        return str(self.request("PUT", path, token, content)["event_id"])

    def send_text(
        self,
        token: str,
        room: str,
        body: str,
        *,
        formatted: str | None = None,
        reply_to: str | None = None,
        msgtype: str = "m.text",
    ) -> str:
        """An ``m.room.message``; ``formatted`` is its HTML, ``reply_to`` an event id."""
        content: JsonDict = {"msgtype": msgtype, "body": body}
        if formatted is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatted
        if reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return self.send_event(token, room, "m.room.message", content)

    def react(self, token: str, room: str, event_id: str, key: str) -> str:
        """An ``m.reaction`` annotating ``event_id`` with ``key`` (an emoji); its event id."""
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return self.send_event(token, room, "m.reaction", {"m.relates_to": relation})

    def messages(self, token: str, room: str, limit: int = 50) -> list[JsonDict]:
        """The room's latest ``limit`` events, newest first (``/messages?dir=b``)."""
        answer = self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{_q(room)}/messages",
            token,
            query={"dir": "b", "limit": limit},
        )
        return list(answer.get("chunk", []))

    def wait_for_event(
        self,
        token: str,
        room: str,
        matches: Callable[[JsonDict], bool],
        timeout: float = 10.0,
    ) -> JsonDict:
        """The newest event in ``room`` that ``matches``, polling until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.messages(token, room)
            for event in events:
                if matches(event):
                    return event
            if time.monotonic() > deadline:
                seen = [(e.get("type"), e.get("sender"), e.get("content")) for e in events[:10]]
                raise SynapseError(f"no matching event in {room} within {timeout}s; newest: {seen}")
            time.sleep(0.1)

    def sync(self, token: str, since: str | None = None, timeout: int = 0) -> JsonDict:
        """One ``/sync``; ``timeout`` in milliseconds, as Matrix counts it."""
        query: dict[str, str | int] = {"timeout": timeout}
        if since is not None:
            query["since"] = since
        return self.request("GET", "/_matrix/client/v3/sync", token, query=query)

    # -- media ------------------------------------------------------------------------

    def upload(self, token: str, data: bytes, content_type: str, filename: str) -> str:
        """Upload ``data``; its ``mxc://`` URI."""
        raw, _ = self._call(
            "POST",
            "/_matrix/media/v3/upload",
            token=token,
            data=data,
            content_type=content_type,
            query={"filename": filename},
        )
        return str(json.loads(raw)["content_uri"])

    def download(self, token: str, mxc: str) -> bytes:
        """The bytes behind ``mxc``, through the authenticated media endpoint."""
        if not mxc.startswith("mxc://"):
            raise ValueError(f"not an mxc:// URI: {mxc!r}")
        server, _, media_id = mxc.removeprefix("mxc://").partition("/")
        path = f"/_matrix/client/v1/media/download/{_q(server)}/{_q(media_id)}"
        raw, _ = self._call("GET", path, token=token)
        return raw


_PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child: no dlopen between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL, so
    no homeserver outlives its test run."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _q(segment: str) -> str:
    """One URL path segment (room ids start with ``!``, aliases with ``#``)."""
    return quote(segment, safe="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--python", required=True, help="the python of Synapse's venv")
    parser.add_argument("--workdir", type=Path, help="keep config, database and log here")
    parser.add_argument("--port", type=int, help="listen on this port (default: a free one)")
    parser.add_argument("--shared-secret", help="registration secret (default: a random one)")
    args = parser.parse_args(argv)
    with Synapse(
        args.python, args.workdir, port=args.port, shared_secret=args.shared_secret
    ) as server:
        print(server.base_url, flush=True)
        print(f"shared secret: {server.shared_secret}", flush=True)
        print(f"started in {server.start_seconds:.1f}s; log: {server.log_path}", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent socket: accepts clients, checks who they are, dispatches their requests.

Requests on one connection are handled concurrently (an ``ack`` or a ``cancel`` must
not wait behind a running turn), and every request is answered at once: no request
waits for a turn slot (see core.py). Each connection's events are written without
waiting for the client; what the client has not read yet is bounded
(:data:`OUTGOING_LIMIT`), as is the number of its requests still waiting for their
terminal event (:data:`MAX_OPEN_REQUESTS`). A client over the first bound does not
read and is dropped; one over the second gets ``busy``. Reading yields to the event
loop after every request, so a client that floods the socket cannot starve the others.
End of input from the client means it went away: its running turns go on and their
answers go to the outbox. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import time

from ductor import __version__, protocol
from ductor.agent import (
    commands,
    cron_selector,
    files_selector,
    interagent,
    selectors,
    session_commands,
    task_commands,
    welcome,
)
from ductor.agent.core import Agent
from ductor.agent.turns import TurnKind
from ductor.protocol import ErrorCode, Events, ProtocolError, RequestType

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")

# Bytes of events a client may leave unread before it counts as not reading (at least
# two frames, so one large answer always fits).
OUTGOING_LIMIT = 16 * 1024 * 1024
# Requests of one connection that may wait for their terminal event at the same time.
MAX_OPEN_REQUESTS = 64
MAX_LOGGED_REFUSALS = 5  # per connection


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


class Connection:
    def __init__(
        self,
        server: AgentServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.agent = server.agent
        self.reader = reader
        self.writer = writer
        self._connected = True
        self.peer = "?"
        self.tasks: set[asyncio.Task[None]] = set()
        self.open_requests: dict[str, int] = {}  # request id -> dispatched, not yet ended
        self.refusals = 0

    @property
    def connected(self) -> bool:
        return self._connected

    def send(self, event: protocol.Event) -> None:
        if not self._connected:
            return
        if event.is_terminal and event.request_id in self.open_requests:
            left = self.open_requests.pop(event.request_id) - 1
            if left:
                self.open_requests[event.request_id] = left
        transport = self.writer.transport
        if transport.is_closing():
            self._gone()
            return
        self.writer.write(event.encode())
        unread = transport.get_write_buffer_size()
        if unread > self.server.outgoing_limit:
            self.drop(f"it left {unread} bytes of events unread")

    def drop(self, why: str) -> None:
        """Close the connection now, unread events and all; its turns go on."""
        if not self._connected:
            return
        log.warning("dropped client %s: %s; its answers go to the outbox", self.peer, why)
        self._gone()
        self.writer.transport.abort()

    def _gone(self) -> None:
        if self._connected:
            self._connected = False
            self.agent.client_gone(self)

    async def serve(self) -> None:
        sock = self.writer.get_extra_info("socket")
        try:
            pid, uid, _ = peer_credentials(sock)
        except OSError as exc:
            log.warning("refused a client whose credentials cannot be read: %s", exc)
            self.writer.close()
            return
        self.peer = f"pid {pid} uid {uid}"
        if uid not in (os.geteuid(), 0):
            log.warning("refused a client of another user (%s)", self.peer)
            self.writer.write(
                Events.error("", ErrorCode.UNAUTHORIZED, "not allowed: wrong user").encode()
            )
            await self._close()
            return
        self.server.connections.add(self)
        try:
            while self._connected:
                try:
                    line = await protocol.read_line(self.reader, self.server.max_bytes)
                except ProtocolError as exc:
                    self._refused("a request", exc)
                    self.send(Events.error("", exc.code, str(exc)))
                    continue
                except (ConnectionError, OSError):
                    break
                if line is None:
                    break
                self._dispatch(line)
                # A line already in the buffer is returned without a pause: let the
                # other clients (and the turns) in between two requests of this one.
                await asyncio.sleep(0)
        finally:
            self.server.connections.discard(self)
            self._gone()
            await self._close()

    def _refused(self, what: str, exc: ProtocolError) -> None:
        """Log a refused request; a client that sends nothing else logs a few lines only."""
        self.refusals += 1
        if self.refusals <= MAX_LOGGED_REFUSALS:
            log.warning("refused %s from %s: %s", what, self.peer, exc)
            if self.refusals == MAX_LOGGED_REFUSALS:
                log.warning("not logging further refusals for %s", self.peer)

    async def _close(self) -> None:
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def _dispatch(self, line: bytes) -> None:
        try:
            request = protocol.decode_request(line, max_bytes=self.server.max_bytes)
        except ProtocolError as exc:
            request_id = exc.request_id or _loose_id(line)
            self._refused("a malformed request", exc)
            self.send(Events.error(request_id, exc.code, str(exc)))
            return
        if request.type is not RequestType.ACK:
            if sum(self.open_requests.values()) >= MAX_OPEN_REQUESTS:
                self.send(
                    Events.error(
                        request.id,
                        ErrorCode.BUSY,
                        f"{MAX_OPEN_REQUESTS} requests of this connection are still open;"
                        " read their answers first",
                    )
                )
                return
            self.open_requests[request.id] = self.open_requests.get(request.id, 0) + 1
        task = asyncio.create_task(self._handle(request), name=f"request {request.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, request: protocol.Request) -> None:
        try:
            await handle_request(self.server, request, self)
        except ProtocolError as exc:
            self.send(Events.error(request.id, exc.code, str(exc)))
        except Exception:
            log.exception("request %s (%s) failed", request.id, request.type)
            self.send(Events.error(request.id, ErrorCode.INTERNAL, "An internal error occurred."))


def _loose_id(line: bytes) -> str:
    """The id of a request that failed validation, when it has a usable one."""
    try:
        data = protocol.decode_line(line)
    except ProtocolError:
        return ""
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 64 else ""


def _final(request: protocol.Request, result: commands.CommandResult) -> protocol.Event:
    return Events.final(
        request.id, text=result.text, buttons=result.buttons, files=result.files, command=True
    )


async def handle_request(server: AgentServer, request: protocol.Request, conn: Connection) -> None:
    agent = server.agent
    if agent.closing and request.type not in (RequestType.ACK, RequestType.HEALTH):
        conn.send(Events.error(request.id, ErrorCode.SHUTTING_DOWN, "the agent is restarting"))
        return
    kind = request.type
    if request.topic_name and request.session:
        agent.sessions.set_topic_name(request.session, request.topic_name)  # for /status
        agent.topics.learn(request.session, request.topic_name)  # project_roots, /new @name
    if kind is RequestType.ACK:
        agent.acknowledge(request.entry)
    elif kind in (RequestType.MESSAGE, RequestType.COMMAND):
        result = await commands.run_command_text(agent, request)
        if result is not None:
            conn.send(_final(request, result))
        elif await session_commands.foreground(agent, request, conn):
            pass  # `@name <text>`: a named session's follow-up, answered there
        elif interagent.continue_in_chat(agent, request, conn):
            pass  # `@ia.<...> <text>`: the user continues an inter-agent session
        elif request.text.strip() or request.files:
            _submit(agent, request, conn, TurnKind.MESSAGE, request.text)
        else:
            conn.send(Events.error(request.id, ErrorCode.BAD_REQUEST, "empty message"))
    elif kind is RequestType.BUTTON:
        await _button(agent, request, conn)
    elif kind is RequestType.ABORT:
        await _abort(agent, request, conn)
    elif kind is RequestType.CANCEL:
        assert request.session is not None
        if agent.cancel_queued(request.session, request.entry):
            conn.send(Events.final(request.id, text="Message cancelled.", command=True))
        else:
            conn.send(
                Events.error(request.id, ErrorCode.NOT_FOUND, "that message is no longer queued")
            )
    elif kind is RequestType.INJECT:
        _submit(agent, request, conn, TurnKind.INJECT, request.text)
    elif kind is RequestType.HEARTBEAT:
        _heartbeat(agent, request, conn)
    elif kind is RequestType.ASK:
        agent.submit(interagent.ask_record(agent, request), request_id=request.id, sink=conn)
    elif kind is RequestType.AGENT:
        conn.send(await interagent.handle_request(agent, request))
    elif kind is RequestType.STATUS:
        conn.send(Events.final(request.id, **status_fields(server)))
    elif kind is RequestType.HEALTH:
        conn.send(Events.final(request.id, text="ok", agent=agent.name, version=__version__))
    elif kind is RequestType.TASK:
        conn.send(await task_commands.handle_request(agent, request))
    elif kind is RequestType.LISTEN:
        agent.listen(request.text, conn)
        conn.send(
            Events.status(request.id, "listening", f"showing {request.text}'s injected turns")
        )


def _submit(
    agent: Agent, request: protocol.Request, conn: Connection, kind: TurnKind, text: str
) -> None:
    record = agent.new_record(request, kind, text)
    agent.submit(record, request_id=request.id, sink=conn, want_ack=request.want_ack)


async def _button(agent: Agent, request: protocol.Request, conn: Connection) -> None:
    data = request.data
    if data.startswith("mq:"):
        assert request.session is not None
        cancelled = agent.cancel_queued(request.session, data[3:])
        text = "[Message cancelled.]" if cancelled else "That message is no longer queued."
        conn.send(Events.final(request.id, text=text, command=True))
        return
    quick_start = welcome.quick_start_prompt(data)
    if quick_start is not None:  # /start's buttons: their prompt, as if the user typed it
        _submit(agent, request, conn, TurnKind.MESSAGE, quick_start)
        return
    buttons = (
        selectors.handle_button,
        cron_selector.handle_button,
        task_commands.handle_button,
        session_commands.handle_button,
        files_selector.handle_button,
    )
    for handle in buttons:
        result = await handle(agent, request)
        if result is not None:
            conn.send(_final(request, result))
            return
    label = request.text or data
    _submit(agent, request, conn, TurnKind.MESSAGE, label)


def said_instead_of_abort(agent: Agent, request: protocol.Request) -> bool:
    """A stop word the user typed (the abort carries its ``text``, not a ``/command``)
    in a session with nothing running or queued: there is nothing to stop, so the words
    are the user's message."""
    words = request.text.strip()
    return (
        request.mode is not protocol.AbortMode.STOP_ALL
        and request.session is not None
        and bool(words)
        and not words.startswith("/")
        and agent.idle(request.session)
    )


async def _abort(agent: Agent, request: protocol.Request, conn: Connection) -> None:
    if said_instead_of_abort(agent, request):
        _submit(agent, request, conn, TurnKind.MESSAGE, request.text.strip())
        return
    mode = request.mode
    if mode is protocol.AbortMode.STOP_ALL:
        result = await commands.cmd_stop_all(agent, request, "")
    elif mode is protocol.AbortMode.INTERRUPT:
        result = await commands.cmd_interrupt(agent, request, "")
    else:
        result = await commands.cmd_stop(agent, request, "")
    conn.send(_final(request, result))


def _heartbeat(agent: Agent, request: protocol.Request, conn: Connection) -> None:
    assert request.session is not None
    session = agent.sessions.get(request.session)
    lane = agent.lanes.get(request.session)
    skipped = ""
    if session is None or session.bucket().session_id is None:
        skipped = "no session"
    elif lane is not None and lane.busy:
        skipped = "busy"
    if skipped:
        conn.send(Events.final(request.id, text="", skipped=skipped))
        return
    _submit(agent, request, conn, TurnKind.HEARTBEAT, request.text)


def status_fields(server: AgentServer) -> dict[str, object]:
    agent = server.agent
    return {
        "text": agent.status_line(),
        "agent": agent.name,
        "version": __version__,
        "sessions": len(agent.sessions.keys()),
        "running": agent.running_count(),
        "queued": agent.queued_count(),
        "clients": len(server.connections),
        "uptime_s": round(time.monotonic() - agent.started_at, 1),
    }


class AgentServer:
    def __init__(self, agent: Agent, *, max_bytes: int) -> None:
        self.agent = agent
        self.max_bytes = max_bytes
        self.connections: set[Connection] = set()
        self.server: asyncio.AbstractServer | None = None

    @property
    def outgoing_limit(self) -> int:
        return max(OUTGOING_LIMIT, 2 * self.max_bytes)

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_unix_server(
            self._client, sock=sock, limit=self.max_bytes + 1
        )

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(self, reader, writer).serve()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

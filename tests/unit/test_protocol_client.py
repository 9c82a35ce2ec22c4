"""The sync and async clients against a real Unix socket served by a scripted agent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ductor.errors import ExitCode
from ductor.protocol import (
    AgentDisconnected,
    AgentTimeout,
    AgentUnavailable,
    ErrorCode,
    Event,
    Events,
    EventType,
    ProtocolError,
    Request,
    RequestType,
    call,
    connect,
    open_exchange,
)


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, *events: Event | bytes) -> None:
        for event in events:
            self.sock.sendall(event if isinstance(event, bytes) else event.encode())

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)


Script = Callable[[dict[str, Any], Conn], None]


class ScriptedAgent:
    """Plays the agent: every request line it reads goes to ``script``."""

    def __init__(self, path: Path, script: Script) -> None:
        self.path = path
        self.script = script
        self.lines: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen()
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as reader, contextlib.suppress(OSError):
            for raw in reader:
                data = json.loads(raw)
                self.lines.append(data)
                self.script(data, Conn(sock))

    def wait_for(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for data in self.lines:
                if data.get("type") == kind:
                    return data
            time.sleep(0.01)
        raise AssertionError(f"the agent never received a {kind} request: {self.lines}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path is too deep.
    path = Path(tempfile.mkdtemp(prefix="ductor-"))
    yield path / "main"
    shutil.rmtree(path)


@pytest.fixture
def serve(sock_dir: Path) -> Iterator[Callable[[Script], ScriptedAgent]]:
    agents: list[ScriptedAgent] = []
    sock_dir.mkdir()

    def start(script: Script) -> ScriptedAgent:
        agent = ScriptedAgent(sock_dir / "agent.sock", script)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.close()


def message(text: str = "hi", *, want_ack: bool = True) -> Request:
    return Request(
        type=RequestType.MESSAGE, id="req-1", session="tg:1", text=text, want_ack=want_ack
    )


def full_turn(data: dict[str, Any], conn: Conn) -> None:
    if data["type"] != "message":
        return
    rid = data["id"]
    conn.send(
        Events.accepted(rid, "turn-1", "tg:1"),
        Events.text(rid, "Hel"),
        Events.tool(rid, "Shell", "ls"),
        Events.text(rid, "lo"),
        Events.final(rid, text="Hello", turn="turn-1", session="tg:1"),
    )


def test_call_returns_every_event_in_order_ending_with_the_final(serve: Any) -> None:
    agent = serve(full_turn)
    events = call(agent.path, message(), timeout=5)
    assert [e.type for e in events] == [
        EventType.ACCEPTED,
        EventType.TEXT,
        EventType.TOOL,
        EventType.TEXT,
        EventType.FINAL,
    ]
    assert "".join(e.text for e in events if e.type is EventType.TEXT) == "Hello"
    assert all(e.request_id == "req-1" for e in events)
    assert agent.lines[0]["text"] == "hi" and agent.lines[0]["want_ack"] is True


def test_call_acks_the_final_turn_on_the_same_connection_when_asked_to(serve: Any) -> None:
    agent = serve(full_turn)
    call(agent.path, message(), timeout=5)
    ack = agent.wait_for("ack")
    assert ack["entry"] == "turn-1"
    assert ack["v"] == 1 and ack["id"] != "req-1"


def test_call_sends_no_ack_when_the_request_did_not_ask_for_one(serve: Any) -> None:
    agent = serve(full_turn)
    call(agent.path, message(want_ack=False), timeout=5)
    time.sleep(0.1)
    assert [line["type"] for line in agent.lines] == ["message"]


def test_events_stop_at_the_terminal_event_while_the_agent_keeps_the_connection(
    serve: Any,
) -> None:
    def answer_then_linger(data: dict[str, Any], conn: Conn) -> None:
        if data["type"] == "status":
            conn.send(Events.final(data["id"], text="3 chats"))

    agent = serve(answer_then_linger)
    request = Request(type=RequestType.STATUS, id="s1")
    with connect(agent.path, request, timeout=5) as exchange:
        events = list(exchange.events())
        assert exchange.terminal == events[-1]
        assert exchange.next_event() is None
    assert [e.text for e in events] == ["3 chats"]


def test_an_exchange_acks_explicitly_with_the_turn_it_is_given(serve: Any) -> None:
    agent = serve(full_turn)
    with connect(agent.path, message(), timeout=5) as exchange:
        for _ in exchange.events():
            pass
        exchange.ack("turn-1")
    assert agent.wait_for("ack")["entry"] == "turn-1"


def test_an_agent_closing_before_the_terminal_event_raises_agent_disconnected(
    serve: Any,
) -> None:
    def crash(data: dict[str, Any], conn: Conn) -> None:
        conn.send(Events.accepted(data["id"], "t1", "tg:1"), Events.text(data["id"], "par"))
        conn.close()

    agent = serve(crash)
    with connect(agent.path, message(), timeout=5) as exchange:
        seen = []
        with pytest.raises(AgentDisconnected) as caught:
            for event in exchange.events():
                seen.append(event.type)
    assert seen == [EventType.ACCEPTED, EventType.TEXT]
    assert "req-1" in str(caught.value)
    assert caught.value.exit_code is ExitCode.TEMPFAIL


def test_a_missing_socket_raises_agent_unavailable_naming_the_path_and_the_fix(
    sock_dir: Path,
) -> None:
    path = sock_dir / "agent.sock"
    with pytest.raises(AgentUnavailable) as caught:
        call(path, message())
    text = str(caught.value)
    assert str(path) in text
    assert "systemctl --user start ductor-agent@main.socket" in text
    assert "ductor agent start main" in text
    assert caught.value.exit_code is ExitCode.TEMPFAIL


def test_a_stale_socket_nobody_listens_on_raises_agent_unavailable(sock_dir: Path) -> None:
    sock_dir.mkdir()
    path = sock_dir / "agent.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with pytest.raises(AgentUnavailable, match="refused"):
        call(path, message())


def test_event_types_this_client_does_not_know_are_skipped(serve: Any) -> None:
    def future_agent(data: dict[str, Any], conn: Conn) -> None:
        conn.send(
            b'{"v":1,"event":"hologram","id":"req-1","shape":"cube"}\n',
            Events.final(data["id"], text="done"),
        )

    agent = serve(future_agent)
    events = call(agent.path, message(want_ack=False), timeout=5)
    assert [e.type for e in events] == [EventType.FINAL]


def test_an_oversize_event_is_refused_and_the_next_event_still_arrives(serve: Any) -> None:
    def chatty(data: dict[str, Any], conn: Conn) -> None:
        conn.send(Events.text(data["id"], "x" * 5000), Events.final(data["id"], text="ok"))

    agent = serve(chatty)
    with connect(agent.path, message(want_ack=False), timeout=5, max_bytes=1000) as exchange:
        with pytest.raises(ProtocolError) as caught:
            exchange.next_event()
        assert caught.value.code is ErrorCode.TOO_LARGE
        final = exchange.next_event()
    assert final is not None and final.text == "ok"


def test_a_request_over_the_frame_limit_is_refused_before_it_is_sent(serve: Any) -> None:
    agent = serve(full_turn)
    with pytest.raises(ProtocolError) as caught:
        call(agent.path, message("x" * 2000), timeout=5, max_bytes=1000)
    assert caught.value.code is ErrorCode.TOO_LARGE
    time.sleep(0.05)
    assert agent.lines == []


def test_an_agent_silent_for_longer_than_the_timeout_raises_agent_timeout(
    serve: Any,
) -> None:
    agent = serve(lambda data, conn: None)
    started = time.monotonic()
    with pytest.raises(AgentTimeout, match=r"0\.2 s"):
        call(agent.path, message(), timeout=0.2)
    assert time.monotonic() - started < 3


def test_an_error_event_ends_the_exchange_as_terminal(serve: Any) -> None:
    def refuse(data: dict[str, Any], conn: Conn) -> None:
        conn.send(Events.error(data["id"], ErrorCode.BUSY, "too many turns"))

    agent = serve(refuse)
    events = call(agent.path, message(), timeout=5)
    assert len(events) == 1 and events[0].is_terminal
    assert events[0].get_str("kind") == "busy"


# -- the async client --------------------------------------------------------------------


def test_the_async_client_streams_events_until_the_terminal_one_and_acks(
    serve: Any,
) -> None:
    agent = serve(full_turn)

    async def main() -> list[Event]:
        exchange = await open_exchange(agent.path, message())
        async with exchange:
            events = [event async for event in exchange]
            assert exchange.terminal is not None
            await exchange.ack(exchange.terminal.get_str("turn"))
        return events

    events = asyncio.run(main())
    assert [e.type for e in events][-1] is EventType.FINAL
    assert "".join(e.text for e in events if e.type is EventType.TEXT) == "Hello"
    assert agent.wait_for("ack")["entry"] == "turn-1"


def test_the_async_client_raises_agent_disconnected_when_the_agent_goes_away(
    serve: Any,
) -> None:
    def crash(data: dict[str, Any], conn: Conn) -> None:
        conn.send(Events.accepted(data["id"], "t1", "tg:1"))
        conn.close()

    agent = serve(crash)

    async def main() -> list[EventType]:
        seen: list[EventType] = []
        async with await open_exchange(agent.path, message()) as exchange:
            with pytest.raises(AgentDisconnected):
                async for event in exchange:
                    seen.append(event.type)
        return seen

    assert asyncio.run(main()) == [EventType.ACCEPTED]


def test_the_async_client_raises_agent_unavailable_for_a_missing_socket(
    sock_dir: Path,
) -> None:
    async def main() -> None:
        await open_exchange(sock_dir / "agent.sock", message())

    with pytest.raises(AgentUnavailable) as caught:
        asyncio.run(main())
    assert str(sock_dir / "agent.sock") in str(caught.value)


def test_the_async_client_survives_an_oversize_event(serve: Any) -> None:
    def chatty(data: dict[str, Any], conn: Conn) -> None:
        conn.send(Events.text(data["id"], "x" * 5000), Events.final(data["id"], text="ok"))

    agent = serve(chatty)

    async def main() -> Event | None:
        exchange = await open_exchange(agent.path, message(), max_bytes=1000)
        async with exchange:
            with pytest.raises(ProtocolError):
                await exchange.next_event()
            return await exchange.next_event()

    final = asyncio.run(main())
    assert final is not None and final.text == "ok"


def test_importing_the_protocol_does_not_import_asyncio() -> None:
    import subprocess
    import sys

    code = "import sys, ductor.protocol; print('asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"

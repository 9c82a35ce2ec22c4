"""`ductor chat NAME` as a user runs it, against a scripted agent on a real socket."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ductor.protocol import Button, Event, Events

REPO = Path(__file__).resolve().parents[2]

Send = Callable[..., None]
Script = Callable[[dict[str, Any], Send], None]


class ScriptedAgent:
    """Plays the agent on ``<runtime>/main/agent.sock``; ``script`` answers each line."""

    def __init__(self, path: Path, script: Script) -> None:
        self.path = path
        self.script = script
        self.lines: list[dict[str, Any]] = []
        self.aborted = threading.Event()
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
        def send(*events: Event) -> None:
            for event in events:
                sock.sendall(event.encode())

        with sock, sock.makefile("rb") as reader, contextlib.suppress(OSError):
            for raw in reader:
                data = json.loads(raw)
                self.lines.append(data)
                if data["type"] == "abort":
                    self.aborted.set()
                self.script(data, send)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


@pytest.fixture
def runtime() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path is too deep.
    path = Path(tempfile.mkdtemp(prefix="ductor-"))
    (path / "main").mkdir()
    yield path
    shutil.rmtree(path)


@pytest.fixture
def serve(runtime: Path) -> Iterator[Callable[[Script], ScriptedAgent]]:
    agents: list[ScriptedAgent] = []

    def start(script: Script) -> ScriptedAgent:
        agents.append(ScriptedAgent(runtime / "main" / "agent.sock", script))
        return agents[-1]

    yield start
    for agent in agents:
        agent.close()


def environment(runtime: Path) -> dict[str, str]:
    return {
        "HOME": str(runtime),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DUCTOR_RUNTIME_DIR": str(runtime),
        "DUCTOR_STATE_DIR": str(runtime / "state"),
        "DUCTOR_CONFIG_DIR": str(runtime / "config"),
        "USER": "alice",
        "LOGNAME": "alice",
    }


def chat(
    runtime: Path, *args: str, input: str | None = None, path_first: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = environment(runtime)
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "chat", "main", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def streaming_turn(data: dict[str, Any], send: Send) -> None:
    rid = data["id"]
    if data["type"] == "message":
        send(
            Events.accepted(rid, "turn-1", data["session"]),
            Events.text(rid, "Hello, "),
            Events.tool(rid, "Shell", "ls -la"),
            Events.text(rid, "world."),
            Events.final(rid, text="Hello, world.", turn="turn-1", session=data["session"]),
        )
    elif data["type"] == "command":
        send(Events.final(rid, text=f"answer to {data['text']}"))


def test_a_message_streams_its_answer_with_tool_lines_and_acks_the_turn(serve: Any) -> None:
    agent = serve(streaming_turn)
    result = chat(agent.path.parents[1], "-m", "hi there")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, \n[tool: Shell] ls -la\nworld.\n"
    (sent,) = agent.of_type("message")
    assert sent["text"] == "hi there"
    assert sent["session"] == "cli:alice"
    assert sent["want_ack"] is True
    time.sleep(0.1)
    assert [ack["entry"] for ack in agent.of_type("ack")] == ["turn-1"]


def test_a_command_answered_only_by_its_final_text_is_printed(serve: Any) -> None:
    agent = serve(streaming_turn)
    result = chat(agent.path.parents[1], "-m", "/status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "answer to /status\n"
    assert agent.of_type("command")[0]["text"] == "/status"


def test_without_a_terminal_all_of_stdin_is_one_message(serve: Any) -> None:
    agent = serve(streaming_turn)
    result = chat(agent.path.parents[1], "--session", "tg:-100123:7", input="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    (sent,) = agent.of_type("message")
    assert sent["text"] == "line one\nline two"
    assert sent["session"] == "tg:-100123:7"


def test_an_error_event_is_shown_on_stderr_and_exits_1(serve: Any) -> None:
    def rate_limited(data: dict[str, Any], send: Send) -> None:
        send(Events.error(data["id"], "rate_limit", "Too many requests, wait a minute."))

    agent = serve(rate_limited)
    result = chat(agent.path.parents[1], "-m", "hi")
    assert result.returncode == 1
    assert "error: rate_limit: Too many requests, wait a minute." in result.stderr
    assert result.stdout == ""


def test_a_final_marked_as_error_exits_1_after_showing_its_text(serve: Any) -> None:
    def failed(data: dict[str, Any], send: Send) -> None:
        send(Events.final(data["id"], text="The CLI crashed.", is_error=True))

    agent = serve(failed)
    result = chat(agent.path.parents[1], "-m", "hi")
    assert result.returncode == 1
    assert result.stdout == "The CLI crashed.\n"


def test_an_error_after_streamed_text_is_still_shown_and_exits_1(serve: Any) -> None:
    def timed_out(data: dict[str, Any], send: Send) -> None:
        if data["type"] != "message":
            return
        rid = data["id"]
        send(
            Events.accepted(rid, "t-1", data["session"]),
            Events.text(rid, "Streaming slowly..."),
            Events.status(rid, "timeout_warning", "Timeout in 10 s"),
            Events.final(
                rid,
                text="**Timeout** ─── [flash] The CLI was stopped after 25 s.",
                turn="t-1",
                is_error=True,
            ),
        )

    agent = serve(timed_out)
    result = chat(agent.path.parents[1], "-m", "stream slowly")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "Streaming slowly...",
        "[Timeout in 10 s]",
        "**Timeout** ─── [flash] The CLI was stopped after 25 s.",
    ]


def test_a_notice_after_streamed_text_is_shown(serve: Any) -> None:
    def restored(data: dict[str, Any], send: Send) -> None:
        rid = data["id"]
        send(
            Events.text(rid, "ECHO: again"),
            Events.final(
                rid,
                text="ECHO: again",
                notice="The previous session could not be restored; a new session was started"
                " automatically.",
            ),
        )

    agent = serve(restored)
    result = chat(agent.path.parents[1], "-m", "again")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ECHO: again",
        "The previous session could not be restored; a new session was started automatically.",
    ]


@pytest.mark.parametrize(
    ("stopped", "note"),
    [
        ("stop", "[turn stopped: the answer above is incomplete]"),
        ("interrupt", "[turn interrupted: the answer above is incomplete]"),
    ],
)
def test_a_stopped_turn_ends_with_a_note_and_exits_1(serve: Any, stopped: str, note: str) -> None:
    def stopped_turn(data: dict[str, Any], send: Send) -> None:
        rid = data["id"]
        send(Events.text(rid, "Counting: 1 2"), Events.final(rid, text="", stopped=stopped))

    agent = serve(stopped_turn)
    result = chat(agent.path.parents[1], "-m", "count")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["Counting: 1 2", note]


def test_queue_status_files_notice_and_buttons_are_shown_as_bracketed_lines(
    serve: Any,
) -> None:
    def busy(data: dict[str, Any], send: Send) -> None:
        rid = data["id"]
        send(
            Events.queued(rid, 2, "q-1", "cli:alice"),
            Events.accepted(rid, "t-9", "cli:alice"),
            Events.status(rid, "compacting", "Compacting the context"),
            Events.file(rid, "/srv/out/report.pdf"),
            Events.final(
                rid,
                text="Done.",
                turn="t-9",
                notice="Service restarted: resuming your last request",
                buttons=[[Button("More", "more"), Button("Stop", "stop")]],
                files=["/srv/out/report.pdf"],
            ),
        )

    agent = serve(busy)
    result = chat(agent.path.parents[1], "-m", "report please")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[queued at position 2]",
        "[Compacting the context]",
        "[file: /srv/out/report.pdf]",
        "Service restarted: resuming your last request",
        "Done.",
        "[1] More",
        "[2] Stop",
    ]


def test_chat_with_no_agent_running_says_how_to_start_it_and_exits_75(
    runtime: Path,
) -> None:
    (runtime / "config" / "agents").mkdir(parents=True)
    (runtime / "config" / "agents" / "main.toml").write_text('provider = "claude"\n')
    # a machine whose user service manager runs (this one may have none: then chat says
    # how to run the agent by hand, see test_cli_first_hour)
    bin_dir = runtime / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(
        '#!/bin/sh\ncase "$*" in *is-system-running*) echo running ;; esac\nexit 0\n'
    )
    (bin_dir / "systemctl").chmod(0o755)
    result = chat(runtime, "-m", "hi", path_first=bin_dir)
    assert result.returncode == 75
    assert str(runtime / "main" / "agent.sock") in result.stderr
    assert "systemctl --user start ductor-agent@main.socket" in result.stderr


def test_chat_with_an_agent_that_does_not_exist_says_so_and_how_to_create_it(
    runtime: Path,
) -> None:
    result = chat(runtime, "-m", "hi")
    assert result.returncode == 2
    assert "no agent named 'main'" in result.stderr
    assert "ductor agent add main" in result.stderr
    assert "systemctl" not in result.stderr  # no unit to start: there is no agent


def test_an_invalid_session_key_is_a_usage_error(runtime: Path) -> None:
    result = chat(runtime, "--session", "tg:abc", "-m", "hi")
    assert result.returncode == 2
    assert "--session" in result.stderr and "tg:abc" in result.stderr


def test_the_default_session_key_uses_a_sanitized_login_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ductor.cli.chat import login_name

    monkeypatch.setattr(getpass, "getuser", lambda: "Al ice/x")
    assert login_name() == "Al_ice_x"


def test_ctrl_c_during_a_turn_interrupts_the_cli_and_the_turn_ends_by_itself(
    serve: Any,
) -> None:
    def slow(data: dict[str, Any], send: Send) -> None:
        rid = data["id"]
        if data["type"] == "abort":
            send(Events.final(rid, text="interrupted"))
        elif data["type"] == "message":
            send(Events.accepted(rid, "t1", data["session"]), Events.text(rid, "working\n"))
            agent.aborted.wait(10)
            send(Events.text(rid, "stopped"), Events.final(rid, text="x", turn="t1"))

    agent = serve(slow)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bin" / "ductor"), "chat", "main", "-m", "long job"],
        env=environment(agent.path.parents[1]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "working\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == "[interrupting; Ctrl-C again leaves]\nstopped\n"
    (abort,) = agent.of_type("abort")
    assert abort["mode"] == "interrupt" and abort["session"] == "cli:alice"


def read_until(fd: int, text: str, timeout: float = 10.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"never saw {text!r}; output so far: {seen!r}")
        chunk = os.read(fd, 4096).decode()
        if not chunk:
            raise AssertionError(f"output ended before {text!r}: {seen!r}")
        seen += chunk
    return seen


def test_on_a_terminal_each_line_is_a_turn_and_a_number_presses_a_button(
    serve: Any,
) -> None:
    def menu(data: dict[str, Any], send: Send) -> None:
        rid = data["id"]
        if data["type"] == "message":
            buttons = [[Button("Opus", "model:opus"), Button("Sonnet", "model:sonnet")]]
            send(Events.final(rid, text="Pick a model:", buttons=buttons))
        elif data["type"] == "button":
            send(Events.final(rid, text=f"pressed {data['data']}"))

    agent = serve(menu)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "bin" / "ductor"), "chat", "main"],
        env=environment(agent.path.parents[1]),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    try:
        read_until(out, "you> ")
        os.write(controller, b"which model?\n")
        screen = read_until(out, "you> ")
        assert "Pick a model:\n[1] Opus\n[2] Sonnet\n" in screen
        os.write(controller, b"2\n")
        assert "pressed model:sonnet\n" in read_until(out, "you> ")
        os.write(controller, b"/quit\n")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(controller)
    assert [line["type"] for line in agent.lines] == ["message", "button"]
    assert agent.of_type("button")[0]["data"] == "model:sonnet"

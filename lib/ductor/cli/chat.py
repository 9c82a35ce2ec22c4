"""``ductor chat NAME``: talk to an agent from a terminal, over its socket.

Each line is one ``message`` request (``command`` when it starts with '/'); the answer
streams in as it is written. An error, a notice and a note for a stopped turn are always
shown, also after streamed text; with ``-m`` (or stdin) such a turn exits 1. Ctrl-C
during a turn interrupts the CLI (an ``abort`` with mode ``interrupt`` on a second
connection) and the turn then ends by itself; a second Ctrl-C leaves. Ctrl-C or Ctrl-D
at the prompt, or ``/quit``, leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

from ductor import agents
from ductor.cli.context import Context
from ductor.errors import DuctorError, TemporaryError, UsageError
from ductor.paths import Mode, validate_agent_name
from ductor.protocol import (
    AbortMode,
    AgentUnavailable,
    Button,
    Event,
    EventType,
    ProtocolError,
    Request,
    RequestType,
    User,
    call,
    connect,
    new_request_id,
    parse_session_key,
)

PROMPT = "you> "
QUIT = frozenset({"/quit", "/exit"})
ABORT_TIMEOUT = 5.0
# What a final's "stopped" means, as a note after the partial answer.
STOPPED_NOTES = {
    "interrupt": "turn interrupted: the answer above is incomplete",
    "stop": "turn stopped: the answer above is incomplete",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the agent to talk to")
    parser.add_argument(
        "--session",
        metavar="KEY",
        help="session key, transport:chat[:topic] (default: cli:<your login name>)",
    )
    parser.add_argument(
        "-m",
        "--message",
        metavar="MESSAGE",
        help="send one message, print the answer and exit (without -m and without a"
        " terminal, all of stdin is the message)",
    )


def login_name() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = str(os.getuid())
    return _UNSAFE.sub("_", name) or "user"


class Screen:
    """What the user sees: streamed text and bracketed notes on stdout, errors on stderr.

    The interrupt thread writes too, so every write holds the lock.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.dim = _isatty(out) and not os.environ.get("NO_COLOR")
        self.at_line_start = True
        self._lock = threading.RLock()

    def stream(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def end_line(self) -> None:
        with self._lock:
            if not self.at_line_start:
                self.stream("\n")

    def line(self, text: str, *, dim: bool = False) -> None:
        with self._lock:
            self.end_line()
            self.stream(f"\033[2m{text}\033[0m\n" if dim and self.dim else f"{text}\n")

    def error(self, kind: str, text: str) -> None:
        with self._lock:
            self.end_line()
            self.err.write(f"error: {kind}: {text}\n")
            self.err.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class TurnResult:
    ok: bool = False
    buttons: list[Button] = field(default_factory=list)


class _Render:
    """Turns one request's events into screen output."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.streamed = False
        self.files_shown: set[str] = set()
        self.buttons: list[Button] = []
        self.result = TurnResult()

    def event(self, event: Event) -> None:
        screen = self.screen
        kind = event.type
        if kind is EventType.QUEUED:
            screen.line(f"[queued at position {event.get_int('position')}]", dim=True)
        elif kind is EventType.TEXT and event.text:
            screen.stream(event.text)
            self.streamed = True
        elif kind is EventType.TOOL:
            detail = event.get_str("detail")
            screen.line(f"[tool: {event.get_str('name')}] {detail}".rstrip(), dim=True)
        elif kind is EventType.STATUS:
            screen.line(f"[{event.text or event.get_str('status')}]", dim=True)
        elif kind is EventType.BUTTONS:
            self.buttons = _flatten(event.button_rows())
        elif kind is EventType.FILE:
            self._file(event.get_str("path"))
        elif kind is EventType.FINAL:
            self._final(event)
        elif kind is EventType.ERROR:
            screen.error(event.get_str("kind"), event.text)
            self.result.ok = False

    def _file(self, path: str) -> None:
        if path and path not in self.files_shown:
            self.files_shown.add(path)
            self.screen.line(f"[file: {path}]")

    def _final(self, event: Event) -> None:
        screen = self.screen
        notice = event.get_str("notice")
        if notice:
            screen.line(notice, dim=self.streamed)
        failed = event.get_bool("is_error")
        if not self.streamed:
            screen.stream(event.text)
        elif failed and event.text.strip():
            # What was streamed is the partial answer; the text says why it ended.
            screen.line(event.text.strip())
        screen.end_line()
        stopped = event.get_str("stopped")
        if stopped:
            screen.line(f"[{STOPPED_NOTES.get(stopped, f'turn stopped ({stopped})')}]", dim=True)
        for path in event.get_strings("files"):
            self._file(path)
        buttons = _flatten(event.button_rows()) or self.buttons
        for number, button in enumerate(buttons, start=1):
            screen.line(f"[{number}] {button.label}")
        self.result = TurnResult(ok=not failed and not stopped, buttons=buttons)


def _flatten(rows: list[list[Button]]) -> list[Button]:
    return [button for row in rows for button in row]


def send_interrupt(socket_path: Path, session: str, screen: Screen) -> None:
    """``abort`` with mode ``interrupt`` on a connection of its own."""
    screen.line("[interrupting; Ctrl-C again leaves]", dim=True)
    abort = Request(
        type=RequestType.ABORT, id=new_request_id(), session=session, mode=AbortMode.INTERRUPT
    )
    try:
        events = call(socket_path, abort, timeout=ABORT_TIMEOUT)
    except DuctorError as exc:
        screen.error("interrupt", str(exc))
        return
    if events and events[-1].type is EventType.ERROR:
        screen.error(events[-1].get_str("kind"), events[-1].text)


@contextlib.contextmanager
def _interrupts_abort(socket_path: Path, session: str, screen: Screen) -> Iterator[None]:
    """While a turn runs, the first Ctrl-C interrupts the CLI; the second one leaves.

    The handler only starts a thread: writing or talking to the agent from inside it
    could re-enter a write the main thread was in the middle of.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = 0

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        pressed += 1
        if pressed > 1:
            raise KeyboardInterrupt
        threading.Thread(
            target=send_interrupt, args=(socket_path, session, screen), daemon=True
        ).start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_turn(socket_path: Path, request: Request, screen: Screen) -> TurnResult:
    """Send one request, show its events as they come, ack its final answer."""
    render = _Render(screen)
    session = request.session or ""
    with connect(socket_path, request) as exchange:
        with _interrupts_abort(socket_path, session, screen):
            for event in exchange.events():
                render.event(event)
        terminal = exchange.terminal
        turn = terminal.get_str("turn") if terminal is not None else ""
        if request.want_ack and turn:
            try:
                exchange.ack(turn)
            except DuctorError as exc:
                screen.error("ack", str(exc))
    return render.result


def build_request(text: str, session: str, user: User, buttons: list[Button]) -> Request:
    """A typed line as a request: a button number, a /command or a message."""
    if text.isdigit() and 1 <= int(text) <= len(buttons):
        data = buttons[int(text) - 1].data
        return Request(
            type=RequestType.BUTTON, id=new_request_id(), session=session, data=data, user=user
        )
    if text.startswith("/"):
        return Request(
            type=RequestType.COMMAND, id=new_request_id(), session=session, text=text, user=user
        )
    return Request(
        type=RequestType.MESSAGE,
        id=new_request_id(),
        session=session,
        text=text,
        user=user,
        want_ack=True,
        chat_is_private=True,
    )


def _enable_line_editing() -> None:
    # Importing readline is what makes input() edit lines and keep history.
    with contextlib.suppress(ImportError):
        importlib.import_module("readline")


def interactive(socket_path: Path, session: str, user: User, screen: Screen) -> int:
    _enable_line_editing()
    screen.line(
        f"talking to {socket_path.parent.name} as {session}; /quit or Ctrl-D leaves,"
        " Ctrl-C interrupts a turn",
        dim=True,
    )
    buttons: list[Button] = []
    while True:
        try:
            text = input(PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            screen.stream("\n")
            return 0
        if not text:
            continue
        if text in QUIT:
            return 0
        screen.at_line_start = True
        try:
            result = run_turn(socket_path, build_request(text, session, user, buttons), screen)
        except (DuctorError, ConnectionError) as exc:
            kind = exc.code if isinstance(exc, ProtocolError) else "agent"
            screen.error(kind, str(exc))
            continue
        buttons = result.buttons


def one_message(socket_path: Path, text: str, session: str, user: User, screen: Screen) -> int:
    result = run_turn(socket_path, build_request(text, session, user, []), screen)
    return 0 if result.ok else 1


def _unstartable(ctx: Context, name: str) -> None:
    """The agent exists but has no socket: when no service manager can start it, say so
    and how to run it by hand, instead of pointing at ``systemctl``."""
    problem = ctx.manager.problem()
    if problem is None:
        return
    system = " --system" if ctx.mode is Mode.SYSTEM else ""
    raise TemporaryError(
        f"agent {name!r} is not running, and no service manager can start it: {problem}."
        f" Run it in the foreground in another terminal (`ductor-agent --name {name}{system}`),"
        " then try again"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    name = validate_agent_name(args.name)
    socket_path = ctx.paths.agent_socket(name)
    try:
        session = parse_session_key(args.session or f"cli:{login_name()}").key
    except ProtocolError as exc:
        raise UsageError(f"--session: {exc.message}") from None
    if not socket_path.exists():
        agents.require(ctx.paths, name)  # no socket and no config: there is no such agent
        _unstartable(ctx, name)
    user = User(id=login_name(), name=login_name())
    screen = Screen(ctx.out, sys.stderr)
    if args.message is not None:
        text = args.message.strip()
    elif _isatty(sys.stdin):
        if not socket_path.exists():
            raise AgentUnavailable(socket_path, "no socket")
        return interactive(socket_path, session, user, screen)
    else:
        text = sys.stdin.read().strip()
    if not text:
        raise UsageError("nothing to send: the message is empty")
    return one_message(socket_path, text, session, user, screen)

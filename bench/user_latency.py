"""What a Telegram user sees, with the real Claude Code CLI (design §9, Budgets).

    .venv/bin/python bench/user_latency.py [--runs 20] [--chat-runs 6] [--starts 3]
                                           [--json OUT.json] [--compare PREVIOUS.json]
                                           [--dir DIR]

The one command for the numbers of design §9 as a user meets them. One agent daemon
(``bin/ductor-agent``) and its Telegram transport (``bin/ductor-telegram``) run in a
private layout under a scratch directory, against the fake Bot API of
tests/stubs/telegram_api.py and **the real Claude Code CLI** (the pinned one that
tests/install-claude puts in .cache/npm) talking to the Anthropic stub of
tests/stubs/anthropic_api.py. The stub streams a fixed answer of ten words, a word every
``CHUNK_DELAY_S``, as a model does. Both stubs get TCP_NODELAY (with Nagle's algorithm
their small writes would wait ~40 ms for a delayed ACK: a cost of the stubs, not ours).

Bare runs: the first turn runs through a wrapper that records the argv, the environment,
the working directory and the stdin the agent gives the CLI (and keeps a copy of the
appended system prompt file). Every bare run then starts the same executable with exactly
those, writes the same stdin and closes it, and times its stdout. Telegram turns and bare
runs alternate one after the other (A B B A ...), never at the same time: on two cores a
node CLI beside another would measure the machine, not ductor.

Metrics (medians; "pooled" and per-pair differences are both printed):

- message in → first visible text: from the moment the fake Bot API queues the update
  (the transport waits in a long poll) to the first sendMessage/editMessageText of that
  chat that shows answer text, minus the bare CLI's spawn → first stdout text line.
  Budget: ≤ +40 ms.
- message in → final text: to the first call that shows the complete answer, minus the
  bare CLI's spawn → exit. Budget: ≤ +100 ms.
- model's first token → first Telegram call: from the stub writing the first text delta
  to the first text call at the Bot API; beside it the bare CLI's first delta → stdout.
- first text, ductor's own part: message in → the agent's CLI process exists (/proc
  polled every millisecond), plus the relay (first token → Telegram call, minus first
  token → bare stdout). On a loaded machine the CLI's own start (~0.5 s of node work)
  swings by more than the budget from run to run; this sum leaves it out, so it is the
  number to hold against the 40 ms. Budget: ≤ +40 ms.
- own CPU per message: user + system CPU of the agent daemon and of the transport over
  the measured turns (a process's own counters: its children, the CLIs, are not in them),
  divided by the turns. Budget: ≤ 20 ms for both together.
- start → ready per unit: spawn to ``READY=1`` on a ``$NOTIFY_SOCKET`` of ours (the
  transport also to its first getUpdates), and the CPU spent by then; ``--starts`` times
  each. Budget: ≤ 0.5 s.
- idle RSS/PSS per unit: ``IDLE_WAIT_S`` after the turns. Budget: ≤ 60 MB VmRSS for the
  agent and its transport together. Under systemd the socket-activated agent exits when
  idle (``--idle-exit``, 600 s): "once the agent exited" is what stays, the transport.
- ``ductor chat`` round trip: ``bin/ductor chat NAME -m ...`` from spawn to exit, minus a
  turn of the same session through the protocol client (the agent's own answer), paired
  and alternating. Budget: ≤ +100 ms. Beside it the CPU the command itself used (from
  ``wait4``): on a loaded machine the wall time also counts the waits for a free core.

Writes the table as text on stdout and as JSON (``--json``, default
``bench-results/user_latency.json`` under the current directory); ``--compare`` prints a
previous run's numbers beside this one's. Exits 0 whatever the numbers; 1 when something
fails outright (a process that does not start, an answer that never shows).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent_turn import (
    AGENT,
    REPO,
    Failure,
    agent_turn,
    descendants,
    load,
    memory_of,
)
from ductor.errors import DuctorError
from telegram_turn import TelegramAgent, shown_text, text_calls

sys.path.insert(1, str(REPO))  # the stubs live with the tests
from tests.stubs import anthropic_api, telegram_api
from tests.stubs.anthropic_api import AnthropicStub
from tests.stubs.telegram_api import TelegramStub

ANSWER = "One two three four five six seven eight nine ten."
FIRST_WORD = "One"
CHUNK_DELAY_S = 0.05  # between two words of the answer
IDLE_WAIT_S = 3.0
TIMEOUT_S = 60.0
FIRST_CHAT = 8000

BUDGETS = {  # design §9
    "first_text_over_bare_ms": 40.0,
    "first_text_ductor_ms": 40.0,
    "final_over_bare_ms": 100.0,
    "cpu_per_message_ms": 20.0,
    "start_to_ready_agent_s": 0.5,
    "start_to_ready_telegram_s": 0.5,
    "idle_rss_mb": 60.0,
    "idle_rss_after_agent_exit_mb": 60.0,
    "chat_over_agent_ms": 100.0,
}

CAPTURE = """\
#!{python} -S
# Records how the agent runs the CLI, then becomes the CLI (bench/user_latency.py).
import json, os, shutil, sys
out = {out!r}
stdin = sys.stdin.buffer.read()
with open(os.path.join(out, "stdin"), "wb") as f:
    f.write(stdin)
argv = list(sys.argv)
if "--append-system-prompt-file" in argv:
    at = argv.index("--append-system-prompt-file") + 1
    kept = os.path.join(out, "append-system-prompt.md")
    shutil.copyfile(argv[at], kept)
    argv[at] = kept
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump({{"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}}, f)
fd = os.open(os.path.join(out, "stdin"), os.O_RDONLY)
os.dup2(fd, 0)
os.execv({real!r}, [sys.argv[0], *sys.argv[1:]])
"""


# -- the model stub's clock -----------------------------------------------------------------


class StubClock:
    """When the Anthropic stub wrote its first text delta and its message_stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first_delta: list[float] = []
        self.stops: list[float] = []
        self.requests: list[float] = []  # model requests (POST /v1/messages) arriving
        self._patch()

    def _patch(self) -> None:
        original = anthropic_api._Handler._event
        clock = self

        def event(handler: Any, name: str, data: dict[str, Any]) -> None:
            original(handler, name, data)
            now = time.monotonic()
            with clock.lock:
                if name == "content_block_delta" and data["delta"].get("type") == "text_delta":
                    clock.first_delta.append(now)
                elif name == "message_stop":
                    clock.stops.append(now)

        anthropic_api._Handler._event = event  # type: ignore[method-assign,assignment]
        record = AnthropicStub.record

        def recorded(stub: AnthropicStub, method: str, path: str, body: Any) -> Any:
            if body is not None:
                with clock.lock:
                    clock.requests.append(time.monotonic())
            return record(stub, method, path, body)

        AnthropicStub.record = recorded  # type: ignore[method-assign,assignment]

        def answer(body: Any, behaviour: Any, message_id: str) -> list[dict[str, Any]]:
            return [{"type": "text", "text": ANSWER}]

        anthropic_api._answer_blocks = answer  # every model request gets the same answer

    def first_delta_after(self, since: float) -> float | None:
        with self.lock:
            return next((at for at in self.first_delta if at >= since), None)

    def first_request_after(self, since: float) -> float | None:
        with self.lock:
            return next((at for at in self.requests if at >= since), None)


# -- the agent with the real CLI ------------------------------------------------------------


@dataclass
class RealClaudeAgent(TelegramAgent):
    claude: Path = Path()
    model_api: str = ""
    notify: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    spawned: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        home = self.root / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            "PATH": f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO / "lib"),
            "DUCTOR_CONFIG_DIR": str(self.root / "config"),
            "DUCTOR_STATE_DIR": str(self.root / "state"),
            "DUCTOR_RUNTIME_DIR": str(self.root / "run"),
            "DUCTOR_CACHE_DIR": str(self.root / "cache"),
            "ANTHROPIC_BASE_URL": self.model_api,
            "ANTHROPIC_API_KEY": "sk-fake",  # not a secret: the stub takes any key
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }

    def use_cli(self, executable: Path) -> None:
        link = self.root / "bin" / "claude"
        link.parent.mkdir(parents=True, exist_ok=True)
        staged = link.with_name(".claude.new")
        staged.unlink(missing_ok=True)
        staged.symlink_to(executable)
        staged.replace(link)

    def spawn(self, program: str, log_file: Path) -> subprocess.Popen[bytes]:
        path = self.root / f"notify-{program}.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        seen = self.notify.setdefault(program, [])
        seen.clear()

        def listen() -> None:
            with sock:
                while True:
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        return
                    seen.append((time.monotonic(), data.decode(errors="replace")))
                    if not data:
                        return

        threading.Thread(target=listen, daemon=True).start()
        with log_file.open("ab") as log:
            self.spawned[program] = time.monotonic()
            return subprocess.Popen(
                [sys.executable, str(REPO / "bin" / program), "--name", AGENT],
                env={**self.env, "NOTIFY_SOCKET": str(path)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready_at(self, program: str) -> float | None:
        return next((at for at, text in self.notify.get(program, []) if "READY=1" in text), None)


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of the process itself (all its threads, no children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- bare runs with the agent's own argv, env, cwd and stdin --------------------------------


@dataclass(frozen=True)
class Captured:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: bytes


@dataclass(frozen=True)
class Bare:
    first_text_ms: float
    result_ms: float  # the result line
    exit_ms: float
    model_to_stdout_ms: float | None  # stub's first delta → the first text on stdout
    to_model_ms: float | None  # spawn → the model request at the stub


def carries_text(line: bytes) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    if not isinstance(obj, dict) or obj.get("type") != "stream_event":
        return False
    delta = (obj.get("event") or {}).get("delta") or {}
    return delta.get("type") == "text_delta" and bool(delta.get("text"))


def bare_run(run: Captured, clock: StubClock) -> Bare:
    first = result = None
    started = time.monotonic()
    with subprocess.Popen(
        run.argv,
        env=run.env,
        cwd=run.cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(run.stdin)
        proc.stdin.close()
        for line in proc.stdout:
            now = time.monotonic()
            if first is None and carries_text(line):
                first = now
            if result is None and b'"type":"result"' in line:
                result = now
        rc = proc.wait()
    ended = time.monotonic()
    if rc != 0 or first is None:
        raise Failure(f"the bare claude exited with {rc}; text seen: {first is not None}")
    delta = clock.first_delta_after(started)
    return Bare(
        first_text_ms=(first - started) * 1000,
        result_ms=((result or ended) - started) * 1000,
        exit_ms=(ended - started) * 1000,
        model_to_stdout_ms=(first - delta) * 1000 if delta is not None else None,
        to_model_ms=ms_since(started, clock.first_request_after(started)),
    )


def ms_since(started: float, at: float | None) -> float | None:
    return (at - started) * 1000 if at is not None else None


# -- a turn through Telegram ----------------------------------------------------------------


@dataclass(frozen=True)
class ChatTurn:
    first_text_ms: float
    final_ms: float
    model_to_telegram_ms: float | None  # stub's first delta → the first text call
    to_model_ms: float | None  # message in → the model request at the stub
    to_spawn_ms: float | None = None  # message in → the agent's CLI process exists


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


class SpawnWatch:
    """When the agent starts its next CLI: /proc polled every millisecond (a sleep, so
    the CLI starting on the other core is not slowed), from ``start`` until found."""

    def __init__(self, agent_pid: int) -> None:
        self.pid = agent_pid
        self.before = children(agent_pid)
        self.seen: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if children(self.pid) - self.before:
                self.seen = time.monotonic()
                return
            time.sleep(0.001)

    def join(self) -> float | None:
        self._thread.join(TIMEOUT_S)
        return self.seen


def telegram_turn(
    stub: TelegramStub, clock: StubClock, chat: int, text: str = "hello", agent_pid: int = 0
) -> ChatTurn:
    since = len(stub.calls)
    watch = SpawnWatch(agent_pid) if agent_pid else None

    def complete() -> bool:
        return any(shown_text(c) == ANSWER for c in text_calls(stub, chat, since))

    started = time.monotonic()
    if watch is not None:
        watch.start()
    stub.user_sends(chat, text, user_id=chat)
    try:
        stub.wait_for(complete, timeout=TIMEOUT_S)
    except TimeoutError as exc:
        raise Failure(f"chat {chat}: the answer never showed complete: {exc}") from None
    calls = text_calls(stub, chat, since)
    first = next(c for c in calls if FIRST_WORD in shown_text(c))
    final = next(c for c in calls if shown_text(c) == ANSWER)
    delta = clock.first_delta_after(started)
    return ChatTurn(
        first_text_ms=(first.at - started) * 1000,
        final_ms=(final.at - started) * 1000,
        model_to_telegram_ms=(first.at - delta) * 1000 if delta is not None else None,
        to_model_ms=ms_since(started, clock.first_request_after(started)),
        to_spawn_ms=ms_since(started, watch.join()) if watch is not None else None,
    )


def capture_run(agent: RealClaudeAgent, stub: TelegramStub, clock: StubClock) -> Captured:
    """One turn through a wrapper that records how the agent runs the CLI."""
    out = agent.root / "captured"
    out.mkdir()
    wrapper = agent.root / "capture-claude"
    wrapper.write_text(CAPTURE.format(python=sys.executable, out=str(out), real=str(agent.claude)))
    wrapper.chmod(0o755)
    agent.use_cli(wrapper)
    try:
        telegram_turn(stub, clock, FIRST_CHAT - 1, "warm-up")
    finally:
        agent.use_cli(agent.claude)
    recorded = json.loads((out / "run.json").read_text())
    return Captured(
        argv=recorded["argv"],
        env=recorded["env"],
        cwd=recorded["cwd"],
        stdin=(out / "stdin").read_bytes(),
    )


# -- the parts ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure_turns(
    agent: RealClaudeAgent, stub: TelegramStub, clock: StubClock, run: Captured, runs: int
) -> dict[str, Any]:
    assert agent.proc is not None and agent.transport is not None
    bare_runs: list[Bare] = []
    chat_turns: list[ChatTurn] = []
    cpu_agent = cpu_transport = 0.0
    for n in range(runs):
        order = ("tg", "bare") if n % 2 == 0 else ("bare", "tg")
        for what in order:
            if what == "bare":
                bare_runs.append(bare_run(run, clock))
            else:
                before = cpu_of(agent.proc.pid), cpu_of(agent.transport.pid)
                chat_turns.append(
                    telegram_turn(stub, clock, FIRST_CHAT + n, agent_pid=agent.proc.pid)
                )
                time.sleep(0.3)  # the turn's last calls (reaction, inflight) belong to it
                cpu_agent += cpu_of(agent.proc.pid) - before[0]
                cpu_transport += cpu_of(agent.transport.pid) - before[1]
            time.sleep(0.1)
    first_diffs = [
        t.first_text_ms - b.first_text_ms for t, b in zip(chat_turns, bare_runs, strict=True)
    ]
    final_diffs = [t.final_ms - b.exit_ms for t, b in zip(chat_turns, bare_runs, strict=True)]
    bare_first = median([b.first_text_ms for b in bare_runs])
    bare_exit = median([b.exit_ms for b in bare_runs])
    tg_first = median([t.first_text_ms for t in chat_turns])
    tg_final = median([t.final_ms for t in chat_turns])
    model_tg = [t.model_to_telegram_ms for t in chat_turns if t.model_to_telegram_ms is not None]
    model_bare = [b.model_to_stdout_ms for b in bare_runs if b.model_to_stdout_ms is not None]
    spawn = median([t.to_spawn_ms for t in chat_turns if t.to_spawn_ms is not None])
    relay = median(model_tg) - median(model_bare)
    return {
        "telegram_to_spawn_ms": spawn,
        "relay_over_bare_ms": relay,
        "first_text_ductor_ms": spawn + relay,
        "bare_to_model_ms": median([b.to_model_ms for b in bare_runs if b.to_model_ms]),
        "telegram_to_model_ms": median([t.to_model_ms for t in chat_turns if t.to_model_ms]),
        "bare_first_text_ms": bare_first,
        "bare_result_line_ms": median([b.result_ms for b in bare_runs]),
        "bare_exit_ms": bare_exit,
        "telegram_first_text_ms": tg_first,
        "telegram_final_ms": tg_final,
        "first_text_over_bare_ms": tg_first - bare_first,
        "first_text_over_bare_paired_ms": median(first_diffs),
        "final_over_bare_ms": tg_final - bare_exit,
        "final_over_bare_paired_ms": median(final_diffs),
        "model_to_stdout_bare_ms": median(model_bare),
        "model_to_telegram_ms": median(model_tg),
        "cpu_per_message_agent_ms": cpu_agent / runs * 1000,
        "cpu_per_message_telegram_ms": cpu_transport / runs * 1000,
        "cpu_per_message_ms": (cpu_agent + cpu_transport) / runs * 1000,
    }


def measure_idle(agent: RealClaudeAgent) -> dict[str, Any]:
    assert agent.proc is not None and agent.transport is not None
    time.sleep(IDLE_WAIT_S)
    found: dict[str, Any] = {}
    total = 0.0
    for unit, root in (("agent", agent.proc.pid), ("telegram", agent.transport.pid)):
        rss = pss = 0
        for pid in descendants(root):
            memory = memory_of(pid)
            if memory is not None:
                rss += memory[1]
                pss += memory[2]
        found[f"idle_rss_{unit}_mb"] = rss / 1024
        found[f"idle_pss_{unit}_mb"] = pss / 1024
        total += rss / 1024
    found["idle_rss_mb"] = total
    # Under systemd the agent is socket-activated and exits after --idle-exit seconds
    # without a client or a turn (ductor-agent --idle-exit, default 600 s); what stays
    # is the transport, and the agent comes back with the next message.
    found["idle_rss_after_agent_exit_mb"] = found["idle_rss_telegram_mb"]
    found["idle_pss_mb"] = found["idle_pss_agent_mb"] + found["idle_pss_telegram_mb"]
    return found


def wait_ready(agent: RealClaudeAgent, program: str, proc: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (at := agent.ready_at(program)) is not None:
            return at
        if proc.poll() is not None:
            raise Failure(f"{program} exited with {proc.returncode}:\n{agent.log_tail()}")
        time.sleep(0.005)
    raise Failure(f"{program} sent no READY=1 within 30 s:\n{agent.log_tail()}")


def polled_after(stub: TelegramStub, polls: int) -> bool:
    return len(stub.calls_to("getUpdates")) > polls


def measure_starts(agent: RealClaudeAgent, stub: TelegramStub, starts: int) -> dict[str, Any]:
    """Stop both units, then start them ``starts`` times: agent first, then transport."""
    ready = {"agent": [], "telegram": [], "telegram_poll": []}  # type: dict[str, list[float]]
    cpu = {"agent": [], "telegram": []}  # type: dict[str, list[float]]
    for _ in range(starts):
        agent.stop()
        agent.proc = agent.spawn("ductor-agent", agent.log_file)
        at = wait_ready(agent, "ductor-agent", agent.proc)
        ready["agent"].append(at - agent.spawned["ductor-agent"])
        cpu["agent"].append(cpu_of(agent.proc.pid))
        polls = len(stub.calls_to("getUpdates"))
        agent.transport = agent.spawn("ductor-telegram", agent.transport_log)
        at = wait_ready(agent, "ductor-telegram", agent.transport)
        ready["telegram"].append(at - agent.spawned["ductor-telegram"])
        cpu["telegram"].append(cpu_of(agent.transport.pid))
        try:
            stub.wait_for(partial(polled_after, stub, polls), timeout=30)
        except TimeoutError as exc:
            raise Failure(f"the transport does not poll: {exc}") from None
        poll = stub.calls_to("getUpdates")[polls].at
        ready["telegram_poll"].append(poll - agent.spawned["ductor-telegram"])
        time.sleep(0.5)
    return {
        "start_to_ready_agent_s": median(ready["agent"]),
        "start_to_ready_telegram_s": median(ready["telegram"]),
        "start_to_first_poll_telegram_s": median(ready["telegram_poll"]),
        "start_cpu_agent_s": median(cpu["agent"]),
        "start_cpu_telegram_s": median(cpu["telegram"]),
    }


def measure_chat(agent: RealClaudeAgent, runs: int) -> dict[str, Any]:
    """``ductor chat -m`` against a turn of the same session through the protocol."""
    session = "cli:bench"
    argv = [sys.executable, str(REPO / "bin" / "ductor"), "chat", AGENT]
    argv += ["--session", session, "-m", "hello"]
    chat_ms: list[float] = []
    chat_cpu_ms: list[float] = []
    direct_ms: list[float] = []

    def via_chat() -> None:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=agent.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        with proc.stdout:
            out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # its own CPU, whatever the load
        proc.returncode = os.waitstatus_to_exitcode(status)
        chat_ms.append((time.monotonic() - started) * 1000)
        chat_cpu_ms.append((usage.ru_utime + usage.ru_stime) * 1000)
        if proc.returncode != 0 or ANSWER.encode() not in out:
            raise Failure(f"ductor chat exited {proc.returncode}: {out.decode()[-500:]}")

    def direct() -> None:
        direct_ms.append(agent_turn(agent, "hello", session).final_ms)

    via_chat()  # a first turn creates the session; both then resume it
    chat_ms.clear()
    chat_cpu_ms.clear()
    for n in range(runs):
        for step in (via_chat, direct) if n % 2 == 0 else (direct, via_chat):
            step()
            time.sleep(0.1)
    paired = [c - d for c, d in zip(chat_ms, direct_ms, strict=True)]
    return {
        "chat_round_trip_ms": median(chat_ms),
        "agent_answer_ms": median(direct_ms),
        "chat_over_agent_ms": median(chat_ms) - median(direct_ms),
        "chat_over_agent_paired_ms": median(paired),
        "chat_cpu_ms": median(chat_cpu_ms),
    }


# -- the table ------------------------------------------------------------------------------

ROWS: list[tuple[str, str, str]] = [  # key, label, unit
    ("telegram_to_spawn_ms", "message in → the agent's CLI spawned", "ms"),
    ("relay_over_bare_ms", "first token → chat, minus → bare stdout", "ms"),
    ("first_text_ductor_ms", "first text: ductor's own part (sum)", "ms"),
    ("bare_to_model_ms", "bare CLI: spawn → model request", "ms"),
    ("telegram_to_model_ms", "message in → model request", "ms"),
    ("bare_first_text_ms", "bare CLI: spawn → first text on stdout", "ms"),
    ("bare_result_line_ms", "bare CLI: spawn → result line", "ms"),
    ("bare_exit_ms", "bare CLI: spawn → exit", "ms"),
    ("telegram_first_text_ms", "message in → first visible text", "ms"),
    ("telegram_final_ms", "message in → final text", "ms"),
    ("first_text_over_bare_ms", "first text − bare (medians)", "ms"),
    ("first_text_over_bare_paired_ms", "first text − bare (paired)", "ms"),
    ("final_over_bare_ms", "final − bare exit (medians)", "ms"),
    ("final_over_bare_paired_ms", "final − bare exit (paired)", "ms"),
    ("model_to_stdout_bare_ms", "model's first token → bare stdout", "ms"),
    ("model_to_telegram_ms", "model's first token → Telegram call", "ms"),
    ("cpu_per_message_agent_ms", "CPU per message: agent", "ms"),
    ("cpu_per_message_telegram_ms", "CPU per message: telegram", "ms"),
    ("cpu_per_message_ms", "CPU per message: both", "ms"),
    ("start_to_ready_agent_s", "start → READY=1: agent", "s"),
    ("start_to_ready_telegram_s", "start → READY=1: telegram", "s"),
    ("start_to_first_poll_telegram_s", "start → first getUpdates", "s"),
    ("start_cpu_agent_s", "CPU at ready: agent", "s"),
    ("start_cpu_telegram_s", "CPU at ready: telegram", "s"),
    ("idle_rss_agent_mb", "idle VmRSS: agent", "MB"),
    ("idle_rss_telegram_mb", "idle VmRSS: telegram", "MB"),
    ("idle_rss_mb", "idle VmRSS: agent + telegram", "MB"),
    ("idle_pss_mb", "idle Pss: agent + telegram", "MB"),
    ("idle_rss_after_agent_exit_mb", "idle VmRSS once the agent exited", "MB"),
    ("chat_round_trip_ms", "ductor chat -m: spawn → exit", "ms"),
    ("agent_answer_ms", "the agent's own answer (protocol)", "ms"),
    ("chat_over_agent_ms", "ductor chat − agent (medians)", "ms"),
    ("chat_over_agent_paired_ms", "ductor chat − agent (paired)", "ms"),
    ("chat_cpu_ms", "ductor chat -m: its own CPU", "ms"),
]


def budget_for(key: str) -> float | None:
    if key in BUDGETS:
        return BUDGETS[key]
    for suffix in ("_paired_ms",):
        if key.endswith(suffix):
            return BUDGETS.get(key.removesuffix(suffix) + "_ms")
    return None


def table(metrics: dict[str, Any], previous: dict[str, Any] | None) -> Iterator[str]:
    head = f"{'metric':<40}{'value':>10}  {'budget':<12}{'':<5}"
    if previous is not None:
        head += f"{'previous':>10}{'change':>10}"
    yield head
    for key, label, unit in ROWS:
        value = metrics.get(key)
        if not isinstance(value, (int, float)):
            continue
        signed = key.endswith(("_over_bare_ms", "_paired_ms", "_over_agent_ms", "_ductor_ms"))
        digits = 3 if unit == "s" else 1
        shown = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
        budget = budget_for(key)
        limit = f"≤ {'+' if signed else ''}{budget:g}" if budget is not None else ""
        verdict = "" if budget is None else ("ok" if value <= budget else "OVER")
        line = f"{label:<40}{shown:>10}  {f'{limit} {unit}':<12}{verdict:<5}"
        if previous is not None and isinstance(previous.get(key), (int, float)):
            before = float(previous[key])
            line += f"{before:>10.{digits}f}{value - before:>+10.{digits}f}"
        yield line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="Telegram turns, as many bare runs")
    parser.add_argument("--chat-runs", type=int, default=6, help="ductor chat runs, as many direct")
    parser.add_argument("--starts", type=int, default=3, help="starts of each unit")
    parser.add_argument("--json", type=Path, default=Path("bench-results/user_latency.json"))
    parser.add_argument("--compare", type=Path, default=None, help="a previous run's JSON")
    parser.add_argument("--claude", type=Path, default=None, help="the claude to run")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory's parent")
    args = parser.parse_args()
    if min(args.runs, args.chat_runs, args.starts) < 1:
        parser.error("--runs, --chat-runs and --starts must be at least 1")
    previous = None
    if args.compare is not None:
        previous = json.loads(args.compare.read_text())["metrics"]
    claude = args.claude or install_claude()

    load_before = load()
    print(f"user latency benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs,")
    print(f"  load {load_before}; the real claude at {claude}")
    started = time.monotonic()
    anthropic_api._Handler.disable_nagle_algorithm = True
    telegram_api._Handler.disable_nagle_algorithm = True
    clock = StubClock()
    metrics: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(dir=args.dir, prefix="ductor-bench-") as scratch,
        TelegramStub() as stub,
        AnthropicStub() as model,
    ):
        model.set_behaviour("echo", chunk_size=0)
        chunked_stream(model)
        chats = [FIRST_CHAT - 1, *range(FIRST_CHAT, FIRST_CHAT + args.runs)]
        agent = RealClaudeAgent(
            Path(scratch), parallel=4, stub=stub, chats=chats, claude=claude,
            model_api=model.base_url,
        )  # fmt: skip
        try:
            agent.use_cli(claude)
            agent.start()
            run = capture_run(agent, stub, clock)
            bare_run(run, clock)  # warms the page cache for the bare side too
            metrics |= measure_turns(agent, stub, clock, run, args.runs)
            metrics |= measure_idle(agent)
            metrics |= measure_chat(agent, args.chat_runs)
            metrics |= measure_starts(agent, stub, args.starts)
        except (Failure, DuctorError, OSError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            print(agent.log_tail(), file=sys.stderr)
            return 1
        finally:
            agent.stop()
    meta = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load(),
        "runs": args.runs,
        "chat_runs": args.chat_runs,
        "starts": args.starts,
        "commit": git_commit(),
        "seconds": round(time.monotonic() - started),
    }
    print(f"  {args.runs} Telegram turns alternating with {args.runs} bare runs; load after"
          f" {meta['load_after']}; {meta['seconds']} s")  # fmt: skip
    lines = list(table(metrics, previous))
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "metrics": metrics}, indent=2) + "\n")
    args.json.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print(f"written: {args.json} and {args.json.with_suffix('.txt')}")
    return 0


def chunked_stream(model: AnthropicStub) -> None:
    """The answer a word at a time, ``CHUNK_DELAY_S`` apart, as a model streams it."""
    original = anthropic_api.chunks

    def words(text: str, size: int) -> list[str]:
        if text != ANSWER:
            return original(text, size)
        parts = text.split(" ")
        return [parts[0], *(" " + part for part in parts[1:])]

    anthropic_api.chunks = words
    model.set_behaviour("echo", chunk_size=1, chunk_delay=CHUNK_DELAY_S)


def install_claude() -> Path:
    done = subprocess.run(
        [str(REPO / "tests" / "install-claude")],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"tests/install-claude failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip())


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())

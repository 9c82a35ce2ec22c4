"""What the agent daemon costs on top of the CLI it runs (design §9, Budgets).

    .venv/bin/python bench/agent_turn.py [--runs 20] [--serial] [--resumed]
                                         [--only overhead|rss|parallel] [--dir DIR]

One agent daemon (``bin/ductor-agent``) runs in a private layout under a scratch
directory, with the fake claude of tests/fakecli on its PATH (see ``cli_path``); the fake
gets its FAKECLI_* settings through the agent's ``.env`` (the CLI's environment is an
allowlist). It is started once and serves all parts; requests go through the protocol
client, the way a transport sends them (``want_ack``, ack after the final).

(a) overhead
    The fake claude replays ``claude-partial`` with its recorded timing (tokens every
    ~200 ms, first text at ~1.5 s, exit at ~4.1 s). Bare: the CLI run directly, time to
    the first stdout line that carries text (a text_delta or an assistant text) and to
    its exit. Agent: a message in a new session, time from sending the request to the
    first ``text`` event and to the ``final`` event. Budget: first text ≤ bare + 50 ms,
    final ≤ bare + 100 ms (medians). A run replays 4.1 s of recorded gaps, so 20 runs of
    each one after the other would take 3 minutes; by default each agent turn runs side by
    side with a bare run started 0.3 s after it (or before it, every other run): the two
    meet only while both sleep between lines, 100 ms apart. ``--serial`` runs them one
    after the other instead; ``--resumed`` adds a resumed turn (``--resume``) per run.
(b) rss
    2 s after one turn, VmRSS (and PSS) of the daemon and any children, from /proc.
    Budget: 60 MB for all processes of an idle agent with one transport; no transport
    exists yet, so this is the agent's part. Read again at the end, after all parts.
(c) parallel
    20 sessions at once (``limits.max_parallel_sessions = 20``), one thread each, sending
    3 messages in sequence (each sent once the agent has accepted or queued the one
    before), the fake CLI pacing ``claude-new`` at 100 ms a line. Every reply must
    arrive, and the CLI runs of each session (FAKECLI_RECORD) must come in the order
    sent. The wall time is set against one session's 3 turns alone (×1: ideally
    parallel) and ×20 (serial).

Exits 0 whatever the numbers; 1 when something fails outright (an agent that does not
start, a lost reply, an error event), with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ductor.errors import DuctorError
from ductor.protocol import Event, EventType, Request, RequestType, new_request_id
from ductor.protocol.client import AgentUnavailable, Exchange, call, connect

REPO = Path(__file__).resolve().parents[1]
FAKECLI = REPO / "tests" / "fakecli"
AGENT = "bench"
SCENARIO = "claude-partial"
PARALLEL_SCENARIO = "claude-new"
PARALLEL_REPLY = "ECHO: hello"
BUDGET_FIRST_TEXT_MS = 50.0
BUDGET_FINAL_MS = 100.0
BUDGET_IDLE_RSS_MB = 60.0
PAIR_OFFSET_S = 0.3
IDLE_WAIT_S = 2.0
TURN_TIMEOUT_S = 60.0

CONFIG = """\
provider = "claude"
model = "opus"
transports = []

[timeouts]
normal = 60

[limits]
max_parallel_sessions = {parallel}
"""


class Failure(Exception):
    """Something failed outright: there is nothing meaningful to report."""


# -- the agent ------------------------------------------------------------------------------


@dataclass
class Agent:
    """One agent daemon with its own config, state and runtime directories."""

    root: Path
    parallel: int
    proc: subprocess.Popen[bytes] | None = None
    env_writes: int = 0

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": cli_path(self.root),
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO / "lib"),
            "DUCTOR_CONFIG_DIR": str(self.root / "config"),
            "DUCTOR_STATE_DIR": str(self.root / "state"),
            "DUCTOR_RUNTIME_DIR": str(self.root / "run"),
            "DUCTOR_CACHE_DIR": str(self.root / "cache"),
        }

    @property
    def socket(self) -> Path:
        return self.root / "run" / AGENT / "agent.sock"

    @property
    def log_file(self) -> Path:
        return self.root / "agent.log"

    def write_dotenv(self, **values: str) -> None:
        """Hand FAKECLI_* settings to the CLI; a new inode, so the agent sees the change."""
        file = self.root / "config" / "credentials" / AGENT / ".env"
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        values |= fixtures()
        self.env_writes += 1
        staged = file.with_name(f".env.{self.env_writes}")
        staged.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
        staged.chmod(0o600)
        staged.replace(file)

    def start(self) -> None:
        config = self.root / "config" / "agents" / f"{AGENT}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(CONFIG.format(parallel=self.parallel))
        (self.root / "home").mkdir(exist_ok=True)
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "bin" / "ductor-agent"), "--name", AGENT],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"the agent exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                call(self.socket, Request(type=RequestType.HEALTH, id=new_request_id()), timeout=5)
                return
            except (AgentUnavailable, OSError):
                time.sleep(0.05)
        raise Failure(f"the agent did not answer on its socket within 15 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """CPU time of the daemon itself, user and system (its CLIs are not in it)."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def send(self, text: str, session: str) -> Exchange:
        request = Request(
            type=RequestType.MESSAGE,
            id=new_request_id(),
            session=session,
            text=text,
            want_ack=True,
        )
        return connect(self.socket, request, timeout=TURN_TIMEOUT_S)


@dataclass
class TransportAgent(Agent):
    """An :class:`Agent` with one transport process beside it (the Telegram and Matrix
    benches); subclasses name the transport's log and start both."""

    transport: subprocess.Popen[bytes] | None = None

    @property
    def transport_log(self) -> Path:
        raise NotImplementedError

    def spawn(self, program: str, log_file: Path) -> subprocess.Popen[bytes]:
        with log_file.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, str(REPO / "bin" / program), "--name", AGENT],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        for proc in (self.transport, self.proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        tails = [f"agent log:\n{super().log_tail(lines)}"]
        if self.transport_log.exists():
            text = self.transport_log.read_text(errors="replace").splitlines()[-lines:]
            tails.append("transport log:\n" + "\n".join(text))
        return "\n".join(tails)


@dataclass(frozen=True)
class Turn:
    first_text_ms: float | None
    final_ms: float
    reply: str
    session_id: str


def finish(exchange: Exchange, started: float, what: str) -> Turn:
    """Read a turn's events to the final, ack it, and time the first text and the final."""
    first_text_ms = None
    for event in exchange.events():
        if event.type is EventType.TEXT and first_text_ms is None:
            first_text_ms = (time.monotonic() - started) * 1000
    final_ms = (time.monotonic() - started) * 1000
    end = exchange.terminal
    check_final(end, what)
    assert end is not None
    if end.get_str("turn"):
        exchange.ack(end.get_str("turn"))
    return Turn(first_text_ms, final_ms, end.text, end.get_str("session_id"))


def check_final(end: Event | None, what: str) -> None:
    if end is None or end.type is not EventType.FINAL:
        raise Failure(f"{what}: the turn ended with {end} instead of a final event")
    if end.get_bool("is_error"):
        raise Failure(f"{what}: the turn failed: {end.text}")


def agent_turn(agent: Agent, text: str, session: str) -> Turn:
    started = time.monotonic()
    with agent.send(text, session) as exchange:
        turn = finish(exchange, started, f"message {text!r} to {session}")
    if turn.first_text_ms is None:
        raise Failure(f"message {text!r} to {session}: no text event before the final")
    return turn


# -- the bare CLI ---------------------------------------------------------------------------


def cli_path(root: Path) -> str:
    """A PATH with the fake claude and, for its ``#!/usr/bin/env python3``, this python.

    The same for the agent and the bare runs. No version-manager shim (pyenv) sits in
    front of the interpreter, and no codex or gemini is found: the fake codex does not
    emulate ``codex app-server``, and model discovery would leave it hanging for 30 s.
    """
    bin_dir = root / "bin"
    if not bin_dir.is_dir():
        bin_dir.mkdir(parents=True)
        (bin_dir / "claude").symlink_to(FAKECLI / "claude")
        (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    return f"{bin_dir}:/usr/bin:/bin"


def fixtures() -> dict[str, str]:
    """Where the fake finds its recordings, when this environment says (as tests honour it)."""
    if os.environ.get("FAKECLI_FIXTURES"):
        return {"FAKECLI_FIXTURES": os.environ["FAKECLI_FIXTURES"]}
    return {}


def carries_text(line: bytes) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    if obj.get("type") == "stream_event":
        delta = (obj.get("event") or {}).get("delta") or {}
        return delta.get("type") == "text_delta" and bool(delta.get("text"))
    if obj.get("type") == "assistant":
        content = (obj.get("message") or {}).get("content") or []
        return any(part.get("type") == "text" and part.get("text") for part in content)
    return False


def bare_run(root: Path, delay: str, resume: str | None = None) -> Turn:
    argv = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    if resume:
        argv += ["--resume", resume]
    env = {
        "PATH": cli_path(root),
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "FAKECLI_SCENARIO": SCENARIO,
        "FAKECLI_DELAY_MS": delay,
        **fixtures(),
    }
    first_text_ms = None
    started = time.monotonic()
    with subprocess.Popen(
        [*argv, "--", "hello"],  # found on env's PATH, as the agent finds it
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if first_text_ms is None and carries_text(line):
                first_text_ms = (time.monotonic() - started) * 1000
        rc = proc.wait()
    exit_ms = (time.monotonic() - started) * 1000
    if rc != 0 or first_text_ms is None:
        raise Failure(f"the bare fake claude exited with {rc}, text seen: {first_text_ms}")
    return Turn(first_text_ms, exit_ms, "", "")


# -- helpers --------------------------------------------------------------------------------


def alongside(
    background: Callable[[], Turn], foreground: Callable[[], Turn], offset: float
) -> tuple[Turn, Turn]:
    """Run ``background`` in a thread and ``foreground`` ``offset`` s later; both turns."""
    done: list[Turn] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(background())
        except BaseException as exc:  # raised again in the calling thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(offset)
    try:
        second = foreground()
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return done[0], second


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def verdict(value: float, budget: float) -> str:
    return "within budget" if value <= budget else "OVER budget"


def print_chat_vs_bare(
    chat: Sequence[Turn], bare: Sequence[Turn], first_label: str, final_label: str
) -> None:
    """The medians and p90s of a transport's turns next to the bare CLI's, and the
    differences against the budgets (bench/telegram_turn.py, bench/matrix_turn.py)."""

    def column(turns: Sequence[Turn], name: str) -> list[float]:
        return [float(getattr(turn, name)) for turn in turns]

    rows = [
        ("bare CLI: first text line", column(bare, "first_text_ms")),
        ("bare CLI: exit", column(bare, "final_ms")),
        (first_label, column(chat, "first_text_ms")),
        (final_label, column(chat, "final_ms")),
    ]
    for label, values in rows:
        print(f"    {label:<30}{statistics.median(values):9.1f}{percentile(values, 0.9):9.1f}")
    for label, name, budget in (
        ("first text", "first_text_ms", BUDGET_FIRST_TEXT_MS),
        ("final", "final_ms", BUDGET_FINAL_MS),
    ):
        ours, theirs = column(chat, name), column(bare, name)
        median_diff = statistics.median(ours) - statistics.median(theirs)
        p90_diff = percentile(ours, 0.9) - percentile(theirs, 0.9)
        print(
            f"    {'chat − bare: ' + label:<30}{median_diff:+9.1f}{p90_diff:+9.1f}"
            f"   budget ≤ +{budget:.0f} (median): {verdict(median_diff, budget)}"
        )


# -- (a) overhead of a turn -----------------------------------------------------------------


@dataclass
class Samples:
    bare: list[Turn] = field(default_factory=list)
    agent: list[Turn] = field(default_factory=list)


def measure_pair(
    samples: Samples,
    via_agent: Callable[[], Turn],
    bare: Callable[[], Turn],
    *,
    serial: bool,
    agent_first: bool,
) -> Turn:
    """One agent turn and one bare run, side by side unless ``serial``; the agent's turn."""
    if serial:
        agent_turn_, bare_turn = via_agent(), bare()
    elif agent_first:
        agent_turn_, bare_turn = alongside(via_agent, bare, PAIR_OFFSET_S)
    else:
        bare_turn, agent_turn_ = alongside(bare, via_agent, PAIR_OFFSET_S)
    samples.agent.append(agent_turn_)
    samples.bare.append(bare_turn)
    time.sleep(0.05)
    return agent_turn_


def measure_overhead(agent: Agent, runs: int, serial: bool, resumed: bool) -> None:
    # One untimed pass without delays warms both paths (imports, page cache, parsers).
    agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0")
    bare_run(agent.root, "0")
    agent_turn(agent, "warm-up", "tg:2999")
    agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="recorded")

    kinds = {"new session": Samples(), "resumed session": Samples()}
    started, cpu_before = time.monotonic(), agent.cpu_seconds()
    for run in range(runs):
        session = f"tg:{2000 + run}"
        new = measure_pair(
            kinds["new session"],
            partial(agent_turn, agent, "hello", session),
            partial(bare_run, agent.root, "recorded"),
            serial=serial,
            agent_first=run % 2 == 0,
        )
        if resumed:
            measure_pair(
                kinds["resumed session"],
                partial(agent_turn, agent, "again", session),
                partial(bare_run, agent.root, "recorded", resume=new.session_id),
                serial=serial,
                agent_first=run % 2 == 0,
            )
    elapsed, cpu = time.monotonic() - started, agent.cpu_seconds() - cpu_before
    turns = sum(len(samples.agent) for samples in kinds.values())

    how = "one after the other" if serial else f"side by side, {PAIR_OFFSET_S} s apart"
    print(f"(a) overhead of a turn, {runs} runs, fake claude {SCENARIO!r} with its recorded timing")
    print(f"    agent turn and bare CLI run {how}; {elapsed:.0f} s")
    print(f"    agent daemon CPU: {cpu / turns * 1000:.0f} ms a turn (user + system)")
    for kind, samples in kinds.items():
        if samples.agent:
            report_overhead(kind, samples)


def report_overhead(kind: str, samples: Samples) -> None:
    def column(turns: list[Turn], name: str) -> list[float]:
        return [getattr(turn, name) for turn in turns]

    print(f"  {kind:<32}{'median':>9}{'p90':>9}  (ms)")
    rows = [
        ("bare CLI: first text line", column(samples.bare, "first_text_ms")),
        ("bare CLI: exit", column(samples.bare, "final_ms")),
        ("agent: first text event", column(samples.agent, "first_text_ms")),
        ("agent: final event", column(samples.agent, "final_ms")),
    ]
    for label, values in rows:
        print(f"    {label:<30}{statistics.median(values):9.1f}{percentile(values, 0.9):9.1f}")
    for label, name, budget in (
        ("first text", "first_text_ms", BUDGET_FIRST_TEXT_MS),
        ("final", "final_ms", BUDGET_FINAL_MS),
    ):
        agent, bare = column(samples.agent, name), column(samples.bare, name)
        median_diff = statistics.median(agent) - statistics.median(bare)
        p90_diff = percentile(agent, 0.9) - percentile(bare, 0.9)
        print(
            f"    {'agent − bare: ' + label:<30}{median_diff:+9.1f}{p90_diff:+9.1f}"
            f"   budget ≤ +{budget:.0f} (median): {verdict(median_diff, budget)}"
        )


# -- (b) idle RSS ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += descendants(int(child))
    return found


def memory_of(pid: int) -> tuple[str, int, int] | None:
    """Its command line (short), VmRSS and Pss in kB; None for a process that is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None

    def field_kb(text: str, name: str) -> int:
        for line in text.splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0

    command = " ".join(Path(arg).name if "/" in arg else arg for arg in argv[:4] if arg)
    return command, field_kb(status, "VmRSS"), field_kb(rollup, "Pss")


def report_idle_rss(agent: Agent, when: str) -> None:
    assert agent.proc is not None
    time.sleep(IDLE_WAIT_S)
    print(f"(b) idle RSS, {IDLE_WAIT_S:.0f} s {when}")
    total_rss = total_pss = 0
    for pid in descendants(agent.proc.pid):
        memory = memory_of(pid)
        if memory is None:
            continue
        command, rss, pss = memory
        role = "agent daemon" if pid == agent.proc.pid else "child"
        print(
            f"    pid {pid:<8}{role:<14}VmRSS {rss / 1024:6.1f} MB  Pss {pss / 1024:6.1f} MB"
            f"  {command}"
        )
        total_rss += rss
        total_pss += pss
    print(
        f"    all processes: VmRSS {total_rss / 1024:.1f} MB, Pss {total_pss / 1024:.1f} MB;"
        f" budget ≤ {BUDGET_IDLE_RSS_MB:.0f} MB with one transport:"
        f" {verdict(total_rss / 1024, BUDGET_IDLE_RSS_MB)} for the agent's part"
    )
    print("    (no transport exists yet: the number is the agent daemon's part alone)")


# -- (c) sessions in parallel ---------------------------------------------------------------


def chat_burst(agent: Agent, chat: int, messages: int) -> list[Turn]:
    """Send ``messages`` to one session, each once the one before is accepted or queued."""
    session = f"tg:{chat}"
    opened: list[tuple[Exchange, float, str]] = []
    try:
        for n in range(messages):
            text = f"chat {chat} message {n}"
            started = time.monotonic()
            exchange = agent.send(text, session)
            opened.append((exchange, started, text))
            first = exchange.next_event()
            if first is None or first.type not in (EventType.ACCEPTED, EventType.QUEUED):
                raise Failure(f"{text!r}: expected accepted or queued, got {first}")
        return [finish(exchange, sent_at, repr(text)) for exchange, sent_at, text in opened]
    finally:
        for exchange, _, _ in opened:
            exchange.close()


def burst_of_chats(agent: Agent, chats: list[int], messages: int) -> dict[int, list[Turn]]:
    results: dict[int, list[Turn]] = {}
    errors: list[BaseException] = []

    def one(chat: int) -> None:
        try:
            results[chat] = chat_burst(agent, chat, messages)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(chat,)) for chat in chats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise Failure(f"{len(errors)} of {len(chats)} sessions failed; the first: {errors[0]}")
    return results


def prompts_by_chat(record: Path) -> dict[int, list[str]]:
    """The prompts of the CLI runs in the order they started, per chat."""
    runs: dict[int, list[str]] = {}
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        chat = int(entry["env"]["DUCTOR_CHAT_ID"])
        runs.setdefault(chat, []).append(str(entry["argv"][-1]).split("\n\n")[0])
    return runs


def measure_parallel(agent: Agent, sessions: int, messages: int, delay_ms: int) -> None:
    record = agent.root / "record.jsonl"
    agent.write_dotenv(
        FAKECLI_SCENARIO=PARALLEL_SCENARIO,
        FAKECLI_DELAY_MS=str(delay_ms),
        FAKECLI_RECORD=str(record),
    )
    started = time.monotonic()
    burst_of_chats(agent, [4000], messages)
    alone = time.monotonic() - started

    chats = list(range(5000, 5000 + sessions))
    started, cpu_before = time.monotonic(), agent.cpu_seconds()
    results = burst_of_chats(agent, chats, messages)
    wall, cpu = time.monotonic() - started, agent.cpu_seconds() - cpu_before

    finals = sum(1 for turns in results.values() for turn in turns if turn.reply == PARALLEL_REPLY)
    runs = prompts_by_chat(record)
    in_order = [
        chat
        for chat in chats
        if runs.get(chat) == [f"chat {chat} message {n}" for n in range(messages)]
    ]
    latencies = [turn.final_ms for turns in results.values() for turn in turns]
    print(
        f"(c) {sessions} sessions × {messages} messages at once, max_parallel_sessions ="
        f" {agent.parallel}, fake claude {PARALLEL_SCENARIO!r} at {delay_ms} ms a line"
    )
    print(f"    one session alone, {messages} turns:  {alone:6.2f} s")
    print(
        f"    {sessions} sessions at once:         {wall:6.2f} s   ideal parallel (×1)"
        f" {alone:.2f} s, serial (×{sessions}) {alone * sessions:.2f} s:"
        f" {wall / alone:.1f}× one session"
    )
    print(
        f"    send → final per message: median {statistics.median(latencies):.0f} ms,"
        f" p90 {percentile(latencies, 0.9):.0f} ms, max {max(latencies):.0f} ms;"
        f" agent daemon CPU {cpu:.2f} s"
    )
    expected = sessions * messages
    print(
        f"    replies: {finals}/{expected} finals with the expected text;"
        f" CLI runs in the order sent: {len(in_order)}/{sessions} sessions"
    )
    problems = []
    if finals != expected:
        problems.append(f"{expected - finals} of {expected} replies missing or wrong")
    if wrong := [chat for chat in chats if chat not in in_order]:
        problems.append(
            f"CLI runs out of order in {len(wrong)} sessions, e.g. chat {wrong[0]}:"
            f" {runs.get(wrong[0])}"
        )
    if problems:
        raise Failure("; ".join(problems))


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="turns of part (a), each kind")
    parser.add_argument("--serial", action="store_true", help="(a): bare and agent one by one")
    parser.add_argument("--resumed", action="store_true", help="(a): measure resumed turns too")
    parser.add_argument("--sessions", type=int, default=20, help="(c): sessions at once")
    parser.add_argument("--messages", type=int, default=3, help="(c): messages per session")
    parser.add_argument("--delay-ms", type=int, default=100, help="(c): fake CLI line pacing")
    parser.add_argument(
        "--only",
        action="append",
        choices=["overhead", "rss", "parallel"],
        help="run only this part (repeatable); default: all",
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory's parent")
    args = parser.parse_args()
    if min(args.runs, args.sessions, args.messages) < 1 or args.delay_ms < 0:
        parser.error("--runs, --sessions and --messages must be at least 1, --delay-ms ≥ 0")
    parts = set(args.only or ["overhead", "rss", "parallel"])

    python = sys.version.split()[0]
    print(f"agent turn benchmark: python {python}, {os.cpu_count()} CPUs, load {load()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ductor-bench-") as scratch:
        agent = Agent(Path(scratch), parallel=max(args.sessions, 1))
        try:
            agent.start()
            if "rss" in parts:
                agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0")
                agent_turn(agent, "hello", "tg:1000")
                report_idle_rss(agent, "after the first turn of a freshly started agent")
            if "overhead" in parts:
                measure_overhead(agent, args.runs, args.serial, args.resumed)
            if "parallel" in parts:
                measure_parallel(agent, args.sessions, args.messages, args.delay_ms)
            if "rss" in parts and len(parts) > 1:
                report_idle_rss(agent, "after all parts")
        except (Failure, DuctorError, OSError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            print(f"agent log (last lines):\n{agent.log_tail()}", file=sys.stderr)
            return 1
        finally:
            agent.stop()
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())

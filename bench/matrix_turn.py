"""What the Matrix transport and the agent cost together, as a Matrix user sees it
(design §9, Budgets).

    .venv/bin/python bench/matrix_turn.py [--runs 10] [--envelopes 20]
                                          [--only turn|rss|spool] [--dir DIR]

One agent daemon (``bin/ductor-agent``) and its Matrix transport (``bin/ductor-matrix``)
run in a private layout under a scratch directory, against a real Synapse homeserver
(tests/install-synapse installs it, idempotently; tests/stubs/synapse.py runs it on
127.0.0.1 with SQLite), with the fake claude of tests/fakecli; the agent, its settings and
the bare runs are those of bench/agent_turn.py, whose helpers this reuses. Two users are
registered: the bot the transport logs in as (``credentials/NAME/matrix-password``) and
alice, its only allowed user. What alice sees comes from her own long-poll ``/sync`` in a
background thread, which stamps every timeline event with CLOCK_MONOTONIC as its answer
arrives: the times below include Synapse persisting the bot's event and waking alice's
sync, as a Matrix client would see it.

(a) turn
    alice opens a new direct room with the bot (a new session each run; the transport
    joins on the invite, before the clock starts) and sends "hello"; "message in" is the
    moment just before her send request. Matrix answers come as segments, separate
    messages and no edits (transports/matrix/segments.py): a message at each tool or
    status boundary and the rest at the final. First text: the first bot message of the
    room that carries answer text; final: the bot message that completes the answer.
    The fake claude replays ``claude-partial`` with its recorded timing (first text at
    ~1.5 s, a token every ~200 ms, exit at ~4.1 s): it has no tool boundary, so the whole
    answer is one message sent at the final event, and the first text is that message.
    Bare: the CLI run directly, to its first stdout line with text and to its exit; each
    Matrix turn runs side by side with a bare run started 0.3 s after it (or before it,
    every other run), as in bench/agent_turn.py. Budget: first text ≤ bare + 50 ms, final
    ≤ bare + 100 ms (medians). For scale it also times Synapse alone: alice sending into a
    room of her own until the event shows in her sync. A Matrix turn crosses Synapse
    twice that way (alice → the transport's sync, the bot's answer → alice's sync).
(b) rss
    2 s after one turn, VmRSS and PSS of the agent daemon, the transport and any
    children, from /proc. Budget: 60 MB for an idle agent with one transport. Then what
    the transport's import path costs, step by step in a fresh python (asyncio with ssl,
    aiohttp, matrix-nio with its crypto, ductor's modules; Pillow, which the transport
    loads only with the first incoming file).
(c) spool
    With the transport running, an envelope (kind cron, routed to the warm-up room) is
    written to the agent's outbox with ``Spool.post``, one after the other, each once
    the one before is visible: time from the start of ``post`` to the bot's message
    arriving in alice's sync. Budget: 1 s (median).

Exits 0 whatever the numbers; 1 when something fails outright (Synapse or a process that
does not start, an answer that never shows), with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from agent_turn import (
    AGENT,
    BUDGET_IDLE_RSS_MB,
    IDLE_WAIT_S,
    PAIR_OFFSET_S,
    REPO,
    SCENARIO,
    Failure,
    TransportAgent,
    Turn,
    alongside,
    bare_run,
    descendants,
    load,
    memory_of,
    percentile,
    print_chat_vs_bare,
    verdict,
)
from ductor.config import MATRIX_PASSWORD
from ductor.errors import DuctorError
from ductor.protocol import Request, RequestType, new_request_id
from ductor.protocol.client import AgentUnavailable, call
from ductor.spool import Envelope, Kind, Payload, Routing, Spool

sys.path.insert(1, str(REPO))  # the homeserver harness lives with the tests
from tests.stubs.synapse import MatrixUser, Synapse, SynapseError

ANSWER = "ECHO: One two three four five six seven eight nine ten"  # claude-partial's answer
FIRST_WORD = ANSWER.split(maxsplit=1)[0]
INSTALL_SYNAPSE = REPO / "tests" / "install-synapse"
BUDGET_SPOOL_MS = 1000.0
SYNC_POLL_MS = 20_000  # alice's long poll; below the harness's 30 s request timeout
TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 20.0

CONFIG = """\
provider = "claude"
model = "opus"
transports = ["matrix"]

[timeouts]
normal = 60

[matrix]
homeserver = "{homeserver}"
user_id = "{bot}"
allowed_users = ["{alice}"]
"""

Json = dict[str, Any]
T = TypeVar("T")


# -- what alice's client sees ---------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the sync answer carrying it arrived
    room: str
    event: Json

    @property
    def body(self) -> str:
        return str((self.event.get("content") or {}).get("body") or "")

    def is_membership(self, user_id: str, membership: str) -> bool:
        content = self.event.get("content") or {}
        return (
            self.event.get("type") == "m.room.member"
            and self.event.get("state_key") == user_id
            and content.get("membership") == membership
        )

    def is_text_from(self, sender: str) -> bool:
        content = self.event.get("content") or {}
        return (
            self.event.get("type") == "m.room.message"
            and self.event.get("sender") == sender
            and content.get("msgtype") == "m.text"
        )


class Watcher:
    """alice's ``/sync`` loop in a thread: every timeline event of her joined rooms, in
    the order it reached her, stamped on arrival."""

    def __init__(self, server: Synapse, user: MatrixUser) -> None:
        self.server = server
        self.user = user
        self.seen: list[Seen] = []
        self.error: BaseException | None = None
        self.syncs = 0
        self._stopping = False
        self._changed = threading.Condition()
        self._since = str(server.sync(user.access_token)["next_batch"])
        self._thread = threading.Thread(target=self._run, name="alice-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        since = self._since
        while not self._stopping:
            try:
                answer = self.server.sync(self.user.access_token, since, SYNC_POLL_MS)
            except BaseException as exc:  # reported by wait_for in the main thread
                with self._changed:
                    if not self._stopping:
                        self.error = exc
                    self._changed.notify_all()
                return
            at = time.monotonic()
            fresh = [
                Seen(at, room, event)
                for room, joined in (answer.get("rooms") or {}).get("join", {}).items()
                for event in (joined.get("timeline") or {}).get("events", [])
                if isinstance(event, dict)
            ]
            with self._changed:
                self.syncs += 1
                self.seen.extend(fresh)
                self._changed.notify_all()
            since = str(answer["next_batch"])

    def mark(self) -> int:
        with self._changed:
            return len(self.seen)

    def wait_for(self, found: Callable[[list[Seen]], T | None], timeout: float, what: str) -> T:
        """The first non-None ``found(seen)``, checked after every sync answer."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = found(self.seen)
                if result is not None:
                    return result
                if self.error is not None:
                    raise Failure(f"alice's sync failed: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"{what}: not seen in alice's sync within {timeout:.0f} s")
                self._changed.wait(left)

    def stop(self) -> None:
        self._stopping = True  # the thread ends with its current long poll (a daemon)


def bot_texts(seen: list[Seen], room: str, bot_id: str) -> list[Seen]:
    return [s for s in seen if s.room == room and s.is_text_from(bot_id)]


def words(text: str) -> str:
    return " ".join(text.split())


# -- the agent and its transport ------------------------------------------------------------


@dataclass
class MatrixAgent(TransportAgent):
    """bench/agent_turn.py's agent with the Matrix transport, logged in as ``bot``."""

    server: Synapse | None = None
    bot: MatrixUser | None = None
    alice: MatrixUser | None = None
    rooms: list[str] = field(default_factory=list)

    @property
    def transport_log(self) -> Path:
        return self.root / "matrix.log"

    @property
    def sync_file(self) -> Path:
        return self.root / "state" / AGENT / "matrix" / "sync.json"

    def start(self) -> None:
        assert self.server is not None and self.bot is not None and self.alice is not None
        config = self.root / "config" / "agents" / f"{AGENT}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            CONFIG.format(
                homeserver=self.server.base_url, bot=self.bot.user_id, alice=self.alice.user_id
            )
        )
        (self.root / "home").mkdir(exist_ok=True)
        secret = self.root / "config" / "credentials" / AGENT / MATRIX_PASSWORD
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret.write_text(self.bot.password + "\n")
        secret.chmod(0o600)
        self.proc = self.spawn("ductor-agent", self.log_file)
        self.wait_until(self.agent_answers, 15, "the agent does not answer on its socket")
        self.transport = self.spawn("ductor-matrix", self.transport_log)
        # Its first sync is done (and saved) before anything is sent to it.
        self.wait_until(self.first_sync_done, 30, "the transport's first sync never finished")

    def agent_answers(self) -> bool:
        try:
            call(self.socket, Request(type=RequestType.HEALTH, id=new_request_id()), timeout=5)
        except (AgentUnavailable, OSError):
            return False
        return True

    def first_sync_done(self) -> bool:
        try:
            state = json.loads(self.sync_file.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and bool(state.get("since"))

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            for proc, name in ((self.proc, "agent"), (self.transport, "transport")):
                if proc is not None and proc.poll() is not None:
                    raise Failure(f"the {name} exited with {proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise Failure(f"{what} within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def direct_room(self, watcher: Watcher) -> str:
        """A new direct room of alice and the bot, once the bot has joined it."""
        assert self.server is not None and self.bot is not None and self.alice is not None
        bot_id = self.bot.user_id
        mark = watcher.mark()
        room = self.server.create_room(self.alice.access_token, invite=[bot_id], is_direct=True)
        watcher.wait_for(
            lambda seen: next(
                (s for s in seen[mark:] if s.room == room and s.is_membership(bot_id, "join")),
                None,
            ),
            JOIN_TIMEOUT_S,
            f"the bot joining {room}",
        )
        self.rooms.append(room)
        return room


# -- (a) a turn through Matrix --------------------------------------------------------------


@dataclass(frozen=True)
class ChatTurn(Turn):
    send_ms: float = 0.0  # alice's send request, to its answer
    messages_ms: tuple[float, ...] = ()  # the bot's messages up to the final, from message in


def matrix_turn(agent: MatrixAgent, watcher: Watcher, room: str, text: str = "hello") -> ChatTurn:
    assert agent.server is not None and agent.bot is not None and agent.alice is not None
    bot_id = agent.bot.user_id
    mark = watcher.mark()

    def complete(seen: list[Seen]) -> list[Seen] | None:
        messages = bot_texts(seen[mark:], room, bot_id)
        for n in range(len(messages)):
            if words(" ".join(m.body for m in messages[: n + 1])).endswith(ANSWER):
                return messages[: n + 1]
        return None

    started = time.monotonic()
    agent.server.send_text(agent.alice.access_token, room, text)
    sent = time.monotonic()
    messages = watcher.wait_for(complete, TIMEOUT_S, f"the complete answer in {room}")
    first = next((m for m in messages if FIRST_WORD in m.body), messages[-1])
    return ChatTurn(
        first_text_ms=(first.at - started) * 1000,
        final_ms=(messages[-1].at - started) * 1000,
        reply=ANSWER,
        session_id=f"mx:{room}",
        send_ms=(sent - started) * 1000,
        messages_ms=tuple((m.at - started) * 1000 for m in messages),
    )


def synapse_hop(agent: MatrixAgent, watcher: Watcher, room: str, n: int) -> float:
    """Synapse alone: alice sends into her own room until it shows in her sync (ms)."""
    assert agent.server is not None and agent.alice is not None
    alice = agent.alice
    mark = watcher.mark()
    started = time.monotonic()
    event_id = agent.server.send_text(alice.access_token, room, f"hop {n}")
    seen = watcher.wait_for(
        lambda seen: next(
            (s for s in seen[mark:] if s.event.get("event_id") == event_id),
            None,
        ),
        10,
        f"alice's own message {event_id}",
    )
    return (seen.at - started) * 1000


def measure_turns(agent: MatrixAgent, watcher: Watcher, runs: int) -> None:
    assert agent.server is not None and agent.alice is not None
    agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="recorded")
    bare: list[Turn] = []
    chat: list[ChatTurn] = []
    started = time.monotonic()
    for run in range(runs):
        room = agent.direct_room(watcher)  # a new session; not timed
        via_matrix: Callable[[], Turn] = partial(matrix_turn, agent, watcher, room)
        bare_cli: Callable[[], Turn] = partial(bare_run, agent.root, "recorded")
        if run % 2 == 0:
            matrix, bare_turn = alongside(via_matrix, bare_cli, PAIR_OFFSET_S)
        else:
            bare_turn, matrix = alongside(bare_cli, via_matrix, PAIR_OFFSET_S)
        assert isinstance(matrix, ChatTurn)
        chat.append(matrix)
        bare.append(bare_turn)
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    own_room = agent.server.create_room(agent.alice.access_token, name="alice alone")
    hops = [synapse_hop(agent, watcher, own_room, n) for n in range(max(runs, 10))]

    print(f"(a) a turn through Matrix, {runs} runs, fake claude {SCENARIO!r} with its recorded")
    print(
        f"    timing; each Matrix turn side by side with a bare CLI run, {PAIR_OFFSET_S} s"
        f" apart; {elapsed:.0f} s"
    )
    print(f"  {'message in → alice sees':<32}{'median':>9}{'p90':>9}  (ms)")

    print_chat_vs_bare(chat, bare, "chat: first message with text", "chat: message completing it")
    counts = sorted({len(turn.messages_ms) for turn in chat})
    print(
        f"    bot messages a turn (segments): {'/'.join(map(str, counts))}"
        + (" (no tool boundary: the first text is the final message)" if counts == [1] else "")
    )
    sends = [float(turn.send_ms) for turn in chat]
    print(
        f"    alice's send request (inside 'message in'): median {statistics.median(sends):.1f}"
        f" ms, p90 {percentile(sends, 0.9):.1f} ms"
    )
    print(
        f"    Synapse alone, send → the sender's own sync ({len(hops)} sends): median"
        f" {statistics.median(hops):.1f} ms, p90 {percentile(hops, 0.9):.1f} ms;"
    )
    print("    a Matrix turn crosses Synapse about twice that way (in to the bot, out to alice)")


# -- (b) idle RSS ---------------------------------------------------------------------------


def report_idle_rss(agent: MatrixAgent) -> None:
    assert agent.proc is not None and agent.transport is not None
    time.sleep(IDLE_WAIT_S)
    print(f"(b) idle RSS, {IDLE_WAIT_S:.0f} s after the first turn of a fresh agent + transport")
    total_rss = total_pss = 0
    for root, role in ((agent.proc.pid, "agent daemon"), (agent.transport.pid, "transport")):
        for pid in descendants(root):
            memory = memory_of(pid)
            if memory is None:
                continue
            command, rss, pss = memory
            who = role if pid == root else "child"
            print(
                f"    pid {pid:<8}{who:<14}VmRSS {rss / 1024:6.1f} MB  Pss {pss / 1024:6.1f} MB"
                f"  {command}"
            )
            total_rss += rss
            total_pss += pss
    rss_mb, pss_mb = total_rss / 1024, total_pss / 1024
    print(
        f"    all processes: VmRSS {rss_mb:.1f} MB, Pss {pss_mb:.1f} MB;"
        f" budget ≤ {BUDGET_IDLE_RSS_MB:.0f} MB: VmRSS {verdict(rss_mb, BUDGET_IDLE_RSS_MB)},"
        f" Pss {verdict(pss_mb, BUDGET_IDLE_RSS_MB)}"
    )
    report_import_cost()


#: What the transport's VmRSS is made of: each step imports more, in a fresh python.
IMPORT_STEPS = (
    ("python", ""),
    ("+ asyncio (with ssl)", "import asyncio"),
    ("+ aiohttp", "import aiohttp"),
    ("+ matrix-nio (jsonschema, h2, peewee, vodozemac)", "import nio"),
    (
        "+ the transport's modules",
        "import ductor.transports.matrix.main, ductor.transports.matrix.app",
    ),
    ("+ Pillow (loaded with the first image or file)", "import ductor.transports.telegram.media"),
)


def report_import_cost() -> None:
    """VmRSS after each import step of the transport, to see what idle memory buys."""
    print("    the transport's import path, VmRSS of a fresh python after each step:")
    code = ""
    before = 0.0
    for label, step in IMPORT_STEPS:
        code += step + "\n"
        probe = (
            code
            + "print(next(l.split()[1] for l in open('/proc/self/status')"
            + " if l.startswith('VmRSS')))"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={**os.environ, "PYTHONPATH": str(REPO / "lib")},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"      {label}: failed ({done.stderr.strip().splitlines()[-1:]})")
            return
        rss_mb = int(done.stdout.split()[-1]) / 1024
        print(f"      {label:<52}{rss_mb:6.1f} MB  (+{rss_mb - before:4.1f})")
        before = rss_mb


# -- (c) spool envelope → chat --------------------------------------------------------------


def measure_spool(agent: MatrixAgent, watcher: Watcher, room: str, envelopes: int) -> None:
    assert agent.bot is not None
    bot_id = agent.bot.user_id
    spool = Spool(agent.root / "state" / AGENT / "spool")
    latencies: list[float] = []
    posts: list[float] = []
    for n in range(envelopes):
        text = f"cron result {n}"
        mark = watcher.mark()
        envelope = Envelope.create(
            agent=AGENT,
            kind=Kind.CRON,
            routing=Routing(transport="mx", chat_id=room, origin="bench"),
            payload=Payload(text=text),
        )

        def shown(seen: list[Seen], text: str = text, mark: int = mark) -> Seen | None:
            return next(
                (s for s in bot_texts(seen[mark:], room, bot_id) if s.body.endswith(text)), None
            )

        started = time.monotonic()
        spool.post(envelope)
        posted = time.monotonic()
        message = watcher.wait_for(shown, 10, f"envelope {n} in {room}")
        latencies.append((message.at - started) * 1000)
        posts.append((posted - started) * 1000)
    median = statistics.median(latencies)
    print(
        f"(c) spool envelope → message in alice's sync, {envelopes} envelopes one after the other"
    )
    print(
        f"    post() itself: median {statistics.median(posts):.1f} ms;"
        f" write → alice sees it: median {median:.1f} ms,"
        f" p90 {percentile(latencies, 0.9):.1f} ms, max {max(latencies):.1f} ms"
    )
    print(f"    budget ≤ {BUDGET_SPOOL_MS:.0f} ms (median): {verdict(median, BUDGET_SPOOL_MS)}")


# -- main -----------------------------------------------------------------------------------


def synapse_python() -> Path:
    """The python of Synapse's virtual environment (installed on first use)."""
    try:
        installed = subprocess.run(
            [str(INSTALL_SYNAPSE)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Failure(f"tests/install-synapse could not run: {exc}") from None
    lines = installed.stdout.strip().splitlines()
    if installed.returncode != 0 or not lines:
        detail = (installed.stderr.strip() or installed.stdout.strip())[-1000:]
        raise Failure(f"tests/install-synapse failed ({installed.returncode}): {detail}")
    return Path(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="(a): turns, each with a bare run")
    parser.add_argument("--envelopes", type=int, default=20, help="(c): envelopes written")
    parser.add_argument(
        "--only",
        action="append",
        choices=["turn", "rss", "spool"],
        help="run only this part (repeatable); default: all",
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory's parent")
    args = parser.parse_args()
    if min(args.runs, args.envelopes) < 1:
        parser.error("--runs and --envelopes must be at least 1")
    parts = set(args.only or ["turn", "rss", "spool"])

    python = sys.version.split()[0]
    print(f"matrix turn benchmark: python {python}, {os.cpu_count()} CPUs, load {load()}")
    started = time.monotonic()
    try:
        synapse = synapse_python()
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ductor-bench-") as scratch:
        root = Path(scratch)
        try:
            server = Synapse(synapse, root / "synapse").start()
        except SynapseError as exc:
            print(f"FAILED: Synapse did not start: {exc}", file=sys.stderr)
            return 1
        print(
            f"homeserver: Synapse on {server.base_url} (SQLite), started in"
            f" {server.start_seconds or 0:.1f} s"
        )
        agent = MatrixAgent(root, parallel=4, server=server)
        watcher: Watcher | None = None
        try:
            agent.bot = server.register("bot", secrets.token_urlsafe(16))
            agent.alice = server.register("alice", secrets.token_urlsafe(16))
            watcher = Watcher(server, agent.alice)
            agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0")
            agent.start()
            # One untimed turn without delays warms both paths; (b) measures after it,
            # (c) delivers to its room.
            bare_run(agent.root, "0")
            warm_room = agent.direct_room(watcher)
            matrix_turn(agent, watcher, warm_room, "warm-up")
            if "rss" in parts:
                report_idle_rss(agent)
            if "turn" in parts:
                measure_turns(agent, watcher, args.runs)
            if "spool" in parts:
                measure_spool(agent, watcher, warm_room, args.envelopes)
        except (Failure, DuctorError, SynapseError, OSError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            print(agent.log_tail(), file=sys.stderr)
            return 1
        finally:
            agent.stop()
            if watcher is not None:
                watcher.stop()
            server.stop()
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

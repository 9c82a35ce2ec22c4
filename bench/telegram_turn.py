"""What the Telegram transport and the agent cost together, as a Telegram user sees it
(design §9, Budgets).

    .venv/bin/python bench/telegram_turn.py [--runs 10] [--envelopes 20] [--stub-nagle]
                                            [--only turn|rss|spool] [--dir DIR]

One agent daemon (``bin/ductor-agent``) and its Telegram transport (``bin/ductor-telegram``)
run in a private layout under a scratch directory, against the fake Bot API of
tests/stubs/telegram_api.py (``[telegram] api_base_url``), with the fake claude of
tests/fakecli; the agent, its settings and the bare runs are those of bench/agent_turn.py,
whose helpers this reuses. Streaming keeps its default settings (edit mode,
``streaming.edit_interval_seconds = 2.0``). Times come from CLOCK_MONOTONIC: the stub
stamps every Bot API call on arrival (``Call.at``). The stub's sockets get TCP_NODELAY:
it writes an answer's headers and body in two sends, and with Nagle's algorithm each
answer (the getUpdates that brings the message too) would wait ~40 ms for the client's
delayed ACK, a cost of the stub and not of the transport (``--stub-nagle`` keeps it).

(a) turn
    A user sends a message in a new private chat (a new session each run); "message in"
    is the moment the stub queues the update (the transport is waiting in a long poll).
    First text: the first sendMessage/editMessageText of that chat that shows answer
    text; final: the first one that shows the complete answer. The fake claude replays
    ``claude-partial`` with its recorded timing (first text at ~1.5 s, a token every
    ~200 ms, exit at ~4.1 s). Bare: the CLI run directly, to its first stdout line with
    text and to its exit; each Telegram turn runs side by side with a bare run started
    0.3 s after it (or before it, every other run), as in bench/agent_turn.py. Budget:
    first text ≤ bare + 50 ms, final ≤ bare + 100 ms (medians). It also prints how the
    turns were paced: the text updates per turn and when they came, and how long after
    the update before it the final one came. The final rendering skips the streaming
    throttle (``edit_interval``, 2 s), but it is an edit, and the sender spaces the edits
    of one chat at least ``per_chat_interval`` (1 s) apart: a final due less than 1 s
    after the last streamed edit waits for the rest of that second.
(b) rss
    2 s after one turn, VmRSS and PSS of the agent daemon, the transport and any
    children, from /proc. Budget: 60 MB for an idle agent with one transport.
(c) spool
    With the transport running, an envelope (kind cron, routed to a chat) is written to
    the agent's outbox with ``Spool.post``, one after the other, each once the one
    before is visible: time from the start of ``post`` to the stub receiving the
    sendMessage that carries its text. Budget: 1 s (median).

Exits 0 whatever the numbers; 1 when something fails outright (a process that does not
start, an answer that never shows), with a message.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

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
from ductor.config import TELEGRAM_TOKEN
from ductor.errors import DuctorError
from ductor.spool import Envelope, Kind, Payload, Routing, Spool
from ductor.transports.telegram.sender import BotSender

sys.path.insert(1, str(REPO))  # the fake Bot API lives with the tests
from tests.stubs import telegram_api
from tests.stubs.telegram_api import DEFAULT_TOKEN, Call, TelegramStub, parse_html

ANSWER = "One two three four five six seven eight nine ten"  # claude-partial's answer
FIRST_WORD = ANSWER.split(maxsplit=1)[0]
EDIT_INTERVAL_S = 2.0  # streaming.edit_interval_seconds, left at its default
BUDGET_SPOOL_MS = 1000.0
WARM_CHAT = 4242  # the warm-up's chat: (b) measures after its turn, (c) delivers to it
FIRST_RUN_CHAT = 7000  # (a): chat 7000 + run, a new session each run
# The sender spaces edits of one chat this far apart (BotSender's per_chat_interval).
PER_CHAT_EDIT_S = float(inspect.signature(BotSender).parameters["per_chat_interval"].default)
TEXT_METHODS = ("sendMessage", "editMessageText")
TIMEOUT_S = 60.0

CONFIG = """\
provider = "claude"
model = "opus"
transports = ["telegram"]

[timeouts]
normal = 60

[telegram]
api_base_url = "{api}"
allowed_user_ids = [{users}]
"""


# -- the agent and its transport ------------------------------------------------------------


@dataclass
class TelegramAgent(TransportAgent):
    """bench/agent_turn.py's agent with the Telegram transport, talking to ``stub``."""

    stub: TelegramStub | None = None
    chats: list[int] = field(default_factory=list)

    @property
    def transport_log(self) -> Path:
        return self.root / "telegram.log"

    def start(self) -> None:
        stub = self.stub
        assert stub is not None
        config = self.root / "config" / "agents" / f"{AGENT}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        api = stub.base_url.removesuffix("/bot")
        config.write_text(CONFIG.format(api=api, users=", ".join(map(str, self.chats))))
        (self.root / "home").mkdir(exist_ok=True)
        token = self.root / "config" / "credentials" / AGENT / TELEGRAM_TOKEN
        token.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token.write_text(DEFAULT_TOKEN + "\n")
        token.chmod(0o600)
        self.proc = self.spawn("ductor-agent", self.log_file)
        self.transport = self.spawn("ductor-telegram", self.transport_log)
        try:
            stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        except TimeoutError as exc:
            raise Failure(f"the transport does not poll: {exc}\n{self.log_tail()}") from None
        if self.proc.poll() is not None:
            raise Failure(f"the agent exited with {self.proc.returncode}:\n{self.log_tail()}")


# -- what the chat shows --------------------------------------------------------------------


def shown_text(call: Call) -> str:
    """The plain text a sendMessage/editMessageText made the message show."""
    text = str(call.params.get("text") or "")
    if str(call.params.get("parse_mode") or "").lower() == "html":
        return parse_html(text).strip()
    return text.strip()


def text_calls(stub: TelegramStub, chat: int, since: int = 0) -> list[Call]:
    """The answered sendMessage/editMessageText calls to ``chat``, oldest first."""
    with stub._lock:  # its calls list grows under this lock
        calls = stub.calls[since:]
        return [
            c
            for c in calls
            if c.method in TEXT_METHODS and c.params.get("chat_id") == chat and c.status == 200
        ]


@dataclass(frozen=True)
class ChatTurn(Turn):
    updates_ms: tuple[float, ...] = ()  # the text updates up to the final one, from message in


def telegram_turn(stub: TelegramStub, chat: int, text: str = "hello") -> ChatTurn:
    since = len(stub.calls)

    def complete() -> bool:
        return any(shown_text(c) == ANSWER for c in text_calls(stub, chat, since))

    started = time.monotonic()
    stub.user_sends(chat, text, user_id=chat)
    try:
        stub.wait_for(complete, timeout=TIMEOUT_S)
    except TimeoutError as exc:
        raise Failure(f"chat {chat}: the answer never showed complete: {exc}") from None
    calls = text_calls(stub, chat, since)
    first = next(c for c in calls if FIRST_WORD in shown_text(c))
    final_index = next(n for n, c in enumerate(calls) if shown_text(c) == ANSWER)
    return ChatTurn(
        first_text_ms=(first.at - started) * 1000,
        final_ms=(calls[final_index].at - started) * 1000,
        reply=ANSWER,
        session_id=f"tg:{chat}",
        updates_ms=tuple((c.at - started) * 1000 for c in calls[: final_index + 1]),
    )


# -- (a) a turn through Telegram ------------------------------------------------------------


def measure_turns(agent: TelegramAgent, stub: TelegramStub, runs: int) -> None:
    agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="recorded")
    bare: list[Turn] = []
    chat: list[ChatTurn] = []
    started = time.monotonic()
    for run in range(runs):
        via_telegram: Callable[[], Turn] = partial(telegram_turn, stub, FIRST_RUN_CHAT + run)
        bare_cli: Callable[[], Turn] = partial(bare_run, agent.root, "recorded")
        if run % 2 == 0:
            telegram, bare_turn = alongside(via_telegram, bare_cli, PAIR_OFFSET_S)
        else:
            bare_turn, telegram = alongside(bare_cli, via_telegram, PAIR_OFFSET_S)
        assert isinstance(telegram, ChatTurn)
        chat.append(telegram)
        bare.append(bare_turn)
        time.sleep(0.05)
    elapsed = time.monotonic() - started

    print(f"(a) a turn through Telegram, {runs} runs, fake claude {SCENARIO!r} with its recorded")
    print(
        f"    timing; each Telegram turn side by side with a bare CLI run, {PAIR_OFFSET_S} s"
        f" apart; {elapsed:.0f} s"
    )
    print(f"  {'message in → chat':<32}{'median':>9}{'p90':>9}  (ms)")

    print_chat_vs_bare(chat, bare, "chat: first visible text", "chat: complete final text")
    report_throttle(chat)


def report_throttle(turns: list[ChatTurn]) -> None:
    """How the edit throttle and the sender's per-chat edit spacing shaped the turns."""
    counts = sorted({len(turn.updates_ms) for turn in turns})
    print(
        f"    pacing: streaming.edit_interval_seconds = {EDIT_INTERVAL_S} (the default),"
        f" per-chat edit spacing {PER_CHAT_EDIT_S} s (BotSender)"
    )
    print(f"    text updates a turn (sendMessage, then edits): {'/'.join(map(str, counts))}")
    if len(counts) == 1:
        at = [statistics.median(turn.updates_ms[n] for turn in turns) for n in range(counts[0])]
        print(f"    updates at (median, ms from message in): {', '.join(f'{t:.0f}' for t in at)}")
    gaps = [turn.updates_ms[-1] - turn.updates_ms[-2] for turn in turns if len(turn.updates_ms) > 1]
    if not gaps:
        return
    throttled = sum(gap >= EDIT_INTERVAL_S * 1000 - 20 for gap in gaps)
    spaced = sum(PER_CHAT_EDIT_S * 1000 - 20 <= gap < PER_CHAT_EDIT_S * 1000 + 20 for gap in gaps)
    print(
        f"    final update {statistics.median(gaps):.0f} ms after the one before it (median;"
        f" {min(gaps):.0f}–{max(gaps):.0f}); held back by"
    )
    print(
        f"    the {EDIT_INTERVAL_S:.0f} s edit throttle in {throttled}/{len(gaps)} turns,"
        f" by the {PER_CHAT_EDIT_S:.0f} s per-chat edit spacing in {spaced}/{len(gaps)}"
    )


# -- (b) idle RSS ---------------------------------------------------------------------------


def report_idle_rss(agent: TelegramAgent) -> None:
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


# -- (c) spool envelope → chat --------------------------------------------------------------


def measure_spool(agent: TelegramAgent, stub: TelegramStub, envelopes: int) -> None:
    spool = Spool(agent.root / "state" / AGENT / "spool")
    latencies: list[float] = []
    posts: list[float] = []
    for n in range(envelopes):
        text = f"cron result {n}"
        since = len(stub.calls)
        envelope = Envelope.create(
            agent=AGENT,
            kind=Kind.CRON,
            routing=Routing(transport="tg", chat_id=WARM_CHAT, origin="bench"),
            payload=Payload(text=text),
        )

        def shown(text: str = text, since: int = since) -> list[Call]:
            calls = text_calls(stub, WARM_CHAT, since)
            return [c for c in calls if shown_text(c).endswith(text)]

        started = time.monotonic()
        spool.post(envelope)
        posted = time.monotonic()
        try:
            stub.wait_for(shown, timeout=10)
        except TimeoutError as exc:
            raise Failure(f"envelope {n} never showed in the chat: {exc}") from None
        latencies.append((shown()[0].at - started) * 1000)
        posts.append((posted - started) * 1000)
    median = statistics.median(latencies)
    print(f"(c) spool envelope → message in the chat, {envelopes} envelopes one after the other")
    print(
        f"    post() itself: median {statistics.median(posts):.1f} ms;"
        f" write → sendMessage at the stub: median {median:.1f} ms,"
        f" p90 {percentile(latencies, 0.9):.1f} ms, max {max(latencies):.1f} ms"
    )
    print(f"    budget ≤ {BUDGET_SPOOL_MS:.0f} ms (median): {verdict(median, BUDGET_SPOOL_MS)}")


# -- main -----------------------------------------------------------------------------------


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
    parser.add_argument(
        "--stub-nagle",
        action="store_true",
        help="leave the fake Bot API's sockets without TCP_NODELAY (~40 ms an answer)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory's parent")
    args = parser.parse_args()
    if min(args.runs, args.envelopes) < 1:
        parser.error("--runs and --envelopes must be at least 1")
    parts = set(args.only or ["turn", "rss", "spool"])

    python = sys.version.split()[0]
    print(f"telegram turn benchmark: python {python}, {os.cpu_count()} CPUs, load {load()}")
    started = time.monotonic()
    chats = [WARM_CHAT, *range(FIRST_RUN_CHAT, FIRST_RUN_CHAT + args.runs)]
    # The stub writes an answer's headers and body in two sends; with Nagle's algorithm
    # the body then waits for the client's delayed ACK, ~40 ms on every Bot API call,
    # the getUpdates that brings the message included. That is the stub's, not the
    # transport's: its connections get TCP_NODELAY unless --stub-nagle.
    telegram_api._Handler.disable_nagle_algorithm = not args.stub_nagle
    nagle = "Nagle on, as it comes" if args.stub_nagle else "TCP_NODELAY"
    print(f"fake Bot API: tests/stubs/telegram_api.py on 127.0.0.1, {nagle}")
    with (
        tempfile.TemporaryDirectory(dir=args.dir, prefix="ductor-bench-") as scratch,
        TelegramStub() as stub,
    ):
        agent = TelegramAgent(Path(scratch), parallel=4, stub=stub, chats=chats)
        try:
            agent.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0")
            agent.start()
            # One untimed turn without delays warms both paths; (b) measures after it.
            bare_run(agent.root, "0")
            telegram_turn(stub, WARM_CHAT, "warm-up")
            if "rss" in parts:
                report_idle_rss(agent)
            if "turn" in parts:
                measure_turns(agent, stub, args.runs)
            if "spool" in parts:
                measure_spool(agent, stub, args.envelopes)
        except (Failure, DuctorError, OSError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            print(agent.log_tail(), file=sys.stderr)
            return 1
        finally:
            agent.stop()
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

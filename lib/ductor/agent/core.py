"""The agent's brain: per-session FIFO lanes, the parallel bound, delivery and recovery.

Each session key has one *lane*: its turns run one after another in acceptance order;
different lanes run in parallel up to ``limits.max_parallel_sessions``. A lane whose
next turn finds every slot taken waits in line (``waiting``) and gets the next free
slot in turn, so one busy chat cannot starve another. Accepting never waits: a turn is
on disk and its client told ``accepted`` or ``queued`` (with the reason and position)
before :meth:`Agent.submit` returns. A turn's events go to the client that sent it
while that client is connected. Its final answer goes to the client, or, when the
client went away (or never was: recovered turns), to the spool outbox of the session's
transport, which delivers it later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ductor import protocol
from ductor.agent import recovery
from ductor.agent.dotenv import agent_dotenv
from ductor.agent.execute import Outcome, Turn, TurnEnv
from ductor.agent.runner import ProcessRegistry
from ductor.agent.sessions import SessionStore
from ductor.agent.topics import TOPICS_FILE, TopicStore
from ductor.agent.turns import TurnKind, TurnRecord, TurnStore, new_turn_id
from ductor.config import AgentConfig
from ductor.paths import Paths
from ductor.protocol import ErrorCode, Events, QueueReason
from ductor.providers import Provider
from ductor.providers.discovery import cli_installed, model_catalog
from ductor.providers.models import known_model_ids
from ductor.spool import Button, Envelope, Kind, Payload, Routing, Spool

log = logging.getLogger(__name__)

# Transports whose answers cannot wait in an outbox: nobody drains one for them.
NO_OUTBOX = frozenset({"ia"})


class Sink(Protocol):
    """Where a request's events go: one client connection."""

    @property
    def connected(self) -> bool: ...

    def send(self, event: protocol.Event) -> None: ...


@dataclass
class Job:
    record: TurnRecord
    request_id: str
    sink: Sink | None
    want_ack: bool = False
    turn: Turn | None = None
    done: asyncio.Future[Outcome] | None = None

    def emit(self, event: protocol.Event) -> None:
        if self.sink is not None and self.sink.connected:
            self.sink.send(event)


@dataclass(eq=False)  # a lane is itself: ``waiting`` finds and removes it by identity
class Lane:
    key: str
    pending: deque[Job] = field(default_factory=deque)
    running: Job | None = None
    task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.pending)


class Agent:
    def __init__(
        self,
        name: str,
        paths: Paths,
        config: AgentConfig,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.paths = paths
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.state_dir = paths.agent_state(name)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.workspace = paths.workspace(name)
        self.temp_dir = self.state_dir / "tmp"
        self.temp_dir.mkdir(exist_ok=True, mode=0o700)
        self.sessions = SessionStore(self.state_dir / "sessions.json")
        self.topics = TopicStore(self.state_dir / TOPICS_FILE)  # names, /topicmodel
        self.turns = TurnStore(self.state_dir)
        self.spool = Spool(paths.spool(name), served=config.outboxes)
        self.registry = ProcessRegistry()
        self.dotenv = agent_dotenv(paths, name)
        self.models = model_catalog(self.state_dir / "models", env=self.env)
        self.lanes: dict[str, Lane] = {}
        self.waiting: deque[Lane] = deque()  # lanes whose next turn waits for a free slot
        self.acks: dict[str, Sink] = {}  # turn id -> the client that owes its ack
        self.listeners: dict[str, Sink] = {}  # transport -> the client showing injected turns
        self.started_at = time.monotonic()
        self.closing = False
        self.on_change: list[Callable[[], None]] = []  # told when lanes change (STATUS=)
        # told of every answer before its turn is forgotten (async inter-agent requests)
        self.answer_hooks: list[Callable[[TurnRecord, Outcome], None]] = []

    def is_closing(self) -> bool:
        return self.closing

    # -- configuration -------------------------------------------------------------------

    def apply_config(self, config: AgentConfig) -> None:
        """Hot settings take effect for the next turn; a new parallel bound at once for
        waiting lanes (running turns are never cut short by a lower one)."""
        self.config = config
        self.spool.served = config.outboxes
        self._dispatch()

    def known_models(self) -> frozenset[str]:
        return known_model_ids(*(m.ids() for m in self.models.values()))

    def gemini_ids(self) -> tuple[str, ...]:
        return self.models[Provider.GEMINI].ids()

    def turn_env(self) -> TurnEnv:
        return TurnEnv(
            agent=self.name,
            config=self.config,
            sessions=self.sessions,
            workspace=self.workspace,
            temp_dir=self.temp_dir,
            env=self.env,
            secrets=self.dotenv.values,
            known_models=self.known_models,
            gemini_ids=self.gemini_ids,
            register=lambda key, run: self.registry.add(key, "main", run),
            unregister=lambda key, run: self.registry.remove(key, "main", run),
            paths=self.paths,
            topics=self.topics,
        )

    # -- status ----------------------------------------------------------------------------

    def running_count(self) -> int:
        return sum(1 for lane in self.lanes.values() if lane.running is not None)

    def queued_count(self) -> int:
        return sum(len(lane.pending) for lane in self.lanes.values())

    def status_line(self) -> str:
        running, queued = self.running_count(), self.queued_count()
        sessions = len(self.sessions.keys())
        parts = [f"{sessions} session{'s' if sessions != 1 else ''}", f"{running} running"]
        if queued:
            parts.append(f"{queued} queued")
        return ", ".join(parts)

    def lane(self, key: str) -> Lane:
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(key)
        return lane

    def idle(self, key: str) -> bool:
        """Nothing runs or waits in session ``key``."""
        lane = self.lanes.get(key)
        return (lane is None or not lane.busy) and not self.registry.for_session(key)

    def free_slots(self) -> int:
        return max(0, self.config.limits.max_parallel_sessions - self.running_count())

    # -- accepting turns -------------------------------------------------------------------

    def new_record(self, request: protocol.Request, kind: TurnKind, text: str) -> TurnRecord:
        assert request.session is not None
        user = request.user
        return TurnRecord(
            id=new_turn_id(),
            seq=self.turns.next_seq(),
            session=request.session,
            kind=kind,
            text=text,
            quoted=request.quoted,
            files=request.files,
            user_id=user.id if user else "",
            user_name=user.name if user else "",
            origin=request.origin,
            chat_is_private=request.chat_is_private,
            message_id=request.message_id,
        )

    def submit(
        self,
        record: TurnRecord,
        *,
        request_id: str = "",
        sink: Sink | None = None,
        want_ack: bool = False,
        persist: bool = True,
    ) -> Job:
        """Accept a turn durably and queue it in its session's lane. Never waits: the
        client hears at once that the turn started (``accepted``, from :meth:`_start`) or
        why and where it waits (``queued``)."""
        if persist:
            self.turns.save(record)
        job = Job(record, request_id, sink, want_ack)
        job.done = asyncio.get_running_loop().create_future()
        lane = self.lane(record.session)
        ahead = len(lane.pending) + (1 if lane.running is not None else 0)
        lane.pending.append(job)
        if ahead:
            job.emit(
                Events.queued(
                    request_id,
                    ahead,
                    record.id,
                    record.session,
                    reason=QueueReason.SESSION_BUSY,
                    text="Queued behind your previous message.",
                )
            )
        else:
            self.waiting.append(lane)
            behind = len(self.waiting) - self.free_slots()
            if behind > 0:
                running = self.running_count()
                job.emit(
                    Events.queued(
                        request_id,
                        behind,
                        record.id,
                        record.session,
                        reason=QueueReason.NO_FREE_SLOT,
                        text=f"Waiting for a free slot: {running} chat"
                        f"{'s are' if running != 1 else ' is'} running.",
                    )
                )
        self._changed()
        self._dispatch()
        return job

    def _dispatch(self) -> None:
        """Start the next turn of waiting lanes while slots are free, in their order."""
        while self.waiting and not self.closing and self.free_slots() > 0:
            lane = self.waiting.popleft()
            if lane.running is None and lane.pending:
                self._start(lane)
            else:
                self._forget_if_idle(lane)

    def _start(self, lane: Lane) -> None:
        job = lane.pending.popleft()
        lane.running = job
        lane.task = asyncio.create_task(self._run_in_lane(lane, job), name=f"turn {job.record.id}")
        self._changed()

    async def _run_in_lane(self, lane: Lane, job: Job) -> None:
        try:
            if self.is_closing():  # the agent began stopping before this turn started
                lane.pending.appendleft(job)  # still queued on disk: the next start runs it
                return
            await self._run(job)
        except Exception:  # the turn itself never raises; delivery might (a full disk)
            log.exception("turn %s in %s failed", job.record.id, lane.key)
            if job.done is not None and not job.done.done():
                job.done.cancel()
        finally:
            lane.running = None
            lane.task = None
            if lane.pending:
                self.waiting.append(lane)  # behind the lanes already waiting: fair turns
            else:
                self._forget_if_idle(lane)
            self._changed()
            self._dispatch()

    def _forget_if_idle(self, lane: Lane) -> None:
        if lane.pending or lane.running is not None:
            return
        if self.lanes.get(lane.key) is lane:
            del self.lanes[lane.key]
        if lane in self.waiting:
            self.waiting.remove(lane)

    async def _run(self, job: Job) -> None:
        record = self.turns.mark_running(job.record)
        job.record = record
        self._to_listener(job)
        job.emit(Events.accepted(job.request_id, record.id, record.session))
        self._changed()
        turn = Turn(self.turn_env(), record, job.emit, job.request_id)
        job.turn = turn
        outcome = await turn.run()
        if self.closing and turn.stop_reason == "shutdown":
            # The agent is stopping under this turn: its record stays "running" and the
            # next start re-runs it once.
            log.info("turn %s left for recovery after the restart", record.id)
            if job.done is not None and not job.done.done():
                job.done.set_result(outcome)
            return
        # A recovered turn's chat was told when the recovery began (recovery.recover):
        # its answer does not say it again.
        self.deliver(job, outcome)
        if job.done is not None and not job.done.done():
            job.done.set_result(outcome)

    # -- delivery --------------------------------------------------------------------------

    def reply_envelope(self, record: TurnRecord, outcome: Outcome) -> Envelope | None:
        key = protocol.parse_session_key(record.session)
        if key.transport in NO_OUTBOX:
            return None
        text = outcome.text
        if outcome.notice:
            text = f"{outcome.notice}\n\n{text}" if text else outcome.notice
        return Envelope.create(
            agent=self.name,
            kind=Kind.REPLY if record.kind is not TurnKind.HEARTBEAT else Kind.HEARTBEAT,
            envelope_id=f"reply-{record.id}",
            routing=Routing(
                transport=key.transport,
                chat_id=_id_value(key.chat),
                topic_id=_id_value(key.topic) if key.topic else None,
                origin=f"reply to {record.message_id or record.id}",
            ),
            payload=Payload(
                text=text,
                files=tuple(Path(f) for f in outcome.files),
                buttons=tuple(
                    tuple(Button(label=b["label"], data=b["data"]) for b in row)
                    for row in outcome.buttons
                ),
                metadata={
                    "turn": record.id,
                    "reply_to": record.message_id,
                    "is_error": outcome.is_error,
                    "model": outcome.model,
                    "input_tokens": outcome.input_tokens,
                    "output_tokens": outcome.output_tokens,
                    "cost_usd": outcome.cost_usd,
                    "duration_ms": outcome.duration_ms,
                },
            ),
        )

    def deliver(self, job: Job, outcome: Outcome) -> None:
        """Hand the answer to the client, else to the outbox; then forget the turn."""
        record = job.record
        silent = bool(outcome.stopped and not outcome.text) or (
            record.kind is TurnKind.HEARTBEAT
            and outcome.text.strip() == self.config.heartbeat.ack_token
        )
        envelope = None if silent else self.reply_envelope(record, outcome)
        sink = job.sink
        if sink is not None and sink.connected:
            if job.want_ack and envelope is not None:
                self.turns.park_reply(record.id, envelope)
                self.acks[record.id] = sink
            sink.send(
                Events.final(
                    job.request_id, turn=record.id, session=record.session, **outcome.final_fields()
                )
            )
        elif envelope is not None and self.spool.post(envelope):
            log.info("turn %s: client gone, answer queued in the outbox", record.id)
        for hook in self.answer_hooks:
            hook(record, outcome)
        self.turns.remove(record)

    def listen(self, transport: str, sink: Sink) -> None:
        """``sink`` (a transport's ``listen`` connection) shows the turns the agent starts
        itself in ``transport``'s sessions from now on, live; the last one to ask wins."""
        self.listeners[transport] = sink
        log.info("%s listens for the injected turns of its chats", transport)

    def _to_listener(self, job: Job) -> None:
        """An injected turn nobody asked for over the socket (a task's result) streams to
        its transport when one listens: under the turn's id, acknowledged like any answer.
        Else (or once that client is gone) its answer goes to the outbox."""
        if job.sink is not None or job.record.kind is not TurnKind.INJECT:
            return
        transport = job.record.session.partition(":")[0]
        sink = self.listeners.get(transport)
        if sink is not None and sink.connected:
            job.sink, job.request_id, job.want_ack = sink, job.record.id, True

    def acknowledge(self, turn_id: str) -> bool:
        self.acks.pop(turn_id, None)
        return self.turns.drop_reply(turn_id)

    def client_gone(self, sink: Sink) -> None:
        """A client disconnected: answers it never acknowledged go to the outbox."""
        for transport in [t for t, s in self.listeners.items() if s is sink]:
            del self.listeners[transport]
        for turn_id in [t for t, s in self.acks.items() if s is sink]:
            self.acks.pop(turn_id, None)
            self._unpark(turn_id)

    def _unpark(self, turn_id: str) -> None:
        for parked_id, envelope in self.turns.parked_replies():
            if parked_id == turn_id:
                self.spool.post(envelope)
                self.turns.drop_reply(turn_id)
                log.info("turn %s: answer not acknowledged, queued in the outbox", turn_id)

    def post_notice(self, session: str, text: str, *, origin: str) -> None:
        key = protocol.parse_session_key(session)
        if key.transport in NO_OUTBOX:
            return
        self.spool.post(
            Envelope.create(
                agent=self.name,
                kind=Kind.NOTICE,
                routing=Routing(
                    transport=key.transport,
                    chat_id=_id_value(key.chat),
                    topic_id=_id_value(key.topic) if key.topic else None,
                    origin=origin,
                ),
                payload=Payload(text=text),
            )
        )

    # -- aborts ----------------------------------------------------------------------------

    def discard_queued(self, key: str) -> int:
        lane = self.lanes.get(key)
        if lane is None:
            return 0
        count = 0
        while lane.pending:
            job = lane.pending.popleft()
            self._drop(job, ErrorCode.DISCARDED, "Message discarded.")
            count += 1
        self._forget_if_idle(lane)
        self._changed()
        return count

    def cancel_queued(self, key: str, entry: str) -> bool:
        lane = self.lanes.get(key)
        if lane is None:
            return False
        for job in list(lane.pending):
            if job.record.id == entry:
                lane.pending.remove(job)
                self._drop(job, ErrorCode.CANCELLED, "Message cancelled.")
                self._forget_if_idle(lane)
                self._changed()
                return True
        return False

    def _drop(self, job: Job, code: ErrorCode, text: str) -> None:
        """A queued turn dropped before it ran: the answer hooks hear it as a stopped turn
        (an async inter-agent request reports its failure to its sender), then its client."""
        outcome = Outcome(text=f"{text[:-1]} before it ran.", is_error=True, stopped="stop")
        for hook in self.answer_hooks:
            hook(job.record, outcome)
        self.turns.remove(job.record)
        job.emit(Events.error(job.request_id, code, text))
        if job.done is not None and not job.done.done():
            job.done.cancel()

    def _mark_stopping(self, key: str | None, reason: str) -> None:
        for lane in self.lanes.values():
            if (key is None or lane.key == key) and lane.running and lane.running.turn:
                lane.running.turn.stop_reason = reason

    async def stop(self, key: str) -> tuple[int, int]:
        """/stop: end the session's CLI processes and drop its queued messages."""
        self._mark_stopping(key, "stop")
        discarded = self.discard_queued(key)
        stopped = await self.registry.stop_session(key)
        return stopped, discarded

    def interrupt(self, key: str) -> int:
        """/interrupt: SIGINT to the session's CLI; queued messages continue."""
        self._mark_stopping(key, "interrupt")
        return self.registry.interrupt_session(key)

    async def stop_all(self) -> int:
        self._mark_stopping(None, "stop")
        for key in list(self.lanes):
            self.discard_queued(key)
        return await self.registry.stop_all()

    async def stop_other_agents(self, request: protocol.Request) -> int:
        """``/stop_all`` reaches every agent on this machine; theirs do not fan out again."""
        if request.origin.startswith("agent:"):
            return 0
        from ductor import agents

        others = [n for n in agents.list_agents(self.paths) if n != self.name]
        results = await asyncio.gather(
            *(asyncio.to_thread(self._stop_agent, name) for name in others)
        )
        return sum(results)

    def _stop_agent(self, name: str) -> int:
        from ductor.protocol.client import call

        socket_path = self.paths.agent_socket(name)
        if not socket_path.exists():
            return 0  # not running: nothing to stop, and no reason to start it
        request = protocol.Request(
            type=protocol.RequestType.ABORT,
            id=protocol.new_request_id(),
            mode=protocol.AbortMode.STOP_ALL,
            origin=f"agent:{self.name}",
        )
        try:
            events = call(socket_path, request, timeout=10)
        except Exception as exc:  # another agent's trouble must not fail this command
            log.warning("stop_all: agent %s did not answer: %s", name, exc)
            return 0
        text = events[-1].text if events else ""
        digits = [int(w) for w in text.split() if w.isdigit()]
        return digits[0] if digits else 0

    def start_model_discovery(self, interval: float = 3600.0) -> threading.Event:
        """Discover Codex and Gemini models now and then hourly, in a daemon thread (a
        discovery may take up to its timeout and must never delay a stop). The last
        known lists are kept when a discovery fails. Set the returned event to end it."""
        done = threading.Event()
        absent: set[Provider] = set()

        def loop() -> None:
            while not done.is_set():
                for provider, models in self.models.items():
                    if not cli_installed(provider, self.env):
                        if provider not in absent:  # not an error: one line, then quiet
                            log.info("%s is not installed: using its built-in model list", provider)
                            absent.add(provider)
                        continue
                    absent.discard(provider)
                    try:
                        models.refresh_if_stale()
                    except Exception:
                        log.warning("%s model discovery failed", provider, exc_info=True)
                done.wait(interval)

        threading.Thread(target=loop, name="model discovery", daemon=True).start()
        return done

    # -- lifecycle -------------------------------------------------------------------------

    def recover(self) -> recovery.Report:
        """Pick up where a previous run of this agent stopped (see recovery.py)."""
        return recovery.recover(self)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop taking turns; running CLIs are stopped and left for recovery."""
        self.closing = True
        self._mark_stopping(None, "shutdown")
        await self.registry.stop_all()
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for sink in set(self.acks.values()):
            self.client_gone(sink)

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()


def _id_value(text: str | None) -> int | str:
    if text is None:
        return ""
    try:
        return int(text)
    except ValueError:
        return text

"""The agent's inbox reader: work that comes *into* a session from elsewhere.

A writer (a task's unit, later webhooks and other agents) puts an envelope in
``spool/inbox/`` (docs/spool.md, "Injecting into a session"): routed to a session,
``payload.text`` a notice for the chat and ``payload.metadata["prompt"]`` a prompt for
the session. The reader, woken by the spool's datagram (and rescanning at start and
periodically), handles each envelope once:

1. the notice goes to the chat's outbox, under an id derived from the envelope's, so a
   second attempt never posts it twice, and it reaches the chat even when the prompt
   cannot run;
2. the prompt becomes an ``inject`` turn in the session's lane: it waits for the turn
   running there (the chat's lock), runs in the chat's active session, and its answer
   goes to the chat: streamed live when the chat's transport listens (``listen``,
   docs/protocol.md), else through the outbox. The turn is durable before the envelope is
   finished, and its id is derived from the envelope's, so a crash in between neither
   loses nor repeats it;
3. the envelope moves to ``done/``.

An envelope whose session is not a valid key, or that has neither notice nor prompt,
goes to ``bad/`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from ductor import protocol
from ductor.agent import interagent
from ductor.agent.core import NO_OUTBOX, Agent
from ductor.agent.turns import TurnKind, TurnRecord
from ductor.spool import Envelope, Kind, Payload, Queue, Routing

log = logging.getLogger(__name__)

PROMPT_KEY = "prompt"
RESCAN = 30.0  # seconds between rescans (and periodic upkeep) without a wake-up


def notice_id(envelope: Envelope) -> str:
    return f"{envelope.id[:120]}-note"


def turn_id(envelope: Envelope) -> str:
    return "i" + hashlib.sha256(envelope.id.encode()).hexdigest()[:24]


class InboxReader:
    """Reads one agent's inbox; :meth:`run` until cancelled."""

    def __init__(self, agent: Agent, *, upkeep: Callable[[], object] | None = None) -> None:
        self.agent = agent
        self.queue: Queue = agent.spool.inbox()
        self.upkeep = upkeep  # run in a thread on start and every RESCAN seconds
        interagent.attach(agent)

    async def run(self) -> None:
        listener = self.queue.listen()  # before the first scan: no wake-up is missed
        try:
            self.queue.recover()
            while True:
                self.drain()
                if self.upkeep is not None:
                    try:
                        await asyncio.to_thread(self.upkeep)
                    except Exception:
                        log.exception("inbox upkeep failed")
                    self.drain()
                await listener.wait_async(self.queue.next_wait(max_wait=RESCAN))
        finally:
            self.queue.close()

    def drain(self) -> int:
        """Handle every due envelope; returns how many."""
        count = 0
        while not self.agent.closing and (envelope := self.queue.claim_next()) is not None:
            try:
                self.handle(envelope)
            except Exception as exc:
                log.exception("inbox: envelope %s failed", envelope.id)
                self.queue.fail(envelope, f"{type(exc).__name__}: {exc}")
                continue
            count += 1
        return count

    def handle(self, envelope: Envelope) -> None:
        if envelope.kind is Kind.INTERAGENT:  # another agent's async request
            interagent.handle_envelope(self.agent, envelope)
            self.queue.finish(envelope)
            return
        routing = envelope.routing
        session = routing.session_key
        prompt = str(envelope.payload.metadata.get(PROMPT_KEY) or "")
        notice = envelope.payload.text
        try:
            if session is not None:
                protocol.parse_session_key(session)
        except protocol.ProtocolError as exc:
            self.queue.reject(envelope, f"not a session: {exc}")
            return
        if not (notice or prompt):
            self.queue.reject(envelope, "neither a notice nor a prompt")
            return
        if notice and routing.transport not in NO_OUTBOX:
            self.agent.spool.post(
                Envelope.create(
                    agent=self.agent.name,
                    kind=Kind.NOTICE if envelope.kind is Kind.INJECT else envelope.kind,
                    envelope_id=notice_id(envelope),
                    routing=routing,
                    payload=Payload(text=notice, buttons=envelope.payload.buttons),
                    execution=envelope.execution,
                )
            )
        if prompt and session is not None:
            self.inject(envelope, session, prompt)
        elif prompt:
            log.warning(
                "inbox: %s has a prompt but no session: only its notice is sent", envelope.id
            )
        self.queue.finish(envelope)
        log.info("inbox: %s (%s) handled for %s", envelope.id, envelope.kind, session or "-")

    def inject(self, envelope: Envelope, session: str, prompt: str) -> None:
        agent = self.agent
        record_id = turn_id(envelope)
        if any(record.id == record_id for record in agent.turns.load()):
            return  # accepted before a crash: recovery runs it
        record = TurnRecord(
            id=record_id,
            seq=agent.turns.next_seq(),
            session=session,
            kind=TurnKind.INJECT,
            text=prompt,
            origin=envelope.routing.origin or str(envelope.kind),
        )
        agent.submit(record)


def inject_envelope(
    *,
    agent: str,
    routing: Routing,
    prompt: str,
    notice: str = "",
    kind: Kind = Kind.INJECT,
    envelope_id: str | None = None,
) -> Envelope:
    """An envelope that asks the agent to run ``prompt`` in ``routing``'s session (and
    post ``notice`` to its chat first); put it in ``Spool(...).inbox()``."""
    return Envelope.create(
        agent=agent,
        kind=kind,
        routing=routing,
        payload=Payload(text=notice, metadata={PROMPT_KEY: prompt}),
        envelope_id=envelope_id,
    )

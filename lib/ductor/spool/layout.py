"""An agent's spool directory: one queue per transport in outbox/, one inbox/."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from ductor.spool.envelope import Delivery, Envelope, Routing, now_utc
from ductor.spool.queue import Queue
from ductor.spool.states import DEFAULT_RETRY_POLICY, RetryPolicy

log = logging.getLogger("ductor.spool")

#: Metadata key of an envelope moved to another transport: where it was meant to go.
MEANT_FOR = "meant_for"
#: The outboxes of messenger transports; others (``cli``) are never rerouted.
MESSENGER_OUTBOXES = frozenset({"tg", "mx"})


class Spool:
    """An agent's spool directory: ``outbox/<transport>/`` queues and ``inbox/``.

    ``served`` names the outboxes a transport of this agent drains (``tg``, ``mx``),
    primary first. An envelope routed to another messenger goes to the primary one instead, with
    its original destination in ``payload.metadata["meant_for"]``: that transport's
    drain delivers it to the main user with a note (design §4, the fallback).
    """

    def __init__(self, root: Path, *, served: Sequence[str] = ()) -> None:
        self.root = root
        self.served = tuple(served)

    def outbox(self, transport: str, *, retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> Queue:
        Routing(transport=transport, broadcast=True)  # validates the name
        return Queue(self.root / "outbox" / transport, retry_policy=retry_policy)

    def inbox(self, *, retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> Queue:
        return Queue(self.root / "inbox", retry_policy=retry_policy)

    def post(self, envelope: Envelope) -> bool:
        """Queue an envelope in the outbox of the transport it is routed to (or, when
        no transport of this agent serves that one, of the primary transport)."""
        routed = self.reroute(envelope)
        if routed is not envelope:
            log.warning(
                "envelope %s is for %s, which this agent does not run; it goes to %s",
                envelope.id,
                envelope.routing.transport,
                routed.routing.transport,
            )
        return self.outbox(routed.routing.transport).put(routed)

    def reroute(self, envelope: Envelope) -> Envelope:
        """``envelope`` itself when a served transport takes it, else its fallback copy."""
        transport = envelope.routing.transport
        if not self.served or transport in self.served or transport not in MESSENGER_OUTBOXES:
            return envelope
        routing = envelope.routing
        meant = f"{transport}:broadcast" if routing.broadcast else routing.session_key
        metadata = {**envelope.payload.metadata, MEANT_FOR: meant}
        payload = replace(envelope.payload, metadata=metadata)
        return replace(envelope.for_transport(self.served[0]), payload=payload)

    def adopt_orphans(self) -> int:
        """Move what waits in the outboxes of transports this agent no longer runs to the
        primary one (rerouted as :meth:`post` does); returns how many were moved.

        Idempotent across crashes: an envelope already put is only finished."""
        if not self.served:
            return 0
        target = self.outbox(self.served[0])
        moved = 0
        far_future = now_utc() + timedelta(days=3650)  # claim those waiting for a retry too
        for name in self.outbox_transports():
            if name in self.served or name not in MESSENGER_OUTBOXES:
                continue
            orphan = self.outbox(name)
            try:
                orphan.recover()
                while (envelope := orphan.claim_next(now=far_future)) is not None:
                    fresh = replace(self.reroute(envelope), delivery=Delivery())
                    if target.put(fresh):
                        moved += 1
                    orphan.finish(envelope)
                    log.warning(
                        "envelope %s waited in outbox/%s, which this agent does not run;"
                        " moved to outbox/%s",
                        envelope.id,
                        name,
                        self.served[0],
                    )
            finally:
                orphan.close()
        return moved

    def outbox_transports(self) -> list[str]:
        try:
            return sorted(
                entry.name for entry in os.scandir(self.root / "outbox") if entry.is_dir()
            )
        except FileNotFoundError:
            return []

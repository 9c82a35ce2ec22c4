"""An agent's spool directory: one queue per transport in outbox/, one inbox/."""

from __future__ import annotations

import os
from pathlib import Path

from ductor.spool.envelope import Envelope, Routing
from ductor.spool.queue import Queue
from ductor.spool.states import DEFAULT_RETRY_POLICY, RetryPolicy


class Spool:
    """An agent's spool directory: ``outbox/<transport>/`` queues and ``inbox/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def outbox(self, transport: str, *, retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> Queue:
        Routing(transport=transport, broadcast=True)  # validates the name
        return Queue(self.root / "outbox" / transport, retry_policy=retry_policy)

    def inbox(self, *, retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> Queue:
        return Queue(self.root / "inbox", retry_policy=retry_policy)

    def post(self, envelope: Envelope) -> bool:
        """Queue an envelope in the outbox of the transport it is routed to."""
        return self.outbox(envelope.routing.transport).put(envelope)

    def outbox_transports(self) -> list[str]:
        try:
            return sorted(
                entry.name for entry in os.scandir(self.root / "outbox") if entry.is_dir()
            )
        except FileNotFoundError:
            return []

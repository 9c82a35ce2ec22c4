"""The spool: envelopes that must reach a chat (outbox) or the agent (inbox) later.

Stdlib only and cheap to import: cron and heartbeat oneshots and the workspace's tool
scripts write envelopes; transports and the agent read them. See docs/spool.md.

A writer::

    Spool(paths.spool(agent)).post(Envelope.create(agent=..., kind=Kind.CRON, routing=...))

A reader (asyncio)::

    queue = Spool(root).outbox("tg")
    listener = queue.listen()  # before the first scan, so no wake-up is missed
    queue.recover()
    while True:
        while (envelope := queue.claim_next()) is not None:
            try:
                ids = await send(envelope)
            except Exception as exc:
                queue.fail(envelope, str(exc))
                continue
            queue.record_delivery(envelope, ids)
            queue.finish(envelope)
        await listener.wait_async(queue.next_wait())
"""

from ductor.spool.envelope import (
    Button,
    ChatId,
    Delivery,
    Envelope,
    Execution,
    ExecutionStatus,
    Kind,
    MessageId,
    Payload,
    Routing,
    new_envelope_id,
)
from ductor.spool.errors import (
    EnvelopeError,
    NotClaimedError,
    SpoolError,
    UnknownEnvelopeError,
    WakeSocketBusyError,
)
from ductor.spool.files import QueueDirectory
from ductor.spool.layout import MEANT_FOR, Spool
from ductor.spool.queue import Queue
from ductor.spool.states import (
    DEFAULT_RETRY_POLICY,
    DONE_RETENTION,
    RESCAN_INTERVAL,
    STALE_TEMP_AFTER,
    Entry,
    Recovery,
    RetryPolicy,
    State,
)
from ductor.spool.wake import WakeListener, send_wake

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "DONE_RETENTION",
    "MEANT_FOR",
    "RESCAN_INTERVAL",
    "STALE_TEMP_AFTER",
    "Button",
    "ChatId",
    "Delivery",
    "Entry",
    "Envelope",
    "EnvelopeError",
    "Execution",
    "ExecutionStatus",
    "Kind",
    "MessageId",
    "NotClaimedError",
    "Payload",
    "Queue",
    "QueueDirectory",
    "Recovery",
    "RetryPolicy",
    "Routing",
    "Spool",
    "SpoolError",
    "State",
    "UnknownEnvelopeError",
    "WakeListener",
    "WakeSocketBusyError",
    "new_envelope_id",
    "send_wake",
]

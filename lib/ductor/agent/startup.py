"""The start-up notice: after a reboot of the machine, the agent says it is back.

The agent decides, not each transport: it knows how it started (recovery.py compares the
boot id with the one of its last start) and it runs once for every transport. The
notice is an envelope in the outbox of each transport the agent runs, so it reaches
Telegram and Matrix alike, and survives a transport that is not up yet.

Where it goes: ``notifications.startup_targets`` when any are listed (targets, but none
enabled, is silence), else every allowed user (a broadcast). When: after a reboot, and
at the very first start only to targets listed by hand (a new bot has no chat to write
to yet, and the person who set it up has just been told it runs). A restart of the
service is silent: systemd restarts it, nobody needs a message for that.
"""

from __future__ import annotations

from ductor.config.schema import TRANSPORT_OUTBOX, AgentConfig, ChatTarget
from ductor.spool import Envelope, Kind, Payload, Routing

__all__ = ["FIRST_START_TEXT", "REBOOT_TEXT", "startup_envelopes"]

FIRST_START_TEXT = "**Bot Started** — first start, ready to go."
REBOOT_TEXT = "**Bot Started** — system reboot detected, back online."
ORIGIN = "start-up notice"


def _routing(target: ChatTarget) -> Routing | None:
    outbox = TRANSPORT_OUTBOX.get(target.transport)
    if outbox is None:
        return None
    if target.transport == "matrix":
        return Routing(outbox, chat_id=target.room, origin=ORIGIN) if target.room else None
    if not target.chat_id:
        return None
    topic = target.topic_id or None
    return Routing(outbox, chat_id=target.chat_id, topic_id=topic, origin=ORIGIN)


def startup_envelopes(agent: str, config: AgentConfig, kind: str) -> list[Envelope]:
    """The notices for a start of ``kind`` (recovery's first_start, restart or reboot)."""
    targets = config.notifications.startup_targets
    if kind == "reboot":
        text = REBOOT_TEXT
    elif kind == "first_start" and targets:
        text = FIRST_START_TEXT
    else:
        return []
    running = set(config.outboxes)
    if targets:
        routes = [r for t in targets if t.enabled and (r := _routing(t)) is not None]
    else:
        routes = [Routing(outbox, broadcast=True, origin=ORIGIN) for outbox in config.outboxes]
    return [
        Envelope.create(agent=agent, kind=Kind.NOTICE, routing=route, payload=Payload(text=text))
        for route in routes
        if route.transport in running
    ]

"""``ductor-cron heartbeat AGENT[:N]``: one heartbeat, fired by ``ductor-heartbeat@``.

Target 0 (instance ``AGENT``) is the main user's private chat; ``AGENT:N`` is group
target N of ``[[heartbeat.group_targets]]`` (1-based), whose unset settings inherit
``[heartbeat]``. A heartbeat asks the agent for a turn in the chat's existing session,
and only when: heartbeat is on, it is outside quiet hours, the session exists, the chat
has been quiet for the cooldown, and the agent is not busy in it (the agent checks that
last). An answer that is only the ACK token is dropped; anything else goes to the
outbox, which the transport delivers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ductor import atomic, config, protocol
from ductor.agent.sessions import SessionStore
from ductor.cron.oneshot import TRANSPORT_PREFIX, in_quiet_hours, zone
from ductor.errors import DuctorError, UsageError
from ductor.paths import Paths
from ductor.spool import Envelope, Kind, Payload, Routing, Spool
from ductor.units import parse_instance

log = logging.getLogger("ductor.heartbeat")


@dataclass(frozen=True)
class Target:
    label: str
    transport: str
    chat: str
    topic: str
    prompt: str
    ack_token: str
    quiet_start: int
    quiet_end: int

    @property
    def session(self) -> str:
        key = f"{self.transport}:{self.chat}"
        return f"{key}:{self.topic}" if self.topic else key


def targets(agent_config: config.AgentConfig) -> list[Target]:
    """Target 0 (the main private chat) and the group targets, settings resolved."""
    beat = agent_config.heartbeat
    found: list[Target] = []
    users = agent_config.telegram.allowed_user_ids
    if users:
        found.append(
            Target(
                "main",
                "tg",
                str(users[0]),
                "",
                beat.prompt,
                beat.ack_token,
                beat.quiet_start,
                beat.quiet_end,
            )
        )
    for index, group in enumerate(beat.group_targets, start=1):
        transport = TRANSPORT_PREFIX.get(group.transport, "tg")
        chat = group.room if transport == "mx" else str(group.chat_id)
        found.append(
            Target(
                f"group {index}",
                transport,
                chat,
                str(group.topic_id) if group.topic_id else "",
                group.prompt or beat.prompt,
                group.ack_token or beat.ack_token,
                beat.quiet_start if group.quiet_start is None else group.quiet_start,
                beat.quiet_end if group.quiet_end is None else group.quiet_end,
            )
        )
    return found


def pick(agent_config: config.AgentConfig, instance: str) -> Target | None:
    parts = parse_instance(instance)
    index = 0
    if len(parts) == 2:
        try:
            index = int(parts[1])
        except ValueError:
            raise UsageError(f"heartbeat target must be a number, got {parts[1]!r}") from None
    all_targets = targets(agent_config)
    if index == 0:
        return all_targets[0] if all_targets and all_targets[0].label == "main" else None
    groups = [t for t in all_targets if t.label != "main"]
    return groups[index - 1] if 0 < index <= len(groups) else None


def heartbeat(instance: str, paths: Paths, *, now: datetime | None = None) -> int:
    agent = parse_instance(instance)[0]
    agent_config = config.load_agent_config(paths, agent)
    beat = agent_config.heartbeat
    if not beat.enabled:
        log.info("heartbeat of %s is off", agent)
        return 0
    target = pick(agent_config, instance)
    if target is None:
        log.info("heartbeat %s: no such target", instance)
        return 0
    now = now or datetime.now(UTC)
    tz = zone(agent_config.user_timezone)
    hour = now.astimezone(tz).hour if tz else now.astimezone().hour
    if in_quiet_hours(target.quiet_start, target.quiet_end, hour):
        log.info("heartbeat %s: quiet hours, skipped", target.label)
        return 0
    session = SessionStore(paths.agent_state(agent) / "sessions.json").get(target.session)
    if session is None or session.bucket().session_id is None:
        log.info("heartbeat %s: no session in %s yet, skipped", target.label, target.session)
        return 0
    if now - session.last_active < timedelta(minutes=beat.cooldown_minutes):
        log.info("heartbeat %s: the chat was active recently, skipped", target.label)
        return 0
    request = protocol.Request(
        type=protocol.RequestType.HEARTBEAT,
        id=protocol.new_request_id(),
        session=target.session,
        text=target.prompt,
        origin="heartbeat",
    )
    from ductor.protocol.client import call

    events = call(paths.agent_socket(agent), request, timeout=agent_config.timeouts.normal + 60)
    final = events[-1] if events else None
    if final is None or final.type is not protocol.EventType.FINAL:
        detail = final.text if final is not None else "no answer"
        raise DuctorError(f"heartbeat {target.label}: the agent answered with an error: {detail}")
    skipped = final.get_str("skipped")
    if skipped:
        log.info("heartbeat %s: skipped by the agent (%s)", target.label, skipped)
        return 0
    text = final.text.strip()
    state = paths.agent_state(agent) / "heartbeat.json"
    atomic.write_json(state, {"last": now.isoformat(), "target": target.label}, mode=0o600)
    if not text or text == target.ack_token:
        log.info("heartbeat %s: nothing to say (%s)", target.label, target.ack_token)
        return 0
    Spool(paths.spool(agent), served=agent_config.outboxes).post(
        Envelope.create(
            agent=agent,
            kind=Kind.HEARTBEAT,
            routing=Routing(
                transport=target.transport,
                chat_id=_id(target.chat),
                topic_id=_id(target.topic) if target.topic else None,
                origin=f"heartbeat ({target.label})",
            ),
            payload=Payload(text=text),
        )
    )
    log.info("heartbeat %s: %d characters for the chat", target.label, len(text))
    return 0


def _id(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value

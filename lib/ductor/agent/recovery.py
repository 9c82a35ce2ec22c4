"""What the agent does with the turns a previous run left behind.

At start the agent compares the kernel's boot id with the one it stored last time
(``startup.json``): no file means a first start, the same id a service restart, another
id a reboot. Then, from ``turns/`` and ``replies/``:

- an answer parked for an acknowledgement goes to the outbox (it was produced; it is
  delivered, never re-run);
- a turn that was running is re-run once, resuming its CLI session, marked as a
  recovery; the chat is told at once ("Service restarted: resuming your last request"),
  and the answer follows through the outbox. A recovery that itself was interrupted is
  not run a third time: the chat is asked to send the request again;
- queued turns run in their original order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ductor import atomic
from ductor.agent.startup import startup_envelopes
from ductor.agent.turns import TurnKind, TurnRecord, TurnState

if TYPE_CHECKING:
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")

FIRST_START = "first_start"
RESTART = "restart"
REBOOT = "reboot"

_NOTICES = {
    RESTART: "Service restarted: resuming your last request.",
    REBOOT: "Reboot detected: resuming your last request.",
}
GAVE_UP = (
    "Your last request was interrupted twice by a restart and was not run again."
    " Please send it again."
)


ORIGIN = "agent restart"  # the header the transports put above a notice
QUOTE_CHARS = 60


def notice_for(reason: str) -> str:
    return _NOTICES.get(reason, _NOTICES[RESTART])


def quoted_request(record: TurnRecord) -> str:
    """The user's words of the turn, shortened to one line, for a chat notice; empty
    for turns the user did not write (a webhook, a heartbeat) and for files alone."""
    if record.kind is not TurnKind.MESSAGE:
        return ""
    words = " ".join(record.text.split())
    if len(words) > QUOTE_CHARS:
        cut = words[: QUOTE_CHARS - 1]
        words = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"  # at a word's end
    return f"“{words}”" if words else ""


def chat_notice(text: str, record: TurnRecord) -> str:
    """``text`` with the user's request quoted on its own line, when it has words."""
    quote = quoted_request(record)
    return f"{text}\n{quote}" if quote else text


def boot_id(file: Path = BOOT_ID_FILE) -> str:
    try:
        return file.read_text().strip()
    except OSError:
        return ""


def startup_kind(state_dir: Path, *, current_boot: str | None = None) -> str:
    """first_start / restart / reboot, and remember this start for the next one."""
    current = boot_id() if current_boot is None else current_boot
    file = state_dir / "startup.json"
    previous = ""
    known = False
    try:
        data = atomic.read_json(file)
        if isinstance(data, dict):
            previous = str(data.get("boot_id", ""))
            known = True
    except (OSError, ValueError):
        pass
    atomic.write_json(
        file, {"boot_id": current, "started_at": datetime.now(UTC).isoformat()}, mode=0o600
    )
    if not known:
        return FIRST_START
    if previous and current and previous != current:
        return REBOOT
    return RESTART


@dataclass
class Report:
    kind: str = RESTART
    delivered: list[str] = field(default_factory=list)  # parked answers sent to the outbox
    resumed: list[str] = field(default_factory=list)  # running turns re-run once
    requeued: list[str] = field(default_factory=list)  # queued turns
    abandoned: list[str] = field(default_factory=list)  # recoveries interrupted again

    def summary(self) -> str:
        return (
            f"{self.kind}: {len(self.resumed)} interrupted turn(s) resumed,"
            f" {len(self.requeued)} queued turn(s) requeued,"
            f" {len(self.delivered)} answer(s) moved to the outbox,"
            f" {len(self.abandoned)} given up"
        )


def recover(agent: Agent) -> Report:
    report = Report(kind=startup_kind(agent.state_dir))
    for envelope in startup_envelopes(agent.name, agent.config, report.kind):
        agent.spool.post(envelope)
    parked = {turn_id for turn_id, _ in agent.turns.parked_replies()}
    for turn_id, envelope in agent.turns.parked_replies():
        agent.spool.post(envelope)
        agent.turns.drop_reply(turn_id)
        report.delivered.append(turn_id)
    reason = REBOOT if report.kind == REBOOT else RESTART
    for record in agent.turns.load():
        if record.id in parked:
            agent.turns.remove(record)  # its answer exists: deliver, never re-run
            continue
        if record.state is TurnState.RUNNING:
            if record.recovery:
                agent.post_notice(record.session, chat_notice(GAVE_UP, record), origin=ORIGIN)
                agent.turns.remove(record)
                report.abandoned.append(record.id)
                continue
            resumed = replace(record, state=TurnState.QUEUED, recovery=True, recovery_reason=reason)
            agent.turns.save(resumed)
            notice = chat_notice(notice_for(reason), record)
            agent.post_notice(record.session, notice, origin=ORIGIN)
            agent.submit(resumed, persist=False)
            report.resumed.append(record.id)
        else:
            agent.submit(record, persist=False)
            report.requeued.append(record.id)
    if report.resumed or report.requeued or report.delivered or report.abandoned:
        log.info("recovery after %s", report.summary())
    return report

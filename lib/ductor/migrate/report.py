"""The plan and the outcome in words: what goes where, what is dropped and why, what
conflicts. Secrets are named by their file, never shown."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ductor.cron.sync import timer_unit
from ductor.migrate.apply import Outcome
from ductor.migrate.plan import AgentPlan, Plan, sessions_count

MAX_LISTED = 8


def _short(paths: list[str]) -> str:
    shown = ", ".join(paths[:MAX_LISTED])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > MAX_LISTED else "")


def _agent(plan: AgentPlan) -> list[str]:
    lines = [f"agent {plan.name}  (from {plan.source.home})"]
    if plan.conflict is not None:
        return [*lines, f"  CONFLICT, not migrated: {plan.conflict}"]
    for write in plan.writes:
        if write.what == "config":
            lines.append(
                f"  config      {write.dest}  ({plan.settings} settings written,"
                f" {len(plan.defaults)} keys at this product's default)"
            )
        elif write.what == "named session":
            continue
        elif write.what == "webhooks":
            lines.append(f"  webhooks    {write.dest}  ({', '.join(plan.hooks)}; mode 0600)")
        elif write.secret:
            lines.append(f"  {'secret':<11} {write.dest}  (mode 0600)")
        elif write.what == "sessions":
            lines.append(f"  sessions    {write.dest}  ({sessions_count(plan)} chats)")
        elif not write.what.startswith("cron task"):
            lines.append(f"  {write.what:<11} {write.dest}")
    if plan.named:
        lines.append(f"  named       {_short(plan.named)} (continue with @name)")
    for job in plan.jobs:
        zone = job.timezone or "the agent's time zone"
        state = "" if job.enabled else ", disabled"
        target = f"chat {job.chat_id}" + (f" topic {job.topic_id}" if job.topic_id else "")
        where = target if job.chat_id else "broadcast"
        lines.append(
            f"  cron job    {job.name}: {job.schedule!r} in {zone} → {where}{state}"
            f"  [{timer_unit(plan.name, job.name)}]"
        )
    counts: dict[str, list[Path]] = defaultdict(list)
    for what, carry in plan.copies:
        counts[what].append(carry.dest)
    for what, dests in counts.items():
        common = dests[0].parent if len(dests) == 1 else Path(*_common(dests))
        lines.append(f"  {what:<11} {len(dests)} item(s) → {common}")
    if plan.dropped:
        lines.append("  dropped:")
        by_reason: dict[str, list[str]] = defaultdict(list)
        for key, reason in plan.dropped:
            by_reason[reason].append(key)
        lines += [f"    {_short(keys)}: {reason}" for reason, keys in by_reason.items()]
    if plan.defaults:
        lines.append(f"  same as this product's default (not written): {_short(plan.defaults)}")
    if plan.left:
        lines.append("  left behind in the original's workspace:")
        lines += [f"    {reason}: {len(items)} item(s)" for reason, items in plan.left.items()]
    lines += [f"  note: {note}" for note in plan.notes]
    return lines


def _common(paths: list[Path]) -> tuple[str, ...]:
    parts = [p.parts for p in paths]
    common: list[str] = []
    for items in zip(*parts, strict=False):
        if len(set(items)) != 1:
            break
        common.append(items[0])
    return tuple(common) or ("/",)


def render(plan: Plan, *, dry_run: bool) -> str:
    head = f"ductor migrate: from {plan.source}"
    head += " (dry run: nothing is written)" if dry_run else ""
    lines = [head, ""]
    for agent in plan.agents:
        lines += [*_agent(agent), ""]
    if plan.problems:
        lines.append("unreadable files of the original (skipped):")
        lines += [f"  {what}: {why}" for what, why in plan.problems]
        lines.append("")
    return "\n".join(lines)


def render_outcome(outcomes: dict[str, Outcome]) -> str:
    lines = ["done:"]
    for name, outcome in outcomes.items():
        lines.append(
            f"  {name}: {outcome.written} written, {outcome.unchanged} already there"
            + (f", {len(outcome.kept)} kept as they were (changed since)" if outcome.kept else "")
        )
        lines += [f"    kept: {path}" for path in outcome.kept[:MAX_LISTED]]
        lines += [f"    units: {unit}" for unit in outcome.units]
    return "\n".join(lines) + "\n"

"""``ductor outbox``: what waits in an agent's outbox, and re-sending or dropping it.

Works on the spool's files only (``Spool(paths.spool(NAME))``), so it works whether the
agent runs or not. ``resend`` puts a delivered or failed envelope back as new
(:meth:`Queue.requeue`): the transport delivers it again, the job is not re-run.
See docs/spool.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime
from typing import Any

from ductor import agents
from ductor.atomic import fsync_directory
from ductor.cli.context import Context, table
from ductor.errors import DuctorError, UsageError
from ductor.paths import validate_agent_name
from ductor.spool import Entry, Envelope, Queue, Spool, SpoolError, State
from ductor.spool.files import REASON_SUFFIX

ACTIVE_STATES = (State.NEW, State.CUR, State.FAILED, State.BAD)
"""What `list` shows by default: everything not yet delivered, and problems."""
RESENDABLE = (State.FAILED, State.DONE, State.BAD)
DROPPABLE = (State.NEW, State.FAILED, State.BAD)
TEXT_WIDTH = 48


def register(sub: Any) -> None:
    """Add ``outbox`` and its actions to the ``ductor`` subparsers ``sub``."""
    p = sub.add_parser(
        "outbox",
        help="list, show, re-send or drop what waits in an agent's outbox",
        description="Envelopes the agent's transports deliver (cron results, heartbeats,"
        " task results, replies). Reads the spool's files: works whether the agent runs"
        " or not.",
    )
    actions = p.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)

    q = actions.add_parser("list", help="waiting and failed envelopes (--all: delivered too)")
    q.add_argument("name", metavar="AGENT")
    _transport_argument(q)
    q.add_argument("--all", action="store_true", help="also delivered ones (kept 7 days)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=run_list)

    q = actions.add_parser("show", help="one envelope: text, files, buttons, delivery")
    q.add_argument("name", metavar="AGENT")
    q.add_argument("id", metavar="ID", help="envelope id (or a unique beginning of it)")
    _transport_argument(q)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=run_show)

    q = actions.add_parser(
        "resend",
        help="deliver a failed or delivered envelope again (the job is not re-run)",
    )
    q.add_argument("name", metavar="AGENT")
    q.add_argument("id", metavar="ID", help="envelope id (or a unique beginning of it)")
    _transport_argument(q)
    q.set_defaults(handler=run_resend)

    q = actions.add_parser("drop", help="delete a waiting or failed envelope undelivered")
    q.add_argument("name", metavar="AGENT")
    q.add_argument("id", metavar="ID", help="envelope id (or a unique beginning of it)")
    _transport_argument(q)
    q.add_argument("-y", "--yes", action="store_true", help="do not ask (required without a tty)")
    q.set_defaults(handler=run_drop)


def _transport_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t", "--transport", metavar="NAME", help="only this outbox (tg, mx, ...); default: all"
    )


# -- finding envelopes -----------------------------------------------------------------


def _spool(ctx: Context, name: str) -> Spool:
    validate_agent_name(name)
    root = ctx.paths.spool(name)
    if not agents.exists(ctx.paths, name) and not root.is_dir():
        agents.require(ctx.paths, name)  # raises: no such agent, lists the known ones
    return Spool(root)


def _queues(spool: Spool, transport: str | None) -> list[tuple[str, Queue]]:
    names = [transport] if transport else spool.outbox_transports()
    queues = []
    for name in names:
        try:
            queues.append((name, spool.outbox(name)))
        except SpoolError:
            raise UsageError(f"--transport: {name!r} is not a transport name like 'tg'") from None
    return queues


def _names(queue: Queue, state: State) -> list[str]:
    try:
        names = [path.name for path in queue.directory(state).iterdir()]
    except FileNotFoundError:
        return []
    return [name for name in names if not (state is State.BAD and name.endswith(REASON_SUFFIX))]


def _find(ctx: Context, args: argparse.Namespace) -> tuple[str, Queue, Entry]:
    """The one envelope ``args.id`` names, exactly or by a unique beginning."""
    spool = _spool(ctx, args.name)
    queues = _queues(spool, args.transport)
    where = f"the outbox of {args.name}" + (f" ({args.transport})" if args.transport else "")
    hint = f"`ductor outbox list {args.name} --all` shows the ids"
    if not args.id or "/" in args.id or args.id in (".", ".."):
        raise UsageError(f"{args.id!r} is not an envelope id; {hint}")
    exact = [(t, q, args.id) for t, q in queues if _exists(q, args.id)]
    found = exact or [
        (t, q, name)
        for t, q in queues
        for state in State
        for name in _names(q, state)
        if name.startswith(args.id)
    ]
    if not found:
        raise UsageError(f"no envelope {args.id!r} in {where}; {hint}")
    if len(found) > 1:
        found.sort(key=lambda match: (match[2], match[0]))
        matches = ", ".join(f"{name} ({t})" for t, _, name in found[:10])
        more = ", ..." if len(found) > 10 else ""
        raise UsageError(
            f"{args.id!r} matches several envelopes: {matches}{more};"
            " give the whole id, and --transport when one id is in several outboxes"
        )
    transport, queue, name = found[0]
    entry = _entry(queue, name)
    if entry is None:
        raise UsageError(f"envelope {name} is gone from {where} (delivered and pruned?); {hint}")
    return transport, queue, entry


def _exists(queue: Queue, name: str) -> bool:
    try:
        return queue.get(name) is not None
    except SpoolError:  # not a valid id: only a prefix, or a bad/ file name
        return any(name in _names(queue, state) for state in State)


def _entry(queue: Queue, name: str) -> Entry | None:
    try:
        return queue.get(name)
    except SpoolError:  # a file in bad/ whose name is not an id
        for entry in queue.list([State.BAD]):
            if entry.id == name:
                return entry
        return None


# -- describing envelopes --------------------------------------------------------------


def _local(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _age(created: datetime, now: datetime) -> str:
    seconds = max(0, int((now - created).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _first_line(text: str, width: int = TEXT_WIDTH) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def target(envelope: Envelope) -> str:
    """``chat 123 topic 7`` or ``broadcast``."""
    routing = envelope.routing
    if routing.broadcast:
        return "broadcast"
    text = f"chat {routing.chat_id}"
    return text if routing.topic_id is None else f"{text} topic {routing.topic_id}"


def delivery_state(entry: Entry) -> str:
    """Where the delivery stands, in words: pending, retrying N (next at ...), ..."""
    envelope = entry.envelope
    if envelope is None:
        return f"bad: {_first_line(entry.problem or 'unreadable', 60)}"
    delivery = envelope.delivery
    fallback = " via fallback" if delivery.fallback_used else ""
    if entry.state is State.BAD:
        return f"bad: {_first_line(entry.problem or 'moved aside', 60)}"
    if entry.state is State.FAILED:
        return f"failed: {_first_line(delivery.last_error or 'no error recorded', 60)}"
    if entry.state is State.DONE or delivery.delivered:
        if delivery.delivered_at is None:
            return "done (nothing sent)"
        return f"delivered at {_local(delivery.delivered_at)}{fallback}"
    if entry.state is State.CUR:
        return "delivering"
    if delivery.attempts:
        when = _local(delivery.next_attempt_at) if delivery.next_attempt_at else "now"
        return f"retrying {delivery.attempts} (next at {when})"
    return "pending" + (f" (resent {delivery.requeues}x)" if delivery.requeues else "")


def _as_json(transport: str, entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "transport": transport,
        "state": str(entry.state),
        "delivery_state": delivery_state(entry),
        "problem": entry.problem,
        "path": str(entry.path),
        "envelope": None if entry.envelope is None else entry.envelope.to_dict(),
    }


def _row(transport: str, entry: Entry, now: datetime) -> list[str]:
    envelope = entry.envelope
    if envelope is None:
        return [entry.id, "?", transport, "?", "?", delivery_state(entry), "?", ""]
    return [
        entry.id,
        str(envelope.kind),
        transport,
        target(envelope),
        str(envelope.execution.status),
        delivery_state(entry),
        _age(envelope.created_at, now),
        _first_line(envelope.payload.text),
    ]


def describe(transport: str, entry: Entry, now: datetime) -> list[str]:
    """Every field of an envelope, as `show` prints it."""
    lines = [f"envelope   {entry.id}", f"outbox     {transport}, {entry.state}/"]
    lines.append(f"file       {entry.path}")
    envelope = entry.envelope
    if envelope is None:
        lines.append(f"problem    {entry.problem or 'unreadable'}")
        lines.append("           repair the file, then `ductor outbox resend` it")
        return lines
    routing, payload = envelope.routing, envelope.payload
    execution, delivery = envelope.execution, envelope.delivery
    lines += [
        f"kind       {envelope.kind}",
        f"agent      {envelope.agent}",
        f"created    {_local(envelope.created_at)} ({_age(envelope.created_at, now)} ago)",
        f"target     {routing.transport} {target(envelope)}",
    ]
    if routing.origin:
        lines.append(f"origin     {routing.origin}")
    if entry.problem:
        lines.append(f"problem    {entry.problem}")
    lines += [
        "",
        "execution",
        f"  status         {execution.status}",
        f"  finished       {_local(execution.finished_at)}",
    ]
    if execution.error:
        lines.append(f"  error          {execution.error}")
    lines += [
        "",
        "delivery",
        f"  state          {delivery_state(entry)}",
        f"  attempts       {delivery.attempts}",
        f"  next attempt   {_local(delivery.next_attempt_at) if delivery.next_attempt_at else '-'}",
        f"  last error     {delivery.last_error or '-'}",
        f"  delivered at   {_local(delivery.delivered_at)}",
        f"  message ids    {', '.join(map(str, delivery.message_ids)) or '-'}",
        "  fallback       "
        + (
            f"yes: {delivery.fallback_reason or 'no reason given'}"
            if delivery.fallback_used
            else "no"
        ),
        f"  resent         {delivery.requeues} time(s)",
    ]
    if payload.files:
        lines += ["", "files", *(f"  {path}" for path in payload.files)]
    if payload.buttons:
        lines += ["", "buttons"]
        lines += [
            "  " + "  ".join(f"[{button.label} -> {button.data}]" for button in row)
            for row in payload.buttons
        ]
    if payload.metadata:
        lines += ["", "metadata", *(f"  {key}: {value}" for key, value in payload.metadata.items())]
    lines += ["", "text"]
    lines += [f"  {line}".rstrip() for line in payload.text.splitlines()] or ["  (empty)"]
    return lines


# -- the actions -----------------------------------------------------------------------


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    spool = _spool(ctx, args.name)
    states = (*ACTIVE_STATES, State.DONE) if args.all else ACTIVE_STATES
    entries = [
        (transport, entry)
        for transport, queue in _queues(spool, args.transport)
        for entry in queue.list(states)
    ]
    entries.sort(key=lambda item: (item[1].id, item[0]))
    if ctx.json:
        ctx.dump([_as_json(transport, entry) for transport, entry in entries])
        return 0
    if not entries:
        what = "envelopes" if args.all else "waiting or failed envelopes"
        more = "" if args.all else " (--all also shows delivered ones)"
        ctx.print(f"No {what} in the outbox of {args.name}{more}.")
        return 0
    now = datetime.now(UTC)
    header = ["id", "kind", "transport", "target", "execution", "delivery", "age", "text"]
    ctx.print(table([_row(transport, entry, now) for transport, entry in entries], header))
    return 0


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    transport, _, entry = _find(ctx, args)
    if ctx.json:
        ctx.dump(_as_json(transport, entry))
    else:
        ctx.print("\n".join(describe(transport, entry, datetime.now(UTC))))
    return 0


def run_resend(ctx: Context, args: argparse.Namespace) -> int:
    transport, queue, entry = _find(ctx, args)
    if entry.state not in RESENDABLE:
        doing = "is being delivered" if entry.state is State.CUR else "is waiting for delivery"
        raise UsageError(
            f"envelope {entry.id} {doing} already ({entry.state}/); only failed, delivered"
            " and repaired bad envelopes can be re-sent"
        )
    try:
        envelope = queue.requeue(entry.id)
    except SpoolError as exc:
        if entry.state is State.BAD:
            raise DuctorError(
                f"envelope {entry.id} is still unreadable ({exc}); repair {entry.path} first"
            ) from None
        raise
    _give_to_queue_owner(queue, queue.directory(State.NEW) / entry.id)
    ctx.print(
        f"resent {entry.id} ({envelope.kind} to {transport} {target(envelope)}): moved from"
        f" {entry.state}/ to new/ (resend #{envelope.delivery.requeues}). The {transport}"
        " transport delivers it again when it runs; the job is not re-run."
    )
    return 0


def run_drop(ctx: Context, args: argparse.Namespace) -> int:
    transport, queue, entry = _find(ctx, args)
    if entry.state not in DROPPABLE:
        why = (
            "is being delivered right now"
            if entry.state is State.CUR
            else "was delivered already (done/ is pruned after 7 days)"
        )
        raise UsageError(f"envelope {entry.id} {why}; only waiting and failed ones can be dropped")
    summary = _summary(transport, entry)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"not dropping {entry.id} without --yes (stdin is not a terminal)")
        answer = input(f"Drop {summary}? It will not be delivered. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            ctx.print("Nothing dropped.")
            return 1
    try:
        entry.path.unlink()
    except FileNotFoundError:
        moved = _entry(queue, entry.id)
        now = f"it is in {moved.state}/ now" if moved else "it is gone"
        raise DuctorError(f"envelope {entry.id} moved while dropping it ({now})") from None
    if entry.state is State.BAD:
        with contextlib.suppress(FileNotFoundError):
            entry.path.with_name(entry.path.name + REASON_SUFFIX).unlink()
    fsync_directory(entry.path.parent)
    ctx.print(f"dropped {summary} (was {entry.state}/)")
    return 0


def _summary(transport: str, entry: Entry) -> str:
    envelope = entry.envelope
    if envelope is None:
        return f"{entry.id} (unreadable, {transport})"
    text = _first_line(envelope.payload.text, 40)
    return f"{entry.id} ({envelope.kind} to {transport} {target(envelope)}: {text!r})"


def _give_to_queue_owner(queue: Queue, path: os.PathLike[str]) -> None:
    """Run as root (--system), a rewritten envelope must stay readable by the agent."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        owner = queue.path.stat()
        os.chown(path, owner.st_uid, owner.st_gid)

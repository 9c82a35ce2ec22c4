"""``ductor cron``: an agent's scheduled jobs (add, list, edit, remove, enable, disable,
run, sync). Every change re-syncs the agent's timers.

Where results go: ``--chat``/``--topic``/``--transport``; without ``--chat``, ``add``
takes ``DUCTOR_CHAT_ID``, ``DUCTOR_TOPIC_ID`` and ``DUCTOR_TRANSPORT`` from the
environment, which the agent sets for its CLI, so a job created from a chat (through
the workspace's cron tool scripts) reports back to that chat.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from ductor import agents
from ductor import calendar as cron_calendar
from ductor.cli.args import RecordActions, add_enable_switch
from ductor.cli.context import Context, table
from ductor.cron import jobs as cron_jobs
from ductor.cron.jobs import Job, JobStore
from ductor.cron.sync import (
    SyncReport,
    check_calendar,
    service_unit,
    sync_jobs,
    timer_unit,
)
from ductor.errors import CommandError, UsageError
from ductor.paths import Mode

ROUTING_ENV = ("DUCTOR_CHAT_ID", "DUCTOR_TOPIC_ID", "DUCTOR_TRANSPORT")
QUIET_OFF = ("", "off", "none")


def parse_quiet(text: str) -> tuple[int | None, int | None]:
    """``"22-7"`` → (22, 7); ``"off"`` → (None, None)."""
    if text.strip().lower() in QUIET_OFF:
        return None, None
    start, sep, end = text.partition("-")
    if sep and start.strip().isdigit() and end.strip().isdigit():
        return int(start), int(end)
    raise UsageError(f"--quiet {text!r}: expected START-END in hours 0-23 (e.g. 22-7), or 'off'")


def _job_options(parser: argparse.ArgumentParser, *, editing: bool) -> None:
    parser.add_argument("--schedule", required=not editing, help="cron expression or @daily")
    parser.add_argument("--prompt", required=not editing, help="what the agent is asked")
    parser.add_argument("--title")
    parser.add_argument("--description")
    parser.add_argument("--timezone", help="IANA zone (default: the agent's user_timezone)")
    parser.add_argument("--provider", help="claude, codex or gemini (default: the agent's)")
    parser.add_argument("--model")
    parser.add_argument("--effort", help="reasoning effort for this job")
    parser.add_argument("--quiet", metavar="START-END", help="hours in which runs are skipped")
    parser.add_argument("--dependency", help="jobs with the same key never run together")
    parser.add_argument("--chat", metavar="ID", help="chat that gets the results")
    parser.add_argument("--topic", metavar="ID", help="topic (thread) in that chat")
    parser.add_argument("--transport", help="tg or mx (default: the agent's first)")
    parser.add_argument(
        "--broadcast",
        action="store_true",
        help="send results to every allowed user instead of one chat",
    )
    parser.add_argument(
        "--silent-on-success",
        action=argparse.BooleanOptionalAction,
        help="send nothing when a run succeeds",
    )
    parser.add_argument(
        "--catch-up",
        action=argparse.BooleanOptionalAction,
        help="after downtime, run once if a run was missed",
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields the options set (None = not given)."""
    values: dict[str, Any] = {
        "schedule": args.schedule,
        "prompt": args.prompt,
        "title": args.title,
        "description": args.description,
        "timezone": args.timezone,
        "provider": args.provider,
        "model": args.model,
        "effort": args.effort,
        "dependency": args.dependency,
        "silent_on_success": args.silent_on_success,
        "catch_up": args.catch_up,
    }
    if args.quiet is not None:
        values["quiet_start"], values["quiet_end"] = parse_quiet(args.quiet)
    return {key: value for key, value in values.items() if value is not None}


def _routing(args: argparse.Namespace, env: Mapping[str, str] | None) -> dict[str, str]:
    """Routing fields from the options; ``env`` (for ``add``) fills in a missing chat."""
    if args.broadcast:
        if args.chat or args.topic:
            raise UsageError("--broadcast sends to everyone: leave out --chat and --topic")
        return {"chat_id": "", "topic_id": "", "transport": args.transport or ""}
    routing: dict[str, str] = {}
    if args.chat is not None:
        routing = {"chat_id": args.chat, "topic_id": args.topic or ""}
    elif env is not None and env.get("DUCTOR_CHAT_ID"):
        routing = {"chat_id": env["DUCTOR_CHAT_ID"], "topic_id": env.get("DUCTOR_TOPIC_ID", "")}
        routing["transport"] = env.get("DUCTOR_TRANSPORT", "")
    if args.chat is None and args.topic is not None:
        routing["topic_id"] = args.topic
    if args.transport is not None:
        routing["transport"] = args.transport
    return routing


def _default_timezone(ctx: Context, agent: str) -> str:
    from ductor.config import load_agent_config

    return load_agent_config(ctx.paths, agent).user_timezone


def check_chat_allowed(ctx: Context, agent: str, job: Job) -> None:
    """Refuse a job whose results would go to a chat the agent may not write to.

    Telegram chats are checked against ``[telegram]`` allowed_user_ids (a user's private
    chat has the user's id), allowed_group_ids and allowed_channel_ids. A Matrix room
    cannot be checked here (whether it is a direct chat with an allowed user only the
    homeserver knows); the Matrix drain refuses it at delivery instead.
    """
    if not job.chat_id:
        return
    from ductor.config import load_agent_config

    config = load_agent_config(ctx.paths, agent)
    if (job.transport or (config.outboxes or ("tg",))[0]) != "tg":
        return
    try:
        chat = int(job.chat_id)
    except ValueError:
        raise UsageError(f"--chat {job.chat_id!r}: a Telegram chat id is a number") from None
    if not config.telegram.allows_chat(chat):
        raise UsageError(
            f"--chat {chat}: agent {agent} may not write to this chat: it is not in"
            " allowed_user_ids, allowed_group_ids or allowed_channel_ids of [telegram]"
            f" ({ctx.paths.agent_config(agent)} or {ctx.paths.global_config});"
            " allow it there first, or leave out --chat"
        )


def _store(ctx: Context, agent: str) -> JobStore:
    return JobStore(ctx.paths.agent_state(agent))


def _next_runs(ctx: Context, agent: str, names: list[str]) -> dict[str, str]:
    units = [timer_unit(agent, name) for name in names]
    states = ctx.manager.show(units, ["NextElapseUSecRealtime"])
    runs = {}
    for name, state in zip(names, states, strict=True):
        value = state.get("NextElapseUSecRealtime", "")
        runs[name] = "" if value in ("", "n/a", "0") else value
    return runs


def route(job: Job) -> str:
    if not job.chat_id:
        return "broadcast" + (f" ({job.transport})" if job.transport else "")
    where = f"chat {job.chat_id}" + (f" topic {job.topic_id}" if job.topic_id else "")
    return where + (f" ({job.transport})" if job.transport else "")


def _job_json(ctx: Context, agent: str, job: Job, next_run: str | None = None) -> dict[str, Any]:
    data = job.to_dict()
    data["agent"] = agent
    data["timer"] = timer_unit(agent, job.name)
    data["task_folder"] = str(cron_jobs.task_path(ctx.paths.workspace(agent), job.name))
    if next_run is None:
        next_run = _next_runs(ctx, agent, [job.name])[job.name]
    data["next_run"] = next_run
    return data


def _describe(expr: str) -> str:
    try:
        return cron_calendar.describe(expr)
    except UsageError:
        return expr


def _show(ctx: Context, agent: str, verb: str, job: Job) -> None:
    if ctx.json:
        ctx.dump(_job_json(ctx, agent, job))
        return
    next_run = _next_runs(ctx, agent, [job.name])[job.name]
    state = "" if job.enabled or verb == "disabled" else " (disabled)"
    zone = job.timezone or f"{_default_timezone(ctx, agent) or 'local time'} (the agent's)"
    ctx.print(f"{verb} cron job {job.name} of {agent}{state}: {_describe(job.schedule)}")
    ctx.print(f"  timezone: {zone}; results: {route(job)}")
    if next_run and job.enabled:
        ctx.print(f"  next run: {next_run}")


def _sync_saved(ctx: Context, agent: str) -> None:
    """Re-sync the agent's timers after a change to its job file. Without a service
    manager the change is kept and the user told how to apply it once one runs."""
    try:
        sync_jobs(ctx.paths, ctx.manager, agent)
    except CommandError:
        problem = ctx.manager.problem()
        if problem is None:
            raise
        print(
            f"ductor: saved in {JobStore(ctx.paths.agent_state(agent)).path}, but the timers"
            f" are not updated: {problem}. Once the service manager runs:"
            f" `ductor{'' if ctx.mode is Mode.USER else ' --system'} cron sync {agent}`",
            file=sys.stderr,
        )


def run_add(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    values = _fields(args) | _routing(args, os.environ)
    job = cron_jobs.validate(Job(name=args.name, **values))
    check_calendar(job, _default_timezone(ctx, agent))
    check_chat_allowed(ctx, agent, job)
    job = _store(ctx, agent).add(job)
    cron_jobs.task_folder(ctx.paths.workspace(agent), job.name, job)
    _sync_saved(ctx, agent)
    _show(ctx, agent, "added", job)
    return 0


def run_edit(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    store = _store(ctx, agent)
    changes = _fields(args) | _routing(args, None)
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if not changes:
        raise UsageError("nothing to change: give at least one option (see --help)")
    old = store.get(args.name)
    new = cron_jobs.validate(dataclasses.replace(old, **changes))
    check_calendar(new, _default_timezone(ctx, agent))
    if {"chat_id", "transport"} & set(changes):
        check_chat_allowed(ctx, agent, new)
    job = store.update(args.name, **changes)
    _sync_saved(ctx, agent)
    _show(ctx, agent, "changed", job)
    return 0


def run_remove(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    job = _store(ctx, agent).remove(args.name)
    _sync_saved(ctx, agent)
    folder = cron_jobs.task_path(ctx.paths.workspace(agent), job.name)
    purged = args.purge and folder.is_dir()
    if purged:
        shutil.rmtree(folder)
    if ctx.json:
        ctx.dump({"removed": job.to_dict(), "task_folder": str(folder), "purged": purged})
        return 0
    ctx.print(f"removed cron job {job.name} of {agent}")
    if folder.is_dir():
        ctx.print(f"kept its task folder {folder} (delete it with --purge)")
    return 0


def _set_enabled(enabled: bool) -> Any:
    def handler(ctx: Context, args: argparse.Namespace) -> int:
        agent = agents.require(ctx.paths, args.agent)
        job = _store(ctx, agent).set_enabled(args.name, enabled)
        _sync_saved(ctx, agent)
        _show(ctx, agent, "enabled" if enabled else "disabled", job)
        return 0

    return handler


def run_run(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    job = _store(ctx, agent).get(args.name)
    unit = service_unit(agent, job.name)
    ctx.manager.systemctl("start", "--no-block", unit)
    if ctx.json:
        ctx.dump({"started": job.name, "agent": agent, "unit": unit})
    else:
        ctx.print(f"started {unit}; the result goes to {route(job)}")
    return 0


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    agent = agents.require(ctx.paths, args.agent)
    jobs = _store(ctx, agent).load()
    names = sorted(jobs)
    next_runs = _next_runs(ctx, agent, names)
    if ctx.json:
        ctx.dump([_job_json(ctx, agent, jobs[n], next_runs[n]) for n in names])
        return 0
    if not names:
        ctx.print(f"{agent} has no cron jobs (add one with `ductor cron add {agent} NAME ...`)")
        return 0
    default_zone = _default_timezone(ctx, agent) or "local"
    rows = [
        [
            name,
            jobs[name].schedule,
            jobs[name].timezone or default_zone,
            "yes" if jobs[name].enabled else "no",
            next_runs[name] or "-",
            route(jobs[name]),
        ]
        for name in names
    ]
    ctx.print(table(rows, ["name", "schedule", "timezone", "enabled", "next run", "results"]))
    return 0


def _print_report(ctx: Context, report: SyncReport) -> None:
    parts = [
        f"{label} {', '.join(units)}"
        for label, units in (
            ("wrote", report.written),
            ("removed", report.removed),
            ("enabled", report.enabled),
            ("disabled", report.disabled),
        )
        if units
    ]
    ctx.print(f"{report.agent}: {'; '.join(parts) or 'timers already in sync'}")


def run_sync(ctx: Context, args: argparse.Namespace) -> int:
    names = [agents.require(ctx.paths, args.agent)] if args.agent else agents.list_agents(ctx.paths)
    reports = [sync_jobs(ctx.paths, ctx.manager, name) for name in names]
    if ctx.json:
        ctx.dump([report.to_dict() for report in reports])
        return 0
    for report in reports:
        _print_report(ctx, report)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``ductor cron`` and its actions."""
    p = sub.add_parser(
        "cron",
        help="scheduled jobs of an agent (systemd timers)",
        description="Scheduled jobs: each runs the agent's CLI once with its prompt, on a"
        " systemd timer, and posts the answer to its chat.",
    )
    actions = RecordActions(p, "cron_command", record="name", metavar="NAME")
    action = actions.add
    q = action("add", "schedule a new job", run_add)
    _job_options(q, editing=False)
    q = action("edit", "change a job (options not given stay as they are)", run_edit)
    _job_options(q, editing=True)
    add_enable_switch(q)
    action("list", "the agent's jobs with their next run", run_list, of_record=False)
    q = action("remove", "delete a job and its timer", run_remove)
    q.add_argument("--purge", action="store_true", help="also delete its task folder")
    action("enable", "let a job run on its schedule", _set_enabled(True))
    action("disable", "stop a job from running (a run in progress finishes)", _set_enabled(False))
    action("run", "run a job now, once", run_run)
    q = actions.actions.add_parser("sync", help="make the timers match the job files")
    q.add_argument("agent", metavar="AGENT", nargs="?")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=run_sync)

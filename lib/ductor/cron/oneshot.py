"""``ductor-cron``: the oneshots behind the timers.

- ``ductor-cron run AGENT:JOB`` (``ductor-cron@AGENT:JOB.service``): one cron run. A fresh
  CLI run in the job's task folder with the job's overrides, skipped in quiet hours,
  serialised with the jobs that share its ``dependency`` (a lock file), its result written
  as an envelope with the job's routing. The execution status is recorded in
  ``cron_runs/JOB.json``; the delivery status lives with the envelope in the spool.
- ``ductor-cron failed UNIT`` (``ductor-cron-failed@.service``, the timers' services'
  ``OnFailure=``): tells the job's chat that the run itself failed (killed, crashed).

Light on purpose (design §9: at most 150 ms of its own CPU): no messenger library, no
agent daemon; only the spool, the config and the CLI runner.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ductor import atomic, config, program, sandbox
from ductor.cron.jobs import Job, JobStore, task_folder
from ductor.errors import ConfigError, DuctorError, UsageError
from ductor.paths import Paths
from ductor.spool import Envelope, Execution, ExecutionStatus, Kind, Payload, Routing, Spool
from ductor.units import parse_instance

log = logging.getLogger("ductor.cron")

TRANSPORT_PREFIX = config.TRANSPORT_OUTBOX


def now_utc() -> datetime:
    return datetime.now(UTC)


def in_quiet_hours(start: int | None, end: int | None, hour: int) -> bool:
    """Whether ``hour`` falls in [start, end) — a window may wrap midnight (22 → 7)."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end


def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name else None
    except (KeyError, ValueError):
        return None


def first_outbox(agent_config: config.AgentConfig) -> str:
    """The outbox of the agent's first transport (``tg`` when none is configured)."""
    return TRANSPORT_PREFIX.get((agent_config.transports or ("telegram",))[0], "tg")


def chat_routing(
    agent_config: config.AgentConfig, transport: str, chat_id: str, topic_id: str, origin: str
) -> Routing:
    """To the chat ``chat_id`` (its topic ``topic_id`` when given) on ``transport``, by
    default the agent's first; numeric ids as numbers."""
    return Routing(
        transport=transport or first_outbox(agent_config),
        chat_id=_id(chat_id),
        topic_id=_id(topic_id) if topic_id else None,
        origin=origin,
    )


def routing_for(job: Job, agent_config: config.AgentConfig) -> Routing:
    """Where the job reports: its chat, else a broadcast on the agent's first transport."""
    origin = f"cron job {job.name}"
    if not job.chat_id:
        transport = job.transport or first_outbox(agent_config)
        return Routing(transport=transport, broadcast=True, origin=origin)
    return chat_routing(agent_config, job.transport, job.chat_id, job.topic_id, origin)


def _id(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value


@contextmanager
def dependency_lock(state: Path, dependency: str) -> Iterator[None]:
    """Jobs sharing a dependency run one at a time: an exclusive lock, waited for."""
    if not dependency:
        yield
        return
    directory = state / "cron_locks"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / f"{dependency}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        started = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        waited = time.monotonic() - started
        if waited > 0.5:
            log.info("waited %.1f s for dependency %r", waited, dependency)
        yield
    finally:
        os.close(fd)  # releases the lock


def record_run(state: Path, job: str, **fields: object) -> None:
    directory = state / "cron_runs"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    file = directory / f"{job}.json"
    previous: dict[str, object] = {}
    try:
        data = atomic.read_json(file)
        if isinstance(data, dict):
            previous = data
    except (OSError, DuctorError, ValueError):
        pass
    atomic.write_json(file, {**previous, **fields}, mode=0o600)


def report_text(heading: str, status: ExecutionStatus, text: str, error: str) -> str:
    """What the chat is shown of a run: the heading in bold, then the answer; a failed
    run says so with its error, then what the CLI answered before it failed."""
    if status is ExecutionStatus.OK:
        return f"**{heading}**\n\n{text or '(no output)'}"
    body = f"**{heading}** failed ({status}): {error}"
    if text:
        body += f"\n\n{text}"
    return body


async def run_cli(
    job: Job, agent: str, paths: Paths, agent_config: config.AgentConfig, folder: Path
) -> tuple[ExecutionStatus, str, str]:
    """(status, answer text, error text) of one fresh CLI run in the task folder."""
    from ductor.agent.dotenv import agent_dotenv
    from ductor.agent.runner import CliRun, RunSpec
    from ductor.agent.timeouts import TimeoutPolicy
    from ductor.providers import PermissionMode, Provider, TurnRequest
    from ductor.providers.env import ChildIdentity
    from ductor.providers.events import Error, ErrorKind, Result
    from ductor.providers.models import provider_for_model

    model = job.model or agent_config.model
    provider = job.provider or (
        str(provider_for_model(job.model)) if job.model else agent_config.provider
    )
    effort = job.effort or agent_config.reasoning_effort
    mode = agent_config.permission_mode
    fence = sandbox.prompt_sentence(paths.workspace(agent), agent_config)
    context = "\n\n".join(
        [fence] * bool(fence)
        + [text for name in ("RULES.md", "MEMORY.md") if (text := _read(folder / name).strip())]
    )
    request = TurnRequest(
        prompt=job.prompt,
        append_system_prompt=context,
        model=model,
        effort="" if provider == Provider.GEMINI else effort,
        permission_mode=PermissionMode(mode)
        if mode in {m.value for m in PermissionMode}
        else PermissionMode.DEFAULT,
        extra_args=tuple(getattr(agent_config.cli_parameters, provider, ())),
    )
    temp = paths.agent_state(agent) / "tmp"
    temp.mkdir(parents=True, exist_ok=True, mode=0o700)
    spec = RunSpec(
        provider=Provider(provider),
        request=request,
        cwd=folder,
        env=os.environ,
        identity=ChildIdentity(
            agent_name=agent,
            chat_id=job.chat_id or None,
            topic_id=job.topic_id or None,
            transport=job.transport or None,
            transcribe_command=agent_config.transcription.audio_command,
            video_transcribe_command=agent_config.transcription.video_command,
        ),
        secrets=agent_dotenv(paths, agent).values(),
        policy=TimeoutPolicy.from_config(agent_config.timeouts, agent_config.timeouts.oneshot),
        temp_dir=temp,
    )
    result: Result | None = None
    error: Error | None = None
    async for event in CliRun(spec).events():
        if isinstance(event, Result):
            result = event
        elif isinstance(event, Error):
            error = event
    if error is not None or result is None or result.is_error:
        kind = error.error if error is not None else ErrorKind.OTHER
        text = error.text if error is not None else "the CLI ended without a result"
        status = ExecutionStatus.TIMEOUT if kind is ErrorKind.TIMEOUT else ExecutionStatus.ERROR
        return status, result.text if result else "", text
    return ExecutionStatus.OK, result.text.strip(), ""


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def run_job(agent: str, job_name: str, paths: Paths) -> int:
    agent_config = config.load_agent_config(paths, agent)
    state = paths.agent_state(agent)
    job = JobStore(state).get(job_name)
    started = now_utc()
    if not job.enabled:
        log.info("job %s is disabled: not running it", job.name)
        return 0
    tz = zone(job.timezone or agent_config.user_timezone)
    local_hour = started.astimezone(tz).hour if tz else started.astimezone().hour
    if in_quiet_hours(job.quiet_start, job.quiet_end, local_hour):
        log.info("job %s: quiet hours (%s-%s), skipped", job.name, job.quiet_start, job.quiet_end)
        record_run(state, job.name, last_started=started.isoformat(), last_status="skipped_quiet")
        return 0
    folder = task_folder(paths.workspace(agent), job.name, job)
    record_run(state, job.name, last_started=started.isoformat(), last_status="running")
    import asyncio  # only a run needs it: failure reports and heartbeats start faster

    with dependency_lock(state, job.dependency):
        record_run(state, job.name, last_running_since=now_utc().isoformat())
        status, text, error = asyncio.run(run_cli(job, agent, paths, agent_config, folder))
        finished = now_utc()  # inside the lock: the next run of the dependency starts after
    envelope_id = None
    if status is not ExecutionStatus.OK or not job.silent_on_success:
        body = report_text(job.title or job.name, status, text, error)
        invocation = os.environ.get("INVOCATION_ID") or started.strftime("%Y%m%d%H%M%S%f")
        envelope = Envelope.create(
            agent=agent,
            kind=Kind.CRON,
            envelope_id=f"cron-{job.name}-{invocation}"[:128],
            routing=routing_for(job, agent_config),
            payload=Payload(text=body, metadata={"job": job.name}),
            execution=Execution(status=status, error=error or None, finished_at=finished),
        )
        Spool(paths.spool(agent), served=agent_config.outboxes).post(envelope)
        envelope_id = envelope.id
    record_run(
        state,
        job.name,
        last_finished=finished.isoformat(),
        last_status=str(status),
        last_error=error,
        last_envelope=envelope_id,
        duration_s=round((finished - started).total_seconds(), 1),
    )
    log.info("job %s: %s in %.1f s", job.name, status, (finished - started).total_seconds())
    return 0


def main_user_routing(agent_config: config.AgentConfig, origin: str) -> Routing:
    """The main user's private chat (the first allowed Telegram user), else a broadcast
    on the agent's first transport: where a report goes when its job cannot be read."""
    transport = first_outbox(agent_config)
    users = agent_config.telegram.allowed_user_ids
    if transport == "tg" and users:
        return Routing(transport=transport, chat_id=users[0], origin=origin)
    return Routing(transport=transport, broadcast=True, origin=origin)


def report_failure(unit: str, paths: Paths) -> int:
    """``OnFailure=`` of a cron run: the unit itself failed (killed, crashed, or it could
    not read what it needed).

    The report never depends on what may have failed: an unreadable or broken job file
    or agent config sends it to the main user's chat, with the reason.
    """
    from ductor.units import Manager

    instance = unit.split("@", 1)[1].rsplit(".", 1)[0] if "@" in unit else ""
    parts = parse_instance(instance) if instance else ()
    if len(parts) != 2:
        raise UsageError(f"{unit!r} is not a ductor-cron@AGENT:JOB unit")
    agent, job_name = parts
    props = Manager(paths.mode).show([unit], ["Result", "ExecMainStatus", "ExecMainCode"])
    detail = props[0] if props else {}
    result = detail.get("Result", "unknown")
    problems: list[str] = []
    try:
        agent_config = config.load_agent_config(paths, agent)
    except ConfigError as exc:
        agent_config = config.AgentConfig()
        problems.append(str(exc))
    job: Job | None = None
    try:
        job = JobStore(paths.agent_state(agent)).get(job_name)
    except UsageError:
        log.warning("failed unit %s belongs to no job any more", unit)
        return 0
    except (ConfigError, OSError) as exc:
        problems.append(str(exc))
    title = (job.title or job.name) if job is not None else f"cron job {job_name}"
    text = (
        f"**{title}**: the cron run failed ({result}"
        f", status {detail.get('ExecMainStatus', '?')}). See `ductor logs {agent}`."
    )
    if problems:
        text += "\n\nIt could not read what it needs: " + "; ".join(problems)
    origin = f"cron job {job_name}"
    routing = (
        routing_for(job, agent_config)
        if job is not None
        else main_user_routing(agent_config, origin)
    )
    Spool(paths.spool(agent), served=agent_config.outboxes).post(
        Envelope.create(
            agent=agent,
            kind=Kind.CRON,
            envelope_id=f"cron-failed-{job_name}-{os.environ.get('INVOCATION_ID', 'x')}"[:128],
            routing=routing,
            payload=Payload(text=text, metadata={"job": job_name}),
            execution=Execution(status=ExecutionStatus.ERROR, error=result, finished_at=now_utc()),
        )
    )
    try:
        record_run(paths.agent_state(agent), job_name, last_status=f"unit_failed:{result}")
    except OSError as exc:  # reported above; the record is a nicety
        log.warning("could not record the failed run of %s: %s", job_name, exc)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = program.parser("ductor-cron", __doc__.split("\n")[0])
    run = sub.add_parser("run", help="run one cron job now: AGENT:JOB (escaped as in the unit)")
    run.add_argument("instance")
    failed = sub.add_parser("failed", help="report a failed ductor-cron@ unit to its chat")
    failed.add_argument("unit")
    beat = sub.add_parser("heartbeat", help="one heartbeat of an agent")
    beat.add_argument("agent")
    args = parser.parse_args(argv)

    def command(paths: Paths) -> int:
        if args.command == "run":
            parts = parse_instance(args.instance)
            if len(parts) != 2:
                raise UsageError(f"expected AGENT:JOB, got {args.instance!r}")
            return run_job(parts[0], parts[1], paths)
        if args.command == "failed":
            return report_failure(args.unit, paths)
        from ductor.cron.heartbeat import heartbeat

        return heartbeat(args.agent, paths)

    return program.run(args, command, log)


if __name__ == "__main__":
    sys.exit(main())

"""``ductor-task``: the oneshot behind ``ductor-task@AGENT:ID.service``.

- ``ductor-task run AGENT:ID`` runs the task once: a CLI run in the agent's workspace
  (resuming the task's own CLI session for a follow-up), with ``DUCTOR_TASK_ID``,
  ``DUCTOR_CHAT_ID``, ``DUCTOR_TOPIC_ID`` and ``DUCTOR_TRANSPORT`` set, limited to
  ``tasks.timeout_seconds``. SIGTERM (``systemctl stop``, a cancel) stops the CLI and the
  run ends as cancelled. The result goes into the agent's ``spool/inbox/`` as one
  envelope per run (``task-ID-RUN``), which the agent injects into the chat's session.
- ``ductor-task finish AGENT:ID`` (the unit's ``ExecStopPost=``): when the run left no
  result (the unit was killed, the runner crashed), reports it as failed, or cancelled
  when a cancel was asked for. The envelope id is the same, so a result is never
  reported twice, whoever writes it first.
- ``ductor-task control AGENT`` (``ductor-task-control@AGENT.service``, root, system
  mode): starts and stops the task units the agent's account asked for.

Light like the cron oneshot: no messenger library, no agent daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ductor import config, program
from ductor.errors import ConfigError, UsageError
from ductor.paths import Paths
from ductor.spool import Button, Spool
from ductor.tasks import texts
from ductor.tasks.store import ACTIVE, Status, Task, TaskKind, TaskStore
from ductor.units import parse_instance

if TYPE_CHECKING:
    from ductor.agent.runner import RunSpec

log = logging.getLogger("ductor.task")


class RunOutcome:
    def __init__(self) -> None:
        self.text = ""
        self.error = ""
        self.session_id = ""
        self.turns = 0
        self.timed_out = False
        self.cancelled = False


def build_spec(
    task: Task,
    agent: str,
    paths: Paths,
    agent_config: config.AgentConfig,
    env: Mapping[str, str],
) -> RunSpec:
    """The CLI run of one run of ``task``: in the workspace, resuming the task's own CLI
    session for a follow-up, with the task's routing in the child's environment."""
    from ductor.agent.dotenv import agent_dotenv
    from ductor.agent.runner import RunSpec
    from ductor.agent.timeouts import TimeoutPolicy
    from ductor.protocol import parse_session_key
    from ductor.providers import PermissionMode, Provider, TurnRequest
    from ductor.providers.env import ChildIdentity

    workspace = paths.workspace(agent)
    store = TaskStore(paths.agent_state(agent), workspace)
    mode = agent_config.permission_mode
    provider = Provider(task.provider)
    session_run = task.kind == TaskKind.SESSION
    if session_run:  # a named session: the user's words as they are
        prompt = task.follow_up or task.prompt
        timeout = agent_config.timeouts.background
    else:
        prompt = texts.run_prompt(task, store.memory_file(task.id))
        timeout = agent_config.tasks.timeout_seconds
    request = TurnRequest(
        prompt=prompt,
        append_system_prompt="",
        model=task.model,
        effort="" if provider == Provider.GEMINI else task.effort,
        permission_mode=PermissionMode(mode)
        if mode in {m.value for m in PermissionMode}
        else PermissionMode.DEFAULT,
        session_id=task.session_id or None if task.follow_up else None,
        extra_args=tuple(getattr(agent_config.cli_parameters, task.provider, ())),
    )
    key = parse_session_key(task.session) if task.session else None
    temp = paths.agent_state(agent) / "tmp"
    temp.mkdir(parents=True, exist_ok=True, mode=0o700)
    return RunSpec(
        provider=provider,
        request=request,
        cwd=workspace,
        env=env,
        identity=ChildIdentity(
            agent_name=agent,
            chat_id=key.chat if key else None,
            topic_id=key.topic if key else None,
            transport=key.transport if key else None,
            task_id=None if session_run else task.id,
            socket=str(paths.agent_socket(agent)),
            transcribe_command=agent_config.transcription.audio_command,
            video_transcribe_command=agent_config.transcription.video_command,
        ),
        secrets=agent_dotenv(paths, agent).values(),
        policy=TimeoutPolicy.from_config(agent_config.timeouts, timeout),
        temp_dir=temp,
    )


async def run_cli(
    task: Task, agent: str, paths: Paths, agent_config: config.AgentConfig
) -> RunOutcome:
    from ductor.agent.runner import CliNotFound, CliRun
    from ductor.providers.events import Error, ErrorKind, Result, SessionStarted

    outcome = RunOutcome()
    spec = build_spec(task, agent, paths, agent_config, os.environ)
    cli = CliRun(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def consume() -> None:
        async for event in cli.events():
            if isinstance(event, SessionStarted) and event.session_id:
                outcome.session_id = event.session_id
            elif isinstance(event, Result):
                outcome.text = event.text
                outcome.session_id = event.session_id or outcome.session_id
                outcome.turns = event.num_turns or 0
                if event.is_error and not outcome.error:
                    outcome.error = event.text or "the CLI reported an error"
            elif isinstance(event, Error):
                outcome.error = event.text
                outcome.timed_out = event.error is ErrorKind.TIMEOUT

    runner = asyncio.create_task(consume())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() and not runner.done():
            outcome.cancelled = True
            await cli.stop()
        await runner
    except CliNotFound as exc:
        outcome.error = str(exc)
    finally:
        stopper.cancel()
    if stop.is_set():
        outcome.cancelled = True
    allowed = cli.time_allowed
    if outcome.timed_out and allowed:
        outcome.error = f"Timeout after {int(allowed)}s"
    return outcome


def run_task(agent: str, task_id: str, paths: Paths) -> int:
    agent_config = config.load_agent_config(paths, agent)
    store = TaskStore(paths.agent_state(agent), paths.workspace(agent))
    task = store.require(task_id)
    if task.state not in ACTIVE or task.cancel_requested:
        log.info("task %s is %s: nothing to run", task.id, task.status)
        return 0
    started = time.time()
    task = store.update(task_id, status=Status.RUNNING.value, started_at=started, error="")
    log.info(
        "task %s (%s) run %d on %s/%s", task.id, task.name, task.run, task.provider, task.model
    )
    outcome = asyncio.run(run_cli(task, agent, paths, agent_config))
    latest = store.require(task_id)
    # A named session's run stopped by a shutdown (or a stop of its unit), not by the
    # user: the agent resumes it at its next start ("Auto-Recovery").
    interrupted = (
        latest.kind == TaskKind.SESSION and outcome.cancelled and not latest.cancel_requested
    )
    if interrupted:
        status = Status.FAILED
        outcome.error = "interrupted by a shutdown"
    elif outcome.cancelled or latest.cancel_requested:
        status = Status.CANCELLED
    elif outcome.error:
        status = Status.FAILED
    elif latest.asked_in_run == latest.run:
        status = Status.WAITING
    else:
        status = Status.DONE
    elapsed = time.time() - started
    task = store.update(
        task_id,
        status=status.value,
        completed_at=time.time(),
        elapsed_seconds=round(latest.elapsed_seconds + elapsed if latest.follow_up else elapsed, 1),
        error=outcome.error if status is Status.FAILED else "",
        result_preview=outcome.text.strip()[: texts.RESULT_PREVIEW],
        session_id=outcome.session_id or latest.session_id,
        num_turns=latest.num_turns + outcome.turns,
        pid=0,
        interrupted=interrupted,
    )
    if status is not Status.WAITING and not interrupted:
        report(agent, task, outcome.text, paths, agent_config)
    log.info("task %s: %s in %.1f s", task.id, status, elapsed)
    return 0


def report(
    agent: str, task: Task, result: str, paths: Paths, agent_config: config.AgentConfig
) -> bool:
    """Put the run's result envelope in the agent's inbox (once per run)."""
    store = TaskStore(paths.agent_state(agent), paths.workspace(agent))
    inbox = Spool(paths.spool(agent), served=agent_config.outboxes).inbox()
    if task.kind == TaskKind.SESSION:
        from ductor.agent.markup import button_data, extract_buttons

        text, rows = extract_buttons(result)
        buttons = tuple(
            tuple(Button(label, button_data(f"ns:{task.name}:{label}")) for label in row)
            for row in rows
        )
        return inbox.put(texts.session_envelope(agent, task, text, buttons))
    memory = store.memory_file(task.id)
    envelope = texts.result_envelope(agent, task, result, store.read_memory(task.id), memory)
    return inbox.put(envelope)


def finish(agent: str, task_id: str, paths: Paths, env: dict[str, str] | None = None) -> int:
    """The run is over (however it ended): report it if the runner could not."""
    env = dict(os.environ) if env is None else env
    store = TaskStore(paths.agent_state(agent), paths.workspace(agent))
    task = store.get(task_id)
    if task is None or task.state not in ACTIVE:
        return 0
    how = ", ".join(
        f"{name}={env[name]}"
        for name in ("SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS")
        if env.get(name)
    )
    return abandon(
        agent, task, paths, f"the task's process ended without a result ({how or 'killed'})"
    )


def abandon(agent: str, task: Task, paths: Paths, reason: str) -> int:
    """Record an active task whose runner is gone as failed (cancelled when a cancel was
    asked for) and report it."""
    try:
        agent_config = config.load_agent_config(paths, agent)
    except ConfigError:
        agent_config = config.AgentConfig()
    store = TaskStore(paths.agent_state(agent), paths.workspace(agent))
    status = Status.CANCELLED if task.cancel_requested else Status.FAILED
    ended = time.time()
    task = store.update(
        task.id,
        status=status.value,
        completed_at=ended,
        elapsed_seconds=round(ended - task.started_at, 1) if task.started_at else 0.0,
        error="" if status is Status.CANCELLED else reason,
        pid=0,
    )
    log.warning("task %s: %s (%s)", task.id, status, reason)
    report(agent, task, "", paths, agent_config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = program.parser("ductor-task", __doc__.split("\n")[0])
    sub.add_parser("run", help="run one task: AGENT:ID (escaped as in the unit)").add_argument(
        "instance"
    )
    sub.add_parser("finish", help="report a run that ended without a result").add_argument(
        "instance"
    )
    sub.add_parser(
        "control", help="start and stop the task units AGENT asked for (root, system mode)"
    ).add_argument("instance")
    args = parser.parse_args(argv)

    def command(paths: Paths) -> int:
        parts = parse_instance(args.instance)
        if args.command == "control":
            from ductor.tasks.launch import control

            control(parts[0], paths)
            return 0
        if len(parts) != 2:
            raise UsageError(f"expected AGENT:ID, got {args.instance!r}")
        if args.command == "run":
            return run_task(parts[0], parts[1], paths)
        return finish(parts[0], parts[1], paths)

    return program.run(args, command, log)


if __name__ == "__main__":
    sys.exit(main())

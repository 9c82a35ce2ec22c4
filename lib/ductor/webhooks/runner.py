"""Runs the ``cron_task`` webhooks queued in ``spool/webhooks/``, like cron jobs.

Each queued request is a fresh CLI run in the hook's task folder
(``workspace/cron_tasks/FOLDER/``) through the cron oneshot's run path, with the hook's
overrides; its result goes to the hook's chat through the outbox, with the execution
status on the envelope (delivery is the transport's business). One runner at a time per
agent (the queue's reader lock); a request claimed by a runner that died is found again
at the next start (``recover``) and run then.
"""

from __future__ import annotations

import asyncio
import logging

from ductor import config
from ductor.cron.jobs import Job, task_folder
from ductor.cron.oneshot import (
    dependency_lock,
    in_quiet_hours,
    now_utc,
    report_text,
    run_cli,
    zone,
)
from ductor.paths import Paths
from ductor.spool import Envelope, Execution, Kind, Payload, Spool
from ductor.webhooks.dispatch import HOOK_KEY, PROMPT_KEY, task_queue
from ductor.webhooks.store import Hook, HookStore

log = logging.getLogger("ductor.webhook")


def as_job(hook: Hook, prompt: str) -> Job:
    """The cron job a ``cron_task`` call runs as (the schedule is never used)."""
    return Job(
        name=hook.task_folder or hook.id,
        schedule="@yearly",
        prompt=prompt,
        title=hook.title,
        description=hook.description,
        provider=hook.provider,
        model=hook.model,
        effort=hook.effort,
        quiet_start=hook.quiet_start,
        quiet_end=hook.quiet_end,
        dependency=hook.dependency,
        transport=hook.transport,
        chat_id=hook.chat_id,
        topic_id=hook.topic_id,
    )


def run_queue(agent: str, paths: Paths) -> int:
    """Run every queued request; returns how many ran."""
    agent_config = config.load_agent_config(paths, agent)
    queue = task_queue(paths.spool(agent))
    store = HookStore(paths.agent_state(agent))
    count = 0
    try:
        queue.recover()
        while (envelope := queue.claim_next()) is not None:
            run_one(agent, paths, agent_config, store, envelope)
            queue.finish(envelope)
            count += 1
    finally:
        queue.close()
    return count


def run_one(
    agent: str,
    paths: Paths,
    agent_config: config.AgentConfig,
    store: HookStore,
    request: Envelope,
) -> None:
    metadata = request.payload.metadata
    hook_id = str(metadata.get(HOOK_KEY, ""))
    prompt = str(metadata.get(PROMPT_KEY, ""))
    try:
        hook = store.get(hook_id)
    except Exception as exc:  # removed since: say so in the chat rather than drop it
        log.warning("queued call of webhook %r: %s", hook_id, exc)
        hook = Hook(id=hook_id or "unknown", prompt_template="-")
    job = as_job(hook, prompt)
    started = now_utc()
    tz = zone(agent_config.user_timezone)
    local_hour = started.astimezone(tz).hour if tz else started.astimezone().hour
    if in_quiet_hours(hook.quiet_start, hook.quiet_end, local_hour):
        log.info(
            "webhook %s: quiet hours (%s-%s), skipped", hook.id, hook.quiet_start, hook.quiet_end
        )
        store.record_call(hook.id, last_result="skipped:quiet_hours")
        return
    folder = task_folder(paths.workspace(agent), job.name, job)
    store.record_call(hook.id, last_run_started_at=started.isoformat(), last_result="running")
    with dependency_lock(paths.agent_state(agent), hook.dependency):
        status, text, error = asyncio.run(run_cli(job, agent, paths, agent_config, folder))
        finished = now_utc()
    body = report_text(f"WEBHOOK (CRON TASK): {hook.title or hook.id}", status, text, error)
    result = Envelope.create(
        agent=agent,
        kind=Kind.WEBHOOK,
        envelope_id=f"webhook-{request.id}"[:128],  # a rerun after a crash posts it once
        routing=request.routing,
        payload=Payload(text=body, metadata={HOOK_KEY: hook.id}),
        execution=Execution(status=status, error=error or None, finished_at=finished),
    )
    Spool(paths.spool(agent), served=agent_config.outboxes).post(result)
    store.record_call(
        hook.id,
        last_result=str(status),
        last_error=error,
        last_run_finished_at=finished.isoformat(),
        duration_s=round((finished - started).total_seconds(), 1),
    )
    log.info(
        "webhook %s (cron_task): %s in %.1f s",
        hook.id,
        status,
        (finished - started).total_seconds(),
    )

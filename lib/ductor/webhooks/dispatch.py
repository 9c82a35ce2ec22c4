"""An accepted request becomes durable work before the caller hears 202.

- ``wake``: an envelope in the agent's ``spool/inbox/`` (docs/spool.md, "Injecting into a
  session"); the agent's inbox reader runs the prompt in the chat's active session and
  its answer reaches the chat. A stopped agent is started by ``ductor-resume@NAME.path``.
- ``cron_task``: an envelope in ``spool/webhooks/``, the queue of ``ductor-webhook run``
  (``ductor-webhook-run@NAME.service``, started by its ``.path`` unit; a server run in the
  foreground starts the runner as a plain process instead).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ductor import config
from ductor.cron.oneshot import chat_routing, main_user_routing
from ductor.paths import Mode, Paths
from ductor.spool import Envelope, Kind, Payload, Queue, Routing, Spool
from ductor.webhooks.store import Hook
from ductor.webhooks.store import Mode as HookMode

log = logging.getLogger(__name__)

PROMPT_KEY = "prompt"  # docs/spool.md: payload.metadata.prompt is run in the session
HOOK_KEY = "hook"
QUEUE_DIR = "webhooks"


def task_queue(spool_root: Path) -> Queue:
    """The queue of ``cron_task`` runs: ``spool/webhooks/``."""
    return Queue(spool_root / QUEUE_DIR)


def routing_for(hook: Hook, agent_config: config.AgentConfig) -> Routing:
    """The chat that created the hook, else the agent's main user."""
    origin = f"webhook {hook.id}"
    if not hook.chat_id:
        return main_user_routing(agent_config, origin)
    return chat_routing(agent_config, hook.transport, hook.chat_id, hook.topic_id, origin)


def accept(
    agent: str,
    paths: Paths,
    agent_config: config.AgentConfig,
    hook: Hook,
    prompt: str,
    *,
    env: Mapping[str, str] = os.environ,
) -> str:
    """Queue the work for ``hook`` durably; returns the envelope id."""
    routing = routing_for(hook, agent_config)
    metadata = {PROMPT_KEY: prompt, HOOK_KEY: hook.id}
    spool = paths.spool(agent)
    if hook.mode == HookMode.WAKE:
        envelope = Envelope.create(
            agent=agent, kind=Kind.WEBHOOK, routing=routing, payload=Payload(metadata=metadata)
        )
        Spool(spool).inbox().put(envelope)
        return envelope.id
    envelope = Envelope.create(
        agent=agent, kind=Kind.WEBHOOK, routing=routing, payload=Payload(metadata=metadata)
    )
    task_queue(spool).put(envelope)
    if not env.get("INVOCATION_ID"):
        start_runner(agent, paths.mode, env)
    return envelope.id


def start_runner(agent: str, mode: Mode, env: Mapping[str, str]) -> None:
    """Outside systemd: run the queue in a plain process (its own session, so it
    outlives this server)."""
    argv = [sys.executable, "-m", "ductor.webhooks.command"]
    if mode is Mode.SYSTEM:
        argv.append("--system")
    argv += ["run", agent]
    child_env = {k: v for k, v in env.items() if not k.startswith(("LISTEN_", "NOTIFY"))}
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)

"""``ductor-agent --name NAME``: the agent daemon, under systemd or in a terminal.

Under ``ductor-agent@NAME.socket`` the listening socket comes from systemd
(``LISTEN_FDS``); in the foreground the daemon binds ``agent.sock`` itself. It signals
``READY=1`` once the config is loaded, the socket is listening and the turns of the
previous run are recovered, keeps ``STATUS=`` current ("2 sessions, 1 running"), pings
the watchdog from its event loop, re-reads its config on SIGHUP and on SIGTERM stops
its CLIs and leaves their turns for the next start to recover.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ductor import __version__, config, service
from ductor.agent import rulefiles, skills, task_commands, workspace
from ductor.agent.core import Agent
from ductor.agent.inbox import InboxReader
from ductor.agent.server import AgentServer
from ductor.errors import ConfigError, TemporaryError
from ductor.notify import Notifier
from ductor.paths import Paths

log = logging.getLogger("ductor.agent")

SD_LISTEN_FDS_START = 3


def inherited_socket(env: dict[str, str] | os._Environ[str]) -> socket.socket | None:
    """The listening socket systemd passed (socket activation), if any."""
    if env.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return None
    if count > 1:
        log.warning("got %d sockets from systemd; using the first", count)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(False)
    return sock


def bind_socket(path: Path) -> socket.socket:
    """Bind ``agent.sock`` ourselves (foreground runs): directory 0700, socket 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise TemporaryError(f"{path} exists and is not a socket; remove it first")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket of a dead agent
        else:
            raise TemporaryError(f"another agent is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(64)
    sock.setblocking(False)
    return sock


DEFAULT_IDLE_EXIT = 600.0  # seconds; only with socket activation


async def exit_when_idle(
    agent: Agent, server: AgentServer, stop: asyncio.Event, idle_exit: float
) -> None:
    """Stop after ``idle_exit`` seconds without a client (a transport's listen connection
    does not count), a turn or an awaited ack: the socket stays with systemd, so the next
    connection starts the agent again."""
    idle_since = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(min(5.0, idle_exit / 2))
        # A transport's listen connection is no work: it must not keep the agent up.
        listening = set(agent.listeners.values())
        clients = [c for c in server.connections if c not in listening]
        busy = agent.lanes or clients or agent.acks
        if busy:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= idle_exit:
            log.info(
                "idle for %.0f s: exiting; the socket starts the agent on the next message",
                idle_exit,
            )
            stop.set()


async def serve(
    name: str,
    paths: Paths,
    agent_config: config.AgentConfig,
    *,
    idle_exit: float = DEFAULT_IDLE_EXIT,
) -> int:
    notifier = Notifier()
    agent = Agent(name, paths, agent_config)
    workspace.ensure_workspace(
        agent.workspace,
        agent=name,
        providers=workspace.installed_providers() or [agent_config.provider],
    )
    rulefiles.sync_rule_files(
        agent.workspace,
        agent=name,
        authenticated=rulefiles.logged_in_providers(agent.env, agent.dotenv.values())
        or [agent_config.provider],
    )
    skills.sync_skills(agent.workspace, agent.env, agent_config.skills)
    sock = inherited_socket(os.environ)
    activated = sock is not None
    if sock is None:
        sock = bind_socket(paths.agent_socket(name))
    server = AgentServer(agent, max_bytes=agent_config.limits.frame_max_bytes)
    await server.start(sock)
    report = agent.recover()
    # Task results, questions and other injections; upkeep finds lost task runs.
    inbox = asyncio.create_task(InboxReader(agent, upkeep=task_commands.hub(agent).reconcile).run())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    status_dirty = asyncio.Event()
    agent.on_change.append(status_dirty.set)

    def reload() -> None:
        notifier.reloading()
        try:
            new = config.load_agent_config(paths, name)
        except ConfigError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
        else:
            later = config.restart_needed(agent.config, new)
            agent.apply_config(new)
            server.max_bytes = new.limits.frame_max_bytes
            # ductor-skills@NAME.path reloads the agent when a skill folder changes.
            skills.sync_skills(agent.workspace, agent.env, new.skills)
            if later:
                log.warning("needs restart to apply: %s", ", ".join(later))
            log.info("config reloaded")
        notifier.ready(agent.status_line())

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    watchdog = asyncio.create_task(notifier.watchdog_loop())
    discovery = agent.start_model_discovery()
    where = "socket from systemd" if activated else str(paths.agent_socket(name))
    log.info(
        "agent %s ready on %s (ductor %s, %s/%s); %s",
        name,
        where,
        __version__,
        agent_config.provider,
        agent_config.model,
        report.summary(),
    )
    notifier.ready(agent.status_line())

    async def publish_status() -> None:
        while True:
            await status_dirty.wait()
            status_dirty.clear()
            notifier.status(agent.status_line())
            await asyncio.sleep(0.2)  # at most five STATUS= updates a second

    publisher = asyncio.create_task(publish_status())
    idler = (
        asyncio.create_task(exit_when_idle(agent, server, stop, idle_exit))
        if activated and idle_exit > 0
        else None
    )
    await stop.wait()
    if idler is not None:
        idler.cancel()
    log.info("stopping: %s", agent.status_line())
    notifier.stopping("stopping")
    server.close()
    await agent.shutdown()
    discovery.set()
    for task in (watchdog, publisher, inbox):
        task.cancel()
    if not activated:
        paths.agent_socket(name).unlink(missing_ok=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = service.parser(
        "ductor-agent", "Run one ductor agent: sessions, CLI turns and the agent socket."
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=float(os.environ.get("DUCTOR_AGENT_IDLE_EXIT", DEFAULT_IDLE_EXIT)),
        metavar="SECONDS",
        help="when socket-activated, exit after this long without work (0: never;"
        " default %(default)g, or $DUCTOR_AGENT_IDLE_EXIT)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return service.run(
        args,
        lambda svc: asyncio.run(serve(svc.name, svc.paths, svc.config, idle_exit=args.idle_exit)),
        log=log,
        what="agent",
        report_pending=True,
    )


if __name__ == "__main__":
    sys.exit(main())

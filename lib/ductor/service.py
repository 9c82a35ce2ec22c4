"""What every long-running ductor program shares: its common options, loading the
agent's config, and the one place its exceptions become exit codes (78 for a broken
configuration, so units with ``RestartPreventExitStatus=78`` do not restart in a loop)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ductor import __version__, config
from ductor import log as ductor_log
from ductor.config import pending
from ductor.errors import ConfigError, DuctorError, ExitCode, exit_code_for
from ductor.paths import Mode, Paths, resolve, validate_agent_name


@dataclass(frozen=True)
class Service:
    name: str
    paths: Paths
    config: config.AgentConfig
    args: argparse.Namespace


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every agent program has."""
    result = argparse.ArgumentParser(prog=prog, description=description)
    result.add_argument("--name", required=True, help="the agent's name, e.g. main")
    result.add_argument(
        "--system",
        dest="mode",
        action="store_const",
        const="system",
        help="use the system-wide layout (/etc/ductor, /var/lib/ductor)",
    )
    result.add_argument("--log-level", help="override the config's log_level")
    result.add_argument("--version", action="version", version=f"{prog} {__version__}")
    return result


def run(
    args: argparse.Namespace,
    body: Callable[[Service], int],
    *,
    log: logging.Logger,
    what: str,
    report_pending: bool = False,
) -> int:
    """Set up logging, load the agent's config, run ``body``; exceptions to exit codes.

    With ``report_pending`` (the agent daemon, one program per agent), each setting that
    no part of ductor acts on yet is logged once as a warning with its file and line.
    """
    ductor_log.setup(args.log_level or "INFO")
    try:
        name = validate_agent_name(args.name)
        paths = resolve(Mode(args.mode) if args.mode else None)
        agent_config = config.load_agent_config(paths, name)
        if not args.log_level:
            logging.getLogger().setLevel(agent_config.log_level)
        if report_pending:
            for inert in pending.inert_settings_of(paths, name):
                log.warning("%s", inert)
        return body(Service(name, paths, agent_config, args))
    except ConfigError as exc:
        log.error("%s", exc)
        return int(ExitCode.CONFIG)
    except DuctorError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
    except Exception as exc:
        log.critical("%s crashed: %s: %s", what, exc.__class__.__name__, exc, exc_info=True)
        return int(exit_code_for(exc))

"""Argument parsing for ``ductor`` and the one place exceptions become exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from ductor import __version__
from ductor import log as ductor_log
from ductor.cli.args import Parser
from ductor.cli.context import Context
from ductor.errors import DuctorError, ExitCode, exit_code_for
from ductor.paths import Mode, resolve

Handler = Callable[[Context, argparse.Namespace], int]
# Options of ``ductor`` itself that take a value (to find the subcommand in argv).
_VALUE_OPTIONS = frozenset({"--config-dir", "--state-dir"})


def _agent_action(verb: str) -> Handler:
    def handler(ctx: Context, args: argparse.Namespace) -> int:
        from ductor import agents

        name = agents.require(ctx.paths, args.name)
        if verb in ("enable", "start", "restart"):
            agents.sync_target(ctx.paths, ctx.manager, name)
        extra = ["--now"] if verb in ("enable", "disable") and args.now else []
        ctx.manager.systemctl(verb, *extra, agents.target(name))
        done = {"enable": "enabled", "disable": "disabled", "start": "started", "stop": "stopped"}
        what = done.get(verb, f"{verb}ed")
        if extra:
            what += " and started" if verb == "enable" else " and stopped"
        ctx.print(f"{what}: {agents.target(name)}")
        return 0

    return handler


def _agent_sync(ctx: Context, args: argparse.Namespace) -> int:
    from ductor import agents

    names = [agents.require(ctx.paths, args.name)] if args.name else agents.list_agents(ctx.paths)
    for name in names:
        changed = agents.sync_target(ctx.paths, ctx.manager, name)
        units = agents.wanted_units(ctx.paths, ctx.manager, name)
        ctx.print(
            f"{agents.target(name)}: wants {', '.join(units) or 'nothing yet'}"
            + (" (updated)" if changed else "")
        )
    return 0


def _agent_reload(ctx: Context, args: argparse.Namespace) -> int:
    """Validate the config, then apply it: re-sync the target and reload what can."""
    from ductor import agents, config

    name = agents.require(ctx.paths, args.name)
    problems = config.validate_all(ctx.paths, name)
    if problems:
        for problem in problems:
            logging.getLogger("ductor").error("config not applied: %s", problem)
        raise problems[0]
    agents.sync_target(ctx.paths, ctx.manager, name)
    from ductor.cron.sync import sync_jobs

    try:
        sync_jobs(ctx.paths, ctx.manager, name)
    except DuctorError as exc:  # the config is applied; the timers can be synced later
        logging.getLogger("ductor").warning(
            "cron timers of %s not synced (%s); run `ductor cron sync %s`", name, exc, name
        )
    reloaded = agents.reloadable_units(ctx.manager, name)
    if reloaded:
        ctx.manager.systemctl("reload", *reloaded)
    ctx.print(f"config of {name} is valid; reloaded: {', '.join(reloaded) or 'nothing running'}")
    return 0


def _agent_remove(ctx: Context, args: argparse.Namespace) -> int:
    from ductor import agents

    removed = agents.remove(ctx.paths, ctx.manager, args.name, purge=args.purge)
    for path in removed:
        ctx.print(f"removed {path}")
    if not args.purge:
        ctx.print(
            f"kept state and workspace: {ctx.paths.agent_state(args.name)} (delete with --purge)"
        )
    return 0


def subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if any."""
    words = iter(argv)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``ductor``: every subcommand is listed, but only ``command`` (None:
    none, for the overview and --help) gets its arguments and has its module imported,
    so that ``ductor chat`` does not pay for the imports of ``ductor init`` or ``cron``."""
    parser = Parser(
        prog="ductor",
        description="Run AI coding CLIs (Claude Code, Codex, Gemini) as chat agents on systemd.",
    )
    parser.add_argument("--version", action="version", version=f"ductor {__version__}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--user",
        dest="mode",
        action="store_const",
        const=Mode.USER,
        help="act on the user's agents (default)",
    )
    scope.add_argument(
        "--system",
        dest="mode",
        action="store_const",
        const=Mode.SYSTEM,
        help="act on the system-wide agents (install.sh --system)",
    )
    parser.add_argument("--config-dir", type=Path, help="override the configuration directory")
    parser.add_argument("--state-dir", type=Path, help="override the state directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The actions make Parsers too (add_subparsers uses the parent's class).
    generic = cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub)

    def wanted(name: str, text: str) -> bool:
        if name == command:
            return True
        sub.add_parser(name, help=text)  # listed in --help, its arguments left out
        return False

    if command is None:
        from ductor.cli import status

        # Without a command: the overview (what ductor is, the agents, the next step).
        parser.set_defaults(handler=status.run_overview)

    if wanted("init", text := "create an agent (asks on a terminal)"):
        _add_init(generic, text)
    if wanted("agent", text := "list, add, remove, enable, start, stop agents"):
        _add_agent(generic, text)
    if wanted("status", text := "every agent's units: state, since, restarts, memory"):
        from ductor.cli import status

        p = sub.add_parser("status", help=text)
        p.add_argument("name", nargs="?")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=status.run_status)
    if wanted("logs", text := "the agent's journal"):
        from ductor.cli import logs

        p = sub.add_parser("logs", help=text)
        p.add_argument("name")
        p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("-p", "--priority", help="e.g. err, warning, info (journalctl -p)")
        p.add_argument("--since", help="e.g. '1 hour ago', today (journalctl --since)")
        p.add_argument("-n", "--lines", type=int)
        p.set_defaults(handler=logs.run)
    if wanted("chat", text := "talk to an agent from the terminal"):
        from ductor.cli import chat

        p = sub.add_parser(
            "chat",
            help=text,
            description="Talk to an agent over its socket: each line is a message, the"
            " answer streams in. Ctrl-C interrupts a turn; /quit or Ctrl-D leaves.",
        )
        chat.add_arguments(p)
        p.set_defaults(handler=chat.run)
    if wanted("cron", "scheduled jobs of an agent (systemd timers)"):
        from ductor.cli import cron

        cron.register(generic)
    if wanted("outbox", "list, show, re-send or drop what waits in an agent's outbox"):
        from ductor.cli import outbox

        outbox.register(generic)
    if wanted("webhook", "HTTP endpoints that wake the agent or run a task"):
        from ductor.cli import webhook

        webhook.register(generic)
    if wanted("doctor", text := "check the installation and say how to fix problems"):
        from ductor.cli import doctor

        p = sub.add_parser("doctor", help=text)
        p.add_argument("name", nargs="?")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=doctor.run)
    if wanted("migrate", text := "bring a ~/.ductor of the original ductor across"):
        from ductor.migrate import command as migrate

        p = sub.add_parser("migrate", help=text, description="See docs/migrate.md.")
        migrate.add_arguments(p)
        p.set_defaults(handler=migrate.run)
    return parser


def _add_init(sub: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    from ductor.cli import init

    p = sub.add_parser(
        "init", help=text, description="Create an agent: config, credentials, workspace, units."
    )
    init.add_arguments(p, default_name="main")
    p.set_defaults(handler=init.run)


def _add_agent(sub: argparse._SubParsersAction[argparse.ArgumentParser], text: str) -> None:
    from ductor.cli import init, status

    p = sub.add_parser("agent", help=text)
    agent_sub = p.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    q = agent_sub.add_parser("list", help="every agent with its state")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(handler=status.run_list)
    q = agent_sub.add_parser("add", help="create an agent (like init)")
    init.add_arguments(q, default_name=None)
    q.set_defaults(handler=init.run)
    q = agent_sub.add_parser("remove", help="stop and delete an agent (state kept)")
    q.add_argument("name")
    q.add_argument("--purge", action="store_true", help="also delete state and workspace")
    q.set_defaults(handler=_agent_remove)
    for verb, action in (
        ("enable", "start the agent at boot"),
        ("disable", "do not start the agent at boot"),
        ("start", "turn the agent on now"),
        ("stop", "turn the agent off now"),
        ("restart", "restart all of the agent's units"),
    ):
        q = agent_sub.add_parser(verb, help=action)
        q.add_argument("name")
        if verb in ("enable", "disable"):
            q.add_argument(
                "--now",
                action="store_true",
                help="also start it now" if verb == "enable" else "also stop it now",
            )
        q.set_defaults(handler=_agent_action(verb))
    q = agent_sub.add_parser("reload", help="validate the config and apply it")
    q.add_argument("name")
    q.set_defaults(handler=_agent_reload)
    q = agent_sub.add_parser("sync", help="re-derive which units each agent target wants")
    q.add_argument("name", nargs="?")
    q.set_defaults(handler=_agent_sync)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(subcommand(words))
    args = parser.parse_args(words)
    ductor_log.setup("DEBUG" if args.verbose else "WARNING")
    try:
        paths = resolve(args.mode, config_dir=args.config_dir, state_dir=args.state_dir)
        ctx = Context(paths=paths, json=getattr(args, "json", False))
        handler: Handler = args.handler
        return int(handler(ctx, args))
    except DuctorError as exc:
        print(f"ductor: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("ductor: interrupted", file=sys.stderr)
        return int(ExitCode.FAILURE)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:  # the last line of defence: no traceback for the user
        logging.getLogger("ductor").debug("unexpected error", exc_info=True)
        print(
            f"ductor: internal error: {exc.__class__.__name__}: {exc} (run with -v for details)",
            file=sys.stderr,
        )
        return int(exit_code_for(exc))

"""``ductor migrate [--from ~/.ductor] [--dry-run] [--only AGENT]``."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from ductor import atomic
from ductor.cli.context import Context
from ductor.migrate import apply, plan, report
from ductor.migrate.source import OriginalHome

REPORT_FILE = "migrate-report.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="the original's home (default: $DUCTOR_HOME, else ~/.ductor)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    parser.add_argument("--only", metavar="AGENT", help="migrate only this agent")


def default_source() -> Path:
    configured = os.environ.get("DUCTOR_HOME")
    return Path(configured) if configured else Path.home() / ".ductor"


def run(ctx: Context, args: argparse.Namespace) -> int:
    source = (args.source or default_source()).expanduser().absolute()
    home = OriginalHome(source)
    home.require_stopped()
    built = plan.build(home, ctx.paths, only=args.only, env=os.environ)
    text = report.render(built, dry_run=args.dry_run)
    ctx.print(text)
    if args.dry_run:
        return 0
    manager = ctx.manager
    problem = manager.problem()
    outcomes: dict[str, apply.Outcome] = {}
    for agent in built.agents:
        if agent.conflict is None:
            target = None if problem else manager
            outcomes[agent.name] = apply.execute(agent, ctx.paths, target, os.environ)
            if problem:
                outcomes[agent.name].units.append(
                    f"not synced ({problem}); later: `ductor agent sync {agent.name}`"
                    f" and `ductor cron sync {agent.name}`"
                )
    done = report.render_outcome(outcomes)
    ctx.print(done)
    file = ctx.paths.state_dir / REPORT_FILE
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    atomic.make_directories(file.parent)
    atomic.write_text(file, f"{stamp}\n{text}\n{done}")
    ctx.print(f"report: {file}")
    names = [name for name in outcomes]
    if names:
        ctx.print(
            "next: check with `ductor doctor`, then `ductor agent enable --now NAME` for "
            + ", ".join(names)
            + " (docs/migrate.md says how to go back)"
        )
    conflicts = [a.name for a in built.agents if a.conflict is not None]
    return 1 if conflicts else 0

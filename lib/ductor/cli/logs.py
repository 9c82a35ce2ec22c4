"""``ductor logs NAME``: journalctl over every unit of the agent."""

from __future__ import annotations

import argparse
import os
import shutil

from ductor import agents
from ductor.cli.context import Context
from ductor.errors import DuctorError
from ductor.paths import Mode
from ductor.units import instance


def journal_argv(ctx: Context, args: argparse.Namespace) -> list[str]:
    inst = instance(args.name)
    # --user-unit, not --user --unit: it also finds user units of system accounts
    # (root included), whose messages journald keeps in the system journal.
    match = "--user-unit" if ctx.mode is Mode.USER else "--unit"
    argv = [
        "journalctl",
        "--no-pager" if not args.follow else "--follow",
        "-o",
        "short-iso",
        f"{match}=ductor@{inst}.target",
        f"{match}=ductor-*@{inst}.*",
        f"{match}=ductor-*@{inst}:*",
    ]
    if args.priority:
        argv.append(f"--priority={args.priority}")
    if args.since:
        argv.append(f"--since={args.since}")
    if args.lines is not None:
        argv.append(f"--lines={args.lines}")
    return argv


def run(ctx: Context, args: argparse.Namespace) -> int:
    agents.require(ctx.paths, args.name)
    argv = journal_argv(ctx, args)
    binary = shutil.which(argv[0])
    if binary is None:
        raise DuctorError("journalctl is not installed; logs live in the systemd journal")
    os.execv(binary, argv)  # noqa: S606 - replaces us with journalctl, argv list only

"""What the oneshot programs (``ductor-cron``, ``ductor-webhook``, ``ductor-task``) share:
the ``--system`` option beside their subcommands, logging, and the one place their
exceptions become exit codes (78 for a broken configuration).

Stdlib and the base layer only: a oneshot's start stays fast.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from ductor import log as ductor_log
from ductor.errors import DuctorError
from ductor.paths import Mode, Paths, resolve


def parser(
    prog: str, description: str
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """The program's parser (with ``--system``) and its required subcommands (``command``)."""
    result = argparse.ArgumentParser(prog=prog, description=description)
    result.add_argument("--system", dest="mode", action="store_const", const="system")
    return result, result.add_subparsers(dest="command", required=True)


def run(args: argparse.Namespace, body: Callable[[Paths], int], log: logging.Logger) -> int:
    """Set up logging and run ``body`` with the layout ``--system`` chose; a DuctorError is
    logged as one line and becomes its exit code."""
    ductor_log.setup("INFO")
    try:
        return body(resolve(Mode(args.mode) if args.mode else None))
    except DuctorError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)

"""The argument parser every ``ductor`` command uses: whole option names only, and no
secret ever taken from argv or repeated in an error.

argv is visible to every user of the machine (``ps``, ``/proc/PID/cmdline``). With
argparse's default abbreviations, ``--telegram-token TOKEN`` would be read as
``--telegram-token-file TOKEN`` and the error would print the token back.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

# A Telegram bot token (123456789:AAE...), wherever it shows up in an error message.
_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")


class Parser(argparse.ArgumentParser):
    """``allow_abbrev=False`` (subcommands inherit the class, so every level has it) and
    errors with anything that looks like a token masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        super().error(_TOKEN.sub("[hidden]", message))


class RefuseSecret(argparse.Action):
    """An option that would carry a secret in argv: refused, its value never repeated."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, instead: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS)
        self.instead = instead

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"{option_string} is refused: a secret given as an argument can be read by every"
            f" user of this machine (ps shows argv). {self.instead}"
        )


def refuse_secret(parser: argparse.ArgumentParser, *options: str, instead: str) -> None:
    """Register ``options`` as secret-carrying options that are always refused."""
    parser.add_argument(*options, action=RefuseSecret, instead=instead)


class RecordActions:
    """The actions of a command over one agent's records (``ductor cron``, ``ductor
    webhook``): ``ductor COMMAND ACTION AGENT [RECORD] [--json] ...``."""

    def __init__(
        self, command: argparse.ArgumentParser, dest: str, *, record: str, metavar: str
    ) -> None:
        self.actions = command.add_subparsers(dest=dest, metavar="ACTION", required=True)
        self.record = record  # the argument naming one record ("name", "hook")
        self.metavar = metavar

    def add(
        self, name: str, text: str, handler: Any, *, of_record: bool = True
    ) -> argparse.ArgumentParser:
        """An action taking the agent, one record unless ``of_record`` is false, and --json."""
        parser = self.actions.add_parser(name, help=text, description=text)
        parser.add_argument("agent", metavar="AGENT")
        if of_record:
            parser.add_argument(self.record, metavar=self.metavar)
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=handler)
        return parser


def add_enable_switch(parser: argparse.ArgumentParser) -> None:
    """``--enable`` / ``--disable`` setting ``enabled`` (None when neither is given)."""
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_const", const=True)
    state.add_argument("--disable", dest="enabled", action="store_const", const=False)

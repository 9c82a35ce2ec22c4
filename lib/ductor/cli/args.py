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

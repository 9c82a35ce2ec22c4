"""The agent's ``.env``: secrets the user gives the CLIs (API keys, tokens).

The syntax is the common dotenv one::

    # a comment
    export GITHUB_TOKEN=ghp_xxx          # inline comment after an unquoted value
    GREETING="two\\nlines, with \\"quotes\\""
    RAW='single quotes: taken as written'

Double-quoted values understand ``\\n``, ``\\t``, ``\\r``, ``\\"`` and ``\\\\`` and may
span lines; single-quoted values are literal. Lines that are not ``NAME=value`` are
skipped and reported by line number, never by content. :class:`DotEnv` re-reads the file
when it changes, refuses one that others can read, and registers every value with the
log masker.

Where it is: ``CONFIG_DIR/credentials/AGENT/.env``. A unit that runs as another account
than the file's owner (system mode: the ``ductor`` account, root's file) gets it from the
manager instead, as ``LoadCredential=dotenv:...``; :func:`agent_dotenv` prefers that
copy (``$CREDENTIALS_DIRECTORY/dotenv``), which systemd already made private to the unit.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from ductor.log import register_secret
from ductor.paths import Paths

log = logging.getLogger(__name__)

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=([ \t]*)(.*)\Z", re.DOTALL)
_INLINE_COMMENT = re.compile(r"\s+#")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
DOTENV_FILE = ".env"
DOTENV_CREDENTIAL = "dotenv"  # its name in $CREDENTIALS_DIRECTORY (LoadCredential=)


def _closing_quote(body: str, quote: str) -> int | None:
    """Index of the quote that ends ``body`` (which starts after the opening quote)."""
    if quote == "'":
        end = body.find("'")
        return end if end >= 0 else None
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index
        index += 1
    return None


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value, flags=re.S)


def parse_dotenv_with_problems(text: str) -> tuple[dict[str, str], list[int]]:
    """The variables in ``text`` and the numbers of the lines that could not be read."""
    values: dict[str, str] = {}
    problems: list[int] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if not match:
            problems.append(number)
            continue
        name, space, rest = match.groups()
        if rest[:1] in ("'", '"'):
            quote, body = rest[0], rest[1:]
            end = _closing_quote(body, quote)
            while end is None and index < len(lines):
                body += "\n" + lines[index]
                index += 1
                end = _closing_quote(body, quote)
            if end is None:
                problems.append(number)
                continue
            after = body[end + 1 :].strip()
            if after and not after.startswith("#"):
                problems.append(number)
                continue
            value = body[:end]
            values[name] = _unescape(value) if quote == '"' else value
        elif rest.startswith("#") and space:
            values[name] = ""  # `NAME= # comment`: an empty value
        else:
            values[name] = _INLINE_COMMENT.split(rest, maxsplit=1)[0].strip()
    return values, problems


def parse_dotenv(text: str) -> dict[str, str]:
    """The variables in ``text``; unreadable lines are skipped."""
    return parse_dotenv_with_problems(text)[0]


class DotEnv:
    """One ``.env`` file, re-read whenever it changes on disk.

    :meth:`values` costs one ``stat`` when nothing changed. The file must belong to us
    and be unreadable for group and others (``chmod 600``); otherwise it is ignored
    with an error in the log, since secrets others can read are no longer secret.
    """

    def __init__(self, file: Path, *, from_manager: bool = False) -> None:
        self.file = file
        # A credential systemd handed to the unit: root's file, readable through an ACL.
        self.from_manager = from_manager
        self._stamp: tuple[int, ...] | None = None
        self._values: dict[str, str] = {}

    @staticmethod
    def _stamp_of(info: os.stat_result) -> tuple[int, ...]:
        # Mode and owner are part of it so that a chmod 600 takes effect without an edit.
        return (info.st_mtime_ns, info.st_size, info.st_ino, info.st_mode, info.st_uid)

    def values(self) -> dict[str, str]:
        """The current variables (a copy); {} when the file is missing or refused."""
        try:
            info = self.file.stat()
        except FileNotFoundError:
            self._stamp, self._values = None, {}
            return {}
        except OSError as exc:
            self._stamp = None
            self._refuse(f"cannot read it ({exc.strerror})")
            return {}
        if self._stamp_of(info) != self._stamp:
            self._load(info)
        return dict(self._values)

    def _refuse(self, problem: str) -> None:
        self._values = {}
        log.error("%s: %s; no secrets loaded from it", self.file, problem)

    def _load(self, info: os.stat_result) -> None:
        # The stamp is kept even when the file is refused: the error is logged once per
        # change of the file, not on every call.
        self._values = {}
        self._stamp = self._stamp_of(info)
        if self._refused(info):  # checked before opening: a FIFO would block the open
            return
        try:
            with open(self.file, "rb") as stream:
                info = os.fstat(stream.fileno())
                self._stamp = self._stamp_of(info)
                if self._refused(info):  # replaced between the stat and the open
                    return
                data = stream.read()
        except OSError as exc:
            self._refuse(f"cannot read it ({exc.strerror})")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._refuse(f"not UTF-8 (byte {exc.start})")
            return
        values, problems = parse_dotenv_with_problems(text)
        register_secret(*values.values())
        if problems:
            log.warning(
                "%s: skipped line%s %s (expected NAME=value)",
                self.file,
                "s" if len(problems) > 1 else "",
                ", ".join(map(str, problems)),
            )
        self._values = values

    def _refused(self, info: os.stat_result) -> bool:
        if not stat.S_ISREG(info.st_mode):
            self._refuse("not a regular file")
        elif self.from_manager:
            return False
        elif info.st_uid != os.geteuid():
            self._refuse(f"owned by uid {info.st_uid}, not by us (uid {os.geteuid()})")
        elif info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            self._refuse(f"readable by others (mode {mode:04o}); run: chmod 600 {self.file}")
        else:
            return False
        return True


def dotenv_file(paths: Paths, agent: str) -> Path:
    """Where the user keeps the agent's ``.env``."""
    return paths.agent_credentials(agent) / DOTENV_FILE


def agent_dotenv(paths: Paths, agent: str) -> DotEnv:
    """The agent's ``.env`` as this process can read it: the copy the manager loaded for
    the unit (``LoadCredential=``) where there is one, else the user's file."""
    if paths.credentials_dir is not None:
        loaded = paths.credentials_dir / DOTENV_CREDENTIAL
        if loaded.exists():
            return DotEnv(loaded, from_manager=True)
    return DotEnv(dotenv_file(paths, agent))

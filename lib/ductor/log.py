"""Logging to stderr: journald priority prefixes under systemd, readable on a terminal.

Under journald (``$JOURNAL_STREAM`` names our stderr) every line carries its ``<N>``
priority prefix, so ``journalctl -p err`` works; multi-line records (tracebacks) get the
prefix on each line. On a terminal the format is ``HH:MM:SS LEVEL name: message``.
Registered secrets are masked in every record, whatever logs them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TextIO

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_MASK = "***"
_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Mask these values in every log line from now on (short values are ignored)."""
    for value in values:
        if value and len(value) >= 6:
            _secrets.add(value)


def mask(text: str, extra: Iterable[str] = ()) -> str:
    for secret in sorted({*_secrets, *(s for s in extra if s)}, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _SYSLOG_PRIORITY[level]
    return _SYSLOG_PRIORITY[logging.DEBUG]


def stream_is_journal(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal socket systemd connected (sd_journal_stream)."""
    value = (env if env is not None else os.environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return st.st_dev == dev and st.st_ino == ino


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = mask(super().format(record))
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class TerminalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def setup(
    level: str | int = "INFO", *, stream: TextIO | None = None, journal: bool | None = None
) -> logging.Logger:
    """Configure the root logger once per process; returns the ``ductor`` logger."""
    stream = stream or sys.stderr
    if journal is None:
        journal = stream_is_journal(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JournalFormatter("%(name)s: %(message)s") if journal else TerminalFormatter()
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return logging.getLogger("ductor")

"""The vocabulary of a queue: states, retry policy, listing entries, recovery reports."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from ductor.spool.envelope import Envelope

RESCAN_INTERVAL = 30.0
"""Seconds a reader waits at most between two scans of new/, wake-ups or not."""
STALE_TEMP_AFTER = 3600.0
"""Seconds after which a file in tmp/ belongs to a dead writer and is removed."""
DONE_RETENTION = timedelta(days=7)
"""How long done/ keeps delivered envelopes by default (for ``ductor outbox``)."""


class State(StrEnum):
    """Where an envelope is; the value is the directory name."""

    NEW = "new"  # waiting for delivery (maybe not before next_attempt_at)
    CUR = "cur"  # claimed by a reader, being delivered
    DONE = "done"  # delivered (or finished without anything to send)
    FAILED = "failed"  # gave up after the last attempt; `ductor outbox resend` retries
    BAD = "bad"  # not a readable envelope; kept with NAME.reason, never deleted


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: ``base_delay * 2**(attempt-1)``, capped, ±jitter."""

    max_attempts: int = 12
    base_delay: float = 10.0
    max_delay: float = 3600.0
    jitter: float = 0.2  # fraction of the delay, both ways

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first)."""
        exponent = min(max(attempt - 1, 0), 62)
        delay = min(self.max_delay, self.base_delay * 2.0**exponent)
        spread = (rng or random).uniform(-self.jitter, self.jitter)  # jitter, not crypto
        return max(0.0, delay * (1.0 + spread))


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Entry:
    """An envelope file as ``ductor outbox`` shows it."""

    id: str
    state: State
    path: Path
    envelope: Envelope | None  # None when the file is not a readable envelope
    problem: str | None = None  # why it is in bad/, or why it cannot be read


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Queue.recover` did."""

    returned: tuple[str, ...] = ()  # cur/ -> new/: claimed but never delivered
    completed: tuple[str, ...] = ()  # cur/ -> done/: delivery already recorded
    moved_aside: tuple[str, ...] = ()  # cur/ -> bad/
    removed_temp_files: int = 0
    other_reader_active: bool = False  # cur/ left alone: a live reader may own it

"""When a CLI turn has run too long: staged warnings, extensions while output flows.

A turn gets a deadline. Before it, warnings fire at ``warning_intervals`` seconds ahead
("Timeout in 1 min", "Timeout in 10 s"). At the deadline a turn that printed a line
within the last ``activity_window`` seconds is still working, not stuck: its deadline
moves by ``activity_extension`` seconds, at most ``max_extensions`` times, and the
warnings are armed again for the new deadline. Otherwise the turn has expired and the
runner stops it.

:class:`TimeoutController` is pure bookkeeping over an injectable clock; the runner polls
it and acts on the notices.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ductor.config import TimeoutsConfig

DEFAULT_ACTIVITY_WINDOW = 30.0


class NoticeKind(StrEnum):
    WARNING = "warning"  # the deadline is near
    EXTENDED = "extended"  # the deadline moved because output kept flowing
    EXPIRED = "expired"  # the deadline passed: stop the turn


@dataclass(frozen=True)
class TimeoutPolicy:
    timeout: float  # seconds before the first deadline
    warning_intervals: tuple[float, ...] = (60.0, 10.0)  # seconds before each deadline
    extend_on_activity: bool = True
    activity_extension: float = 120.0
    max_extensions: int = 3
    activity_window: float = DEFAULT_ACTIVITY_WINDOW  # "recent output" means this recent

    @classmethod
    def from_config(cls, timeouts: TimeoutsConfig, timeout: float) -> TimeoutPolicy:
        """The policy for one turn: ``timeout`` (which of the configured base timeouts
        applies depends on the turn) with the configured warnings and extensions."""
        return cls(
            timeout=timeout,
            warning_intervals=tuple(timeouts.warning_intervals),
            extend_on_activity=timeouts.extend_on_activity,
            activity_extension=timeouts.activity_extension,
            max_extensions=timeouts.max_extensions,
        )


@dataclass(frozen=True)
class TimeoutNotice:
    kind: NoticeKind
    remaining: float  # seconds left until the (new) deadline; 0 when expired
    total: float  # seconds the turn is allowed in all, extensions included
    extensions: int  # extensions used so far
    extensions_left: int = 0
    added: float = 0.0  # seconds an extension added

    @property
    def text(self) -> str:
        """One line for the user."""
        if self.kind is NoticeKind.WARNING:
            return f"Timeout in {format_duration(self.remaining)}"
        if self.kind is NoticeKind.EXTENDED:
            if self.extensions_left == 0:
                left = "no extensions left"
            elif self.extensions_left == 1:
                left = "1 extension left"
            else:
                left = f"{self.extensions_left} extensions left"
            return f"Timeout extended (+{format_duration(self.added)}, {left})"
        return f"Timed out after {format_duration(self.total)}"


def format_duration(seconds: float) -> str:
    """``"10 s"``, ``"1 min"``, ``"2 min 30 s"``; rounded to the second."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min" if rest == 0 else f"{minutes} min {rest} s"


class TimeoutController:
    """The deadline of one turn. Call :meth:`start` when the process starts,
    :meth:`activity` for every line of output and :meth:`poll` at :meth:`next_check`."""

    def __init__(self, policy: TimeoutPolicy, now: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._now = now
        self._started: float | None = None
        self._deadline = math.inf
        self._last_activity = -math.inf
        self._pending: list[float] = []  # warning times not yet fired, earliest first
        self.extensions = 0
        self.expired = False

    def start(self) -> None:
        self._started = self._now()
        self._deadline = self._started + self.policy.timeout
        self._last_activity = -math.inf
        self.extensions = 0
        self.expired = False
        self._arm_warnings()

    def activity(self) -> None:
        """The process printed something: it is working."""
        self._last_activity = self._now()

    @property
    def deadline(self) -> float:
        return self._deadline

    @property
    def total(self) -> float:
        """Seconds the turn is allowed so far, extensions included."""
        return 0.0 if self._started is None else self._deadline - self._started

    def poll(self) -> list[TimeoutNotice]:
        """The notices that became due since the last poll (at most one)."""
        if self._started is None or self.expired:
            return []
        now = self._now()
        if now >= self._deadline:
            return [self._at_deadline(now)]
        due = [at for at in self._pending if at <= now]
        if not due:
            return []
        # A late poll may find several warnings due; only the most urgent one is news.
        self._pending = [at for at in self._pending if at > now]
        return [
            TimeoutNotice(
                NoticeKind.WARNING,
                remaining=max(0.0, self._deadline - now),
                total=self.total,
                extensions=self.extensions,
                extensions_left=self._extensions_left,
            )
        ]

    def next_check(self) -> float:
        """Seconds until the next warning or the deadline; ``math.inf`` when nothing is
        due any more (not started, or expired)."""
        if self._started is None or self.expired:
            return math.inf
        upcoming = min([*self._pending, self._deadline])
        return max(0.0, upcoming - self._now())

    @property
    def _extensions_left(self) -> int:
        if not self.policy.extend_on_activity:
            return 0
        return max(0, self.policy.max_extensions - self.extensions)

    def _at_deadline(self, now: float) -> TimeoutNotice:
        recent = now - self._last_activity <= self.policy.activity_window
        if recent and self._extensions_left > 0:
            self.extensions += 1
            self._deadline += self.policy.activity_extension
            self._arm_warnings()
            return TimeoutNotice(
                NoticeKind.EXTENDED,
                remaining=max(0.0, self._deadline - now),
                total=self.total,
                extensions=self.extensions,
                extensions_left=self._extensions_left,
                added=self.policy.activity_extension,
            )
        self.expired = True
        self._pending = []
        return TimeoutNotice(
            NoticeKind.EXPIRED, remaining=0.0, total=self.total, extensions=self.extensions
        )

    def _arm_warnings(self) -> None:
        """Warnings for the current deadline that still lie ahead: one that would have
        fired before now (a 60 s warning on a 30 s timeout) would only mislead."""
        now = self._now()
        times = {self._deadline - ahead for ahead in self.policy.warning_intervals if ahead > 0}
        self._pending = sorted(at for at in times if at > now)

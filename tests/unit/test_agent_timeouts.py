"""The timeout controller: staged warnings, extensions while output flows, expiry."""

from __future__ import annotations

import math

import pytest

from ductor.agent.timeouts import (
    NoticeKind,
    TimeoutController,
    TimeoutNotice,
    TimeoutPolicy,
    format_duration,
)
from ductor.config import TimeoutsConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def started(policy: TimeoutPolicy) -> tuple[TimeoutController, Clock]:
    clock = Clock()
    controller = TimeoutController(policy, now=clock)
    controller.start()
    return controller, clock


def run_until(controller: TimeoutController, clock: Clock, seconds: float) -> list[TimeoutNotice]:
    """Poll every half second for ``seconds``, like the runner's watcher would."""
    notices: list[TimeoutNotice] = []
    for _ in range(round(seconds * 2)):
        clock.advance(0.5)
        notices += controller.poll()
    return notices


def test_warnings_fire_once_each_before_the_deadline_and_then_it_expires() -> None:
    controller, clock = started(TimeoutPolicy(timeout=600, extend_on_activity=False))

    notices = run_until(controller, clock, 600)

    assert [(n.kind, n.text) for n in notices] == [
        (NoticeKind.WARNING, "Timeout in 1 min"),
        (NoticeKind.WARNING, "Timeout in 10 s"),
        (NoticeKind.EXPIRED, "Timed out after 10 min"),
    ]
    assert notices[0].remaining == pytest.approx(60)
    assert notices[0].total == 600


def test_nothing_is_due_after_expiry() -> None:
    controller, clock = started(TimeoutPolicy(timeout=5, warning_intervals=()))
    run_until(controller, clock, 5)

    clock.advance(100)

    assert controller.poll() == []
    assert controller.next_check() == math.inf


def test_deadline_with_recent_output_is_extended_and_the_warnings_come_again() -> None:
    policy = TimeoutPolicy(timeout=100, warning_intervals=(60, 10), activity_extension=120)
    controller, clock = started(policy)

    run_until(controller, clock, 95)
    controller.activity()
    notices = run_until(controller, clock, 5 + 119.5)  # the new deadline is at 220 s

    extended, *warnings = notices
    assert extended.kind is NoticeKind.EXTENDED
    assert extended.text == "Timeout extended (+2 min, 2 extensions left)"
    assert extended.total == 220
    assert [w.text for w in warnings] == ["Timeout in 1 min", "Timeout in 10 s"]


def test_deadline_without_recent_output_expires_even_with_extensions_left() -> None:
    controller, clock = started(TimeoutPolicy(timeout=100, warning_intervals=()))
    clock.advance(50)
    controller.activity()  # 50 s before the deadline: outside the 30 s window

    notices = run_until(controller, clock, 50)

    assert [n.kind for n in notices] == [NoticeKind.EXPIRED]
    assert notices[0].text == "Timed out after 1 min 40 s"


def test_extensions_stop_at_the_maximum_even_while_output_flows() -> None:
    policy = TimeoutPolicy(
        timeout=10, warning_intervals=(), activity_extension=10, max_extensions=2
    )
    controller, clock = started(policy)

    notices: list[TimeoutNotice] = []
    for _ in range(100):
        clock.advance(0.5)
        controller.activity()
        notices += controller.poll()

    assert [n.kind for n in notices] == [
        NoticeKind.EXTENDED,
        NoticeKind.EXTENDED,
        NoticeKind.EXPIRED,
    ]
    assert [n.text for n in notices[:2]] == [
        "Timeout extended (+10 s, 1 extension left)",
        "Timeout extended (+10 s, no extensions left)",
    ]
    assert notices[-1].text == "Timed out after 30 s"
    assert notices[-1].extensions == 2


def test_extension_is_off_when_the_policy_says_so() -> None:
    controller, clock = started(
        TimeoutPolicy(timeout=10, warning_intervals=(), extend_on_activity=False)
    )

    clock.advance(9.5)
    controller.activity()
    clock.advance(0.5)

    assert [n.kind for n in controller.poll()] == [NoticeKind.EXPIRED]


def test_a_warning_longer_than_the_timeout_is_never_shown() -> None:
    controller, clock = started(TimeoutPolicy(timeout=30, extend_on_activity=False))

    notices = run_until(controller, clock, 30)

    assert [n.text for n in notices] == ["Timeout in 10 s", "Timed out after 30 s"]


def test_a_late_poll_reports_only_the_most_urgent_warning() -> None:
    controller, clock = started(TimeoutPolicy(timeout=600))

    clock.advance(595)
    (notice,) = controller.poll()

    assert notice.text == "Timeout in 5 s"
    assert controller.poll() == []


def test_next_check_counts_down_to_the_next_warning_then_the_deadline() -> None:
    controller, clock = started(TimeoutPolicy(timeout=100, warning_intervals=(60,)))

    assert controller.next_check() == 40
    clock.advance(40)
    controller.poll()
    assert controller.next_check() == 60


def test_nothing_is_due_before_start() -> None:
    controller = TimeoutController(TimeoutPolicy(timeout=1), now=Clock())

    assert controller.poll() == []
    assert controller.next_check() == math.inf


def test_policy_from_config_takes_the_configured_warnings_and_extensions() -> None:
    timeouts = TimeoutsConfig(
        warning_intervals=(120.0,), extend_on_activity=False, max_extensions=1
    )

    policy = TimeoutPolicy.from_config(timeouts, timeouts.background)

    assert policy == TimeoutPolicy(
        timeout=1800.0,
        warning_intervals=(120.0,),
        extend_on_activity=False,
        activity_extension=120.0,
        max_extensions=1,
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (9.6, "10 s"),
        (25, "25 s"),
        (59.9, "1 min"),
        (60, "1 min"),
        (90, "1 min 30 s"),
        (150, "2 min 30 s"),
        (-1, "0 s"),
    ],
)
def test_durations_read_as_minutes_and_seconds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text

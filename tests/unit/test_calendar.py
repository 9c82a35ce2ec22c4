"""Cron → OnCalendar translation; the property test checks systemd against croniter."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from ductor.calendar import CronSyntaxError, describe, parse_cron, to_oncalendar
from ductor.errors import UsageError

# --- unit cases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "lines"),
    [
        ("* * * * *", ["*-*-* *:*:00"]),
        ("0 8 * * *", ["*-*-* 08:00:00"]),
        ("5,35 8,20 * * *", ["*-*-* 08,20:05,35:00"]),
        ("0 9-17 * * *", ["*-*-* 09..17:00:00"]),
        ("*/15 * * * *", ["*-*-* *:00,15,30,45:00"]),
        ("10/20 * * * *", ["*-*-* *:10,30,50:00"]),
        ("5-40/10 * * * *", ["*-*-* *:05,15,25,35:00"]),
        ("0 22-2 * * *", ["*-*-* 00..02,22,23:00:00"]),
        ("0 0 1 */3 *", ["*-01,04,07,10-01 00:00:00"]),
        ("0 0 1 jan,Jul *", ["*-01,07-01 00:00:00"]),
        ("0 0 * NOV-FEB *", ["*-01,02,11,12-* 00:00:00"]),
        ("0 9 * * MON-FRI", ["Mon..Fri *-*-* 09:00:00"]),
        ("0 9 * * 1,3", ["Mon,Wed *-*-* 09:00:00"]),
        ("0 9 * * 0", ["Sun *-*-* 09:00:00"]),
        ("0 9 * * 7", ["Sun *-*-* 09:00:00"]),
        ("0 9 * * 5-7", ["Fri..Sun *-*-* 09:00:00"]),
        ("0 9 * * sat-mon", ["Mon,Sat,Sun *-*-* 09:00:00"]),
        ("0 9 * * 0-7", ["*-*-* 09:00:00"]),
        ("0 0 29 2 *", ["*-02-29 00:00:00"]),
        ("0 0 25/2 * *", ["*-*-25,27,29,31 00:00:00"]),
        ("@yearly", ["*-01-01 00:00:00"]),
        ("@annually", ["*-01-01 00:00:00"]),
        ("@monthly", ["*-*-01 00:00:00"]),
        ("@weekly", ["Sun *-*-* 00:00:00"]),
        ("@daily", ["*-*-* 00:00:00"]),
        ("@midnight", ["*-*-* 00:00:00"]),
        ("@HOURLY", ["*-*-* *:00:00"]),
    ],
)
def test_to_oncalendar_translates_each_syntax_element(expr: str, lines: list[str]) -> None:
    assert to_oncalendar(expr) == lines


def test_day_of_month_and_weekday_both_restricted_fire_on_either_as_two_lines() -> None:
    assert to_oncalendar("0 8 1,15 * MON") == ["*-*-01,15 08:00:00", "Mon *-*-* 08:00:00"]


def test_day_of_week_step_counts_as_restriction_like_croniter() -> None:
    spec = parse_cron("0 0 13 * */2")
    assert spec.day_or_weekday
    assert to_oncalendar("0 0 13 * */2") == [
        "*-*-13 00:00:00",
        "Tue,Thu,Sat,Sun *-*-* 00:00:00",
    ]


def test_full_weekday_list_beside_a_day_makes_every_day_fire() -> None:
    assert to_oncalendar("0 0 1 * 0-6") == ["*-*-* 00:00:00"]


def test_impossible_day_side_of_either_rule_leaves_only_the_weekday_line() -> None:
    assert to_oncalendar("0 0 31 2 MON") == ["Mon *-02-* 00:00:00"]


def test_timezone_is_the_last_token_of_every_line() -> None:
    assert to_oncalendar("0 8 1 * 1", "Europe/Berlin") == [
        "*-*-01 08:00:00 Europe/Berlin",
        "Mon *-*-* 08:00:00 Europe/Berlin",
    ]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Berlin x", "../etc/passwd", " UTC"])
def test_unknown_timezone_is_a_syntax_error(zone: str) -> None:
    with pytest.raises(CronSyntaxError, match="timezone"):
        to_oncalendar("0 8 * * *", zone)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute field '61': value out of range 0-59"),
        ("0 24 * * *", "hour field '24': value out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': value out of range 1-31"),
        ("0 0 1 13 *", "month field '13': value out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': value out of range 0-7"),
        ("0 0 * FOO *", "month field 'FOO': 'FOO' is not a number or a name JAN-DEC"),
        ("0 0 * * MON-FOO", "day-of-week field 'MON-FOO': 'FOO' is not a number"),
        ("*/0 * * * *", "minute field '*/0': step 0"),
        ("*/x * * * *", "minute field '*/x': step 'x'"),
        ("1,,2 * * * *", "minute field '1,,2': empty list element"),
        ("5-5 * * * *", "minute field '5-5': range '5-5' has equal ends"),
        ("0 0 * * 7-SUN", "day-of-week field '7-SUN': range '7-SUN' has equal ends"),
        ("0 20-4/2 * * *", "hour field '20-4/2': range '20-4/2' wraps around"),
        ("0 0 L * *", "day-of-month field 'L'"),
        ("0 0 * * 1#2", "day-of-week field '1#2'"),
        ("0 0 30 2 *", "day-of-month field '30': no such day in month FEB"),
        ("* * * *", "expected five fields"),
        ("0 * * * * *", "expected five fields"),
        ("@reboot", "not a calendar"),
        ("@often", "unknown macro"),
    ],
)
def test_bad_expression_error_names_the_field_and_problem(expr: str, message: str) -> None:
    with pytest.raises(CronSyntaxError) as info:
        parse_cron(expr)
    assert message in str(info.value)
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("0 8 * * *", "every day at 08:00"),
        ("30 7 * * 1-5", "every Mon-Fri at 07:30"),
        ("0 0 1 * *", "every month on day 1 at 00:00"),
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("@hourly", "every hour at minute 0"),
        ("0 0 1,15 * 1", "cron 0 0 1,15 * 1"),
    ],
)
def test_describe_reads_common_schedules_as_words(expr: str, text: str) -> None:
    assert describe(expr) == text


# --- the property: systemd's next fire times equal croniter's -------------------------

ITERATIONS = 50
# systemd's calendar arithmetic stops at the end of 2199; later croniter times cannot
# be compared (only Feb 29 and similar rare schedules reach that far in 50 iterations).
SYSTEMD_HORIZON = datetime(2200, 1, 1, tzinfo=UTC)

HAND_PICKED = [
    "* * * * *",
    "0 * * * *",
    "30 * * * *",
    "0 0 * * *",
    "30 2 * * *",
    "0 2 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "15,45 1-3 * * *",
    "*/15 * * * *",
    "*/7 * * * *",
    "10/20 * * * *",
    "59/15 * * * *",
    "5-40/10 2 * * *",
    "0 */5 * * *",
    "0 1/6 * * *",
    "0 22-2 * * *",
    "0 0 1/2 * *",
    "0 0 */10 * *",
    "0 0 5-25/5 * *",
    "0 0 1 */3 *",
    "0 0 1 2/5 *",
    "0 0 1 JAN-MAR/2 *",
    "0 12 * * */2",
    "0 12 * * 1/2",
    "0 12 * * 1-7/2",
    "0 12 * * 0,7",
    "0 12 * * 7",
    "0 12 * * 5-7",
    "0 12 * * sat-mon",
    "0 9 * * MON-FRI",
    "0 9 * * mon,Wed,FRI",
    "0 0 1 jan,Jul *",
    "0 0 * NOV-FEB *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "0 0 30 * *",
    "0 0 28-31 * *",
    "0 0 31 4,6,9,11,12 *",
    "0 8 1,15 * MON",
    "0 8 13 * 5",
    "0 0 13 * */2",
    "0 0 */2 * 1",
    "0 0 */1 * 1",
    "0 0 1-31 * 1",
    "0 0 1 * 0-6",
    "0 0 * * 0-6",
    "0 0 31 2 1",
    "0 0 29 2 1",
    "0 0 29,30 2 SUN",
    "30 2 1 * 0",
    "0,30 0-3 25-31 3,10 0",
    "*/30 1-3 * 3,4,10,11 SUN",
    "@yearly",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
    "@midnight",
]

# (zone, start): DST changes in Berlin (Mar 29 / Oct 25 2026), New York (Mar 8 / Nov 1),
# Lord Howe's half-hour DST (Apr 5 / Oct 4), Kolkata's half-hour offset, plain UTC.
STARTS = [
    ("UTC", datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 3, 28, 12, 0, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 24, 12, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 7, 12, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 10, 31, 12, 0, tzinfo=UTC)),
    ("Asia/Kolkata", datetime(2026, 2, 27, 18, 29, 30, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 6, 0, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 6, 0, tzinfo=UTC)),
]


def _random_item(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    def value(v: int) -> str:
        return names[v - low] if names and rng.random() < 0.4 else str(v)

    kind = rng.choice(["value", "range", "star-step", "range-step", "start-step", "wrap"])
    a, b = sorted(rng.sample(range(low, high + 1), 2))
    step = str(rng.randint(1, max(2, (high - low) // 2)))
    return {
        "value": value(a),
        "range": f"{value(a)}-{value(b)}",
        "star-step": f"*/{step}",
        "range-step": f"{value(a)}-{value(b)}/{step}",
        "start-step": f"{value(a)}/{step}",
        "wrap": f"{value(b)}-{value(a)}",
    }[kind]


def _random_field(rng: random.Random, low: int, high: int, names: list[str] = []) -> str:  # noqa: B006
    if rng.random() < 0.35:
        return "*"
    count = rng.choice([1, 1, 1, 2, 3])
    return ",".join(_random_item(rng, low, high, names) for _ in range(count))


def _random_corpus(count: int) -> Iterator[str]:
    rng = random.Random(20260329)
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
    made = 0
    while made < count:
        expr = " ".join(
            [
                _random_field(rng, 0, 59),
                _random_field(rng, 0, 23),
                _random_field(rng, 1, 31),
                _random_field(rng, 1, 12, months),
                _random_field(rng, 0, 7, days),
            ]
        )
        try:
            parse_cron(expr)
        except CronSyntaxError:
            continue  # equal ranges, stepped wraps, never-firing days: rejected by design
        made += 1
        yield expr


CORPUS = HAND_PICKED + list(_random_corpus(200))


def _systemd_times(lines: list[str], zone: str, base: datetime) -> list[list[datetime]]:
    """Next fire times (UTC) of each calendar line, from one systemd-analyze call.

    Lines without a timezone suffix are computed in ``zone`` through $TZ, as a timer on
    a machine in that zone would be.
    """
    out = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            f"--iterations={ITERATIONS}",
            f"--base-time=@{int(base.timestamp())}",
            *lines,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": zone},
        timeout=60,
    ).stdout
    blocks = out.split("Normalized form:")[1:]
    assert len(blocks) == len(lines), out
    # With TZ=UTC the elapse line itself is in UTC; otherwise an "(in UTC)" line follows.
    stamp = re.compile(
        r"(?:Next elapse|Iter\. #\d+|\(in UTC\)): \w{3} (\S+ \S+) UTC$", re.MULTILINE
    )
    return [
        [datetime.fromisoformat(f"{found}+00:00") for found in stamp.findall(block)]
        for block in blocks
    ]


def _croniter_times(expr: str, zone: ZoneInfo, base: datetime) -> list[datetime]:
    it = croniter(expr, base.astimezone(zone))
    times: list[datetime] = []
    while len(times) < ITERATIONS:
        fire = it.get_next(datetime)
        if fire >= SYSTEMD_HORIZON:
            break
        if _systemd_fires_too(expr, fire.astimezone(zone)):
            times.append(fire.astimezone(UTC))
    return times


def _systemd_fires_too(expr: str, local: datetime) -> bool:
    """False for the two DST instants where croniter and systemd differ by design.

    Spring forward: croniter moves a wall time that does not exist that day to the end
    of the gap, where the wall clock no longer matches the expression; systemd skips it.
    Fall back: a repeated wall time fires at both occurrences under croniter, only at
    the first (fold=0) under systemd.
    """
    hour = timedelta(hours=1)
    offsets = {(local + delta).utcoffset() for delta in (-hour, hour)}
    if len(offsets) == 1:
        return True  # no change of offset nearby; croniter.match is too slow to ask always
    if not croniter.match(expr, local.replace(tzinfo=None)):
        return False
    repeated = local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()
    return not (repeated and local.fold == 1)


@dataclass(frozen=True)
class Case:
    expr: str
    zone: str
    base: datetime
    suffixed: bool  # run the lines exactly as written, with their timezone suffix


def _cases() -> list[Case]:
    """Hand-picked expressions at every start; each random one at three of them.

    A timezone suffix makes systemd-analyze fork for every iteration (~2 ms each), so
    most cases run the same calendar without the suffix under $TZ; the hand-picked ones
    also run verbatim, suffix included, across both of Berlin's changes and a plain day.
    """
    cases = [
        Case(expr, zone, base, suffixed=False) for zone, base in STARTS for expr in HAND_PICKED
    ]
    randoms = CORPUS[len(HAND_PICKED) :]
    for n, expr in enumerate(randoms):
        for zone, base in (
            STARTS[n % len(STARTS)],
            STARTS[(n + 3) % len(STARTS)],
            STARTS[(n + 5) % len(STARTS)],
        ):
            cases.append(Case(expr, zone, base, suffixed=False))
    for zone, base in [STARTS[1], STARTS[2], STARTS[5]]:
        cases += [Case(expr, zone, base, suffixed=True) for expr in HAND_PICKED]
    return cases


def _systemd_for_cases(cases: list[Case]) -> dict[int, list[datetime]]:
    """Each case's merged fire times (all its lines, sorted, de-duplicated), in UTC."""
    lines_of = []
    for case in cases:
        lines = to_oncalendar(case.expr, case.zone)
        if not case.suffixed:
            assert all(line.endswith(f" {case.zone}") for line in lines)
            lines = [line.removesuffix(f" {case.zone}") for line in lines]
        lines_of.append(lines)
    groups: dict[tuple[str, datetime, bool], list[int]] = {}
    for i, case in enumerate(cases):
        groups.setdefault((case.zone, case.base, case.suffixed), []).append(i)
    batches = [
        (key, indices[start : start + (8 if key[2] else 60)])
        for key, indices in groups.items()
        for start in range(0, len(indices), 8 if key[2] else 60)
    ]

    def run_batch(batch: tuple[tuple[str, datetime, bool], list[int]]) -> dict[int, list[datetime]]:
        (zone, base, suffixed), indices = batch
        lines = [line for i in indices for line in lines_of[i]]
        per_line = iter(_systemd_times(lines, "UTC" if suffixed else zone, base))
        merged = {}
        for i in indices:
            times = {t for _ in lines_of[i] for t in next(per_line)}
            merged[i] = sorted(times)[:ITERATIONS]
        return merged

    found: dict[int, list[datetime]] = {}
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        for result in pool.map(run_batch, batches):
            found.update(result)
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_next_fire_times_equal_croniter_across_timezones_and_dst() -> None:
    started = time.monotonic()
    assert len(CORPUS) >= 200
    cases = _cases()
    with ThreadPoolExecutor(max_workers=1) as background:
        systemd_future = background.submit(_systemd_for_cases, cases)
        croniter_times = [
            _croniter_times(case.expr, ZoneInfo(case.zone), case.base) for case in cases
        ]
        systemd = systemd_future.result()

    mismatches = []
    for i, (case, expected) in enumerate(zip(cases, croniter_times, strict=True)):
        got = systemd[i][: len(expected)]
        if got != expected:
            first = next(
                (k for k, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                min(len(got), len(expected)),
            )
            mismatches.append(
                f"{case} -> {to_oncalendar(case.expr, case.zone)}: #{first} "
                f"systemd {got[first : first + 2]} croniter {expected[first : first + 2]}"
            )
    assert not mismatches, f"{len(mismatches)} of {len(cases)}:\n" + "\n".join(mismatches[:20])
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"property test took {elapsed:.1f}s for {len(cases)} cases"

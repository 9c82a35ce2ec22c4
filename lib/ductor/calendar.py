"""Cron expressions, translated to systemd ``OnCalendar=`` lines.

Supported: five fields (minute hour day-of-month month day-of-week) made of ``*``,
numbers, ranges ``a-b`` (a range may wrap: ``FRI-MON``, ``22-2``), steps ``*/n``,
``a-b/n`` and ``a/n``, lists ``a,b,c``, month names JAN-DEC and weekday names SUN-SAT
(any case; weekday 0 and 7 are Sunday), and the macros @yearly/@annually, @monthly,
@weekly, @daily/@midnight and @hourly.

The semantics are croniter's, which the tests use as the oracle:

* Day-of-month and day-of-week: when both are restricted, the job fires on a day that
  matches *either* (two ``OnCalendar=`` lines). A field counts as unrestricted when it
  covers its whole range and the *other* field's text contains ``*``; so ``*/2`` in
  day-of-week is a restriction (vixie cron's "starts with ``*``" rule does not apply),
  and ``0 0 1 * 0-6`` fires every day.
* Rejected rather than guessed: equal ranges such as ``5-5`` (croniter reads them as
  the whole field, every other cron as one value), steps over a wrapping range
  (croniter's wrap-around stepping skips values), and croniter's extensions
  (``L``, ``W``, ``#``, ``?``, ``H``, a seconds field).

Where systemd and croniter differ, systemd's behaviour is what the timer does:

* Spring forward: a wall time that does not exist that day (02:30 when clocks jump
  from 02:00 to 03:00) is skipped by systemd; croniter fires at the end of the gap.
* Fall back: a wall time that occurs twice (02:30 when clocks go from 03:00 back to
  02:00) fires once, at its first occurrence, under systemd; croniter fires at both.

Steps are written as lists (``00,15,30,45``), never as systemd repetitions (``0/15``):
systemd 252 fails on an hour repetition across a spring-forward change and skips the
first minute of a minute repetition after midnight.

This module is on the cron oneshot's path: stdlib only, cheap to import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ductor.errors import UsageError


class CronSyntaxError(UsageError):
    """A cron expression (or its timezone) that cannot be scheduled; says which field."""


MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# systemd spells weekdays Monday first; index = cron weekday (Sunday = 0).
_SYSTEMD_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 exists sometimes


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    # 7 is Sunday too; folded to 0 after ranges are expanded so "5-7" means Fri..Sun.
    _Field("day-of-week", 0, 7, _WEEKDAY_NAMES, 0),
)
_Fail = Callable[[str], "CronSyntaxError"]
_Namer = Callable[[int], str]
_TOKEN = re.compile(r"^(?P<start>\*|[0-9A-Za-z]+)(?:-(?P<end>[0-9A-Za-z]+))?(?:/(?P<step>.*))?$")


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the values each field matches, sorted.

    ``days_restricted``/``weekdays_restricted`` follow croniter's rule for the OR of
    day-of-month and day-of-week; when both hold, a day matching either one fires.
    """

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday .. 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    @property
    def day_or_weekday(self) -> bool:
        """Whether the job fires on days matching either day field (cron's OR rule)."""
        return self.days_restricted and self.weekdays_restricted


def parse_cron(expr: str) -> CronSpec:
    """Parse five cron fields or a macro; raise :class:`CronSyntaxError` naming the field."""
    text = expr.strip()
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise CronSyntaxError(
                f"cron expression {expr!r}: @reboot is not a calendar time; "
                "use a schedule such as '@daily' or '0 8 * * *'"
            )
        if macro not in MACROS:
            known = ", ".join(MACROS)
            raise CronSyntaxError(f"cron expression {expr!r}: unknown macro (known: {known})")
        text = MACROS[macro]
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronSyntaxError(
            f"cron expression {expr!r}: expected five fields "
            f"(minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(field, part) for field, part in zip(_FIELDS, parts, strict=True)
    )
    weekdays = sorted({day % 7 for day in weekdays})
    days_full = len(days) == 31
    weekdays_full = len(weekdays) == 7
    dom_text, dow_text = parts[2], parts[4]
    spec = CronSpec(
        expr=expr,
        minutes=tuple(minutes),
        hours=tuple(hours),
        days=tuple(days),
        months=tuple(months),
        weekdays=tuple(weekdays),
        days_restricted=not _unrestricted(dom_text, days_full, dow_text),
        weekdays_restricted=not _unrestricted(dow_text, weekdays_full, dom_text),
    )
    if spec.days_restricted and not spec.weekdays_restricted and not _days_possible(spec):
        month_names = ",".join(_MONTH_NAMES[month - 1] for month in spec.months)
        raise CronSyntaxError(
            f"day-of-month field {dom_text!r}: no such day in month {month_names}; "
            "the job would never run"
        )
    return spec


def _unrestricted(text: str, full: bool, other_text: str) -> bool:
    """croniter's test: a bare ``*``, or every value while the other field has a ``*``."""
    return "*" in text.split(",") or (full and "*" in other_text)


def _days_possible(spec: CronSpec) -> bool:
    return spec.days[0] <= max(_DAYS_IN_MONTH[month - 1] for month in spec.months)


def _parse_field(field: _Field, text: str) -> list[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(field, text, item))
    return sorted(values)


def _parse_item(field: _Field, text: str, item: str) -> list[int]:
    def fail(problem: str) -> CronSyntaxError:
        return CronSyntaxError(f"{field.name} field {text!r}: {problem}")

    if not item:
        raise fail("empty list element")
    match = _TOKEN.match(item)
    if match is None:
        raise fail(f"cannot read {item!r} (expected *, a number, a-b, a/n or */n)")
    start_text, end_text, step_text = match.group("start", "end", "step")
    step = 1
    if step_text is not None:
        if not step_text.isdigit():
            raise fail(f"step {step_text!r} in {item!r} is not a number")
        step = int(step_text)
        if step == 0:
            raise fail(f"step 0 in {item!r} (a step must be at least 1)")
    if start_text == "*":
        if end_text is not None:
            raise fail(f"'*' cannot start a range in {item!r}")
        low, high = field.low, field.high
        if field.name == "day-of-week":
            high = 6  # "*/2" is Sun,Tue,Thu,Sat; 7 would repeat Sunday
        return list(range(low, high + 1, step))
    start = _value(field, start_text, fail)
    if end_text is None:
        if step_text is None:
            return [start]
        end = 6 if field.name == "day-of-week" else field.high
        return list(range(start, max(start, end) + 1, step))
    end = _value(field, end_text, fail)
    if field.name == "day-of-week" and start % 7 == end % 7 and start < end:
        return list(range(start, end + 1, step))  # 0-7: the whole week
    if start % 7 == end % 7 if field.name == "day-of-week" else start == end:
        raise fail(
            f"range {item!r} has equal ends; write {start_text!r} for that one value or '*' for all"
        )
    if start < end:
        return list(range(start, end + 1, step))
    if step_text is not None:
        raise fail(f"range {item!r} wraps around; a step over it is ambiguous, write a list")
    return list(range(start, field.high + 1)) + list(range(field.low, end + 1))


def _value(field: _Field, text: str, fail: _Fail) -> int:
    if text.isdigit():
        value = int(text)
    elif text.upper() in field.names:
        value = field.names.index(text.upper()) + field.names_start
    else:
        hint = f" or a name {field.names[0]}-{field.names[-1]}" if field.names else ""
        raise fail(f"{text!r} is not a number{hint}")
    if not field.low <= value <= field.high:
        raise fail(f"value out of range {field.low}-{field.high}")
    return value


def check_timezone(timezone: str) -> None:
    """Raise :class:`CronSyntaxError` unless ``timezone`` is "" or an IANA zone name."""
    if not timezone:
        return
    if timezone != timezone.strip() or " " in timezone:
        raise CronSyntaxError(f"timezone {timezone!r}: must be one IANA name, e.g. Europe/Berlin")
    import zoneinfo  # only when a zone is given: keeps the oneshot's import cheap

    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronSyntaxError(
            f"timezone {timezone!r}: unknown; use an IANA name such as Europe/Berlin or UTC"
        ) from exc


def to_oncalendar(expr: str, timezone: str = "") -> list[str]:
    """The ``OnCalendar=`` values for ``expr``: one, or two for cron's day OR rule.

    ``timezone`` ("" = the machine's local time) becomes the last token of each line.
    """
    spec = parse_cron(expr)
    check_timezone(timezone)
    month = _component(spec.months, 1, 12)
    clock = f"{_component(spec.hours, 0, 23)}:{_component(spec.minutes, 0, 59)}:00"
    suffix = f" {timezone}" if timezone else ""
    every_day = f"*-{month}-*"
    if spec.day_or_weekday:
        if len(spec.days) == 31 or len(spec.weekdays) == 7:
            return [f"{every_day} {clock}{suffix}"]
        lines = [f"{_weekdays(spec.weekdays)} {every_day} {clock}{suffix}"]
        if _days_possible(spec):  # "31 2" contributes no days; weekdays still fire
            lines.insert(0, f"*-{month}-{_component(spec.days, 1, 31)} {clock}{suffix}")
        return lines
    date = every_day
    if spec.days_restricted:
        date = f"*-{month}-{_component(spec.days, 1, 31)}"
    prefix = ""
    if spec.weekdays_restricted and len(spec.weekdays) < 7:
        prefix = _weekdays(spec.weekdays) + " "
    return [f"{prefix}{date} {clock}{suffix}"]


def _component(values: tuple[int, ...], low: int, high: int) -> str:
    """One systemd calendar component: ``*`` or a list of values and ``a..b`` ranges.

    Never a repetition (``0/15``): systemd 252 mishandles them. An hour repetition across
    a spring-forward change fails ("Resource deadlock avoided"); a minute repetition
    such as ``00/7`` skips minute 0 after midnight. Steps are spelled out as lists.
    """
    if len(values) == high - low + 1:
        return "*"
    return ",".join(_runs(values, lambda value: f"{value:02d}"))


def _weekdays(weekdays: tuple[int, ...]) -> str:
    monday_first = sorted(weekdays, key=lambda day: (day - 1) % 7)
    order = [(day - 1) % 7 for day in monday_first]
    names = dict(zip(order, (_SYSTEMD_WEEKDAYS[day] for day in monday_first), strict=True))
    return ",".join(_runs(tuple(order), names.__getitem__))


def _runs(values: tuple[int, ...], name: _Namer) -> list[str]:
    """Consecutive runs of three or more become ``a..b``; the rest stay single."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{name(values[i])}..{name(values[j])}")
        else:
            out.extend(name(value) for value in values[i : j + 1])
        i = j + 1
    return out


def describe(expr: str) -> str:
    """A short human reading of ``expr`` ("every day at 08:00"); falls back to the text."""
    spec = parse_cron(expr)
    if len(spec.months) < 12 or spec.day_or_weekday:
        return f"cron {expr.strip()}"
    when = ""
    if spec.weekdays_restricted and len(spec.weekdays) < 7:
        when = "every " + _weekdays(spec.weekdays).replace("..", "-").replace(",", ", ")
    elif spec.days_restricted and len(spec.days) < 31:
        if len(spec.days) > 1:
            return f"cron {expr.strip()}"
        when = f"every month on day {spec.days[0]}"
    if len(spec.hours) == 1 and len(spec.minutes) == 1:
        return f"{when or 'every day'} at {spec.hours[0]:02d}:{spec.minutes[0]:02d}"
    if len(spec.hours) == 24 and not when:
        if len(spec.minutes) == 60:
            return "every minute"
        if len(spec.minutes) == 1:
            return f"every hour at minute {spec.minutes[0]}"
        step = 60 // len(spec.minutes)
        if spec.minutes == tuple(range(0, 60, step)):
            return f"every {step} minutes"
    return f"cron {expr.strip()}"

"""The session store: one record per chat or forum topic, one bucket per provider inside it.

A record is keyed by the session key ``transport:chat[:topic]`` (``tg:123``,
``tg:-100123:7``, ``mx:!room:server``). It holds the active target (provider, model,
effort) and, per provider, the CLI's session id with the counters shown by ``/status``.
Switching provider keeps the other buckets, so switching back resumes that conversation.

The store lives in memory and is written to ``sessions.json`` after every change,
atomically (temp + fsync + rename, mode 0600): a crash leaves the old file or the new one.
One process (the agent daemon) owns the file; callers run in one thread (the event loop)
and change sessions only through the store's methods. Stdlib only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ductor.atomic import CorruptFileError, make_directories, read_json, write_json
from ductor.errors import DuctorError

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
FILE_MODE: Final = 0o600
AGE_NOTE_EVERY: Final = 10  # the age note rides on every 10th message of a bucket


class UnknownSessionError(DuctorError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no session for {key!r} yet: send a message in that chat first")


def utc_now() -> datetime:
    return datetime.now(UTC)


class ResetReason(StrEnum):
    """Why :meth:`SessionStore.resolve` started over."""

    IDLE = "idle"  # idle for idle_timeout_minutes: whole record replaced
    DAILY = "daily"  # the daily reset hour passed: whole record replaced
    MAX_MESSAGES = "max_messages"  # the active bucket is full: only that bucket reset


def parse_key(key: str) -> tuple[str, str, str | None]:
    """Transport, chat and topic of a session key, for display. Only Telegram keys carry
    a topic; elsewhere the rest is the chat (Matrix room ids contain colons)."""
    transport, sep, rest = key.partition(":")
    if not sep:
        return "", key, None
    if transport == "tg":
        chat, _, topic = rest.partition(":")
        return transport, chat, topic or None
    return transport, rest, None


@dataclass
class ProviderBucket:
    session_id: str | None = None
    message_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    last_active: datetime | None = None  # last successful turn in this bucket

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(kw_only=True)
class Session:
    key: str
    transport: str = field(init=False)  # transport, chat and topic: parsed from the key
    chat: str = field(init=False)
    topic: str | None = field(init=False)
    topic_name: str = ""
    provider: str  # active provider
    model: str  # active model
    effort: str = ""  # "" = the agent's default
    created_at: datetime
    last_active: datetime
    buckets: dict[str, ProviderBucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.transport, self.chat, self.topic = parse_key(self.key)

    def bucket(self, provider: str | None = None) -> ProviderBucket:
        """The bucket of ``provider`` (the active one by default), created on demand."""
        name = self.provider if provider is None else provider
        return self.buckets.setdefault(name, ProviderBucket())

    @property
    def total_cost_usd(self) -> float:
        return sum(bucket.cost_usd for bucket in self.buckets.values())

    @property
    def total_tokens(self) -> int:
        return sum(bucket.total_tokens for bucket in self.buckets.values())


@dataclass(frozen=True)
class FreshnessPolicy:
    idle_timeout_minutes: int = 1440  # 0 disables
    daily_reset_enabled: bool = False
    daily_reset_hour: int = 4
    timezone: str = ""  # IANA name, "" = local time
    max_session_messages: int = 0  # 0 = no cap (per bucket)

    def __post_init__(self) -> None:
        if not 0 <= self.daily_reset_hour <= 23:
            raise ValueError(f"daily_reset_hour must be 0 to 23, got {self.daily_reset_hour}")

    def stale_reason(self, last_active: datetime, now: datetime) -> ResetReason | None:
        """Why a session last active at ``last_active`` must start over at ``now``."""
        idle = self.idle_timeout_minutes
        if idle > 0 and now - last_active >= timedelta(minutes=idle):
            return ResetReason.IDLE
        daily = self.daily_reset_enabled
        if daily and last_active < last_daily_reset(now, self.daily_reset_hour, self.timezone):
            return ResetReason.DAILY
        return None


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo | None:
    """The zone called ``name``; None means the system's local time."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r for the daily session reset, using local time", name)
        return None


def _wall_clock(day: date, hour: int, zone: ZoneInfo | None) -> datetime:
    wall = datetime.combine(day, time(hour))
    # A naive datetime's astimezone() reads the system's local rules, DST included.
    aware = wall.replace(tzinfo=zone) if zone is not None else wall.astimezone()
    return aware.astimezone(UTC)


def last_daily_reset(now: datetime, hour: int, timezone: str = "") -> datetime:
    """The most recent moment at or before ``now`` when the clock in ``timezone`` read
    ``hour``:00. Across a DST change the boundary follows the wall clock; an hour that
    does not exist that day falls on the moment the clocks jump."""
    zone = _zone(timezone)
    local_day = now.astimezone(zone).date()
    boundary = _wall_clock(local_day, hour, zone)
    if boundary > now:
        boundary = _wall_clock(local_day - timedelta(days=1), hour, zone)
    return boundary


def session_age_note(session: Session, *, warning_hours: int, now: datetime) -> str:
    """A hint to start over, appended to every 10th answer of an old session."""
    count = session.buckets.get(session.provider, ProviderBucket()).message_count
    if warning_hours <= 0 or count <= 0 or count % AGE_NOTE_EVERY:
        return ""
    hours = int((now - session.created_at).total_seconds() // 3600)
    if hours < warning_hours:
        return ""
    age = f"{hours // 24} days" if hours >= 48 else f"{hours}h"
    return f"[Session is {age} old. Use /new for a fresh start.]"


class _BadFieldError(Exception):
    def __init__(self, field: str, detail: str) -> None:
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}")


class _Fields:
    """Typed getters over one JSON object that name the bad field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise _BadFieldError(where, f"expected an object, got {data!r}")
        self.data: Mapping[str, object] = data
        self.where = where

    def _bad(self, name: str, what: str, value: object) -> _BadFieldError:
        return _BadFieldError(f"{self.where}.{name}", f"expected {what}, got {value!r}")

    def string(self, name: str, default: str | None = None) -> str:
        value = self.data.get(name, default)
        if isinstance(value, str):
            return value
        raise self._bad(name, "a string", value)

    def optional_string(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self.string(name)

    def count(self, name: str) -> int:
        value = self.data.get(name, 0)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self._bad(name, "a whole number >= 0", value)

    def number(self, name: str) -> float:
        value = self.data.get(name, 0.0)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._bad(name, "a number", value)

    def moment(self, name: str) -> datetime:
        value = self.data.get(name)
        with contextlib.suppress(ValueError):
            if isinstance(value, str):
                return _as_utc(datetime.fromisoformat(value))
        raise self._bad(name, "an ISO 8601 timestamp", value)

    def optional_moment(self, name: str) -> datetime | None:
        return None if self.data.get(name) is None else self.moment(name)

    def child(self, name: str) -> _Fields:
        return _Fields(self.data.get(name, {}), f"{self.where}.{name}")


def _as_utc(moment: datetime) -> datetime:
    """Timestamps without a zone were written as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _as_utc(moment).isoformat()


def _shallow(record: ProviderBucket | Session) -> dict[str, object]:
    """The fields of ``record``, by name: what ``asdict`` gives for fields that hold
    plain values, without its deep copy of each (every turn saves every session)."""
    return {item.name: getattr(record, item.name) for item in fields(record)}


def _session_to_json(session: Session) -> dict[str, object]:
    buckets = {
        name: {**_shallow(bucket), "last_active": _iso(bucket.last_active)}
        for name, bucket in session.buckets.items()
    }
    record = _shallow(session)
    del record["key"], record["buckets"]
    record.update(created_at=_iso(session.created_at), last_active=_iso(session.last_active))
    return {**record, "provider_sessions": buckets}


def _session_from_json(key: str, data: object) -> Session:
    # Transport, chat and topic are derived from the key, never trusted from the file.
    fields = _Fields(data, f"sessions[{key!r}]")
    session = Session(
        key=key,
        topic_name=fields.string("topic_name", ""),
        provider=fields.string("provider"),
        model=fields.string("model"),
        effort=fields.string("effort", ""),
        created_at=fields.moment("created_at"),
        last_active=fields.moment("last_active"),
    )
    buckets = fields.child("provider_sessions")
    for name in buckets.data:
        bucket = buckets.child(name)
        session.buckets[name] = ProviderBucket(
            session_id=bucket.optional_string("session_id") or None,
            message_count=bucket.count("message_count"),
            input_tokens=bucket.count("input_tokens"),
            output_tokens=bucket.count("output_tokens"),
            cost_usd=bucket.number("cost_usd"),
            last_active=bucket.optional_moment("last_active"),
        )
    return session


class SessionStore:
    def __init__(self, file: Path, *, now: Callable[[], datetime] = utc_now) -> None:
        self.file = file
        self._clock = now
        self._sessions: dict[str, Session] = {}
        # Records that cannot be read are written back untouched (nothing is lost behind
        # the user's back) until their chat gets a new session; a warning names the field.
        self._unreadable: dict[str, object] = {}
        self._load()

    def get(self, key: str) -> Session | None:
        return self._sessions.get(key)

    def keys(self) -> list[str]:
        return list(self._sessions)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def resolve(
        self, key: str, *, default_provider: str, default_model: str, policy: FreshnessPolicy
    ) -> tuple[Session, ResetReason | None]:
        """The session a new turn runs in, and why it was started over (or None).

        A stale record (idle, past the daily reset) is replaced with every bucket dropped;
        its target (provider, model, effort) and topic name stay, so a per-topic model
        survives. A full active bucket is reset alone. Saves only when something changed.
        """
        now = self._now()
        session = self._sessions.get(key)
        if session is None:
            session = self._get_or_create(key, default_provider, default_model, now)
            self.save()
            return session, None
        reason = policy.stale_reason(session.last_active, now)
        if reason is not None:
            fresh = replace(session, created_at=now, last_active=now, buckets={})
            self._sessions[key] = fresh
            log.info("session %s expired (%s): starting a fresh one", key, reason)
            self.save()
            return fresh, reason
        limit = policy.max_session_messages
        bucket = session.buckets.get(session.provider)
        if limit > 0 and bucket is not None and bucket.message_count >= limit:
            del session.buckets[session.provider]
            log.info(
                "session %s: %s bucket full (%d messages), reset", key, session.provider, limit
            )
            self.save()
            return session, ResetReason.MAX_MESSAGES
        return session, None

    def record_session_id(self, key: str, provider: str, session_id: str) -> None:
        """Keep the CLI's session id as soon as it is seen, so that an aborted or timed
        out turn can still be resumed."""
        session = self._sessions.get(key)
        if session is None:
            log.warning("session %s was removed before its session id %s came", key, session_id)
            return
        bucket = session.bucket(provider)
        if bucket.session_id != session_id:
            bucket.session_id = session_id
            self.save()

    def record_turn(
        self,
        key: str,
        provider: str,
        *,
        session_id: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float | None,
    ) -> Session:
        """Count a successful turn in ``provider``'s bucket. The active target is left
        alone: a /model issued while the turn ran applies to the next one."""
        now = self._now()
        # A session removed while the turn ran comes back on the turn's own model.
        session = self._get_or_create(key, provider, model, now)
        bucket = session.bucket(provider)
        bucket.session_id = session_id or bucket.session_id
        bucket.message_count += 1
        bucket.input_tokens += input_tokens
        bucket.output_tokens += output_tokens
        if cost_usd is not None:
            bucket.cost_usd += cost_usd
        bucket.last_active = now
        session.last_active = now
        self.save()
        return session

    def retarget(
        self,
        key: str,
        *,
        provider: str,
        model: str,
        effort: str | None = None,
        default_provider: str,
        default_model: str,
    ) -> Session:
        """``/model`` and ``@model``: point the session at another model, keeping every
        bucket; switching back to a provider resumes its CLI session. ``effort=None``
        keeps the current effort."""
        session = self._get_or_create(key, default_provider, default_model, self._now())
        if session.provider != provider:
            log.info("session %s: provider %s -> %s", key, session.provider, provider)
        session.provider, session.model = provider, model
        if effort is not None:
            session.effort = effort
        self.save()
        return session

    def set_effort(self, key: str, effort: str) -> Session:
        session = self._sessions.get(key)
        if session is None:
            raise UnknownSessionError(key)
        session.effort = effort
        self.save()
        return session

    def reset_bucket(self, key: str, provider: str) -> Session | None:
        """Forget ``provider``'s CLI session and counters (the next turn starts fresh)."""
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.buckets.pop(provider, None) is not None:
            self.save()
        return session

    def new_session(self, key: str, *, default_provider: str, default_model: str) -> Session:
        """``/new``: back to the configured default provider and model with a fresh
        bucket for it (and the agent's default effort); other providers' buckets stay."""
        now = self._now()
        session = self._get_or_create(key, default_provider, default_model, now)
        session.provider, session.model, session.effort = default_provider, default_model, ""
        return self._restart_active_bucket(session, now)

    def reset_current(self, key: str, *, default_provider: str, default_model: str) -> Session:
        """``/reset``: a fresh bucket for the active provider, staying on its model."""
        now = self._now()
        session = self._get_or_create(key, default_provider, default_model, now)
        return self._restart_active_bucket(session, now)

    def set_topic_name(self, key: str, name: str) -> None:
        session = self._sessions.get(key)
        if session is not None and session.topic_name != name:
            session.topic_name = name
            self.save()

    def remove(self, key: str) -> bool:
        removed = self._sessions.pop(key, None) is not None
        removed = self._unreadable.pop(key, None) is not None or removed
        if removed:
            self.save()
        return removed

    def save(self) -> None:
        sessions: dict[str, object] = dict(self._unreadable)
        sessions.update((key, _session_to_json(s)) for key, s in self._sessions.items())
        make_directories(self.file.parent)
        write_json(self.file, {"version": FORMAT_VERSION, "sessions": sessions}, mode=FILE_MODE)

    def _load(self) -> None:
        try:
            document = read_json(self.file)
        except FileNotFoundError:
            return
        except (OSError, CorruptFileError) as exc:
            self._set_aside(str(exc))
            return
        fields = document if isinstance(document, dict) else {}
        records = fields.get("sessions")
        if fields.get("version") != FORMAT_VERSION or not isinstance(records, dict):
            self._set_aside(
                f"not a version {FORMAT_VERSION} sessions file with a 'sessions' object"
            )
            return
        for key, record in records.items():
            try:
                self._sessions[key] = _session_from_json(key, record)
            except _BadFieldError as exc:
                self._unreadable[key] = record
                log.warning("%s: skipping session %r: %s", self.file, key, exc)

    def _set_aside(self, problem: str) -> None:
        stamp, attempt = f"{self._now():%Y%m%dT%H%M%SZ}", 1
        target = self.file.with_name(f"{self.file.name}.corrupt-{stamp}")
        while target.exists():
            attempt += 1
            target = self.file.with_name(f"{self.file.name}.corrupt-{stamp}-{attempt}")
        try:
            self.file.rename(target)
            outcome = f"moved to {target.name}"
        except OSError as exc:
            outcome = f"could not set it aside ({exc})"
        log.error("%s: %s; %s, starting with no sessions", self.file, problem, outcome)

    def _now(self) -> datetime:
        return _as_utc(self._clock())

    def _get_or_create(self, key: str, provider: str, model: str, now: datetime) -> Session:
        session = self._sessions.get(key)
        if session is None:
            session = Session(
                key=key, provider=provider, model=model, created_at=now, last_active=now
            )
            self._sessions[key] = session
            self._unreadable.pop(key, None)  # the chat starts over: the bad record goes
            log.info("session %s created (%s, %s)", key, provider, model)
        return session

    def _restart_active_bucket(self, session: Session, now: datetime) -> Session:
        session.buckets.pop(session.provider, None)
        session.last_active = now  # a reset is activity: the new session must not expire at once
        self.save()
        return session

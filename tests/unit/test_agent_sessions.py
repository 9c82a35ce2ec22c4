"""ductor.agent.sessions: one session per chat or topic, one bucket per provider inside it."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ductor.agent.sessions import (
    FreshnessPolicy,
    ProviderBucket,
    ResetReason,
    Session,
    SessionStore,
    UnknownSessionError,
    last_daily_reset,
    parse_key,
    session_age_note,
)

LIB = Path(__file__).resolve().parents[2] / "lib"
BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
KEEP_FOREVER = FreshnessPolicy(idle_timeout_minutes=0)
DEFAULTS = {"default_provider": "claude", "default_model": "opus"}


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sessions.json"


@pytest.fixture
def store(file: Path, clock: Clock) -> SessionStore:
    return SessionStore(file, now=clock)


def resolve(
    store: SessionStore, key: str = "tg:1", policy: FreshnessPolicy = KEEP_FOREVER
) -> tuple[Session, ResetReason | None]:
    return store.resolve(key, policy=policy, **DEFAULTS)


def turn(
    store: SessionStore,
    key: str = "tg:1",
    provider: str = "claude",
    session_id: str | None = "claude-1",
    *,
    model: str = "opus",
    cost: float | None = 0.5,
) -> Session:
    return store.record_turn(
        key,
        provider,
        session_id=session_id,
        model=model,
        input_tokens=100,
        output_tokens=20,
        cost_usd=cost,
    )


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


# -- keys and creation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("tg:123", ("tg", "123", None)),
        ("tg:-100123:7", ("tg", "-100123", "7")),
        ("mx:!abc:server", ("mx", "!abc:server", None)),
        ("cli:alice", ("cli", "alice", None)),
    ],
)
def test_session_key_is_split_into_transport_chat_and_topic_for_display(
    store: SessionStore, key: str, parsed: tuple[str, str, str | None]
) -> None:
    session, _ = resolve(store, key)

    assert parse_key(key) == parsed
    assert (session.key, session.transport, session.chat, session.topic) == (key, *parsed)


def test_first_message_in_a_chat_creates_a_session_on_the_default_provider_and_saves_it(
    store: SessionStore, file: Path, clock: Clock
) -> None:
    session, reason = resolve(store, "tg:-100123:7")

    assert reason is None
    assert (session.provider, session.model, session.effort) == ("claude", "opus", "")
    assert session.created_at == session.last_active == clock.now
    assert session.buckets == {}
    assert SessionStore(file).keys() == ["tg:-100123:7"]


def test_resolving_a_fresh_session_returns_it_unchanged_without_writing_the_file(
    store: SessionStore, file: Path, clock: Clock
) -> None:
    first, _ = resolve(store)
    turn(store)
    file.unlink()
    clock.advance(minutes=5)

    again, reason = resolve(store)

    assert again is first and reason is None
    assert again.bucket().session_id == "claude-1"
    assert not file.exists()


def test_get_does_not_create_a_session(store: SessionStore, file: Path) -> None:
    assert store.get("tg:1") is None
    assert store.keys() == [] and store.sessions() == []
    assert not file.exists()


# -- freshness -------------------------------------------------------------------------


def test_session_idle_for_the_timeout_is_replaced_with_every_bucket_dropped(
    store: SessionStore, clock: Clock
) -> None:
    policy = FreshnessPolicy(idle_timeout_minutes=60)
    resolve(store, policy=policy)
    turn(store)
    turn(store, provider="codex", session_id="thread-1", model="gpt-5.5")

    clock.advance(minutes=59, seconds=59)
    kept, reason = resolve(store, policy=policy)
    assert reason is None and kept.bucket("codex").session_id == "thread-1"

    clock.advance(seconds=1)
    fresh, reason = resolve(store, policy=policy)

    assert reason == "idle"
    assert fresh.buckets == {}
    assert fresh.created_at == fresh.last_active == clock.now
    assert store.get("tg:1") is fresh


def test_idle_timeout_of_zero_never_expires_a_session(store: SessionStore, clock: Clock) -> None:
    resolve(store)
    turn(store)
    clock.advance(days=400)

    session, reason = resolve(store, policy=FreshnessPolicy(idle_timeout_minutes=0))

    assert reason is None and session.bucket().session_id == "claude-1"


def test_expired_session_keeps_its_model_target_and_topic_name(
    store: SessionStore, clock: Clock
) -> None:
    store.retarget("tg:-1:7", provider="codex", model="gpt-5.5", effort="high", **DEFAULTS)
    store.set_topic_name("tg:-1:7", "Research")
    turn(store, "tg:-1:7", "codex", "thread-1", model="gpt-5.5")
    clock.advance(days=2)

    fresh, reason = resolve(store, "tg:-1:7", FreshnessPolicy())

    assert reason == ResetReason.IDLE
    assert (fresh.provider, fresh.model, fresh.effort) == ("codex", "gpt-5.5", "high")
    assert fresh.topic_name == "Research" and fresh.topic == "7"
    assert fresh.buckets == {}


def daily(timezone: str = "Europe/Berlin", hour: int = 4) -> FreshnessPolicy:
    return FreshnessPolicy(
        idle_timeout_minutes=0, daily_reset_enabled=True, daily_reset_hour=hour, timezone=timezone
    )


def test_daily_reset_replaces_a_session_once_the_reset_hour_passes_in_the_users_timezone(
    store: SessionStore, clock: Clock
) -> None:
    clock.now = berlin(2025, 1, 14, 23, 0)
    resolve(store, policy=daily())
    turn(store)

    clock.now = berlin(2025, 1, 15, 3, 59)
    _, reason = resolve(store, policy=daily())
    assert reason is None, "04:00 Berlin has not come yet"

    clock.now = berlin(2025, 1, 15, 4, 0)
    fresh, reason = resolve(store, policy=daily())
    assert reason == "daily"
    assert fresh.buckets == {}

    turn(store, session_id="claude-2")  # active after the boundary: good until tomorrow 04:00
    clock.now = berlin(2025, 1, 16, 3, 59)
    session, reason = resolve(store, policy=daily())
    assert reason is None and session.bucket().session_id == "claude-2"


def test_daily_reset_hour_is_read_on_the_wall_clock_of_the_configured_timezone(
    store: SessionStore, clock: Clock
) -> None:
    # 04:00 in Tokyo is 19:00 UTC the day before; in Berlin it is still the afternoon.
    clock.now = datetime(2025, 1, 14, 18, 30, tzinfo=UTC)
    resolve(store, "tg:tokyo", daily("Asia/Tokyo"))
    resolve(store, "tg:berlin", daily("Europe/Berlin"))
    clock.now = datetime(2025, 1, 14, 19, 30, tzinfo=UTC)

    assert resolve(store, "tg:tokyo", daily("Asia/Tokyo"))[1] == ResetReason.DAILY
    assert resolve(store, "tg:berlin", daily("Europe/Berlin"))[1] is None


def test_daily_reset_follows_the_berlin_wall_clock_on_the_day_summer_time_starts(
    store: SessionStore, clock: Clock
) -> None:
    # 30 March 2025: 02:00 CET jumps to 03:00 CEST, so 04:00 Berlin is 02:00 UTC (not 03:00).
    clock.now = berlin(2025, 3, 30, 3, 45)  # 01:45 UTC, before the boundary
    resolve(store, "tg:before", daily())
    clock.now = berlin(2025, 3, 30, 4, 5)  # 02:05 UTC, after it
    resolve(store, "tg:after", daily())

    clock.now = berlin(2025, 3, 30, 4, 30)
    assert resolve(store, "tg:before", daily())[1] == ResetReason.DAILY
    assert resolve(store, "tg:after", daily())[1] is None
    assert last_daily_reset(clock.now, 4, "Europe/Berlin") == datetime(
        2025, 3, 30, 2, 0, tzinfo=UTC
    )


def test_daily_reset_follows_the_berlin_wall_clock_on_the_day_summer_time_ends(
    store: SessionStore, clock: Clock
) -> None:
    # 26 October 2025: 03:00 CEST falls back to 02:00 CET, so 04:00 Berlin is 03:00 UTC.
    clock.now = datetime(2025, 10, 26, 2, 30, tzinfo=UTC)  # 03:30 CET
    resolve(store, "tg:before", daily())
    clock.now = datetime(2025, 10, 26, 3, 5, tzinfo=UTC)  # 04:05 CET
    resolve(store, "tg:after", daily())

    clock.now = datetime(2025, 10, 26, 3, 10, tzinfo=UTC)
    assert resolve(store, "tg:before", daily())[1] == ResetReason.DAILY
    assert resolve(store, "tg:after", daily())[1] is None


def test_an_hour_that_does_not_exist_that_day_falls_on_the_moment_the_clocks_jump() -> None:
    now = datetime(2025, 3, 30, 12, 0, tzinfo=UTC)

    assert last_daily_reset(now, 2, "Europe/Berlin") == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)


def test_daily_reset_disabled_keeps_the_session_across_the_reset_hour(
    store: SessionStore, clock: Clock
) -> None:
    policy = FreshnessPolicy(idle_timeout_minutes=0, daily_reset_hour=4, timezone="Europe/Berlin")
    clock.now = berlin(2025, 1, 14, 23, 0)
    resolve(store, policy=policy)
    clock.now = berlin(2025, 1, 15, 12, 0)

    assert resolve(store, policy=policy)[1] is None


def test_an_unknown_timezone_logs_a_warning_and_uses_local_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        boundary = last_daily_reset(START, 4, "Mars/Olympus_Mons")
    finally:
        monkeypatch.undo()
        time.tzset()

    assert boundary == datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
    assert "Mars/Olympus_Mons" in caplog.text


def test_a_daily_reset_hour_outside_the_day_is_refused() -> None:
    with pytest.raises(ValueError, match="daily_reset_hour"):
        FreshnessPolicy(daily_reset_hour=24)


def test_reaching_max_session_messages_resets_only_the_active_bucket(
    store: SessionStore, file: Path
) -> None:
    policy = FreshnessPolicy(idle_timeout_minutes=0, max_session_messages=3)
    resolve(store, policy=policy)
    turn(store, provider="codex", session_id="thread-1", model="gpt-5.5")
    for _ in range(2):
        turn(store)
    assert resolve(store, policy=policy)[1] is None

    turn(store)
    session, reason = resolve(store, policy=policy)

    assert reason == "max_messages"
    assert "claude" not in session.buckets
    assert session.bucket("codex") == ProviderBucket(
        session_id="thread-1",
        message_count=1,
        input_tokens=100,
        output_tokens=20,
        cost_usd=0.5,
        last_active=START,
    )
    assert "claude" not in SessionStore(file).sessions()[0].buckets


# -- turns -------------------------------------------------------------------------------


def test_record_turn_counts_the_turn_and_accumulates_tokens_and_cost(
    store: SessionStore, clock: Clock
) -> None:
    resolve(store)
    turn(store)
    clock.advance(minutes=3)
    session = store.record_turn(
        "tg:1",
        "claude",
        session_id="claude-1",
        model="opus",
        input_tokens=7,
        output_tokens=3,
        cost_usd=0.25,
    )

    bucket = session.bucket()
    assert (bucket.message_count, bucket.input_tokens, bucket.output_tokens) == (2, 107, 23)
    assert bucket.cost_usd == 0.75
    assert bucket.last_active == session.last_active == clock.now
    assert session.created_at == START


def test_a_turn_with_unknown_cost_adds_tokens_but_no_cost(store: SessionStore) -> None:
    resolve(store)
    turn(store, cost=None)

    assert store.get("tg:1") is not None
    bucket = store.get("tg:1").bucket()  # type: ignore[union-attr]
    assert bucket.cost_usd == 0.0 and bucket.input_tokens == 100


def test_session_totals_sum_every_providers_bucket(store: SessionStore) -> None:
    resolve(store)
    turn(store)
    session = turn(store, provider="codex", session_id="thread-1", cost=0.25)

    assert session.total_cost_usd == 0.75
    assert session.total_tokens == 240


def test_first_seen_session_id_is_kept_for_an_aborted_turn_without_counting_it(
    store: SessionStore, file: Path
) -> None:
    resolve(store)

    store.record_session_id("tg:1", "claude", "claude-1")

    reloaded = SessionStore(file).get("tg:1")
    assert reloaded is not None
    assert reloaded.bucket() == ProviderBucket(session_id="claude-1")


def test_session_id_for_a_removed_session_is_dropped(store: SessionStore) -> None:
    store.record_session_id("tg:gone", "claude", "claude-1")

    assert store.get("tg:gone") is None


def test_a_turn_that_finishes_after_a_model_switch_keeps_the_new_target(
    store: SessionStore,
) -> None:
    resolve(store)
    store.retarget("tg:1", provider="codex", model="gpt-5.5", **DEFAULTS)

    session = turn(store, provider="claude", session_id="claude-1")

    assert (session.provider, session.model) == ("codex", "gpt-5.5")
    assert session.bucket("claude").session_id == "claude-1"


def test_a_turn_for_a_removed_session_recreates_it_on_the_turns_model(
    store: SessionStore,
) -> None:
    session = turn(store, "tg:9", "codex", "thread-1", model="gpt-5.5")

    assert (session.provider, session.model) == ("codex", "gpt-5.5")
    assert session.bucket().message_count == 1


# -- commands ----------------------------------------------------------------------------


def test_switching_provider_keeps_the_other_bucket_and_switching_back_resumes_its_session(
    store: SessionStore,
) -> None:
    resolve(store)
    turn(store)

    codex = store.retarget("tg:1", provider="codex", model="gpt-5.5", **DEFAULTS)
    assert codex.bucket().session_id is None, "codex starts its own conversation"
    turn(store, provider="codex", session_id="thread-1", model="gpt-5.5")

    back = store.retarget("tg:1", provider="claude", model="sonnet", **DEFAULTS)

    assert (back.provider, back.model) == ("claude", "sonnet")
    assert back.bucket().session_id == "claude-1"
    assert back.bucket().message_count == 1
    assert back.bucket("codex").session_id == "thread-1"


def test_retarget_keeps_the_effort_unless_one_is_given(store: SessionStore) -> None:
    store.retarget("tg:1", provider="claude", model="opus", effort="high", **DEFAULTS)

    kept = store.retarget("tg:1", provider="claude", model="sonnet", **DEFAULTS)
    assert kept.effort == "high"

    changed = store.retarget("tg:1", provider="codex", model="gpt-5.5", effort="low", **DEFAULTS)
    assert changed.effort == "low"


def test_model_switch_in_a_chat_without_a_session_creates_one_on_that_model(
    store: SessionStore, file: Path
) -> None:
    store.retarget("tg:-1:7", provider="gemini", model="flash", **DEFAULTS)

    reloaded = SessionStore(file).get("tg:-1:7")
    assert reloaded is not None
    assert (reloaded.provider, reloaded.model) == ("gemini", "flash")


def test_set_effort_applies_to_this_session_only(store: SessionStore, file: Path) -> None:
    resolve(store, "tg:1")
    resolve(store, "tg:2")

    store.set_effort("tg:1", "max")

    reloaded = SessionStore(file)
    assert [reloaded.get(key).effort for key in ("tg:1", "tg:2")] == ["max", ""]  # type: ignore[union-attr]


def test_set_effort_without_a_session_names_the_chat(store: SessionStore) -> None:
    with pytest.raises(UnknownSessionError, match="tg:404"):
        store.set_effort("tg:404", "high")


def on_codex_with_two_buckets(store: SessionStore) -> None:
    resolve(store)
    turn(store)
    store.retarget("tg:1", provider="codex", model="gpt-5.5", effort="high", **DEFAULTS)
    turn(store, provider="codex", session_id="thread-1", model="gpt-5.5")


def test_new_resets_the_default_providers_bucket_and_makes_the_default_active_again(
    store: SessionStore, file: Path, clock: Clock
) -> None:
    on_codex_with_two_buckets(store)
    clock.advance(hours=1)

    session = store.new_session("tg:1", **DEFAULTS)

    assert (session.provider, session.model, session.effort) == ("claude", "opus", "")
    assert "claude" not in session.buckets
    assert session.bucket("codex").session_id == "thread-1", "other providers are preserved"
    assert session.last_active == clock.now
    assert SessionStore(file).get("tg:1") == session


def test_reset_clears_the_active_providers_bucket_and_stays_on_its_model(
    store: SessionStore, file: Path
) -> None:
    on_codex_with_two_buckets(store)

    session = store.reset_current("tg:1", **DEFAULTS)

    assert (session.provider, session.model, session.effort) == ("codex", "gpt-5.5", "high")
    assert "codex" not in session.buckets
    assert session.bucket("claude").session_id == "claude-1"
    assert SessionStore(file).get("tg:1") == session


def test_new_and_reset_in_a_chat_without_a_session_start_one_on_the_defaults(
    store: SessionStore,
) -> None:
    new = store.new_session("tg:1", **DEFAULTS)
    reset = store.reset_current("tg:2", **DEFAULTS)

    assert [(s.provider, s.model, s.buckets) for s in (new, reset)] == [("claude", "opus", {})] * 2


def test_new_session_is_not_expired_right_away_by_an_old_last_activity(
    store: SessionStore, clock: Clock
) -> None:
    policy = FreshnessPolicy(idle_timeout_minutes=60)
    resolve(store, policy=policy)
    turn(store)
    clock.advance(hours=5)
    store.retarget("tg:1", provider="codex", model="gpt-5.5", **DEFAULTS)
    turn(store, provider="codex", session_id="thread-1")
    clock.advance(hours=5)

    store.reset_current("tg:1", **DEFAULTS)

    session, reason = resolve(store, policy=policy)
    assert reason is None
    assert session.bucket("claude").session_id == "claude-1"


def test_reset_bucket_forgets_one_providers_session_and_counters(store: SessionStore) -> None:
    on_codex_with_two_buckets(store)

    session = store.reset_bucket("tg:1", "claude")

    assert session is not None
    assert session.bucket("claude") == ProviderBucket()
    assert session.bucket("codex").message_count == 1
    assert store.reset_bucket("tg:404", "claude") is None


def test_topic_name_and_removal_are_saved(store: SessionStore, file: Path) -> None:
    resolve(store, "tg:-1:7")
    resolve(store, "tg:-1:8")
    store.set_topic_name("tg:-1:7", "Research")

    assert store.remove("tg:-1:8") is True
    assert store.remove("tg:-1:8") is False

    reloaded = SessionStore(file)
    assert reloaded.keys() == ["tg:-1:7"]
    assert reloaded.get("tg:-1:7").topic_name == "Research"  # type: ignore[union-attr]


# -- the age note ------------------------------------------------------------------------


def aged(hours: float, messages: int) -> Session:
    session = Session(
        key="tg:1", provider="claude", model="opus", created_at=START, last_active=START
    )
    session.bucket().message_count = messages
    return session


@pytest.mark.parametrize(
    ("hours", "messages", "note"),
    [
        (14.5, 10, "[Session is 14h old. Use /new for a fresh start.]"),
        (47, 20, "[Session is 47h old. Use /new for a fresh start.]"),
        (75, 30, "[Session is 3 days old. Use /new for a fresh start.]"),
        (14, 11, ""),  # only every 10th message
        (14, 0, ""),
        (11, 10, ""),  # younger than the warning
    ],
)
def test_age_note_on_every_tenth_message_of_an_old_session(
    hours: float, messages: int, note: str
) -> None:
    now = START + timedelta(hours=hours)

    assert session_age_note(aged(hours, messages), warning_hours=12, now=now) == note


def test_age_note_is_off_when_warning_hours_is_zero() -> None:
    now = START + timedelta(days=9)

    assert session_age_note(aged(216, 10), warning_hours=0, now=now) == ""


# -- the file ----------------------------------------------------------------------------


def test_a_new_store_reads_back_every_session_as_it_was(store: SessionStore, file: Path) -> None:
    on_codex_with_two_buckets(store)
    store.set_topic_name("tg:1", "Ops")
    resolve(store, "mx:!abc:server")
    store.record_session_id("mx:!abc:server", "claude", "claude-9")

    reloaded = SessionStore(file)

    assert reloaded.sessions() == store.sessions()
    assert reloaded.get("mx:!abc:server").chat == "!abc:server"  # type: ignore[union-attr]


def test_the_file_is_versioned_pretty_json_with_utc_timestamps_and_provider_sessions(
    store: SessionStore, file: Path
) -> None:
    resolve(store, "tg:-100123:7")
    turn(store, "tg:-100123:7")

    text = file.read_text()
    record = json.loads(text)["sessions"]["tg:-100123:7"]

    assert json.loads(text)["version"] == 1
    assert text.startswith('{\n  "version": 1')
    assert record == {
        "transport": "tg",
        "chat": "-100123",
        "topic": "7",
        "topic_name": "",
        "provider": "claude",
        "model": "opus",
        "effort": "",
        "created_at": "2025-06-01T12:00:00+00:00",
        "last_active": "2025-06-01T12:00:00+00:00",
        "provider_sessions": {
            "claude": {
                "session_id": "claude-1",
                "message_count": 1,
                "input_tokens": 100,
                "output_tokens": 20,
                "cost_usd": 0.5,
                "last_active": "2025-06-01T12:00:00+00:00",
            }
        },
    }


def test_the_file_is_private_whatever_the_umask(store: SessionStore, file: Path) -> None:
    old_umask = os.umask(0)
    try:
        resolve(store)
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_timestamps_from_another_clock_zone_are_stored_in_utc(file: Path) -> None:
    store = SessionStore(file, now=lambda: datetime(2025, 6, 1, 14, 0, tzinfo=BERLIN))
    resolve(store)

    assert json.loads(file.read_text())["sessions"]["tg:1"]["created_at"] == (
        "2025-06-01T12:00:00+00:00"
    )


def test_a_missing_file_is_an_empty_store_and_nothing_is_written(file: Path) -> None:
    assert SessionStore(file).keys() == []
    assert not file.parent.exists()


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": 1, "sessions": {"tg:1": ',
        b"\xff\xfe not utf-8",
        b"[]",
        b'{"version": 2, "sessions": {}}',
        b'{"version": 1, "sessions": []}',
    ],
    ids=["truncated", "not-utf8", "not-an-object", "unknown-version", "sessions-not-an-object"],
)
def test_a_corrupt_file_is_set_aside_and_the_store_starts_empty(
    file: Path, clock: Clock, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    file.parent.mkdir()
    file.write_bytes(content)

    with caplog.at_level(logging.ERROR):
        store = SessionStore(file, now=clock)

    assert store.keys() == []
    assert not file.exists()
    aside = file.with_name("sessions.json.corrupt-20250601T120000Z")
    assert aside.read_bytes() == content
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "sessions.json.corrupt-20250601T120000Z" in caplog.text

    resolve(store)
    assert SessionStore(file).keys() == ["tg:1"]


def test_a_second_corrupt_file_in_the_same_second_does_not_replace_the_first(
    file: Path, clock: Clock
) -> None:
    file.parent.mkdir()
    for content in (b"first", b"second"):
        file.write_bytes(content)
        SessionStore(file, now=clock)

    assert sorted(p.read_bytes() for p in file.parent.glob("sessions.json.corrupt-*")) == [
        b"first",
        b"second",
    ]


def write_document(file: Path, sessions: dict[str, object]) -> None:
    file.parent.mkdir(exist_ok=True)
    file.write_text(json.dumps({"version": 1, "sessions": sessions}))


def good_record(**extra: object) -> dict[str, object]:
    return {
        "provider": "claude",
        "model": "opus",
        "created_at": "2025-06-01T12:00:00+00:00",
        "last_active": "2025-06-01T12:00:00+00:00",
        "provider_sessions": {"claude": {"session_id": "claude-1", "message_count": 2}},
        **extra,
    }


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (good_record(model=7), "model"),
        (good_record(last_active="yesterday"), "last_active"),
        ({"provider": "claude", "model": "opus"}, "created_at"),
        (good_record(provider_sessions={"claude": {"message_count": -1}}), "message_count"),
        (good_record(provider_sessions={"codex": {"cost_usd": "free"}}), "cost_usd"),
        ("not a record", "tg:2"),
    ],
)
def test_a_bad_record_is_skipped_with_a_warning_naming_it_while_the_others_load(
    store: SessionStore,
    file: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    bad: object,
    field: str,
) -> None:
    write_document(file, {"tg:1": good_record(), "tg:2": bad, "tg:3": good_record()})

    with caplog.at_level(logging.WARNING):
        loaded = SessionStore(file, now=clock)

    assert loaded.keys() == ["tg:1", "tg:3"]
    assert loaded.get("tg:1").bucket().message_count == 2  # type: ignore[union-attr]
    [warning] = caplog.records
    assert "'tg:2'" in warning.getMessage() and field in warning.getMessage()
    assert not list(file.parent.glob("*.corrupt-*"))


def test_a_bad_record_is_kept_in_the_file_until_its_chat_starts_over(
    file: Path, clock: Clock
) -> None:
    write_document(file, {"tg:1": good_record(), "tg:2": good_record(model=None)})
    store = SessionStore(file, now=clock)

    store.set_topic_name("tg:1", "saved")
    assert json.loads(file.read_text())["sessions"]["tg:2"] == good_record(model=None)

    resolve(store, "tg:2")
    assert SessionStore(file).get("tg:2").model == "opus"  # type: ignore[union-attr]


def test_unknown_fields_are_ignored(file: Path) -> None:
    record = good_record(colour="blue", transport="xx", chat="wrong")
    record["provider_sessions"] = {"claude": {"session_id": "claude-1", "mood": "calm"}}
    write_document(file, {"tg:-1:5": record})
    file.write_text(
        json.dumps({"version": 1, "written_by": "future", "sessions": {"tg:-1:5": record}})
    )

    session = SessionStore(file).get("tg:-1:5")

    assert session is not None
    assert (session.transport, session.chat, session.topic) == ("tg", "-1", "5")
    assert session.bucket().session_id == "claude-1"


# -- crash safety ------------------------------------------------------------------------

KEYS = [f"tg:{n}" for n in range(20)]
SAVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ductor.agent.sessions import SessionStore

    store = SessionStore(Path(sys.argv[1]))
    keys = [f"tg:{n}" for n in range(int(sys.argv[2]))]

    def count(key):
        session = store.get(key)
        return session.bucket("claude").message_count if session else 0

    while True:  # one turn for each key in turn, carrying on where the last saver died
        key = min(keys, key=count)
        store.record_turn(key, "claude", session_id="id-" + key, model="opus",
                          input_tokens=1, output_tokens=2, cost_usd=0.25)
    """
)


def counts_in(file: Path) -> list[int]:
    """Message counts per key, checked for a complete and consistent state: the saver
    counts one turn per key in order, so the counts step down by at most one, once."""
    store = SessionStore(file)
    assert not list(file.parent.glob("*.corrupt-*")), "the file was not complete JSON"
    counts = []
    for key in KEYS:
        session = store.get(key)
        if session is None:
            counts.append(0)
            continue
        bucket = session.bucket("claude")
        count = bucket.message_count
        assert (bucket.input_tokens, bucket.output_tokens) == (count, 2 * count)
        assert bucket.cost_usd == 0.25 * count and bucket.session_id == f"id-{key}"
        counts.append(count)
    assert all(a - b in (0, 1) for a, b in itertools.pairwise(counts))
    assert counts[0] - counts[-1] <= 1
    return counts


def saved_turns(file: Path) -> int:
    try:
        document = json.loads(file.read_bytes())
    except (FileNotFoundError, ValueError):  # judged after the kill, by counts_in()
        return 0
    return sum(
        record["provider_sessions"]["claude"]["message_count"]
        for record in document["sessions"].values()
    )


def test_store_killed_at_random_moments_while_saving_always_leaves_a_complete_file(
    file: Path,
) -> None:
    file.parent.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(LIB), os.environ.get("PYTHONPATH")])),
    }
    rng = random.Random(20251121)
    previous = 0
    for _ in range(30):
        target = previous + rng.randint(1, 40)
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(file), str(len(KEYS))],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while saved_turns(file) < target and saver.poll() is None:
            assert time.monotonic() < deadline, "the saver made no progress"
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.005))
        saver.send_signal(signal.SIGKILL)
        assert saver.wait() == -signal.SIGKILL

        total = sum(counts_in(file))
        assert total >= max(previous, target), "a save that completed was lost"
        previous = total

    stray = {p.name for p in file.parent.iterdir()} - {"sessions.json"}
    assert all(name.startswith(".sessions.json.") and name.endswith(".tmp") for name in stray)

"""The original's sessions, chat activity and cron jobs → this product's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ductor.agent.sessions import SessionStore
from ductor.cron import jobs as cron_jobs
from ductor.migrate.state_map import map_chat_activity, map_cron_jobs, map_sessions

FIXTURE = Path(__file__).parents[1] / "fixtures" / "original-home" / "ductor-home"
ROOMS = {15267314899397899578: "!ops:example.org"}


def load_sessions(tmp_path: Path, document: dict[str, object]) -> SessionStore:
    file = tmp_path / "sessions.json"
    file.write_text(json.dumps(document))
    return SessionStore(file)


def test_the_fixtures_sessions_keep_every_provider_bucket_and_load(tmp_path: Path) -> None:
    original = json.loads((FIXTURE / "sessions.json").read_text())
    result = map_sessions(original, rooms=ROOMS, default_provider="claude")
    store = load_sessions(tmp_path, result.document)
    private = store.get("tg:100")
    topic = store.get("tg:-100200:7")
    assert private is not None and topic is not None
    assert private.bucket("claude").session_id == "11111111-1111-4111-8111-111111111111"
    assert private.bucket("claude").message_count == 1
    assert private.bucket("claude").cost_usd == pytest.approx(0.12)
    assert topic.provider == "codex" and topic.model == "gpt-5.2-codex"
    assert set(topic.buckets) == {"claude", "codex"}
    assert ("claude", "22222222-2222-4222-8222-222222222222") in result.cli_sessions


def test_legacy_matrix_slack_and_unsupported_provider_records() -> None:
    now = "2026-12-01T10:00:00+00:00"
    original = {
        "555": {"provider": "claude", "session_id": "legacy-id", "message_count": 4,
                "created_at": now, "last_active": now},
        "mx:15267314899397899578": {"transport": "mx", "provider": "claude", "model": "opus",
                                    "created_at": now, "last_active": now,
                                    "provider_sessions": {"claude": {"session_id": "m1"}}},
        "sl:1:2": {"provider": "claude", "created_at": now, "last_active": now},
        "tg:9": {"provider": "grok", "model": "grok-4.5", "created_at": now, "last_active": now,
                 "provider_sessions": {"grok": {"session_id": "g"}}},
    }  # fmt: skip
    result = map_sessions(original, rooms=ROOMS, default_provider="claude")
    sessions = result.document["sessions"]
    assert sessions["tg:555"]["provider_sessions"]["claude"]["session_id"] == "legacy-id"
    assert sessions["tg:555"]["provider_sessions"]["claude"]["message_count"] == 4
    assert "mx:!ops:example.org" in sessions
    assert sessions["tg:9"]["provider"] == "claude" and sessions["tg:9"]["provider_sessions"] == {}
    dropped = dict(result.dropped)
    assert dropped["sessions.json sl:1:2"] == "Slack is not supported"
    assert "grok is not supported" in dropped["sessions.json tg:9 grok bucket"]


def test_chat_activity_keeps_every_chat_with_its_status() -> None:
    original = json.loads((FIXTURE / "chat_activity.json").read_text())
    document, dropped = map_chat_activity(original)
    records = document["records"]
    assert records["-100200"]["title"] == "Team forum"
    assert records["-100200"]["status"] == "active"
    assert records["-100999"]["status"] == "rejected"
    assert records["-100999"]["rejected_count"] == 1
    assert "allowed" not in records["-100999"]
    assert dropped == []


def test_cron_jobs_keep_schedule_timezone_quiet_hours_overrides_and_routing() -> None:
    original = json.loads((FIXTURE / "cron_jobs.json").read_text())
    mapped, dropped = map_cron_jobs(original, rooms=ROOMS)
    jobs = {m.job.name: m.job for m in mapped}
    news = jobs["daily-news"]
    assert (news.schedule, news.timezone) == ("30 7 * * 1-5", "America/New_York")
    assert (news.quiet_start, news.quiet_end) == (22, 6)
    assert (news.transport, news.chat_id, news.topic_id) == ("tg", "100", "")
    review = jobs["weekly-review"]
    assert (review.provider, review.model, review.effort) == ("codex", "gpt-5.2-codex", "high")
    assert (review.chat_id, review.topic_id) == ("-100200", "7")
    assert review.dependency == "reviews" and review.silent_on_success
    assert dropped == []
    text = cron_jobs.render(jobs)
    assert "daily-news" in text


def test_cron_jobs_that_cannot_run_here_are_dropped_with_the_reason() -> None:
    original = {
        "jobs": [
            {"id": "Bad Schedule", "schedule": "every day", "agent_instruction": "x"},
            {"id": "grok-job", "schedule": "0 9 * * *", "provider": "grok",
             "cli_parameters": ["--x"]},
            {"id": "matrix-job", "schedule": "0 9 * * *", "transport": "mx",
             "chat_id": 15267314899397899578},
            {"id": "lost-room", "schedule": "0 9 * * *", "transport": "mx", "chat_id": 1},
            {"id": "half-quiet", "schedule": "0 9 * * *", "quiet_start": 22},
        ]
    }  # fmt: skip
    mapped, dropped = map_cron_jobs(original, rooms=ROOMS)
    jobs = {m.job.name: m.job for m in mapped}
    reasons = dict(dropped)
    assert "schedule" in reasons["cron job Bad Schedule"]
    assert jobs["grok-job"].provider == ""
    assert "not supported" in reasons["cron job grok-job provider"]
    assert "not supported" in reasons["cron job grok-job cli_parameters"]
    assert (jobs["matrix-job"].transport, jobs["matrix-job"].chat_id) == (
        "mx",
        "!ops:example.org",
    )
    assert "room_id_map" in reasons["cron job lost-room"]
    assert jobs["half-quiet"].quiet_start is None
    assert "only one" in reasons["cron job half-quiet quiet hours"]

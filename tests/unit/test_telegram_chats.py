"""The chats the bot has been in (/where, /leave, the group audit) and topic names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ductor.transports.telegram.chats import (
    ACTIVITY_FILE,
    LEAVE_USAGE,
    ChatActivity,
    parse_leave_args,
)
from ductor.transports.telegram.topics import TopicNames


class Clock:
    def __init__(self) -> None:
        self.now = "2025-01-01T10:00:00+00:00"

    def __call__(self) -> str:
        return self.now


def test_records_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    chats = ChatActivity(tmp_path, clock=clock)
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    clock.now = "2025-01-02T10:00:00+00:00"
    chats.record(-1002, title="Spam", chat_type="group", status="rejected")
    chats.record(-1002, title="Spam", chat_type="group", status="rejected")

    again = ChatActivity(tmp_path)
    team, spam = again.get(-1001), again.get(-1002)
    assert team is not None
    assert spam is not None
    assert (team.title, team.status, team.first_seen) == (
        "Team",
        "active",
        "2025-01-01T10:00:00+00:00",
    )
    assert (spam.status, spam.rejected_count) == ("rejected", 2)
    stored = json.loads((tmp_path / ACTIVITY_FILE).read_text())
    assert stored["records"]["-1002"]["rejected_count"] == 2
    assert (tmp_path / ACTIVITY_FILE).stat().st_mode & 0o077 == 0


def test_record_without_a_title_keeps_the_known_one(tmp_path: Path) -> None:
    chats = ChatActivity(tmp_path)
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    record = chats.record(-1001, title="", chat_type="", status="auto_left")
    assert (record.title, record.chat_type, record.status) == ("Team", "supergroup", "auto_left")


def test_last_seen_alone_is_written_at_most_hourly(tmp_path: Path) -> None:
    clock = Clock()
    chats = ChatActivity(tmp_path, clock=clock)
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    clock.now = "2025-01-01T10:30:00+00:00"
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    assert ChatActivity(tmp_path).records()[0].last_seen == "2025-01-01T10:00:00+00:00"
    clock.now = "2025-01-01T11:05:00+00:00"
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    assert ChatActivity(tmp_path).records()[0].last_seen == "2025-01-01T11:05:00+00:00"


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown chat status"):
        ChatActivity(tmp_path).record(-1, title="", chat_type="group", status="banned")


def test_a_corrupt_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / ACTIVITY_FILE).write_text("{not json")
    chats = ChatActivity(tmp_path)
    assert chats.records() == []
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    assert len(ChatActivity(tmp_path).records()) == 1


def test_a_bad_record_is_skipped_and_the_rest_kept(tmp_path: Path) -> None:
    records = {
        "-1": {"title": "Good", "chat_type": "group", "status": "active"},
        "-2": {"title": 5, "status": "active"},
        "x": {"status": "active"},
    }
    (tmp_path / ACTIVITY_FILE).write_text(json.dumps({"records": records}))
    assert [r.chat_id for r in ChatActivity(tmp_path).records()] == [-1]


def test_where_lists_chats_by_section(tmp_path: Path) -> None:
    chats = ChatActivity(tmp_path)
    chats.record(-1001, title="Team", chat_type="supergroup", status="active")
    for _ in range(3):
        chats.record(-1002, title="Spam", chat_type="group", status="rejected")
    chats.record(-1003, title="Old", chat_type="group", status="left")
    chats.record(-1004, title="Gone", chat_type="supergroup", status="kicked")
    assert chats.format_where() == (
        "**Active**\n"
        "`-1001` — Team (supergroup)\n"
        "\n"
        "**Rejected**\n"
        "`-1002` — Spam (group) (3x rejected)\n"
        "\n"
        "**Left**\n"
        "`-1004` — Gone (supergroup) [kicked]\n"
        "`-1003` — Old (group)"
    )


def test_where_with_nothing_recorded_says_so(tmp_path: Path) -> None:
    assert ChatActivity(tmp_path).format_where() == "No chats recorded yet."


def test_audit_names_active_groups_that_are_no_longer_allowed(tmp_path: Path) -> None:
    chats = ChatActivity(tmp_path)
    chats.record(-1001, title="Kept", chat_type="supergroup", status="active")
    chats.record(-1002, title="Dropped", chat_type="group", status="active")
    chats.record(-1003, title="Already left", chat_type="group", status="left")
    chats.record(-1004, title="Rejected", chat_type="group", status="rejected")
    assert chats.audit([-1001]) == [-1002]
    assert chats.audit([-1001, -1002]) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/leave", "Usage: /leave"),
        ("/leave abc", "'abc' is not a chat id"),
        ("/leave 42", "group ids are negative"),
        ("/leave -1 -2", "Usage: /leave"),
    ],
)
def test_leave_arguments_that_are_not_one_group_id_get_the_usage(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        parse_leave_args(text)
    assert LEAVE_USAGE in str(raised.value)


def test_leave_takes_a_group_id() -> None:
    assert parse_leave_args("/leave -1001234567890") == -1001234567890
    assert parse_leave_args("/leave@ourbot  -42 ") == -42


def test_topic_names_are_learned_and_found_in_any_case() -> None:
    topics = TopicNames()
    assert topics.name(-100, 7) == "Topic #7"
    topics.learn(-100, 7, "Ops")
    topics.learn(-200, 9, "Ops")
    assert topics.name(-100, 7) == "Ops"
    assert topics.find(-100, "ops") == 7
    assert topics.find(-100, "@OPS") == 7
    assert topics.find(-200, "Ops") == 9
    assert topics.find(-100, "Dev") is None
    topics.learn(-100, 7, "Operations")
    assert topics.find(-100, "Ops") is None
    assert topics.name(-100, 7) == "Operations"


def test_a_blank_topic_name_is_not_learned() -> None:
    topics = TopicNames()
    topics.learn(-100, 7, "  ")
    assert topics.name(-100, 7) == "Topic #7"
    assert topics.find(-100, "") is None


def test_learned_topic_names_are_kept_in_the_state_directory(tmp_path: Path) -> None:
    TopicNames(tmp_path).learn(-100, 7, "Ops")
    again = TopicNames(tmp_path)
    assert again.known(-100, 7) == "Ops"
    assert again.known(-100, 8) == "" and again.known(-100, None) == ""


def test_an_unreadable_topic_names_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "topic_names.json").write_text("{not json")
    topics = TopicNames(tmp_path)
    assert len(topics) == 0
    topics.learn(-100, 7, "Ops")
    assert TopicNames(tmp_path).known(-100, 7) == "Ops"

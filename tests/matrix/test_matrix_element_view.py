"""What an Element user reads: long answers in any script arrive whole, and every line
break of an answer or a command's reply shows (Element collapses the whitespace of
``formatted_body``: only markup breaks a line)."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from tests.matrix.conftest import MatrixUsers
from tests.matrix.element_view import visible_lines
from tests.matrix.test_matrix_transport import Bot, bot_for, eventually, group_room, scenario
from tests.process.agent_proc import REPO
from tests.stubs.synapse import Synapse

__all__ = ["bot_for"]

CYRILLIC = "\n\n".join(
    " ".join(f"слово{n:05d}" for n in range(start, start + 100)) for start in range(0, 1900, 100)
)  # 19 paragraphs of 100 words: over 20,000 characters, two bytes each in UTF-8
CJK = "".join(f"{n:04d}" + "漢字かな交じり文" * 2 for n in range(850))  # 13,600+ characters


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_long_cyrillic_and_cjk_answers_arrive_complete(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    assert len(CYRILLIC) > 20_000 and len(CJK) > 13_600
    answer = Path(scenario(tmp_path, CYRILLIC))
    bot = bot_for(FAKECLI_SCENARIO=str(answer))
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "a long answer, please")
    eventually(lambda: squeezed(CYRILLIC) in squeezed("".join(bot.bodies(room))), 30, bot.transport)
    first = len(bot.bodies(room))
    scenario(tmp_path, CJK)  # the next run of the fake CLI answers this
    synapse.send_text(alice.access_token, room, "and one in Japanese")
    eventually(
        lambda: squeezed("".join(bot.bodies(room)[first:])) == squeezed(CJK), 30, bot.transport
    )
    for event in bot.bot_messages(room):  # the HTML carries all of it too
        assert visible_lines(event["content"]["formatted_body"])
    html_text = "".join(
        "".join(visible_lines(e["content"]["formatted_body"]))
        for e in bot.bot_messages(room)[first:]
    )
    assert squeezed(html_text) == squeezed(CJK)
    assert "M_TOO_LARGE" not in bot.transport.log()


ANSWER = """## Plan

First line of the answer
second line, same paragraph.

- one item
- another item

1. step one
2. step two

```python
print("a")
print("b")
```

| name | size |
|------|------|
| a    | 1    |
| b    | 2    |

> a quote"""

SHOWN = [
    "Plan",
    "First line of the answer",
    "second line, same paragraph.",
    "• one item",
    "• another item",
    "1. step one",
    "2. step two",
    'print("a")',
    'print("b")',
    "name | size",
    "a | 1",
    "b | 2",
    "a quote",
]


def test_every_line_break_of_answers_and_commands_shows_in_element(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_SCENARIO=scenario(tmp_path, ANSWER))
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "plan it")
    bot.wait_bodies(room, 1)
    (answer,) = bot.bot_messages(room)
    assert visible_lines(answer["content"]["formatted_body"]) == SHOWN
    assert answer["content"]["body"] == ANSWER  # the plain body reads as Markdown
    for command in ("!help", "!status", "!model"):
        count = len(bot.bot_messages(room))
        synapse.send_text(alice.access_token, room, command)
        reply = bot.wait_bodies(room, count + 1)[count]
        content = bot.bot_messages(room)[count]["content"]
        written = [line.strip() for line in reply.splitlines() if line.strip()]
        shown = visible_lines(content["formatted_body"])
        assert len(written) > 2, reply
        assert len(shown) == len(written), (command, shown, written)


def test_a_mention_only_group_hears_only_its_own_commands_and_real_mentions(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot_user = matrix_users.alice, matrix_users.bot
    bot, room = group_room(
        bot_for, synapse, matrix_users, "chatty", matrix_extra="group_mention_only = true\n"
    )
    localpart = bot_user.user_id[1:].split(":")[0]
    synapse.send_text(alice.access_token, room, "!poll lunch at noon?")  # another bot's
    synapse.send_text(alice.access_token, room, f"I think {localpart} is slow today")
    synapse.send_text(alice.access_token, room, f"{bot_user.user_id} !restart")
    (listing,) = bot.wait_bodies(room, 1)
    assert "not a command" in listing and "!new" in listing and "!help" in listing
    synapse.send_text(alice.access_token, room, "!status")
    status = bot.wait_bodies(room, 2)[1]
    assert "ECHO" not in status
    time.sleep(1.0)
    assert len(bot.bodies(room)) == 2  # neither the poll nor the name was an answer


def test_where_and_leave_belong_to_the_owner_and_where_in_a_group_names_only_it(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, mallory, bot_user = matrix_users.alice, matrix_users.mallory, matrix_users.bot
    bot, group = group_room(bot_for, synapse, matrix_users, "shared")
    dm = bot.dm()  # alice's, the owner's
    both = json.dumps([alice.user_id, mallory.user_id])
    bot.agent.write_config(bot.agent.config.replace(json.dumps([alice.user_id]), both))
    assert bot.transport.proc is not None
    bot.transport.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "config reloaded" in bot.transport.log(), 20, bot.transport)
    synapse.send_text(mallory.access_token, group, f"!leave {dm}")
    (refused,) = bot.wait_bodies(group, 1)
    assert "Only the owner" in refused
    synapse.send_text(mallory.access_token, group, "!where")
    assert "Only the owner" in bot.wait_bodies(group, 2)[1]
    synapse.send_text(alice.access_token, group, "!where")
    where = bot.wait_bodies(group, 3)[2]
    assert group in where and dm not in where
    assert bot_user.user_id in synapse.joined_members(alice.access_token, dm)


def test_after_stop_the_partial_answer_comes_first_and_is_marked_stopped(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_SCENARIO="claude-interrupt-partial")
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "stream slowly")
    eventually(lambda: list((bot.agent.state / "turns").glob("*")), 20, bot.transport)
    time.sleep(0.5)  # the CLI has written "ECHO: stre" and waits
    synapse.send_text(alice.access_token, room, "!stop")
    partial, stopped = bot.wait_bodies(room, 2)
    assert partial.startswith("ECHO: stre") and "stopped" in partial
    assert "Agent Stopped" in stopped
    time.sleep(1.0)
    assert len(bot.bodies(room)) == 2


def test_an_images_caption_reaches_the_prompt_with_the_image(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    record = tmp_path / "record.jsonl"
    bot = bot_for(FAKECLI_RECORD=str(record))
    room = bot.dm()
    alice = matrix_users.alice
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "orange").save(png, "PNG")
    mxc = synapse.upload(alice.access_token, png.getvalue(), "image/png", "cat.png")
    content = {  # as Element sends an image with a caption (Matrix 1.10)
        "msgtype": "m.image",
        "body": "what colour is this cat?",
        "filename": "cat.png",
        "url": mxc,
        "info": {"mimetype": "image/png", "size": len(png.getvalue())},
    }
    synapse.send_event(alice.access_token, room, "m.room.message", content)
    bot.wait_bodies(room, 1)
    (run,) = [json.loads(line) for line in record.read_text().splitlines()]
    prompt = str(run["stdin"])
    assert prompt.startswith("what colour is this cat?")
    assert "matrix_files" in prompt and "[INCOMING FILE]" in prompt


def bot_events(bot: Bot, room: str) -> list[dict[str, Any]]:
    events = bot.synapse.messages(bot.users.alice.access_token, room, limit=500)
    return [e for e in reversed(events) if e["sender"] == bot.users.bot.user_id]


def queue_notices(bot: Bot, room: str) -> list[dict[str, Any]]:
    """The bot's queue notices (not their edits), redacted ones included."""
    return [
        e
        for e in bot_events(bot, room)
        if e["type"] == "m.room.message"
        and e["content"].get("msgtype", "m.notice") == "m.notice"
        and "m.new_content" not in e["content"]
        and (not e["content"] or "in queue" in e["content"].get("body", ""))
    ]


def test_a_burst_of_queued_messages_gets_one_notice_edited_in_place_and_one_cancel(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_SCENARIO="claude-interrupt-partial")  # the first turn waits
    room = bot.dm()
    alice = matrix_users.alice
    for n in range(30):
        synapse.send_text(alice.access_token, room, f"quick message {n}")

    def edited_to(count: int) -> bool:
        return any(
            f"{count} waiting" in e["content"].get("m.new_content", {}).get("body", "")
            for e in bot_events(bot, room)
        )

    eventually(lambda: edited_to(29), 30, bot.transport)
    (notice,) = queue_notices(bot, room)
    synapse.react(alice.access_token, room, notice["event_id"], "1️⃣")
    eventually(lambda: "[29 messages cancelled.]" in bot.bodies(room), 20, bot.transport)
    eventually(lambda: not queue_notices(bot, room)[0]["content"], 20, bot.transport)  # removed
    synapse.send_text(alice.access_token, room, "!stop")
    eventually(lambda: any("Agent Stopped" in b for b in bot.bodies(room)), 20, bot.transport)
    time.sleep(1.0)
    events = bot_events(bot, room)
    kinds = [e["type"] for e in events]
    edits = [e for e in events if "m.new_content" in e.get("content", {})]
    assert len(queue_notices(bot, room)) == 1
    assert kinds.count("m.reaction") == 1 and kinds.count("m.room.redaction") == 1
    assert len(edits) <= 10, [e["content"]["m.new_content"]["body"] for e in edits]
    # the join, the notice, its reaction, a few edits, "cancelled", the stopped partial
    # answer, "Agent Stopped", the redaction: not 30 x (notice, reaction, redaction)
    assert len(events) <= 18, kinds


def test_a_queue_notice_left_by_a_killed_transport_is_removed_at_its_restart(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for(FAKECLI_SCENARIO="claude-interrupt-partial")  # the first turn waits
    room = bot.dm()
    alice = matrix_users.alice
    synapse.send_text(alice.access_token, room, "first")
    synapse.send_text(alice.access_token, room, "second")
    eventually(lambda: queue_notices(bot, room), 20, bot.transport)
    bot.transport.stop(signal.SIGKILL)
    bot.transport.start()
    eventually(lambda: not queue_notices(bot, room)[0]["content"], 20, bot.transport)
    assert len(queue_notices(bot, room)) == 1


def test_after_a_reboot_the_owner_hears_the_bot_is_back_and_a_restart_is_silent(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    bot = bot_for()
    room = bot.dm()
    startup = bot.agent.state / "startup.json"
    bot.agent.stop()
    bot.agent.start()  # a restart of the service: nothing to say
    time.sleep(1.5)
    assert bot.bodies(room) == []
    bot.agent.stop()
    saved = json.loads(startup.read_text())
    startup.write_text(json.dumps({**saved, "boot_id": "another-boot"}))  # as after a reboot
    bot.agent.start()
    (notice,) = bot.wait_bodies(room, 1)
    assert "Bot Started" in notice and "reboot" in notice


def test_an_emptied_allowlist_leaves_no_room_until_confirmed_and_doctor_names_them(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot_user = matrix_users.alice, matrix_users.bot
    bot = bot_for()
    dm = bot.dm()
    original = bot.agent.config
    assert bot.transport.proc is not None
    bot.agent.write_config(original.replace(json.dumps([alice.user_id]), "[]"))  # nobody
    bot.transport.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "no longer allow 1 room(s)" in bot.transport.log(), 20, bot.transport)
    doctor = subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "doctor", bot.agent.name],
        env=bot.agent.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dm in doctor.stdout and "no longer allow 1 room" in doctor.stdout, doctor.stdout
    bot.agent.write_config(original)  # restored before a second reload confirmed
    bot.transport.proc.send_signal(signal.SIGHUP)
    eventually(lambda: bot.transport.log().count("config reloaded") == 2, 20, bot.transport)
    time.sleep(1.0)
    assert bot_user.user_id in synapse.joined_members(alice.access_token, dm)
    synapse.send_text(alice.access_token, dm, "still there?")
    assert bot.wait_bodies(dm, 1) == ["ECHO: hello"]


def test_a_message_in_a_thread_is_answered_in_the_thread_as_its_own_session(
    tmp_path: Path, bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    answer = tmp_path / "answer.jsonl"
    bot = bot_for(FAKECLI_SCENARIO=str(answer))
    (bot.agent.workspace / "notes.txt").write_text("notes\n")
    scenario(tmp_path, f"Noted.\n<file:{bot.agent.workspace / 'notes.txt'}>")
    room = bot.dm()
    alice = matrix_users.alice
    root = synapse.send_text(alice.access_token, room, "a topic of its own")
    bot.wait_bodies(room, 1)
    relation = {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }
    asked = synapse.send_event(
        alice.access_token,
        room,
        "m.room.message",
        {"msgtype": "m.text", "body": "more on it", "m.relates_to": relation},
    )
    bot.wait_bodies(room, 4)  # an answer and its file, twice
    texts = [e for e in bot.bot_messages(room) if e["content"]["msgtype"] == "m.text"]
    files = [e for e in bot.bot_messages(room) if e["content"]["msgtype"] == "m.file"]
    assert texts[0]["content"].get("m.relates_to", {}).get("rel_type") != "m.thread"
    relates = texts[1]["content"]["m.relates_to"]
    assert (relates["rel_type"], relates["event_id"]) == ("m.thread", root)
    assert relates["m.in_reply_to"]["event_id"] == asked
    assert files[1]["content"]["m.relates_to"]["event_id"] == root  # the file, too
    sessions = (bot.agent.state / "sessions.json").read_text()
    assert f"mx:{room}:{root}" in sessions and f'"mx:{room}"' in sessions


def test_joining_a_group_room_it_serves_the_bot_says_how_to_talk_to_it(
    bot_for: Callable[..., Bot], synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot_user = matrix_users.alice, matrix_users.bot
    _, room = group_room(
        bot_for, synapse, matrix_users, "new team", matrix_extra="group_mention_only = true\n"
    )

    def welcome() -> list[str]:
        return [
            e["content"]["body"]
            for e in synapse.messages(alice.access_token, room)
            if e["sender"] == bot_user.user_id and e["content"].get("ductor.welcome")
        ]

    eventually(welcome, 20)
    (text,) = welcome()
    assert bot_user.user_id in text and "!help" in text

"""What the Telegram transport does with an update: who may talk, what counts as what."""

from __future__ import annotations

from typing import Any

import pytest
import telegram

from ductor.config.schema import TelegramConfig
from ductor.transports.telegram.ingress import Action, Attachment, Incoming, classify, strip_mention

BOT_ID = 123
BOT_NAME = "OurBot"
ALICE = 42
STRANGER = 666
GROUP = -100123
UNKNOWN_GROUP = -100999
BOT = telegram.Bot("123:ABC")

CONFIG = TelegramConfig(allowed_user_ids=(ALICE,), allowed_group_ids=(GROUP,))
MENTION_ONLY = TelegramConfig(
    allowed_user_ids=(ALICE,), allowed_group_ids=(GROUP,), group_mention_only=True
)


def person(user_id: int = ALICE, name: str = "Alice") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


def ourselves() -> dict[str, Any]:
    return {"id": BOT_ID, "is_bot": True, "first_name": "Bot", "username": BOT_NAME}


def chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Alice"}
    return {"id": chat_id, "type": "supergroup", "title": "Team", "is_forum": True}


def message(
    text: str | None = "hello", *, chat_id: int = ALICE, user: int = ALICE, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": 5,
        "date": 1_700_000_000,
        "chat": chat(chat_id),
        "from": person(user),
    }
    if text is not None:
        data["text"] = text
    data.update(extra)
    return data


def run(
    payload: dict[str, Any], *, kind: str = "message", config: TelegramConfig = CONFIG
) -> Incoming:
    update = telegram.Update.de_json({"update_id": 1, kind: payload}, BOT)
    assert update is not None
    return classify(update, bot_username=BOT_NAME.lower(), bot_id=BOT_ID, config=config)


def test_private_message_from_an_allowed_user_is_a_message() -> None:
    incoming = run(message("hello there"))
    assert incoming.action is Action.MESSAGE
    assert incoming.text == "hello there"
    assert incoming.session == f"tg:{ALICE}"
    assert incoming.chat_is_private
    assert (incoming.chat_id, incoming.user_id, incoming.message_id) == (ALICE, ALICE, 5)
    assert incoming.user_name == "Alice"
    assert incoming.thread_id is None


def test_private_message_from_a_stranger_is_refused_naming_the_user() -> None:
    incoming = run(message("hi", chat_id=STRANGER, user=STRANGER))
    assert incoming.action is Action.REFUSE
    assert str(STRANGER) in incoming.reason


def test_nobody_is_allowed_by_default() -> None:
    assert run(message("hi"), config=TelegramConfig()).action is Action.REFUSE


def test_group_message_from_an_allowed_user_in_an_allowed_group_is_a_message() -> None:
    incoming = run(message("deploy please", chat_id=GROUP))
    assert incoming.action is Action.MESSAGE
    assert incoming.session == f"tg:{GROUP}"
    assert not incoming.chat_is_private
    assert (incoming.chat_type, incoming.chat_title) == ("supergroup", "Team")


def test_group_message_from_a_stranger_in_an_allowed_group_is_refused() -> None:
    incoming = run(message("deploy", chat_id=GROUP, user=STRANGER))
    assert incoming.action is Action.REFUSE
    assert str(STRANGER) in incoming.reason


def test_an_allowed_user_in_a_private_chat_does_not_make_a_group_allowed() -> None:
    config = TelegramConfig(allowed_user_ids=(ALICE,))
    assert run(message("hi", chat_id=GROUP), config=config).action is Action.LEAVE_GROUP


def test_message_from_an_unknown_group_makes_the_bot_leave() -> None:
    incoming = run(message("hi", chat_id=UNKNOWN_GROUP))
    assert incoming.action is Action.LEAVE_GROUP
    assert incoming.chat_id == UNKNOWN_GROUP
    assert str(UNKNOWN_GROUP) in incoming.reason


def test_bot_added_to_an_unknown_group_leaves() -> None:
    added = message(None, chat_id=UNKNOWN_GROUP, new_chat_members=[ourselves()])
    incoming = run(added)
    assert incoming.action is Action.LEAVE_GROUP
    assert incoming.chat_title == "Team"
    assert "added" in incoming.reason


def test_bot_added_to_an_unknown_group_via_membership_update_leaves() -> None:
    change = {
        "chat": chat(UNKNOWN_GROUP),
        "from": person(),
        "date": 1_700_000_000,
        "old_chat_member": {"status": "left", "user": ourselves()},
        "new_chat_member": {"status": "member", "user": ourselves()},
    }
    assert run(change, kind="my_chat_member").action is Action.LEAVE_GROUP


def test_bot_added_to_an_allowed_group_joins_it_and_a_later_change_is_ignored() -> None:
    change = {
        "chat": chat(GROUP),
        "from": person(),
        "date": 1_700_000_000,
        "old_chat_member": {"status": "left", "user": ourselves()},
        "new_chat_member": {"status": "member", "user": ourselves()},
    }
    assert run(change, kind="my_chat_member").action is Action.JOINED
    change["old_chat_member"] = {"status": "member", "user": ourselves()}  # already in
    assert run(change, kind="my_chat_member").action is Action.IGNORE


def test_bot_removed_from_an_unknown_group_does_not_try_to_leave_again() -> None:
    removed = message(None, chat_id=UNKNOWN_GROUP, left_chat_member=ourselves())
    assert run(removed).action is Action.IGNORE


def test_command_for_another_bot_is_ignored_even_from_an_allowed_user() -> None:
    for config in (CONFIG, MENTION_ONLY):
        incoming = run(message("/status@otherbot", chat_id=GROUP), config=config)
        assert incoming.action is Action.IGNORE
        assert "otherbot" in incoming.reason


def test_command_addressed_to_us_is_normalised() -> None:
    incoming = run(message("/status@OurBot", chat_id=GROUP))
    assert incoming.action is Action.COMMAND
    assert incoming.text == "/status"


def test_command_keeps_its_arguments_and_is_lower_cased() -> None:
    incoming = run(message("/Model@ourbot  opus"))
    assert (incoming.action, incoming.text) == (Action.COMMAND, "/model opus")


def test_unknown_command_still_goes_to_the_agent_as_a_command() -> None:
    assert run(message("/frobnicate now")).text == "/frobnicate now"


def test_a_path_is_not_a_command() -> None:
    incoming = run(message("/tmp/x is full"))
    assert (incoming.action, incoming.text) == (Action.MESSAGE, "/tmp/x is full")


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("/stop", "stop"),
        ("/STOP@ourbot", "stop"),
        ("/interrupt", "interrupt"),
        ("/stop_all", "stop_all"),
        ("Stop", "stop"),
        ("  esc ", "interrupt"),
        ("stop all", "stop_all"),
        ("!interrupt", "interrupt"),
    ],
)
def test_abort_commands_and_bare_trigger_words_abort(text: str, mode: str) -> None:
    incoming = run(message(text))
    assert (incoming.action, incoming.mode) == (Action.ABORT, mode)


def test_a_sentence_with_a_trigger_word_is_a_message() -> None:
    assert run(message("please stop the server")).action is Action.MESSAGE


def test_mention_only_group_ignores_messages_not_addressed_to_the_bot() -> None:
    incoming = run(message("hello all", chat_id=GROUP), config=MENTION_ONLY)
    assert incoming.action is Action.IGNORE
    assert run(message("stop", chat_id=GROUP), config=MENTION_ONLY).action is Action.IGNORE


def test_mention_only_group_takes_a_mention_and_strips_it() -> None:
    text = "@ourbot what is up"
    entities = [{"type": "mention", "offset": 0, "length": 7}]
    incoming = run(message(text, chat_id=GROUP, entities=entities), config=MENTION_ONLY)
    assert (incoming.action, incoming.text) == (Action.MESSAGE, "what is up")


def test_mention_is_found_in_any_case_without_an_entity() -> None:
    incoming = run(message("hey @OURBOT, status?", chat_id=GROUP), config=MENTION_ONLY)
    assert (incoming.action, incoming.text) == (Action.MESSAGE, "hey status?")


def test_mention_of_a_longer_name_is_not_ours() -> None:
    incoming = run(message("ask @ourbot_two", chat_id=GROUP), config=MENTION_ONLY)
    assert incoming.action is Action.IGNORE


def test_mention_only_group_takes_a_reply_to_the_bot() -> None:
    reply = message("the answer", chat_id=GROUP, reply_to_message=_bot_says("Deploy done"))
    incoming = run(reply, config=MENTION_ONLY)
    assert incoming.action is Action.MESSAGE
    assert incoming.quoted == "Deploy done"


def test_mention_only_group_ignores_a_reply_to_someone_else() -> None:
    other = message("lunch?", chat_id=GROUP, user=7)
    incoming = run(message("yes", chat_id=GROUP, reply_to_message=other), config=MENTION_ONLY)
    assert incoming.action is Action.IGNORE


def test_mention_only_group_still_takes_commands() -> None:
    for text in ("/status@ourbot", "/status"):
        incoming = run(message(text, chat_id=GROUP), config=MENTION_ONLY)
        assert (incoming.action, incoming.text) == (Action.COMMAND, "/status")


def test_command_after_a_mention_is_a_command() -> None:
    incoming = run(message("@ourbot /model opus", chat_id=GROUP), config=MENTION_ONLY)
    assert (incoming.action, incoming.text) == (Action.COMMAND, "/model opus")


def test_mention_plus_trigger_word_aborts_in_a_mention_only_group() -> None:
    incoming = run(message("@ourbot stop", chat_id=GROUP), config=MENTION_ONLY)
    assert (incoming.action, incoming.mode) == (Action.ABORT, "stop")


def test_mention_only_applies_to_media_captions() -> None:
    photo = [{"file_id": "p", "file_unique_id": "u", "width": 9, "height": 9}]
    plain = message(None, chat_id=GROUP, photo=photo, caption="look")
    assert run(plain, config=MENTION_ONLY).action is Action.IGNORE
    mentioned = message(None, chat_id=GROUP, photo=photo, caption="look @ourbot")
    incoming = run(mentioned, config=MENTION_ONLY)
    assert (incoming.action, incoming.text) == (Action.MESSAGE, "look")


def test_topic_message_gets_a_topic_session() -> None:
    incoming = run(message("hi", chat_id=GROUP, message_thread_id=7, is_topic_message=True))
    assert incoming.session == "tg:-100123:7"
    assert incoming.thread_id == 7


def test_reply_thread_outside_a_forum_topic_is_not_a_topic() -> None:
    incoming = run(message("hi", chat_id=GROUP, message_thread_id=7))
    assert incoming.session == f"tg:{GROUP}"
    assert incoming.thread_id is None


def test_quoted_text_of_the_replied_message_is_carried() -> None:
    original = message("the build log says X", user=7)
    assert run(message("why?", reply_to_message=original)).quoted == "the build log says X"


def test_quoted_fragment_wins_over_the_whole_message() -> None:
    original = message("line one\nline two", user=7)
    quote = {"text": "line two", "position": 9}
    incoming = run(message("why?", reply_to_message=original, quote=quote))
    assert incoming.quoted == "line two"


def test_reply_to_the_bots_queue_notice_carries_no_quote() -> None:
    incoming = run(message("go", reply_to_message=_bot_says("[Message in queue...]")))
    assert incoming.quoted == ""


def test_topic_creation_notice_is_not_a_reply_to_the_bot() -> None:
    notice = message(
        None,
        chat_id=GROUP,
        user=BOT_ID,
        message_id=7,
        forum_topic_created={"name": "Ops", "icon_color": 0},
    )
    notice["from"] = ourselves()
    text = message(
        "hi", chat_id=GROUP, message_thread_id=7, is_topic_message=True, reply_to_message=notice
    )
    incoming = run(text, config=MENTION_ONLY)
    assert incoming.action is Action.IGNORE
    assert run(text).quoted == ""


def test_photo_picks_the_largest_size() -> None:
    photo = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 1},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 9},
        {"file_id": "mid", "file_unique_id": "m", "width": 320, "height": 240, "file_size": 4},
    ]
    incoming = run(message(None, photo=photo, caption="what is this?"))
    assert incoming.action is Action.MESSAGE
    assert incoming.text == "what is this?"
    assert incoming.attachments == (Attachment("photo", "big", "", "image/jpeg", 9, "b"),)


def test_document_voice_and_sticker_become_attachments() -> None:
    document = {
        "file_id": "d",
        "file_unique_id": "du",
        "file_name": "report.pdf",
        "mime_type": "application/pdf",
        "file_size": 100,
    }
    (attachment,) = run(message(None, document=document)).attachments
    assert attachment == Attachment("document", "d", "report.pdf", "application/pdf", 100, "du")
    voice = {"file_id": "v", "file_unique_id": "vu", "duration": 3, "mime_type": "audio/ogg"}
    assert run(message(None, voice=voice)).attachments[0].kind == "voice"
    sticker = {
        "file_id": "st",
        "file_unique_id": "stu",
        "width": 512,
        "height": 512,
        "is_animated": True,
        "is_video": False,
        "type": "regular",
    }
    (attachment,) = run(message(None, sticker=sticker)).attachments
    assert (attachment.kind, attachment.mime_type) == ("sticker", "application/x-tgsticker")
    note = {"file_id": "n", "file_unique_id": "nu", "length": 240, "duration": 2}
    assert run(message(None, video_note=note)).attachments[0].kind == "video_note"


def test_media_caption_is_not_a_command_or_trigger() -> None:
    voice = {"file_id": "v", "file_unique_id": "vu", "duration": 3}
    incoming = run(message(None, voice=voice, caption="stop"))
    assert (incoming.action, incoming.text) == (Action.MESSAGE, "stop")


def test_callback_query_is_a_button_press() -> None:
    query = {
        "id": "cb1",
        "from": person(),
        "chat_instance": "x",
        "data": "ms:m:opus",
        "message": _bot_says("Pick a <model>", message_id=77),
    }
    incoming = run(query, kind="callback_query")
    assert incoming.action is Action.BUTTON
    assert (incoming.data, incoming.callback_id) == ("ms:m:opus", "cb1")
    assert (incoming.session, incoming.message_id) == (f"tg:{ALICE}", 77)
    assert incoming.button_message_html == "Pick a &lt;model&gt;"


def test_callback_query_from_a_stranger_is_refused() -> None:
    query = {
        "id": "cb2",
        "from": person(STRANGER),
        "chat_instance": "x",
        "data": "w:1",
        "message": _bot_says("hi", chat_id=GROUP),
    }
    assert run(query, kind="callback_query").action is Action.REFUSE


def test_forum_topic_created_teaches_the_topic_name() -> None:
    notice = message(
        None,
        chat_id=GROUP,
        message_id=7,
        message_thread_id=7,
        is_topic_message=True,
        forum_topic_created={"name": "Ops", "icon_color": 0},
    )
    incoming = run(notice)
    assert incoming.action is Action.TOPIC_NAME
    assert (incoming.topic_name, incoming.thread_id, incoming.session) == ("Ops", 7, "tg:-100123:7")
    edited = message(
        None,
        chat_id=GROUP,
        message_thread_id=7,
        is_topic_message=True,
        forum_topic_edited={"name": "Operations"},
    )
    assert run(edited).topic_name == "Operations"


def test_topic_names_from_unknown_groups_are_not_learned() -> None:
    notice = message(
        None, chat_id=UNKNOWN_GROUP, forum_topic_created={"name": "X", "icon_color": 0}
    )
    assert run(notice).action is Action.LEAVE_GROUP


def test_edited_messages_and_channel_posts_are_ignored() -> None:
    assert run(message("fixed"), kind="edited_message").action is Action.IGNORE
    post = {"message_id": 1, "date": 0, "chat": {"id": -1001, "type": "channel"}, "text": "x"}
    assert run(post, kind="channel_post").action is Action.IGNORE


def test_other_service_messages_are_ignored() -> None:
    joined = message(None, chat_id=GROUP, new_chat_members=[person(7)])
    assert run(joined).action is Action.IGNORE


def test_strip_mention_leaves_other_names_and_lines_alone() -> None:
    assert strip_mention("@ourbot: hi\n@ourbots  two", "ourbot") == "hi\n@ourbots  two"
    assert strip_mention("mail me@ourbot.org", "ourbot") == "mail me@ourbot.org"


def _bot_says(text: str, *, chat_id: int = ALICE, message_id: int = 3) -> dict[str, Any]:
    said = message(text, chat_id=chat_id, message_id=message_id)
    said["from"] = ourselves()
    return said

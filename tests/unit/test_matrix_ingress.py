"""Matrix ingress, sync state and segments, without a homeserver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ductor.config.schema import MatrixConfig
from ductor.protocol import Event, EventType
from ductor.transports.matrix.ingress import Action, Incoming, classify
from ductor.transports.matrix.segments import SegmentOptions, SegmentStream
from ductor.transports.matrix.state import Login, SyncState

BOT = "@bot:example.org"
ALICE = "@alice:example.org"
CONFIG = MatrixConfig(user_id=BOT, allowed_users=(ALICE,), allowed_rooms=("!group",))


def text(body: str, sender: str = ALICE, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$e1",
        "sender": sender,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def run(event: dict[str, Any], *, room: str = "!dm", private: bool = True, **kw: Any) -> Incoming:
    config = kw.pop("config", CONFIG)
    return classify(
        event,
        room_id=room,
        bot_id=BOT,
        config=config,
        allowed_room_ids={"!group"},
        private=private,
        **kw,
    )


def test_a_dm_message_from_an_allowed_user_goes_to_the_agent() -> None:
    incoming = run(text("hello"))
    assert (incoming.action, incoming.text, incoming.session) == (
        Action.MESSAGE,
        "hello",
        "mx:!dm",
    )


def test_the_bots_own_events_and_strangers_are_not_processed() -> None:
    assert run(text("hi", sender=BOT)).action is Action.IGNORE
    assert run(text("hi", sender="@mallory:evil")).action is Action.REFUSE
    assert run(text("hi"), room="!other", private=False).action is Action.REFUSE


def test_bang_and_slash_commands_and_aborts() -> None:
    assert run(text("!status")).text == "/status"
    assert run(text("/model opus")).text == "/model opus"
    stop = run(text("!stop"))
    assert (stop.action, stop.mode) == (Action.ABORT, "stop")


def test_group_mention_only_needs_a_mention_or_a_reply_to_the_bot() -> None:
    config = MatrixConfig(
        user_id=BOT, allowed_users=(ALICE,), allowed_rooms=("!group",), group_mention_only=True
    )
    group = {"room": "!group", "private": False, "config": config}
    assert run(text("hello all"), **group).action is Action.IGNORE
    mentioned = run(text(f"{BOT}: hello"), **group)
    assert (mentioned.action, mentioned.text) == (Action.MESSAGE, "hello")
    reply = text("yes", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$mine"}}})
    assert run(reply, bot_events={"$mine"}, **group).action is Action.MESSAGE
    assert run(text("!status"), **group).action is Action.COMMAND


def test_a_keycap_reaction_or_a_number_presses_a_button() -> None:
    reaction = {
        "type": "m.reaction",
        "event_id": "$r",
        "sender": ALICE,
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$b", "key": "2️⃣"}},
    }
    pressed = run(reaction, buttons={"$b": ["a", "b"]}.get)
    assert (pressed.action, pressed.data) == (Action.BUTTON, "b")
    assert run(text("1"), open_buttons=["x"]).data == "x"
    assert run(text("3"), open_buttons=["x"]).action is Action.MESSAGE


def test_media_becomes_an_attachment() -> None:
    event = text("pic.png", url="mxc://hs/abc", info={"mimetype": "image/png", "size": 3})
    event["content"]["msgtype"] = "m.image"
    (attachment,) = run(event).attachments
    assert (attachment.kind, attachment.url, attachment.name) == (
        "image",
        "mxc://hs/abc",
        "pic.png",
    )


def test_sync_state_skips_handled_events_until_the_batch_is_done(tmp_path: Path) -> None:
    state = SyncState(tmp_path / "sync.json").load()
    state.advance("s1")
    state.mark("$a")
    again = SyncState(tmp_path / "sync.json").load()
    assert again.since == "s1" and again.is_handled("$a")
    again.advance("s2")
    assert not SyncState(tmp_path / "sync.json").load().is_handled("$a")
    Login(BOT, "DEV", "tok").save(tmp_path / "login.json")
    assert Login.load(tmp_path / "login.json") == Login(BOT, "DEV", "tok")
    assert (tmp_path / "login.json").stat().st_mode & 0o777 == 0o600


def test_segments_are_sent_at_tool_boundaries_and_the_rest_at_the_end() -> None:
    sent: list[tuple[str, str]] = []

    async def send(body: str, html: str) -> str:
        sent.append((body, html))
        return f"${len(sent)}"

    async def scenario() -> str:
        stream = SegmentStream(send, SegmentOptions())
        await stream.on_event(Event(EventType.TEXT, "r", {"text": "Let me **look**."}))
        await stream.on_event(Event(EventType.TOOL, "r", {"name": "Bash"}))
        await stream.on_event(Event(EventType.TEXT, "r", {"text": " Done."}))
        final = Event(EventType.FINAL, "r", {"text": "Let me **look**. Done.", "turn": "t"})
        return await stream.finish(final, [("Yes", "y"), ("No", "n")])

    last = asyncio.run(scenario())
    assert last == "$2"
    assert sent[0] == ("Let me **look**.", "<p>Let me <b>look</b>.</p>")
    assert sent[1][0].startswith("Done.")
    assert "1️⃣ Yes" in sent[1][1] and "2️⃣ No" in sent[1][1]


def test_an_event_the_bot_could_not_decrypt_is_marked_only_for_an_allowed_user() -> None:
    encrypted = {
        "type": "m.room.encrypted",
        "event_id": "$e2",
        "sender": ALICE,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "session_id": "s"},
    }
    assert run(encrypted).action is Action.ENCRYPTED
    assert run({**encrypted, "sender": "@mallory:evil"}).action is Action.REFUSE
    assert run(encrypted, room="!other", private=False).action is Action.REFUSE


def test_an_encrypted_file_is_fetched_from_the_url_inside_its_file_object() -> None:
    file = {"url": "mxc://example.org/abc", "key": {"k": "K"}, "iv": "IV", "hashes": {}, "v": "v2"}
    event = text("notes.txt", msgtype="m.file", file=file, info={"mimetype": "text/plain"})
    (attachment,) = run(event).attachments
    assert attachment.url == "mxc://example.org/abc" and attachment.encryption == file
    assert attachment.name == "notes.txt" and attachment.mime_type == "text/plain"


MENTION_ONLY = MatrixConfig(
    user_id=BOT, allowed_users=(ALICE,), allowed_rooms=("!group",), group_mention_only=True
)
GROUP: dict[str, Any] = {"room": "!group", "private": False, "config": MENTION_ONLY}


def test_the_bots_name_in_a_sentence_is_no_mention_but_its_id_and_a_pill_are() -> None:
    assert run(text("I think the bot is slow"), **GROUP).action is Action.IGNORE
    assert run(text("bot: are you there?"), **GROUP).action is Action.IGNORE
    pill = text(
        "Bot: are you there?",
        formatted_body=f'<a href="https://matrix.to/#/{BOT}">Bot</a>: are you there?',
        **{"m.mentions": {"user_ids": [BOT]}},
    )
    assert run(pill, **GROUP).action is Action.MESSAGE
    assert run(text(f"ask {BOT} about it"), **GROUP).action is Action.MESSAGE
    assert run(text("ask @bot:example.organisation"), **GROUP).action is Action.IGNORE


def test_in_a_group_only_the_bots_own_commands_count() -> None:
    assert run(text("!poll lunch?"), **GROUP).action is Action.IGNORE  # another bot's
    assert run(text("!status@otherbot"), **GROUP).action is Action.IGNORE
    assert run(text("!status"), **GROUP).action is Action.COMMAND
    assert run(text("!status@bot"), **GROUP).text == "/status"
    addressed = run(text(f"{BOT} !restart"), **GROUP)
    assert (addressed.action, addressed.text) == (Action.UNKNOWN_COMMAND, "/restart")


def test_an_unknown_command_in_a_direct_chat_gets_the_list_not_the_cli() -> None:
    for word in ("restart", "upgrade", "sandbox"):
        incoming = run(text(f"!{word}"))
        assert (incoming.action, incoming.text) == (Action.UNKNOWN_COMMAND, f"/{word}")


def test_the_transport_knows_every_command_of_the_agent() -> None:
    from ductor.agent.commands import COMMANDS as AGENT_COMMANDS
    from ductor.transports.matrix.ingress import ABORT_COMMANDS, COMMANDS

    assert set(AGENT_COMMANDS) == (COMMANDS - {"/where", "/leave"}) | set(ABORT_COMMANDS)


def test_a_media_caption_is_the_text_of_the_message_and_no_command() -> None:
    image = {"url": "mxc://hs/cat", "filename": "cat.png", "info": {"mimetype": "image/png"}}
    captioned = run(text("what colour is this cat?", msgtype="m.image", **image))
    assert (captioned.action, captioned.text) == (Action.MESSAGE, "what colour is this cat?")
    assert captioned.attachments[0].name == "cat.png"
    bare = run(text("cat.png", msgtype="m.image", **image))  # the body is the file name
    assert (bare.text, bare.attachments[0].name) == ("", "cat.png")
    assert run(text("!stop", msgtype="m.image", **image)).action is Action.MESSAGE

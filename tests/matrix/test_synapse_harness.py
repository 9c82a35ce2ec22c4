"""The Matrix test harness itself: a real Synapse, real users, real rooms and media.

If these fail, every Matrix transport test would fail for the same reason; they say
whether the homeserver or the harness is at fault before the transport is suspected.
"""

from __future__ import annotations

import pytest
from tests.matrix.conftest import MatrixUsers
from tests.stubs.synapse import MatrixError, Synapse


def test_registered_users_log_in_with_their_password_and_get_a_new_token(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice = matrix_users.alice

    user_id, token = synapse.login(alice.localpart, alice.password)

    assert user_id == alice.user_id == synapse.user_id(alice.localpart)
    assert token != alice.access_token
    assert synapse.whoami(token) == alice.user_id


def test_login_with_a_wrong_password_is_refused(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    with pytest.raises(MatrixError) as refused:
        synapse.login(matrix_users.alice.localpart, "not-the-password")

    assert refused.value.status == 403
    assert refused.value.errcode == "M_FORBIDDEN"


def test_bot_invited_to_alices_room_sees_the_invite_and_joins(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot = matrix_users.alice, matrix_users.bot

    room = synapse.create_room(alice.access_token, invite=[bot.user_id], is_direct=True)

    invited = synapse.sync(bot.access_token)["rooms"]["invite"]
    assert room in invited
    assert synapse.join(bot.access_token, room) == room
    assert synapse.joined_members(alice.access_token, room) == sorted([alice.user_id, bot.user_id])


def test_formatted_reply_round_trips_through_messages(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot = matrix_users.alice, matrix_users.bot
    room = synapse.create_room(alice.access_token, invite=[bot.user_id], name="harness")
    synapse.join(bot.access_token, room)
    question = synapse.send_text(alice.access_token, room, "status?")

    answer = synapse.send_text(
        bot.access_token, room, "all **good**", formatted="all <b>good</b>", reply_to=question
    )

    newest = synapse.messages(alice.access_token, room)[0]
    assert newest["event_id"] == answer
    assert newest["sender"] == bot.user_id
    assert newest["content"] == {
        "msgtype": "m.text",
        "body": "all **good**",
        "format": "org.matrix.custom.html",
        "formatted_body": "all <b>good</b>",
        "m.relates_to": {"m.in_reply_to": {"event_id": question}},
    }


def test_uploaded_media_downloads_with_a_token_and_not_without(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    data = bytes(range(256)) * 64

    mxc = synapse.upload(matrix_users.alice.access_token, data, "image/png", "shot.png")

    assert mxc.startswith(f"mxc://{synapse.server_name}/")
    assert synapse.download(matrix_users.bot.access_token, mxc) == data
    # New media is frozen out of the unauthenticated endpoint: a client must not use it.
    media_id = mxc.rsplit("/", 1)[1]
    with pytest.raises(MatrixError) as legacy:
        synapse.request("GET", f"/_matrix/media/v3/download/{synapse.server_name}/{media_id}")
    assert legacy.value.status == 404


def test_reaction_arrives_in_the_bots_sync_annotating_the_message(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice, bot = matrix_users.alice, matrix_users.bot
    room = synapse.create_room(alice.access_token, invite=[bot.user_id])
    synapse.join(bot.access_token, room)
    message = synapse.send_text(bot.access_token, room, "done")
    since = synapse.sync(bot.access_token)["next_batch"]

    reaction = synapse.react(alice.access_token, room, message, "👍")

    timeline = synapse.sync(bot.access_token, since)["rooms"]["join"][room]["timeline"]["events"]
    assert [(e["event_id"], e["type"], e["content"]) for e in timeline] == [
        (
            reaction,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": message, "key": "👍"}},
        )
    ]


def test_a_stranger_cannot_read_a_room_she_was_not_invited_to(
    synapse: Synapse, matrix_users: MatrixUsers
) -> None:
    alice = matrix_users.alice
    room = synapse.create_room(alice.access_token, name="private")
    synapse.send_text(alice.access_token, room, "secret")

    with pytest.raises(MatrixError) as refused:
        synapse.messages(matrix_users.mallory.access_token, room)

    assert refused.value.status == 403

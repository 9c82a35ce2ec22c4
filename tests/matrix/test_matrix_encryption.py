"""Encrypted rooms as Element makes them: the bot between a real Synapse and a second
matrix-nio client with encryption (tests/matrix/element.py) acting as the person."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.matrix.conftest import MatrixUsers
from tests.matrix.element import ElementUser
from tests.matrix.test_matrix_transport import Bot, bot_for, eventually, scenario
from tests.process.agent_proc import REPO
from tests.stubs.synapse import Synapse

__all__ = ["bot_for"]  # the fixture, shared with the transport's other tests

REPORT = b"the quarterly report\n"


@pytest.fixture
def element(tmp_path: Path, synapse: Synapse) -> Iterator[Callable[..., ElementUser]]:
    people: list[ElementUser] = []

    def make(user: Any) -> ElementUser:
        person = ElementUser(synapse, user, tmp_path / f"element-{user.localpart}")
        people.append(person)
        return person

    yield make
    for person in people:
        person.close()


def answering_with_a_file(tmp_path: Path, bot_for: Callable[..., Bot]) -> Bot:
    """A bot whose every answer is a line of text, a file and a button."""
    answer_file = tmp_path / "answer.jsonl"
    bot = bot_for(FAKECLI_SCENARIO=str(answer_file))
    report = bot.agent.workspace / "report.txt"
    report.write_bytes(REPORT)
    scenario(tmp_path, f"Here it is.\n<file:{report}>\n[button:Again]")
    return bot


def plain_events_of(synapse: Synapse, users: MatrixUsers, room: str) -> list[dict[str, Any]]:
    """What the homeserver holds from the bot in ``room`` that is not encrypted (state
    events such as its join aside)."""
    return [
        e
        for e in synapse.messages(users.alice.access_token, room, limit=200)
        if e["sender"] == users.bot.user_id
        and "state_key" not in e
        and e["type"] != "m.room.encrypted"
    ]


def received(bot: Bot, name: str) -> list[bytes]:
    return [f.read_bytes() for f in (bot.agent.workspace / "matrix_files").rglob(f"{name}*")]


def test_an_encrypted_dm_carries_text_and_files_both_ways_across_a_restart(
    tmp_path: Path,
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id = matrix_users.bot.user_id
    bot = answering_with_a_file(tmp_path, bot_for)
    alice = element(matrix_users.alice)
    room = alice.encrypted_room([bot_id], direct=True)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )

    alice.send_text(room, "the report, please")
    (answer,) = alice.wait(lambda: alice.texts_from(room, bot_id), 20, bot.transport.log)
    assert answer.startswith("Here it is.") and "1️⃣ Again" in answer
    assert alice.wait(lambda: alice.files_from(room, bot_id), 20, bot.transport.log) == [
        ("report.txt", REPORT)
    ]
    alice.send_file(room, b"my secret notes\n", "notes.txt", "text/plain")
    eventually(lambda: received(bot, "notes") == [b"my secret notes\n"], 20, bot.transport)

    bot.transport.stop()  # the conversation goes on encrypted after a restart
    alice.send_text(room, "and once more, while you were away")
    bot.transport.start()
    alice.wait(lambda: len(alice.texts_from(room, bot_id)) >= 3, 30, bot.transport.log)

    synapse.send_text(alice.user.access_token, room, "plain text from a careless client")
    eventually(lambda: "sent unencrypted into an encrypted room" in bot.transport.log(), 20)
    from_bot = alice.events_from(room, bot_id)
    assert not [e for e in from_bot if type(e).__name__ == "MegolmEvent"]  # all readable
    assert plain_events_of(synapse, matrix_users, room) == []  # not even the reactions
    assert bot.transport.log().count("with a new device") == 1  # one device, its keys kept
    assert list((bot.agent.state / "matrix_store").glob("*.db"))


def test_an_encrypted_group_serves_the_allowed_user_and_keeps_the_stranger_out(
    tmp_path: Path,
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id, mallory_id = matrix_users.bot.user_id, matrix_users.mallory.user_id
    alice, mallory = element(matrix_users.alice), element(matrix_users.mallory)
    room = alice.encrypted_room([mallory_id], direct=False, name="team")
    mallory.join(room)
    answer_file = tmp_path / "answer.jsonl"
    bot = bot_for(rooms=[room], FAKECLI_SCENARIO=str(answer_file))
    (bot.agent.workspace / "report.txt").write_bytes(REPORT)
    scenario(tmp_path, f"Here it is.\n<file:{bot.agent.workspace / 'report.txt'}>")
    synapse.invite(alice.user.access_token, room, bot_id)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )

    alice.send_file(room, b"group notes\n", "notes.txt", "text/plain")
    eventually(lambda: received(bot, "notes") == [b"group notes\n"], 20, bot.transport)
    assert alice.wait(lambda: alice.files_from(room, bot_id), 20, bot.transport.log) == [
        ("report.txt", REPORT)
    ]
    bot.transport.stop()
    bot.transport.start()
    alice.send_text(room, "thanks, and the text?")
    alice.wait(lambda: len(alice.texts_from(room, bot_id)) >= 2, 20, bot.transport.log)

    # Mallory is in the room but not an allowed user: no room key reached her devices.
    mallory_sees = [e for e in mallory.events_from(room, bot_id) if "state_key" not in e.source]
    assert mallory_sees and all(type(e).__name__ == "MegolmEvent" for e in mallory_sees)
    assert plain_events_of(synapse, matrix_users, room) == []


def test_a_message_whose_room_key_comes_late_is_asked_for_and_answered_once_it_arrives(
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id = matrix_users.bot.user_id
    bot = bot_for()
    alice = element(matrix_users.alice)
    room = alice.encrypted_room([bot_id], direct=True)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )
    deliver_key = alice.send_text_key_later(room, "the key follows", bot_id)
    alice.wait(  # the bot asks alice's devices for the key it misses
        lambda: [e for e in alice.events_to_device() if type(e).__name__ == "RoomKeyRequest"],
        20,
        bot.transport.log,
    )
    assert alice.texts_from(room, bot_id) == []
    bot.transport.stop()  # the waiting message outlives a restart
    bot.transport.start()
    deliver_key()
    assert alice.wait(lambda: alice.texts_from(room, bot_id), 20, bot.transport.log) == [
        "ECHO: hello"
    ]
    assert "arrived: reading it now" in bot.transport.log()


def test_after_a_revoked_login_the_bot_publishes_its_keys_again_and_the_dm_goes_on(
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id = matrix_users.bot.user_id
    bot = bot_for()
    alice = element(matrix_users.alice)
    room = alice.encrypted_room([bot_id], direct=True)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )
    alice.send_text(room, "first")
    alice.wait(lambda: alice.texts_from(room, bot_id), 20, bot.transport.log)
    bot.transport.stop()
    login = json.loads((bot.agent.state / "matrix" / "login.json").read_text())
    synapse.request("POST", "/_matrix/client/v3/logout", login["access_token"], {})
    bot.transport.start()

    def new_device_keys_uploaded() -> bool:
        parts = bot.transport.log().split("with a new device")
        return len(parts) == 3 and "keys of device" in parts[-1]

    eventually(new_device_keys_uploaded, 20, bot.transport)
    alice.send_text(room, "second, to the new device")
    alice.wait(lambda: len(alice.texts_from(room, bot_id)) >= 2, 20, bot.transport.log)


def test_without_the_crypto_dependency_the_bot_says_so_once_and_sends_nothing_plain(
    tmp_path: Path,
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id = matrix_users.bot.user_id
    bot = bot_for()
    shim = tmp_path / "no-crypto"  # the transport's python sees no vodozemac
    shim.mkdir()
    (shim / "sitecustomize.py").write_text('import sys\n\nsys.modules["vodozemac"] = None\n')
    bot.transport.stop()
    bot.agent.extra_env["PYTHONPATH"] = f"{shim}:{REPO / 'lib'}"
    bot.transport.start()
    alice = element(matrix_users.alice)
    room = alice.encrypted_room([bot_id], direct=True)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )

    alice.send_text(room, "hello?")
    alice.send_text(room, "are you there?")
    synapse.send_text(alice.user.access_token, room, "a plain message from a careless client")

    def notices() -> list[str]:
        return [e["content"].get("body", "") for e in plain_events_of(synapse, matrix_users, room)]

    eventually(notices, 20, bot.transport)
    eventually(lambda: bot.transport.log().count("cannot encrypt") == 3, 20, bot.transport)
    (notice,) = notices()
    assert "cannot read encrypted messages" in notice and "install.sh" in notice


def test_with_device_trust_known_a_new_device_is_neither_answered_nor_given_keys(
    bot_for: Callable[..., Bot],
    element: Callable[..., ElementUser],
    synapse: Synapse,
    matrix_users: MatrixUsers,
) -> None:
    bot_id = matrix_users.bot.user_id
    bot = bot_for(matrix_extra='device_trust = "known"\n')
    alice = element(matrix_users.alice)  # a device the bot has never seen
    room = alice.encrypted_room([bot_id], direct=True)
    eventually(
        lambda: bot_id in synapse.joined_members(alice.user.access_token, room), 20, bot.transport
    )
    alice.send_text(room, "hello from my new phone")
    eventually(lambda: "a device the bot does not trust" in bot.transport.log(), 20, bot.transport)
    assert alice.user.device_id in bot.transport.log()  # named, to decide about it
    assert alice.texts_from(room, bot_id) == []

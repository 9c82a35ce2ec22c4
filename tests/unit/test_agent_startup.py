"""ductor.agent.startup: who hears that the agent started, and when."""

from __future__ import annotations

from ductor.agent.startup import startup_envelopes
from ductor.config import AgentConfig
from ductor.config.schema import ChatTarget, NotificationsConfig


def config(
    *targets: ChatTarget, transports: tuple[str, ...] = ("telegram", "matrix")
) -> AgentConfig:
    return AgentConfig(
        transports=transports, notifications=NotificationsConfig(startup_targets=targets)
    )


def test_a_reboot_is_told_to_every_allowed_user_of_every_transport() -> None:
    envelopes = startup_envelopes("main", config(), "reboot")
    assert [(e.routing.transport, e.routing.broadcast) for e in envelopes] == [
        ("tg", True),
        ("mx", True),
    ]
    assert all("reboot" in e.payload.text for e in envelopes)


def test_a_restart_is_silent_and_a_first_start_speaks_only_to_listed_targets() -> None:
    assert startup_envelopes("main", config(), "restart") == []
    assert startup_envelopes("main", config(), "first_start") == []
    room = ChatTarget(transport="matrix", room="!ops:hs")
    (envelope,) = startup_envelopes("main", config(room), "first_start")
    assert (envelope.routing.transport, envelope.routing.chat_id) == ("mx", "!ops:hs")


def test_targets_none_enabled_is_silence_and_a_transport_not_run_is_skipped() -> None:
    off = ChatTarget(transport="telegram", chat_id=5, enabled=False)
    assert startup_envelopes("main", config(off), "reboot") == []
    chat = ChatTarget(transport="telegram", chat_id=5, topic_id=7)
    assert startup_envelopes("main", config(chat, transports=("matrix",)), "reboot") == []
    (envelope,) = startup_envelopes("main", config(chat), "reboot")
    assert (envelope.routing.chat_id, envelope.routing.topic_id) == (5, 7)

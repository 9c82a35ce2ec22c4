from __future__ import annotations

from ductor import protocol
from ductor.agent.interagent import FRAME, frame, session_key, session_name


def test_one_session_per_sender_chat_and_topic() -> None:
    names = {
        session_name("main", "tg:100"),
        session_name("main", "tg:100:7"),
        session_name("main", "tg:200"),
        session_name("ops", "tg:100"),
    }
    assert len(names) == 4
    assert session_name("main", "tg:100:7") == session_name("main", "tg:100:7")
    assert session_name("main", "tg:100:7").startswith("ia.main.t7.x")


def test_without_a_chat_the_session_is_named_after_the_sender() -> None:
    assert session_name("main", None) == "ia-main"


def test_session_names_are_valid_session_keys_for_every_transport() -> None:
    for origin in ("tg:-100123:42", "mx:!room:example.org:$event", "cli:alice", None):
        key = session_key(session_name("Some_Agent", origin))
        assert protocol.parse_session_key(key).transport == "ia"


def test_the_message_is_framed_with_both_names() -> None:
    text = frame("main", "research", "Any news?")
    assert text.startswith("[INTER-AGENT MESSAGE from 'main' to 'research']\nAny news?\n")
    assert text.endswith(
        "You are agent 'research'. Respond to this inter-agent request from 'main'."
        " Be direct and concise."
    )
    assert "[END INTER-AGENT MESSAGE]" in FRAME

"""The agent socket protocol as data: requests, events, session keys and line framing."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ductor.protocol import (
    DEFAULT_FRAME_MAX,
    PROTOCOL_VERSION,
    AbortMode,
    Button,
    ErrorCode,
    Event,
    Events,
    EventType,
    ProtocolError,
    Request,
    RequestType,
    SessionKey,
    User,
    decode_event,
    decode_line,
    decode_request,
    new_request_id,
    parse_session_key,
    read_line,
)


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def request_line(**fields: Any) -> bytes:
    return line({"v": 1, "id": "r1", **fields})


def refused(data: bytes, **kw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode_request(data, **kw)
    return caught.value


# -- session keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tg:123456", SessionKey("tg", "123456")),
        ("tg:-100123:7", SessionKey("tg", "-100123", "7")),
        ("mx:!room:server", SessionKey("mx", "!room:server")),
        ("mx:!room:hs:8448:$root_1", SessionKey("mx", "!room:hs:8448", "$root_1")),
        ("cli:alice", SessionKey("cli", "alice")),
        ("web-ui_2:a:b:c", SessionKey("web-ui_2", "a:b:c")),
    ],
)
def test_session_keys_of_every_transport_parse_into_their_parts(
    text: str, expected: SessionKey
) -> None:
    key = parse_session_key(text)
    assert key == expected
    assert key.key == text


def test_telegram_session_keys_are_normalised_so_one_chat_has_one_key() -> None:
    assert parse_session_key("tg:007:01").key == "tg:7:1"


@pytest.mark.parametrize(
    "text",
    [
        "tg",
        "tg:",
        ":123",
        "TG:123",
        "tg:abc",
        "tg:1:x",
        "tg:1:-2",
        "tg:1:2:3",
        "transport-too-long:1",
        "cli:a\nb",
        "cli:" + "a" * 300,
    ],
)
def test_malformed_session_keys_are_refused_naming_the_session_field(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_session_key(text)
    assert caught.value.field == "session"
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert str(caught.value).startswith("session: ")


# -- requests ----------------------------------------------------------------------------

VALID_REQUESTS = [
    Request(
        type=RequestType.MESSAGE,
        id="m-1",
        session="tg:-100123:7",
        text="Hello",
        quoted="earlier words",
        files=("/srv/upload/cat.jpg",),
        user=User("42", "Alice"),
        want_ack=True,
        chat_is_private=False,
        message_id="991",
    ),
    Request(type=RequestType.MESSAGE, id="m-2", session="cli:alice", files=("/f.txt",)),
    Request(type=RequestType.COMMAND, id="c.1", session="tg:1", text="/model opus"),
    Request(type=RequestType.BUTTON, id="b:1", session="mx:!r:hs", data="model:opus"),
    Request(type=RequestType.ABORT, id="a1", session="tg:1", mode=AbortMode.STOP),
    Request(type=RequestType.ABORT, id="a2", session="tg:1", mode=AbortMode.INTERRUPT),
    Request(type=RequestType.ABORT, id="a3", mode=AbortMode.STOP_ALL),
    Request(type=RequestType.CANCEL, id="x1", session="tg:1", entry="q-17"),
    Request(type=RequestType.INJECT, id="i1", session="tg:1", text="CI failed", origin="webhook"),
    Request(type=RequestType.HEARTBEAT, id="h1", session="tg:1"),
    Request(type=RequestType.ASK, id="k1", text="What is 2+2?", sender="research"),
    Request(type=RequestType.ASK, id="k2", session="tg:1", text="?", sender="main"),
    Request(type=RequestType.STATUS, id="s1"),
    Request(type=RequestType.HEALTH, id="s2"),
    Request(type=RequestType.ACK, id="ack1", entry="turn-7"),
]


@pytest.mark.parametrize("request_", VALID_REQUESTS, ids=lambda r: f"{r.type}-{r.id}")
def test_every_request_type_survives_a_trip_over_the_wire(request_: Request) -> None:
    encoded = request_.encode()
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert json.loads(encoded)["v"] == PROTOCOL_VERSION
    assert decode_request(encoded) == request_


def test_a_request_line_leaves_out_fields_that_hold_their_defaults() -> None:
    data = Request(type=RequestType.HEARTBEAT, id="h1", session="tg:1").to_dict()
    assert data == {"v": 1, "type": "heartbeat", "id": "h1", "session": "tg:1"}


MISSING_FIELD_CASES = [
    ({"type": "message", "text": "hi"}, "session"),
    ({"type": "message", "session": "tg:1"}, "text"),
    ({"type": "command", "text": "/x"}, "session"),
    ({"type": "command", "session": "tg:1", "text": "model"}, "text"),
    ({"type": "button", "session": "tg:1"}, "data"),
    ({"type": "abort", "session": "tg:1"}, "mode"),
    ({"type": "abort", "mode": "stop"}, "session"),
    ({"type": "abort", "mode": "interrupt"}, "session"),
    ({"type": "cancel", "session": "tg:1"}, "entry"),
    ({"type": "cancel", "entry": "q1"}, "session"),
    ({"type": "inject", "session": "tg:1"}, "text"),
    ({"type": "inject", "text": "wake up"}, "session"),
    ({"type": "heartbeat"}, "session"),
    ({"type": "ask", "sender": "main"}, "text"),
    ({"type": "ask", "text": "?"}, "sender"),
    ({"type": "ack"}, "entry"),
    ({"session": "tg:1"}, "type"),
]


@pytest.mark.parametrize(("fields", "field"), MISSING_FIELD_CASES)
def test_a_request_missing_what_its_type_needs_is_refused_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    error = refused(request_line(**fields))
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.field == field
    assert field in str(error)
    assert error.request_id == "r1"


WRONG_VALUE_CASES = [
    ({"type": "dance"}, "type"),
    ({"type": ["message"]}, "type"),
    ({"type": "message", "session": "tg:1", "text": 5}, "text"),
    ({"type": "message", "session": 5, "text": "hi"}, "session"),
    ({"type": "message", "session": "tg:1", "files": "/a"}, "files"),
    ({"type": "message", "session": "tg:1", "files": ["relative.txt"]}, "files[0]"),
    ({"type": "message", "session": "tg:1", "files": ["/a", 3]}, "files[1]"),
    ({"type": "message", "session": "tg:1", "text": "x", "user": "bob"}, "user"),
    ({"type": "message", "session": "tg:1", "text": "x", "user": {"name": "b"}}, "user.id"),
    ({"type": "message", "session": "tg:1", "text": "x", "user": {"id": True}}, "user.id"),
    ({"type": "message", "session": "tg:1", "text": "x", "want_ack": "yes"}, "want_ack"),
    ({"type": "message", "session": "tg:1", "text": "x", "message_id": [1]}, "message_id"),
    ({"type": "abort", "session": "tg:1", "mode": "kill"}, "mode"),
]


@pytest.mark.parametrize(("fields", "field"), WRONG_VALUE_CASES)
def test_a_request_field_of_the_wrong_shape_is_refused_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    assert refused(request_line(**fields)).field == field


@pytest.mark.parametrize("bad_id", ["", "a" * 65, "has space", "slash/no", 7, None])
def test_a_request_id_outside_the_allowed_characters_is_refused(bad_id: object) -> None:
    data = line({"v": 1, "type": "status", "id": bad_id})
    error = refused(data)
    assert error.field == "id"
    assert error.request_id == ""


def test_transport_ids_sent_as_integers_are_kept_as_text() -> None:
    request = decode_request(
        request_line(type="message", session="tg:1", text="x", user={"id": 42}, message_id=991)
    )
    assert request.user == User("42", "")
    assert request.message_id == "991"


def test_a_request_carries_its_parsed_session_key() -> None:
    request = decode_request(request_line(type="heartbeat", session="tg:-100123:7"))
    assert request.session_key == SessionKey("tg", "-100123", "7")
    assert Request(type=RequestType.STATUS, id="s").session_key is None


def test_fields_this_version_does_not_know_are_ignored() -> None:
    request = decode_request(request_line(type="health", future_field={"x": 1}))
    assert request == Request(type=RequestType.HEALTH, id="r1")


def test_building_an_invalid_request_in_python_fails_at_once() -> None:
    with pytest.raises(ProtocolError, match="session"):
        Request(type=RequestType.MESSAGE, id="m1", text="hi")


def test_new_request_ids_are_valid_and_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for request_id in ids:
        Request(type=RequestType.STATUS, id=request_id)


# -- framing -----------------------------------------------------------------------------


def test_a_line_over_the_frame_limit_is_refused_as_too_large() -> None:
    data = request_line(type="message", session="tg:1", text="x" * 200)
    assert refused(data, max_bytes=100).code is ErrorCode.TOO_LARGE
    assert decode_request(data, max_bytes=len(data) - 1).text == "x" * 200


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe{}\n", b"{not json}\n", b"[1, 2]\n", b'"text"\n', b"   \n", b"[" * 100000],
)
def test_lines_that_are_not_one_utf8_json_object_are_bad_requests(data: bytes) -> None:
    assert refused(data).code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("version", [None, 2, "1", True, 1.0])
def test_a_line_of_another_protocol_version_is_refused_with_its_request_id(
    version: object,
) -> None:
    obj: dict[str, Any] = {"type": "status", "id": "r9"}
    if version is not None:
        obj["v"] = version
    error = refused(line(obj))
    assert error.code is ErrorCode.UNSUPPORTED_VERSION
    assert error.field == "v"
    assert error.request_id == "r9"


def test_a_line_may_end_with_crlf_as_typed_into_a_terminal() -> None:
    assert decode_line(b'{"v":1,"type":"health","id":"a"}\r\n')["type"] == "health"


def test_text_with_undecodable_file_name_bytes_still_encodes_as_utf8() -> None:
    path = b"/tmp/\xff.txt".decode("utf-8", "surrogateescape")
    encoded = Events.file("r1", path).encode()
    encoded.decode("utf-8")
    assert decode_event(encoded).get_str("path") == path


# -- events ------------------------------------------------------------------------------

ALL_EVENTS = [
    Events.accepted("r1", "turn-1", "tg:1"),
    Events.queued("r1", 2, "q-5", "tg:1"),
    Events.text("r1", "Hel"),
    Events.thinking("r1", "hmm"),
    Events.tool("r1", "Shell", "ls -la"),
    Events.status("r1", "compacting", "Compacting the context"),
    Events.buttons("r1", [[Button("Yes", "y"), {"label": "No", "data": "n"}]]),
    Events.file("r1", "/ws/output_to_user/a.pdf"),
    Events.final(
        "r1",
        text="Hello",
        turn="turn-1",
        session="tg:1",
        provider="claude",
        model="opus",
        session_id="abc",
        input_tokens=10,
        output_tokens=20,
        cost_usd=0.01,
        duration_ms=1500,
        buttons=[[Button("More", "more")]],
        files=("/a",),
        notice="Service restarted: resuming your last request",
    ),
    Events.error("r1", ErrorCode.RATE_LIMIT, "Slow down", turn="turn-1"),
    Events.queued("r1", 1, "q-6", "tg:2", reason="no_free_slot", text="Waiting for a free slot."),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: str(e.type))
def test_every_event_type_survives_a_trip_over_the_wire(event: Event) -> None:
    encoded = event.encode()
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    obj = json.loads(encoded)
    assert (obj["v"], obj["event"], obj["id"]) == (1, str(event.type), "r1")
    assert decode_event(encoded) == event


def test_only_final_and_error_are_terminal() -> None:
    terminal = {event.type for event in ALL_EVENTS if event.is_terminal}
    assert terminal == {EventType.FINAL, EventType.ERROR}


def test_a_final_event_has_every_documented_field_even_when_not_given() -> None:
    final = Events.final("r1", text="ok")
    assert final.get_int("input_tokens") == 0
    assert final.data["cost_usd"] is None
    assert final.get_strings("files") == []
    assert final.get_bool("is_error") is False
    assert final.get_str("notice") == ""


def test_event_getters_return_typed_values_or_empty_ones() -> None:
    final = ALL_EVENTS[8]
    assert final.text == "Hello"
    assert final.get_int("duration_ms") == 1500
    assert final.get_float("cost_usd") == 0.01
    assert final.get_int("text") is None
    assert final.get_str("missing") == ""
    assert final.button_rows() == [[Button("More", "more")]]
    assert ALL_EVENTS[6].button_rows() == [[Button("Yes", "y"), Button("No", "n")]]


def test_an_event_cannot_be_changed_after_it_is_built() -> None:
    event = Events.text("r1", "a")
    with pytest.raises(TypeError):
        event.data["text"] = "b"  # type: ignore[index]


def test_event_data_may_not_override_the_envelope_fields() -> None:
    with pytest.raises(ValueError, match="id"):
        Event(EventType.TEXT, "r1", {"id": "other", "text": "x"})


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"event": "queued", "entry": "q"}, "position"),
        ({"event": "queued", "entry": "q", "position": 0}, "position"),
        ({"event": "text"}, "text"),
        ({"event": "error", "text": "x"}, "kind"),
        ({"event": "final", "is_error": "no"}, "is_error"),
        ({"event": "final", "cost_usd": "1"}, "cost_usd"),
        ({"event": "final", "files": ["/a", 1]}, "files[1]"),
        ({"event": "buttons", "rows": [[{"label": "x"}]]}, "rows[0][0].data"),
        ({"event": "nonsense"}, "event"),
    ],
)
def test_an_event_with_a_bad_documented_field_is_refused_naming_it(
    obj: dict[str, Any], field: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_event(line({"v": 1, "id": "r1", **obj}))
    assert caught.value.field == field


def test_fields_an_event_type_does_not_document_pass_through() -> None:
    event = decode_event(line({"v": 1, "event": "final", "id": "r1", "agent": "main"}))
    assert event.get_str("agent") == "main"


# -- read_line over a real socket --------------------------------------------------------


def with_stream(
    payload: bytes, max_bytes: int, body: Callable[[asyncio.StreamReader], Awaitable[None]]
) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=max_bytes + 1)
        with theirs:
            theirs.sendall(payload)
            theirs.shutdown(socket.SHUT_WR)
            await body(reader)
        writer.close()

    asyncio.run(main())


def test_read_line_refuses_an_oversize_line_and_the_connection_goes_on() -> None:
    big = b"x" * 5000 + b"\n"

    async def body(reader: asyncio.StreamReader) -> None:
        assert await read_line(reader, 100) == b"first\n"
        with pytest.raises(ProtocolError) as caught:
            await read_line(reader, 100)
        assert caught.value.code is ErrorCode.TOO_LARGE
        assert await read_line(reader, 100) == b"after\n"
        assert await read_line(reader, 100) is None

    with_stream(b"first\n" + big + b"after\n", 100, body)


def test_read_line_refuses_a_line_just_one_byte_over_the_limit() -> None:
    async def body(reader: asyncio.StreamReader) -> None:
        assert await read_line(reader, 10) == b"a" * 10 + b"\n"
        with pytest.raises(ProtocolError):
            await read_line(reader, 10)
        assert await read_line(reader, 10) == b"ok\n"

    with_stream(b"a" * 10 + b"\n" + b"b" * 11 + b"\nok\n", 10, body)


def test_read_line_skips_blank_lines_and_returns_a_last_line_without_newline() -> None:
    async def body(reader: asyncio.StreamReader) -> None:
        assert await read_line(reader, DEFAULT_FRAME_MAX) == b"one\n"
        assert await read_line(reader, DEFAULT_FRAME_MAX) == b"two"
        assert await read_line(reader, DEFAULT_FRAME_MAX) is None

    with_stream(b"\n\r\n  \none\n\ntwo", DEFAULT_FRAME_MAX, body)


def test_read_line_refuses_an_endless_line_that_reaches_eof() -> None:
    async def body(reader: asyncio.StreamReader) -> None:
        with pytest.raises(ProtocolError):
            await read_line(reader, 64)
        assert await read_line(reader, 64) is None

    with_stream(b"z" * 100000, 64, body)


def test_buttons_of_a_spool_envelope_become_event_buttons_unchanged() -> None:
    from ductor.spool import Button as SpoolButton

    event = Events.final("r1", buttons=[[SpoolButton("Retry", "cron:retry")]])
    assert event.button_rows() == [[Button("Retry", "cron:retry")]]


def test_a_queued_event_says_why_it_waits_and_an_old_one_without_reason_still_reads() -> None:
    waiting = decode_event(
        Events.queued("r1", 3, "q-7", "tg:1", reason="no_free_slot", text="Waiting.").encode()
    )
    assert waiting.get_str("reason") == "no_free_slot"
    assert waiting.text == "Waiting."
    assert Events.queued("r1", 1, "q-8", "tg:1").get_str("reason") == "session_busy"
    old = decode_event(b'{"v":1,"event":"queued","id":"r1","position":1,"entry":"q"}\n')
    assert old.get_str("reason") == ""


def test_a_topic_name_goes_over_the_wire_with_the_request() -> None:
    sent = Request(RequestType.MESSAGE, "m1", session="tg:-100123:7", text="hi", topic_name="Ops")
    line = json.loads(sent.encode())
    assert line["topic_name"] == "Ops"
    assert Request.from_dict(line).topic_name == "Ops"
    assert "topic_name" not in json.loads(Request(RequestType.HEALTH, "h1").encode())

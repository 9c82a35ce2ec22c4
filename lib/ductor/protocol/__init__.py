"""The agent socket protocol: JSON lines over ``agent.sock`` (docs/protocol.md).

A client sends one :class:`Request` line; the agent answers with :class:`Event` lines,
the last of which is terminal (``final`` or ``error``). Stdlib only, and asyncio is
imported only by the async client (:func:`open_exchange`), so oneshots stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ductor.protocol.client import (
    AgentDisconnected,
    AgentRefused,
    AgentTimeout,
    AgentUnavailable,
    Exchange,
    call,
    connect,
)
from ductor.protocol.events import Button, Event, Events, is_known_event
from ductor.protocol.framing import decode_event, decode_line, decode_request, read_line
from ductor.protocol.messages import (
    DEFAULT_FRAME_MAX,
    PROTOCOL_VERSION,
    TERMINAL_EVENTS,
    AbortMode,
    ErrorCode,
    EventType,
    ProtocolError,
    QueueReason,
    Request,
    RequestType,
    SessionKey,
    User,
    new_request_id,
    parse_session_key,
    request_id_of,
)

if TYPE_CHECKING:
    from ductor.protocol.aclient import AsyncExchange, open_exchange

_ASYNC_NAMES = frozenset({"AsyncExchange", "open_exchange"})


def __getattr__(name: str) -> object:
    if name in _ASYNC_NAMES:
        from ductor.protocol import aclient

        return getattr(aclient, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_FRAME_MAX",
    "PROTOCOL_VERSION",
    "TERMINAL_EVENTS",
    "AbortMode",
    "AgentDisconnected",
    "AgentRefused",
    "AgentTimeout",
    "AgentUnavailable",
    "AsyncExchange",
    "Button",
    "ErrorCode",
    "Event",
    "EventType",
    "Events",
    "Exchange",
    "ProtocolError",
    "QueueReason",
    "Request",
    "RequestType",
    "SessionKey",
    "User",
    "call",
    "connect",
    "decode_event",
    "decode_line",
    "decode_request",
    "is_known_event",
    "new_request_id",
    "open_exchange",
    "parse_session_key",
    "read_line",
    "request_id_of",
]

"""Lines on the wire: size limit, UTF-8, JSON, version, and reading them from a stream.

A line longer than the limit is refused with ``too_large`` after the rest of it has been
read and dropped, so one bad frame costs an error event, not the connection. Blank lines
are skipped (a person typing into ``socat`` presses Enter twice).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ductor.jsontypes import describe
from ductor.protocol.events import Event
from ductor.protocol.messages import (
    DEFAULT_FRAME_MAX,
    ErrorCode,
    ProtocolError,
    Request,
    check_version,
)

if TYPE_CHECKING:  # asyncio costs the oneshots ~50 ms; only read_line needs it
    import asyncio


def too_large(max_bytes: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_LARGE,
        f"line longer than {max_bytes} bytes refused (limits.frame_max_bytes)",
    )


def decode_line(line: bytes, *, max_bytes: int = DEFAULT_FRAME_MAX) -> dict[str, object]:
    """One line (with or without its ``\\n``) as a JSON object of this protocol version."""
    body = line[:-1] if line.endswith(b"\n") else line
    if body.endswith(b"\r"):
        body = body[:-1]
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"line is not UTF-8 (byte {exc.start})"
        ) from None
    if not text.strip():
        raise ProtocolError(ErrorCode.BAD_REQUEST, "empty line")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"line is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "line is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"line is {describe(data)}, expected a JSON object"
        )
    check_version(data)
    return data


def decode_request(line: bytes, *, max_bytes: int = DEFAULT_FRAME_MAX) -> Request:
    return Request.from_dict(decode_line(line, max_bytes=max_bytes))


def decode_event(line: bytes, *, max_bytes: int = DEFAULT_FRAME_MAX) -> Event:
    return Event.from_dict(decode_line(line, max_bytes=max_bytes))


async def _discard_line(reader: asyncio.StreamReader) -> None:
    """Drop input up to and including the next newline (or to EOF)."""
    import asyncio

    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return


async def read_line(reader: asyncio.StreamReader, max_bytes: int) -> bytes | None:
    """The next non-blank line, ``None`` at EOF.

    Create the reader with ``limit=max_bytes + 1``. A line longer than ``max_bytes``
    raises ``ProtocolError(TOO_LARGE)`` once it has been consumed, so the next call
    reads the line after it. A last line without ``\\n`` before EOF is returned as is.
    """
    import asyncio

    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            line = exc.partial
            if not line.strip():
                return None
        except asyncio.LimitOverrunError:
            await _discard_line(reader)
            raise too_large(max_bytes) from None
        if len(line.rstrip(b"\r\n")) > max_bytes:
            raise too_large(max_bytes)
        if line.strip():
            return line

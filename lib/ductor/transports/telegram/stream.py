"""One turn's events as Telegram messages, shown while the answer is written.

Edit mode (the default): the first text creates a message, a reply to the user's; later
text edits it in place, at most once per ``edit_interval`` (a deferred edit shows the
latest text after a pause). Tool, thinking and status events show as short indicator
segments (``[TOOL: Shell]``) between the text, repeats collapsed as ``x3``. A message
about to pass Telegram's limit is sealed with its text alone and the stream goes on in a
new one. :meth:`StreamEditor.finish` renders the final answer once more, cuts it with
:func:`split_html` and makes the messages show exactly those pieces: indicators gone, the
buttons on the last one, nothing shown twice, nothing lost when an edit fails.

Append mode sends each coalesced chunk and each indicator as its own message; with
streaming off nothing is sent before the final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ductor.config import SceneConfig, StreamingConfig
from ductor.protocol import Event, EventType
from ductor.transports.telegram.formatting import (
    MESSAGE_LIMIT,
    markdown_to_html,
    split_html,
    utf16_len,
)
from ductor.transports.telegram.sender import Rows, Sender, SendError

__all__ = ["StreamEditor", "StreamOptions", "technical_footer"]

_TOOL_NAMES = {
    **dict.fromkeys(("bash", "powershell", "cmd", "sh", "zsh", "shell"), "Shell"),
    **dict.fromkeys(("toolsearch", "searchtool"), "Search"),
    "webfetch": "Web fetch",
    "websearch": "Web search",
}
_STATUS_LABELS = {
    "compacting": "COMPACTING",
    "timeout_extended": "TIMEOUT EXTENDED",
    "recovering": "Please wait, recovering...",
}
_SENTENCE_END = re.compile(r"[.!?]\s")


@dataclass(frozen=True)
class StreamOptions:
    enabled: bool = True
    append_mode: bool = False
    edit_interval: float = 2.0
    min_chars: int = 200
    max_chars: int = 4000
    idle_ms: int = 800
    sentence_break: bool = True
    show_tool_progress: bool = True
    show_thinking_indicator: bool = True
    show_reasoning_stream: bool = False
    technical_footer: bool = False
    first_edit_delay: float = 0.0

    @classmethod
    def from_config(cls, streaming: StreamingConfig, scene: SceneConfig) -> StreamOptions:
        return cls(
            enabled=streaming.enabled,
            append_mode=streaming.append_mode,
            edit_interval=streaming.edit_interval_seconds,
            min_chars=streaming.min_chars,
            max_chars=streaming.max_chars,
            idle_ms=streaming.idle_ms,
            sentence_break=streaming.sentence_break,
            show_tool_progress=streaming.show_tool_progress,
            show_thinking_indicator=streaming.show_thinking_indicator,
            show_reasoning_stream=streaming.show_reasoning_stream,
            technical_footer=scene.technical_footer,
        )


def tool_label(name: str) -> str:
    return _TOOL_NAMES.get(name.strip().lower(), name.strip() or "tool")


def technical_footer(final: Event) -> str:
    """``Model: opus | Tokens: 1234 (in: 1000, out: 234) | Cost: $0.0123 | Time: 12.3s``."""
    tokens_in = final.get_int("input_tokens") or 0
    tokens_out = final.get_int("output_tokens") or 0
    parts = [
        f"Model: {final.get_str('model') or '?'}",
        f"Tokens: {tokens_in + tokens_out} (in: {tokens_in}, out: {tokens_out})",
    ]
    cost = final.get_float("cost_usd")
    if cost is not None and cost > 0:
        parts.append(f"Cost: ${cost:.4f}")
    duration = final.get_int("duration_ms")
    if duration is not None:
        parts.append(f"Time: {duration / 1000:.1f}s")
    return " | ".join(parts)


@dataclass
class _Indicator:
    at: int  # offset in the turn's text where it showed up
    key: str
    html: str
    count: int = 1

    def render(self) -> str:
        return self.html if self.count == 1 else f"{self.html} x{self.count}"


@dataclass
class _Shown:
    message_id: int
    html: str
    buttons: Rows | None = None


@dataclass
class _Turn:
    text: str = ""  # the answer's Markdown so far
    start: int = 0  # where the open (unsealed) message begins in ``text``
    indicators: list[_Indicator] = field(default_factory=list)
    reasoning: str = ""
    thinking_shown: bool = False


def _indicator_html(event: Event, options: StreamOptions) -> tuple[str, str] | None:
    """(key, html) of an event's indicator, or None when it shows none."""
    if event.type is EventType.TOOL:
        if not options.show_tool_progress:
            return None
        name = tool_label(event.get_str("name"))
        return f"tool:{name}", f"<b>[TOOL: {html.escape(name)}]</b>"
    if event.type is EventType.STATUS:
        status = event.get_str("status")
        text = event.get_str("text")
        if status == "timeout_warning":
            label = f"TIMEOUT APPROACHING: {text}" if text else "TIMEOUT APPROACHING"
        else:
            label = _STATUS_LABELS.get(status, text)
        if not label:
            return None
        return f"status:{label}", f"<i>[{html.escape(label)}]</i>"
    if event.type is EventType.QUEUED:
        label = f"QUEUED: position {event.get_int('position') or 1}"
        return "queued", f"<i>[{label}]</i>"
    return None


def _fitting_cut(markdown: str, limit: int) -> int:
    """The longest prefix of ``markdown``, cut at a paragraph, line or word break when
    one gives a well-filled message, whose HTML fits ``limit``; at least one character."""

    def fits(cut: int) -> bool:
        return utf16_len(markdown_to_html(markdown[:cut])) <= limit

    def largest(cuts: list[int]) -> int:
        low, high, best = 0, len(cuts) - 1, 0
        while low <= high:
            middle = (low + high) // 2
            if fits(cuts[middle]):
                best, low = cuts[middle], middle + 1
            else:
                high = middle - 1
        return best

    for separator in ("\n\n", "\n", " "):
        cut = largest([m.end() for m in re.finditer(separator, markdown)])
        if cut and utf16_len(markdown_to_html(markdown[:cut])) >= limit // 2:
            return cut
    return max(1, largest(list(range(1, len(markdown) + 1))))


class StreamEditor:
    """Shows one turn in one chat; feed it the turn's events, then its final or error."""

    def __init__(
        self,
        sender: Sender,
        chat_id: int,
        *,
        thread_id: int | None,
        reply_to: int | None,
        options: StreamOptions,
        on_messages: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.sender = sender
        self.chat_id = chat_id
        self.thread_id = thread_id
        self.reply_to = reply_to
        self.options = options
        self.limit = MESSAGE_LIMIT
        self._turn = _Turn()
        self._shown: list[_Shown] = []  # edit mode: the messages showing the answer
        self._lock = asyncio.Lock()
        self._last_edit = float("-inf")
        self._deferred: asyncio.Task[None] | None = None
        self._broken = False  # an edit failed for good: no more live edits
        self._sent_any = False  # the first message of the turn replies to the user's
        # Every message of the turn now in the chat, told to ``on_messages`` as it changes
        # (the transport keeps them so that a restart can finish what it began).
        self._in_chat: list[int] = []
        self._on_messages = on_messages
        # append mode
        self._buffer = ""
        self._sent_text = ""
        self._idle: asyncio.Task[None] | None = None
        self._last_indicator: tuple[str, int, int, str] | None = None  # key, id, count, html

    @property
    def message_ids(self) -> list[int]:
        return [shown.message_id for shown in self._shown if shown.message_id]

    @property
    def in_chat(self) -> list[int]:
        """Every message this turn has sent and not deleted, oldest first."""
        return list(self._in_chat)

    def _in_chat_changed(self) -> None:
        if self._on_messages is not None:
            self._on_messages(list(self._in_chat))

    # -- events while the turn runs -----------------------------------------------------

    async def on_event(self, event: Event) -> None:
        if not self.options.enabled:
            return
        turn = self._turn
        if event.type is EventType.TEXT:
            if self.options.append_mode:
                await self._append_text(event.text)
                return
            turn.text += event.text
        elif event.type is EventType.THINKING:
            if self.options.show_reasoning_stream:
                if self.options.append_mode:
                    return
                turn.reasoning += event.text
            elif self.options.show_thinking_indicator and not turn.thinking_shown:
                turn.thinking_shown = True
                await self._indicate("thinking", "<i>[THINKING]</i>")
                return
            else:
                return
        elif event.type is EventType.ACCEPTED:
            turn.indicators = [i for i in turn.indicators if i.key != "queued"]
        else:
            shown = _indicator_html(event, self.options)
            if shown is None:
                return
            await self._indicate(*shown)
            return
        await self._refresh()

    async def _indicate(self, key: str, indicator: str) -> None:
        if self.options.append_mode:
            await self._append_indicator(key, indicator)
            return
        turn = self._turn
        last = turn.indicators[-1] if turn.indicators else None
        if last is not None and last.key == key and not turn.text[last.at :].strip():
            last.count += 1
        else:
            turn.indicators.append(_Indicator(len(turn.text), key, indicator))
        await self._refresh()

    def _render_open(self) -> str:
        """The open message: its text with the indicators where they happened."""
        turn = self._turn
        pieces: list[str] = []
        position = turn.start
        for indicator in turn.indicators:
            at = max(indicator.at, turn.start)
            if at > position:
                pieces.append(markdown_to_html(turn.text[position:at]))
                position = at
            pieces.append(indicator.render())
        if position < len(turn.text):
            pieces.append(markdown_to_html(turn.text[position:]))
        if turn.reasoning:
            pieces.append(f"<i>{html.escape(turn.reasoning[-1000:].strip())}</i>")
        return "\n".join(piece.strip("\n") for piece in pieces if piece.strip())

    async def _refresh(self) -> None:
        """Show the latest content now, or once ``edit_interval`` has passed."""
        if self._broken:
            return
        if self._shown:
            wait = self._last_edit + self.options.edit_interval - time.monotonic()
        else:
            wait = self.options.first_edit_delay
        if wait > 0:
            if self._deferred is None:
                self._deferred = asyncio.create_task(self._deferred_edit(wait))
            return
        async with self._lock:
            await self._show_open()

    async def _deferred_edit(self, wait: float) -> None:
        await asyncio.sleep(wait)
        async with self._lock:
            self._deferred = None
            await self._show_open()

    async def _show_open(self) -> None:
        """Seal what no longer fits, then show the open message (under the lock)."""
        turn = self._turn
        try:
            rendered = self._render_open()
            while utf16_len(rendered) > self.limit and len(turn.text) > turn.start:
                cut = turn.start + _fitting_cut(turn.text[turn.start :], self.limit)
                await self._put(len(self._shown) - 1, markdown_to_html(turn.text[turn.start : cut]))
                self._shown.append(_Shown(0, ""))  # a placeholder for the next message
                turn.start = cut
                turn.indicators = [i for i in turn.indicators if i.at >= cut]
                rendered = self._render_open()
            while utf16_len(rendered) > self.limit and turn.indicators:
                turn.indicators.pop(0)
                rendered = self._render_open()
            if rendered.strip():
                await self._put(len(self._shown) - 1, rendered)
        except SendError:
            self._broken = True  # the final answer still arrives, as new messages
        self._last_edit = time.monotonic()

    async def _put(self, index: int, content: str) -> None:
        """Make message ``index`` show ``content``; -1 or a placeholder: a new message."""
        if index < 0:
            self._shown.append(await self._send_new(content, None))
        elif self._shown[index].message_id == 0:
            self._shown[index] = await self._send_new(content, None)
        else:
            self._shown[index] = await self._edit(self._shown[index], content, None)

    async def _send_new(self, content: str, buttons: Rows | None) -> _Shown:
        reply_to = None if self._sent_any else self.reply_to
        message_id = await self.sender.send_text(
            self.chat_id, content, thread_id=self.thread_id, reply_to=reply_to, buttons=buttons
        )
        self._sent_any = True
        self._in_chat.append(message_id)
        self._in_chat_changed()
        return _Shown(message_id, content, buttons)

    async def _edit(
        self, shown: _Shown, content: str, buttons: Rows | None, *, final: bool = False
    ) -> _Shown:
        if (shown.html, shown.buttons) != (content, buttons):
            await self.sender.edit_text(
                self.chat_id, shown.message_id, content, buttons=buttons, final=final
            )
        return _Shown(shown.message_id, content, buttons)

    # -- the end of the turn ------------------------------------------------------------

    async def finish(self, final: Event) -> list[int]:
        """Show the final answer; the ids of the messages that show it."""
        await self._stop_timers()
        body = final.text
        if self.options.append_mode and self.options.enabled:
            return await self._finish_append(final)
        if not body or (final.get_bool("is_error") and self._turn.text.strip() not in body):
            streamed = self._turn.text.strip()
            body = f"{streamed}\n\n{body}" if streamed and body else streamed or body
        content = markdown_to_html(body) if body.strip() else ""
        notice = final.get_str("notice")
        if notice:
            content = f"<i>{html.escape(notice)}</i>\n\n{content}".strip()
        if self.options.technical_footer and final.get_str("turn") and content:
            content += f"\n---\n{html.escape(technical_footer(final))}"
        return await self._show_final(content, _rows(final))

    async def fail(self, error: Event) -> list[int]:
        """Show an error's text after what was streamed."""
        await self._stop_timers()
        streamed = self._turn.text.strip()
        if self.options.append_mode and self.options.enabled:
            await self._flush_buffer()
            streamed = ""
        content = markdown_to_html(streamed) if streamed else ""
        content = f"{content}\n\n<i>{html.escape(error.text)}</i>".strip()
        return await self._show_final(content, None)

    async def _stop_timers(self) -> None:
        # A timer still waiting is cancelled; one already showing (it has cleared its
        # slot) is waited for, so a send in flight is never cut off and sent twice.
        for task in (self._deferred, self._idle):
            if task is not None:
                task.cancel()
        self._deferred = self._idle = None
        async with self._lock:
            pass

    async def _show_final(self, content: str, buttons: Rows | None) -> list[int]:
        """Make the messages show ``content``'s pieces: the streamed ones edited, the
        rest sent, what is left over deleted; a failed edit becomes a new message."""
        pieces = split_html(content, self.limit) if content.strip() else []
        async with self._lock:
            if self.options.append_mode and self.options.enabled:
                old: list[_Shown] = []  # append mode never rewrites what it sent
            else:
                old = [shown for shown in self._shown if shown.message_id]
            result: list[_Shown] = []
            for index, piece in enumerate(pieces):
                markup = buttons if index == len(pieces) - 1 else None
                if index < len(old):
                    try:
                        result.append(await self._edit(old[index], piece, markup, final=True))
                        continue
                    except SendError:
                        await self._delete(old[index].message_id)
                result.append(await self._send_new(piece, markup))
            for leftover in old[len(pieces) :]:
                await self._delete(leftover.message_id)
            if self.options.append_mode and self.options.enabled:
                self._shown.extend(result)
            else:
                self._shown = result
            return [shown.message_id for shown in result]

    async def _delete(self, message_id: int) -> None:
        # Should the delete fail, a stale message stays; the answer is complete anyway.
        with contextlib.suppress(SendError):
            await self.sender.delete(self.chat_id, message_id)
            if message_id in self._in_chat:
                self._in_chat.remove(message_id)
                self._in_chat_changed()

    # -- append mode --------------------------------------------------------------------

    async def _append_text(self, delta: str) -> None:
        self._buffer += delta
        options = self.options
        while len(self._buffer) >= options.max_chars:
            await self._flush_buffer(_break_before(self._buffer, options.max_chars))
        if len(self._buffer) < options.min_chars:
            return
        cut = self._buffer.rfind("\n\n") + 2
        if cut < 2 and options.sentence_break:
            ends = list(_SENTENCE_END.finditer(self._buffer))
            cut = ends[-1].end() if ends else 0
        if cut >= 2:
            await self._flush_buffer(cut)
        if self._buffer.strip() and len(self._buffer) >= options.min_chars and self._idle is None:
            self._idle = asyncio.create_task(self._idle_flush())

    async def _idle_flush(self) -> None:
        await asyncio.sleep(self.options.idle_ms / 1000)
        self._idle = None
        await self._flush_buffer()

    async def _flush_buffer(self, cut: int | None = None) -> None:
        cut = len(self._buffer) if cut is None else cut
        chunk, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if not chunk.strip():
            self._sent_text += chunk
            return
        async with self._lock:
            for piece in split_html(markdown_to_html(chunk.strip()), self.limit):
                self._shown.append(await self._send_new(piece, None))
            self._sent_text += chunk
            self._last_indicator = None

    async def _append_indicator(self, key: str, indicator: str) -> None:
        await self._flush_buffer()
        async with self._lock:
            last = self._last_indicator
            if last is not None and last[0] == key:
                count = last[2] + 1
                await self.sender.edit_text(self.chat_id, last[1], f"{indicator} x{count}")
                self._last_indicator = (key, last[1], count, indicator)
                return
            shown = await self._send_new(indicator, None)
            self._last_indicator = (key, shown.message_id, 1, indicator)

    async def _finish_append(self, final: Event) -> list[int]:
        sent = self._sent_text
        if final.text.startswith(sent) and (sent or self._buffer):
            self._buffer = final.text[len(sent) :]
        elif not sent and not self._buffer:
            self._buffer = final.text
        rest = self._buffer.strip()
        self._buffer = ""
        answered = [shown.message_id for shown in self._shown]
        content = markdown_to_html(rest) if rest else ""
        extra = ""
        if self.options.technical_footer and final.get_str("turn"):
            extra = f"\n---\n{html.escape(technical_footer(final))}"
        buttons = _rows(final)
        if not content and self._shown and (extra or buttons):
            async with self._lock:
                last = self._shown[-1]
                self._shown[-1] = await self._edit(last, last.html + extra, buttons, final=True)
            return answered
        content = (content + extra).strip()
        ids = await self._show_final(content, buttons)
        return answered + ids


def _break_before(text: str, limit: int) -> int:
    """Where to cut ``text`` at most ``limit`` characters in: after the last paragraph
    break, line break or space there, else at ``limit``."""
    window = text[:limit]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at > 0:
            return at + len(separator)
    return limit


def _rows(final: Event) -> Rows | None:
    rows = [[(b.label, b.data) for b in row] for row in final.button_rows()]
    rows = [row for row in rows if row]
    return rows or None

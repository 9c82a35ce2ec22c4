"""One turn's events as Matrix messages, one message per segment.

Matrix clients show edits poorly (and notify on none), so the answer is not edited in
place as on Telegram: the text streamed so far is sent as its own message at each
boundary (a tool call, a status such as compacting) and the rest at the end. Each
message carries the Markdown as its plain ``body`` and Matrix HTML
(``format: org.matrix.custom.html``) as its ``formatted_body``. Buttons of the final
answer become a numbered list under its last message (the transport adds the 1️⃣…🔟
reactions to press them); ``scene.technical_footer`` adds the model, tokens, cost and time.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ductor.protocol import Event, EventType
from ductor.transports.matrix.ingress import NUMBER_EMOJIS
from ductor.transports.matrix.richtext import Piece, render

__all__ = ["Button", "Piece", "SegmentStream", "button_list", "render"]

Button = tuple[str, str]  # (label, data)
#: Under the text of a turn ended by !stop or !interrupt (the final's ``stopped``).
STOPPED_NOTES = {
    "stop": "[stopped: the answer above is incomplete]",
    "interrupt": "[interrupted: the answer above is incomplete]",
}
Send = Callable[[str, str], Awaitable[str]]  # (body, html) -> event id


def button_list(buttons: list[Button]) -> str:
    """The buttons as a numbered list (HTML), at most ten."""
    lines = [
        f"{NUMBER_EMOJIS[i]} {html.escape(label)}" for i, (label, _) in enumerate(buttons[:10])
    ]
    return "<br>\n".join(lines)


def buttons_of(event: Event) -> list[Button]:
    return [(b.label, b.data) for row in event.button_rows() for b in row][:10]


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
class SegmentOptions:
    enabled: bool = True
    technical_footer: bool = False
    encrypted: bool = False  # the room is: pieces are measured as ciphertext


class SegmentStream:
    """Feed it a turn's events, then :meth:`finish` or :meth:`fail`; ``send`` posts one
    message and returns its event id."""

    def __init__(self, send: Send, options: SegmentOptions) -> None:
        self.send = send
        self.options = options
        self.sent = ""  # the streamed text already sent
        self.buffer = ""  # streamed text not yet sent
        self.event_ids: list[str] = []

    async def on_event(self, event: Event) -> None:
        if not self.options.enabled:
            return
        if event.type is EventType.TEXT:
            self.buffer += event.text
        elif event.type in (EventType.TOOL, EventType.STATUS):
            await self.flush()

    async def flush(self) -> None:
        chunk, self.buffer = self.buffer, ""
        if chunk.strip():
            await self._send_all(render(chunk, encrypted=self.options.encrypted))
        self.sent += chunk

    async def _send_all(self, pieces: list[Piece]) -> str:
        last = ""
        for body, content in pieces:
            last = await self.send(body, content)
            self.event_ids.append(last)
        return last

    def rest_of(self, final: Event) -> str:
        """What of the final answer is not shown yet."""
        text = final.text
        if not self.sent.strip():
            return text or self.buffer
        if text.startswith(self.sent):
            return text[len(self.sent) :]
        if final.get_bool("is_error") and text and text not in self.sent + self.buffer:
            return f"{self.buffer}\n\n{text}"
        return self.buffer

    async def finish(self, final: Event, buttons: list[Button]) -> str:
        """Show the rest of ``final``; the event id of the last message ("" if none)."""
        rest = self.rest_of(final)
        self.buffer = ""
        notice = final.get_str("notice")
        prefix = f"<p><i>{html.escape(notice)}</i></p>" if notice else ""
        extra: list[str] = []
        stopped = final.get_str("stopped")
        if stopped and (rest.strip() or self.event_ids):
            extra.append(f"<i>{html.escape(STOPPED_NOTES.get(stopped, STOPPED_NOTES['stop']))}</i>")
        if buttons:
            extra.append(button_list(buttons))
        if self.options.technical_footer and final.get_str("turn"):
            extra.append(f"<font color='#888888'>{html.escape(technical_footer(final))}</font>")
        pieces = render(
            rest,
            prefix_html=prefix,
            suffix_html="\n".join(f"<p>{e}</p>" for e in extra),
            encrypted=self.options.encrypted,
        )
        if not pieces and not self.event_ids and not stopped:
            pieces = render("(no answer)")
        return await self._send_all(pieces)

    async def fail(self, error: Event) -> str:
        await self.flush()
        note = f"<p><i>{html.escape(error.text)}</i></p>"
        return await self._send_all(render("", suffix_html=note, encrypted=self.options.encrypted))

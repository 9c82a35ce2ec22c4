"""The agent's Markdown as Telegram HTML, cut into messages Telegram accepts.

Telegram's ``parse_mode=HTML`` understands a small set of tags (``b i u s code pre a
blockquote tg-spoiler``, ``<pre><code class="language-x">`` for highlighted code) and
the entities ``&lt; &gt; &amp; &quot;``; anything else, including one unbalanced tag,
makes it refuse the whole message. So :func:`markdown_to_html` only ever emits a tag
together with its closing tag: a marker without a partner stays literal text. The
Markdown is read by the parser every messenger shares (:mod:`ductor.transports.markdown`);
this module renders it Telegram's way: one line per line, headings bold, bullets as
"• ", tables as padded monospace text.

A message may hold 4096 characters as Telegram counts them, in UTF-16 code units (an
emoji outside the BMP counts twice). :func:`split_html` cuts longer HTML at paragraph,
line or word boundaries, never inside a tag or an entity, and closes the tags open at a
cut so each piece stands alone (:mod:`ductor.transports.splitting`);
:func:`html_to_plain` gives the text to resend when Telegram refuses the HTML anyway.

``[button:...]`` markers are the agent's business (see :mod:`ductor.agent.markup`):
they are gone before the text gets here. Stdlib only.
"""

from __future__ import annotations

from ductor.transports import splitting
from ductor.transports.markdown import (
    Code,
    Line,
    Quote,
    Table,
    Tags,
    blocks,
    cell_text,
    classify_line,
    display_width,
    escape,
    inline,
)
from ductor.transports.splitting import html_to_plain, utf16_len

__all__ = [
    "MESSAGE_LIMIT",
    "display_width",
    "html_to_plain",
    "markdown_to_html",
    "split_html",
    "utf16_len",
]

MESSAGE_LIMIT = 4096  # UTF-16 code units in one Telegram text message
RULE_TEXT = "———"
TAGS = Tags(spoiler=("<tg-spoiler>", "</tg-spoiler>"))


def _line(line: str) -> str:
    """One line outside code blocks and tables: rule, heading, bullet or plain text."""
    kind = classify_line(line)
    if kind.kind == "rule":
        return RULE_TEXT
    if kind.kind == "heading":
        # The whole line is bold already; bold inside it would only nest <b> in <b>.
        inner = inline(kind.text, TAGS).replace("<b>", "").replace("</b>", "")
        return f"<b>{inner}</b>"
    if kind.kind == "bullet":
        return f"{kind.indent}• {inline(kind.text, TAGS)}"
    return inline(line, TAGS)


def _code(block: Code) -> str:
    code = escape(block.code)
    if block.language:
        code = f'<code class="language-{escape(block.language)}">{code}</code>'
    return f"<pre>{code}</pre>"


def _pad(text: str, width: int, align: str) -> str:
    room = width - display_width(text)
    if align == "right":
        return " " * room + text
    if align == "center":
        return " " * (room // 2) + text + " " * (room - room // 2)
    return text + " " * room


def _table(table: Table) -> str:
    """A ``<pre>`` block: columns padded to their widest cell, a ``─`` rule under the
    header, the cells without Markdown markers (``<pre>`` would show them verbatim)."""
    header = [cell_text(cell) for cell in table.header]
    rows = [[cell_text(cell) for cell in row] for row in table.rows]
    columns = len(header)
    widths = [max(display_width(row[i]) for row in [header, *rows]) for i in range(columns)]

    def render(row: list[str]) -> str:
        return "  ".join(
            _pad(c, w, a) for c, w, a in zip(row, widths, table.aligns, strict=True)
        ).rstrip()

    rule = "─" * (sum(widths) + 2 * (columns - 1))
    text = "\n".join([render(header), rule, *(render(row) for row in rows)])
    return f"<pre>{escape(text)}</pre>"


def markdown_to_html(text: str) -> str:
    """The agent's Markdown as Telegram HTML; every tag produced is closed."""
    out: list[str] = []
    for block in blocks(text):
        if isinstance(block, Code):
            out.append(_code(block))
        elif isinstance(block, Table):
            out.append(_table(block))
        elif isinstance(block, Quote):
            out.append("<blockquote>" + "\n".join(map(_line, block.lines)) + "</blockquote>")
        elif isinstance(block, Line):
            out.append(_line(block.text))
    return "\n".join(out).strip("\n")


def split_html(html_text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``html_text`` in chunks of at most ``limit`` UTF-16 units, each valid on its own.

    Cuts prefer a blank line, then a line break, then a space, and fall back to a cut
    between two characters; the whitespace at a cut is dropped. Tags open at a cut are
    closed at the end of the chunk and reopened, attributes and all, in the next one.
    """
    return splitting.split_html(html_text, limit)

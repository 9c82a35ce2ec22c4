"""The agent's Markdown as Matrix messages: Matrix's HTML, a Markdown ``body``, and
pieces small enough for the homeserver.

Element shows ``formatted_body`` as HTML with collapsed whitespace (``white-space:
normal``): a newline in it is a space. So every line break here is markup: paragraphs
(``<p>``), ``<br>`` inside one, ``<h1>``-``<h6>``, ``<ul>``/``<ol>``/``<li>``,
``<pre><code class="language-x">``, ``<table>``, ``<blockquote>``, ``<hr>`` and links,
the subset the Matrix spec recommends (m.room.message, ``org.matrix.custom.html``). The
Markdown is read by the parser every messenger shares (:mod:`ductor.transports.markdown`).

Size: Synapse refuses an event whose JSON is over 65,536 bytes of UTF-8, and ``body``
repeats the text of ``formatted_body``: a piece is measured in the bytes its text takes
in the event's JSON. In an encrypted room the homeserver sees the event as Megolm
ciphertext: matrix-nio's JSON with ASCII escapes (six bytes for a Cyrillic letter),
encrypted, in base64 (four bytes for three). :func:`render` cuts by that measure and
checks every piece against :data:`EVENT_BUDGET`.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser

from ductor.errors import DuctorError
from ductor.transports import splitting
from ductor.transports.markdown import (
    Block,
    Code,
    Line,
    Quote,
    Table,
    Tags,
    blocks,
    classify_line,
    escape,
    inline,
)

__all__ = [
    "EVENT_BUDGET",
    "Piece",
    "TooLarge",
    "content_size",
    "html_to_text",
    "markdown_to_html",
    "render",
]

#: Bytes the ``body`` and ``formatted_body`` of one event may take together (the rest of
#: the 65,536 a homeserver accepts is for the event's other fields and signatures).
EVENT_BUDGET = 56_000
MEGOLM_OVERHEAD = 400  # bytes: the Megolm message's MAC and signature, the other fields
TAGS = Tags(
    spoiler=("<span data-mx-spoiler>", "</span>"),
    link_schemes=frozenset({"http", "https", "mailto", "matrix"}),
)
HEADING_MAX = 6

Piece = tuple[str, str]  # (plain body, HTML)


class TooLarge(DuctorError):
    """The homeserver refused an event as too large (``M_TOO_LARGE``): sending it again
    can never work."""


# --- Markdown → Matrix HTML ------------------------------------------------------------


@dataclass
class _List:
    tag: str  # ul or ol
    indent: int


@dataclass
class _Writer:
    out: list[str] = field(default_factory=list)
    paragraph: list[str] = field(default_factory=list)
    lists: list[_List] = field(default_factory=list)

    def end_paragraph(self) -> None:
        if self.paragraph:
            self.out.append("<p>" + "<br>\n".join(self.paragraph) + "</p>")
            self.paragraph = []

    def close(self, tags: str) -> None:
        """Closing tags go on the line they close, never after a newline of their own."""
        if self.out:
            self.out[-1] += tags
        else:
            self.out.append(tags)

    def end_lists(self, indent: int = -1) -> None:
        while self.lists and self.lists[-1].indent > indent:
            self.close(f"</li></{self.lists.pop().tag}>")

    def end_all(self) -> None:
        self.end_paragraph()
        self.end_lists()

    def item(self, tag: str, indent: int, number: int, text: str) -> None:
        self.end_paragraph()
        lists = self.lists
        while lists and (
            indent < lists[-1].indent or (indent == lists[-1].indent and tag != lists[-1].tag)
        ):
            self.close(f"</li></{lists.pop().tag}>")
        if lists and indent == lists[-1].indent:
            self.close("</li>")
        else:
            start = f' start="{number}"' if tag == "ol" and number != 1 else ""
            self.out.append(f"<{tag}{start}>")
            lists.append(_List(tag, indent))
        self.out.append(f"<li>{inline(text, TAGS)}")


def _indent(whitespace: str) -> int:
    return len(whitespace.replace("\t", "    "))


def _table(table: Table) -> str:
    def row(cells: tuple[str, ...], cell: str) -> str:
        return "<tr>" + "".join(f"<{cell}>{inline(c, TAGS)}</{cell}>" for c in cells) + "</tr>"

    body = "".join(row(r, "td") for r in table.rows)
    return (
        f"<table><thead>{row(table.header, 'th')}</thead>"
        + (f"<tbody>{body}</tbody>" if body else "")
        + "</table>"
    )


def _code(block: Code) -> str:
    language = f' class="language-{escape(block.language)}"' if block.language else ""
    return f"<pre><code{language}>{escape(block.code)}</code></pre>"


def _render(parsed: list[Block]) -> str:
    writer = _Writer()
    for block in parsed:
        if not isinstance(block, Line):
            writer.end_all()
            if isinstance(block, Code):
                writer.out.append(_code(block))
            elif isinstance(block, Table):
                writer.out.append(_table(block))
            elif isinstance(block, Quote):
                inner = _render([Line(line) for line in block.lines])
                writer.out.append(f"<blockquote>{inner}</blockquote>")
            continue
        line = classify_line(block.text)
        if line.kind == "blank":
            writer.end_all()
        elif line.kind in ("bullet", "numbered"):
            tag = "ul" if line.kind == "bullet" else "ol"
            writer.item(tag, _indent(line.indent), line.number, line.text)
        elif line.kind == "text" and writer.lists and block.text[:1] in (" ", "\t"):
            # An indented line under a list item continues that item.
            writer.out[-1] += "<br>" + inline(block.text.strip(), TAGS)
        else:
            writer.end_lists()
            if line.kind == "text":
                writer.paragraph.append(inline(block.text.strip(), TAGS))
                continue
            writer.end_paragraph()
            if line.kind == "rule":
                writer.out.append("<hr>")
            else:
                level = min(line.level, HEADING_MAX)
                writer.out.append(f"<h{level}>{inline(line.text, TAGS)}</h{level}>")
    writer.end_all()
    return "\n".join(writer.out)


def markdown_to_html(text: str) -> str:
    """The agent's Markdown as Matrix HTML; every tag produced is closed, and no line
    break depends on a newline character."""
    return _render(blocks(text))


# --- Matrix HTML → a Markdown body -----------------------------------------------------

_BLOCK_END = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "ul", "ol"}
_BLOCK_START = _BLOCK_END - {"ul", "ol"} | {"pre", "hr"}
_MARKS = {"b": "**", "i": "_", "s": "~~"}  # the Markdown that opens and closes each


class _TextWriter(HTMLParser):
    """The text of the HTML :func:`markdown_to_html` writes, with its structure as
    Markdown: for the ``body`` of a piece cut out of a longer answer."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
        self.pre = 0
        self.href: list[str] = []
        self.cells = 0

    def newline(self, count: int = 1) -> None:
        text = "".join(self.parts)
        have = len(text) - len(text.rstrip("\n"))
        if text:
            self.parts.append("\n" * max(0, count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in _BLOCK_START:
            self.newline(2)
        if tag == "br":
            self.newline()
        elif tag == "hr":
            self.parts.append("---")
            self.newline(2)
        elif tag[:1] == "h" and tag[1:].isdigit():
            self.parts.append("#" * int(tag[1:]) + " ")
        elif tag in ("ul", "ol"):
            self.newline(1 if self.lists else 2)
            self.lists.append([int(values.get("start") or 1)] if tag == "ol" else [])
        elif tag == "li":
            self.newline()
            marker = "- "
            if self.lists and self.lists[-1]:
                marker = f"{self.lists[-1][0]}. "
                self.lists[-1][0] += 1
            self.parts.append("  " * (len(self.lists) - 1) + marker)
        elif tag == "pre":
            self.pre += 1
            self.parts.append("```")
        elif tag == "code" and self.pre:
            language = (values.get("class") or "").removeprefix("language-")
            self.parts.append(language + "\n")
        elif tag == "code":
            self.parts.append("`")
        elif tag in _MARKS:
            self.parts.append(_MARKS[tag])
        elif tag == "a":
            self.href.append(values.get("href") or "")
            self.parts.append("[")
        elif tag == "tr":
            self.newline()
            self.cells = 0
        elif tag in ("td", "th"):
            self.parts.append("| " if self.cells == 0 else " | ")
            self.cells += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.parts.append("\n```")
            self.newline(2)
        elif tag == "code" and not self.pre:
            self.parts.append("`")
        elif tag in _MARKS:
            self.parts.append(_MARKS[tag])
        elif tag == "a":
            self.parts.append(f"]({self.href.pop() if self.href else ''})")
        elif tag == "tr":
            self.parts.append(" |")
        elif tag == "thead":
            self.newline()
            self.parts.append("|" + " --- |" * max(1, self.cells))
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self.newline(1 if self.lists else 2)
        elif tag in _BLOCK_END:
            self.newline(2)

    def handle_data(self, data: str) -> None:
        if not self.pre and "\n" in data and not data.strip():
            return  # the newlines between blocks: the structure says where lines break
        self.parts.append(data if self.pre else data.strip("\n").replace("\n", " "))

    def text(self) -> str:
        return "".join(self.parts).strip("\n")


def html_to_text(html_text: str) -> str:
    """The Markdown-like text of Matrix HTML (line breaks, lists, fences, emphasis)."""
    writer = _TextWriter()
    writer.feed(html_text)
    writer.close()
    return writer.text()


# --- Size ------------------------------------------------------------------------------


def _json_size(text: str, *, encrypted: bool) -> int:
    return len(json.dumps(text, ensure_ascii=encrypted).encode()) - 2


def content_size(body: str, html_text: str, *, encrypted: bool) -> int:
    """About how many bytes ``body`` and ``formatted_body`` take in the event the
    homeserver stores (in an encrypted room: in its ciphertext)."""
    size = _json_size(body, encrypted=encrypted) + _json_size(html_text, encrypted=encrypted)
    if encrypted:
        return size * 4 // 3 + MEGOLM_OVERHEAD
    return size


def render(
    markdown: str, *, prefix_html: str = "", suffix_html: str = "", encrypted: bool = False
) -> list[Piece]:
    """``markdown`` as messages: a Markdown body and Matrix HTML, cut so each event fits."""
    markdown = markdown.strip()
    content = markdown_to_html(markdown) if markdown else ""
    content = "\n".join(p for p in (prefix_html, content, suffix_html) if p.strip())
    if not content.strip():
        return []
    if (
        not prefix_html
        and not suffix_html
        and content_size(markdown, content, encrypted=encrypted) <= EVENT_BUDGET
    ):
        return [(markdown, content)]
    return _cut(content, encrypted=encrypted, limit=_html_limit(encrypted))


def _html_limit(encrypted: bool) -> int:
    # The body is the HTML's text, at most as long: half the budget each.
    usable = EVENT_BUDGET - (MEGOLM_OVERHEAD if encrypted else 0)
    return usable * 3 // 4 // 2 if encrypted else usable // 2


def _cut(content: str, *, encrypted: bool, limit: int) -> list[Piece]:
    pieces: list[Piece] = []
    measure = _measure(encrypted)
    for piece in splitting.split_html(content, limit, measure):
        body = html_to_text(piece)
        if content_size(body, piece, encrypted=encrypted) <= EVENT_BUDGET:
            pieces.append((body, piece))
        else:  # a body longer than its HTML's text (cannot be, but never send one too big)
            pieces += _cut(piece, encrypted=encrypted, limit=limit // 2)
    return pieces


def _measure(encrypted: bool) -> splitting.Measure:
    def measure(text: str) -> int:
        return _json_size(text, encrypted=encrypted)

    return measure


def plain_note(text: str) -> str:
    """``text`` as HTML, for notes made here (escaped, line breaks as ``<br>``)."""
    return "<br>\n".join(html.escape(line, quote=False) for line in text.split("\n"))

"""The agent's Markdown, read once for every messenger: blocks and inline markup.

The models write a loose Markdown: fenced code (a fence closed by words on the same line,
prose after a stray fence), pipe tables, ``>`` quotes, headings, bullets, numbered
lists and the inline markers (``**bold**``, ``_italic_``, ``~~strike~~``,
``||spoiler||``, ``code``, ``[links](https://...)``). :func:`blocks` cuts the text into
code blocks, tables, quotes and single lines; :func:`classify_line` tells what a line
is; :func:`inline` turns a line's markers into HTML with the tags a :class:`Tags` names.
Each messenger renders the blocks its own way (telegram/formatting.py: Telegram's tag
subset, one line per line; matrix/html.py: Matrix's HTML with paragraphs and lists).

Every tag :func:`inline` emits comes with its closing tag: a marker without a partner
stays literal text. Stdlib only.
"""

from __future__ import annotations

import html
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "Block",
    "Code",
    "Line",
    "LineKind",
    "Quote",
    "Table",
    "Tags",
    "blocks",
    "cell_text",
    "classify_line",
    "display_width",
    "escape",
    "inline",
]

LINK_SCHEMES = frozenset({"http", "https", "tg", "mailto"})
MAX_NESTING = 16  # markers nested deeper than this stay literal (bounds the recursion)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_HEADING = re.compile(r"^[ \t]{0,3}(?P<marks>#{1,6})[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<text>.*)$")
_NUMBERED = re.compile(r"^(?P<indent>[ \t]*)(?P<number>[0-9]{1,9})[.)][ \t]+(?P<text>.*)$")
_QUOTE = re.compile(r"^[ \t]{0,3}>")
_QUOTE_PREFIX = re.compile(r"^[ \t]{0,3}(?:>[ \t]?)+")
_LANGUAGE = re.compile(r"[\w+#.-]{1,32}")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+(?:[ \t]*:?-+:?[ \t]*)?$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")

# One alternative per inline construct; the leftmost match wins, so whichever marker
# opens first owns the text up to its partner, and its inside is converted on its own.
# A span is at most _SPAN characters long: without a bound, a long line full of
# unpartnered markers would take quadratic time to find out that none of them match.
_SPAN = r".{1,1000}?"
_INLINE_PARTS = {
    "escape": r"\\(?P<escape_c>[!-/:-@\[-`{-~])",
    "code": rf"(?P<ticks>`+)(?P<code_c>{_SPAN})(?<!`)(?P=ticks)(?!`)",
    "link": r"\[(?P<link_t>[^\]\n]+)\]\((?P<link_u>(?:[^()\s]|\([^()\s]*\))+)\)",
    "bold_italic": rf"\*\*\*(?=\S)(?P<bold_italic_c>{_SPAN})(?<=\S)\*\*\*",
    "bold": rf"\*\*(?=\S)(?P<bold_c>{_SPAN})(?<=\S)\*\*",
    "bold_u": rf"(?<!\w)__(?=\S)(?P<bold_u_c>{_SPAN})(?<=\S)__(?!\w)",
    "strike": rf"~~(?=\S)(?P<strike_c>{_SPAN})(?<=\S)~~",
    "spoiler": rf"\|\|(?=\S)(?P<spoiler_c>{_SPAN})(?<=\S)\|\|",
    "italic": rf"(?<![\w*])\*(?=[^\s*])(?P<italic_c>{_SPAN})(?<=[^\s*])\*(?![\w*])",
    "italic_u": rf"(?<!\w)_(?=[^\s_])(?P<italic_u_c>{_SPAN})(?<=[^\s_])_(?!\w)",
}
_INLINE = re.compile("|".join(f"(?P<{name}>{part})" for name, part in _INLINE_PARTS.items()))


@dataclass(frozen=True)
class Tags:
    """The opening and closing tags one messenger uses for the inline markers."""

    spoiler: tuple[str, str]
    link_schemes: frozenset[str] = LINK_SCHEMES

    def wrap(self, kind: str) -> tuple[str, str]:
        if kind in ("spoiler",):
            return self.spoiler
        return _WRAP[kind]


_WRAP = {
    "bold_italic": ("<b><i>", "</i></b>"),
    "bold": ("<b>", "</b>"),
    "bold_u": ("<b>", "</b>"),
    "strike": ("<s>", "</s>"),
    "italic": ("<i>", "</i>"),
    "italic_u": ("<i>", "</i>"),
}


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def inline(text: str, tags: Tags, depth: int = 0) -> str:
    """Inline Markdown of one line as HTML; every tag emitted comes with its partner."""
    if depth > MAX_NESTING:
        return escape(text)
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[position : match.start()]))
        out.append(_inline_match(match, tags, depth))
        position = match.end()
    out.append(escape(text[position:]))
    return "".join(out)


def _inline_match(match: re.Match[str], tags: Tags, depth: int) -> str:
    kind = match.lastgroup or ""
    if kind == "escape":
        return escape(match.group("escape_c"))
    if kind == "code":
        code = match.group("code_c")
        if len(code) > 1 and code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        return f"<code>{escape(code)}</code>"
    if kind == "link":
        url = match.group("link_u")
        if urllib.parse.urlsplit(url).scheme.lower() not in tags.link_schemes:
            return escape(match.group(0))
        label = inline(match.group("link_t"), tags, depth + 1)
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>'
    opening, closing = tags.wrap(kind)
    return opening + inline(match.group(f"{kind}_c"), tags, depth + 1) + closing


# --- Lines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LineKind:
    """What one line outside code blocks and tables is.

    ``kind``: ``blank``, ``rule``, ``heading`` (``level`` 1-6), ``bullet``, ``numbered``
    (``number``) or ``text``; ``text`` is the line's own text without its marker,
    ``indent`` the whitespace before a list marker.
    """

    kind: str
    text: str
    level: int = 0
    indent: str = ""
    number: int = 0


def classify_line(line: str) -> LineKind:
    if not line.strip():
        return LineKind("blank", "")
    if _RULE.match(line):
        return LineKind("rule", "")
    heading = _HEADING.match(line)
    if heading and heading.group("text"):
        return LineKind("heading", heading.group("text"), level=len(heading.group("marks")))
    bullet = _BULLET.match(line)
    if bullet:
        return LineKind("bullet", bullet.group("text"), indent=bullet.group("indent"))
    numbered = _NUMBERED.match(line)
    if numbered:
        return LineKind(
            "numbered",
            numbered.group("text"),
            indent=numbered.group("indent"),
            number=int(numbered.group("number")),
        )
    return LineKind("text", line)


# --- Blocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of text (a paragraph's line, a heading, a list item, a rule, a blank)."""

    text: str


@dataclass(frozen=True)
class Code:
    language: str
    code: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    aligns: tuple[str, ...]  # left, right, center
    rows: tuple[tuple[str, ...], ...]  # raw cell Markdown, as many cells as the header


@dataclass(frozen=True)
class Quote:
    lines: tuple[str, ...]  # without their ``>`` prefixes


Block = Line | Code | Table | Quote


def _code_block(lines: list[str], start: int, fence: re.Match[str]) -> tuple[Code, int]:
    """The fenced block opening at ``lines[start]``; returns it and the next line.

    A fence never closed runs to the end of the text, as in CommonMark. A closing fence
    with words after it on the same line (`` ``` and then``) ends the block, and those
    words are the next line: models write that meaning a close, and read as code (or
    as the opening of another block) they would swallow the rest of the answer.
    """
    marker = fence.group("fence")
    closing = re.compile(
        rf"^[ \t]*{re.escape(marker[0])}{{{len(marker)},}}(?:[ \t]*$|[ \t]+(?P<rest>\S.*)$)"
    )
    indent = len(fence.group("indent"))
    info = fence.group("info").split()
    language = info[0] if info and _LANGUAGE.fullmatch(info[0]) else ""
    body: list[str] = []
    end = start + 1
    while end < len(lines):
        close = closing.match(lines[end])
        if close and (close.group("rest") is None or not _is_language(close.group("rest"))):
            break
        line = lines[end]
        strip = min(indent, len(line) - len(line.lstrip(" \t")))
        body.append(line[strip:])
        end += 1
    block = Code(language, "\n".join(body))
    if end < len(lines):
        close = closing.match(lines[end])
        if close and close.group("rest"):
            lines[end] = close.group("rest")  # the words after the fence: a line of text
            return block, end
    return block, end + 1


def _is_language(info: str) -> bool:
    """Whether a fence's info string is just a language name (``python``)."""
    return bool(_LANGUAGE.fullmatch(info.strip()))


def _cells(line: str) -> list[str]:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(row)]


def _is_table_start(lines: list[str], index: int) -> bool:
    if index + 1 >= len(lines) or "|" not in lines[index]:
        return False
    delimiter = lines[index + 1]
    if "|" not in delimiter or not _TABLE_DELIMITER.match(delimiter):
        return False
    return len(_cells(lines[index])) == len(_cells(delimiter))


def _table(lines: list[str], start: int) -> tuple[Table, int]:
    header = _cells(lines[start])
    aligns = []
    for spec in _cells(lines[start + 1]):
        if spec.endswith(":"):
            aligns.append("center" if spec.startswith(":") else "right")
        else:
            aligns.append("left")
    columns = len(header)
    rows: list[tuple[str, ...]] = []
    end = start + 2
    while end < len(lines) and "|" in lines[end] and lines[end].strip():
        cells = _cells(lines[end])[:columns]
        rows.append(tuple(cells + [""] * (columns - len(cells))))
        end += 1
    return Table(tuple(header), tuple(aligns), tuple(rows)), end


def blocks(text: str) -> list[Block]:
    """``text`` as blocks: fenced code, tables, runs of ``>`` lines, and single lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence and fence.group("info").strip() and not _is_language(fence.group("info")):
            # Prose after a fence (`` ``` after X``): a stray closing fence, not a block
            # whose info string would hide those words. They stay text.
            lines[index] = fence.group("info").strip()
            continue
        if fence and (fence.group("fence")[0] == "~" or "`" not in fence.group("info")):
            code, index = _code_block(lines, index, fence)
            out.append(code)
        elif _is_table_start(lines, index):
            table, index = _table(lines, index)
            out.append(table)
        elif _QUOTE.match(line):
            end = index
            while end < len(lines) and _QUOTE.match(lines[end]):
                end += 1
            out.append(Quote(tuple(_QUOTE_PREFIX.sub("", quote) for quote in lines[index:end])))
            index = end
        else:
            out.append(Line(line))
            index += 1
    return out


# --- Table cells -----------------------------------------------------------------------

_CELL_MARKUP = (
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)\s]+\)"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"(?<!\w)__(.+?)__(?!\w)"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
)


def cell_text(cell: str) -> str:
    """A cell's text without Markdown markers (for a table shown as monospace text)."""
    for pattern, replacement in _CELL_MARKUP:
        cell = pattern.sub(replacement, cell)
    return cell


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospace font: wide CJK counts 2, combining marks 0."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or char == "\u200d":
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width

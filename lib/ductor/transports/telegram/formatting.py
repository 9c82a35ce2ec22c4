"""The agent's Markdown as Telegram HTML, cut into messages Telegram accepts.

Telegram's ``parse_mode=HTML`` understands a small set of tags (``b i u s code pre a
blockquote tg-spoiler``, ``<pre><code class="language-x">`` for highlighted code) and
the entities ``&lt; &gt; &amp; &quot;``; anything else, including one unbalanced tag,
makes it refuse the whole message. So :func:`markdown_to_html` only ever emits a tag
together with its closing tag: a marker without a partner stays literal text.

A message may hold 4096 characters as Telegram counts them, in UTF-16 code units (an
emoji outside the BMP counts twice). :func:`split_html` cuts longer HTML at paragraph,
line or word boundaries, never inside a tag or an entity, and closes the tags open at a
cut so each piece stands alone; :func:`html_to_plain` gives the text to resend when
Telegram refuses the HTML anyway.

``[button:...]`` markers are the agent's business (see :mod:`ductor.agent.markup`):
they are gone before the text gets here. Stdlib only.
"""

from __future__ import annotations

import html
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, replace

__all__ = [
    "MESSAGE_LIMIT",
    "display_width",
    "html_to_plain",
    "markdown_to_html",
    "split_html",
    "utf16_len",
]

MESSAGE_LIMIT = 4096  # UTF-16 code units in one Telegram text message
MIN_LIMIT = 32  # room for the longest entity plus some text; smaller limits are refused
LINK_SCHEMES = frozenset({"http", "https", "tg", "mailto"})
RULE_TEXT = "———"
MAX_NESTING = 16  # markers nested deeper than this stay literal (bounds the recursion)


def utf16_len(text: str) -> int:
    """The length of ``text`` as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


# --- Markdown → HTML -------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^[ \t]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+(?P<text>.*)$")
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
_WRAP = {
    "bold_italic": ("<b><i>", "</i></b>"),
    "bold": ("<b>", "</b>"),
    "bold_u": ("<b>", "</b>"),
    "strike": ("<s>", "</s>"),
    "spoiler": ("<tg-spoiler>", "</tg-spoiler>"),
    "italic": ("<i>", "</i>"),
    "italic_u": ("<i>", "</i>"),
}


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _inline(text: str, depth: int = 0) -> str:
    """Inline Markdown of one line as HTML; every tag emitted comes with its partner."""
    if depth > MAX_NESTING:
        return _escape(text)
    out: list[str] = []
    position = 0
    for match in _INLINE.finditer(text):
        out.append(_escape(text[position : match.start()]))
        out.append(_inline_match(match, depth))
        position = match.end()
    out.append(_escape(text[position:]))
    return "".join(out)


def _inline_match(match: re.Match[str], depth: int) -> str:
    kind = match.lastgroup or ""
    if kind == "escape":
        return _escape(match.group("escape_c"))
    if kind == "code":
        code = match.group("code_c")
        if len(code) > 1 and code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        return f"<code>{_escape(code)}</code>"
    if kind == "link":
        url = match.group("link_u")
        if urllib.parse.urlsplit(url).scheme.lower() not in LINK_SCHEMES:
            return _escape(match.group(0))
        label = _inline(match.group("link_t"), depth + 1)
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>'
    opening, closing = _WRAP[kind]
    return opening + _inline(match.group(f"{kind}_c"), depth + 1) + closing


def _line(line: str) -> str:
    """One line outside code blocks and tables: rule, heading, bullet or plain text."""
    if _RULE.match(line):
        return RULE_TEXT
    heading = _HEADING.match(line)
    if heading and heading.group("text"):
        # The whole line is bold already; bold inside it would only nest <b> in <b>.
        inner = _inline(heading.group("text")).replace("<b>", "").replace("</b>", "")
        return f"<b>{inner}</b>"
    bullet = _BULLET.match(line)
    if bullet:
        return f"{bullet.group('indent')}• {_inline(bullet.group('text'))}"
    return _inline(line)


def _code_block(lines: list[str], start: int, fence: re.Match[str]) -> tuple[str, int]:
    """The fenced block opening at ``lines[start]``; returns its HTML and the next line.

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
    code = _escape("\n".join(body))
    if language:
        code = f'<code class="language-{_escape(language)}">{code}</code>'
    block = f"<pre>{code}</pre>"
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


_CELL_MARKUP = (
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\([^)\s]+\)"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"(?<!\w)__(.+?)__(?!\w)"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
)


def _cell_text(cell: str) -> str:
    """A cell's text without Markdown markers: a ``<pre>`` block shows them verbatim."""
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


def _pad(text: str, width: int, align: str) -> str:
    room = width - display_width(text)
    if align == "right":
        return " " * room + text
    if align == "center":
        return " " * (room // 2) + text + " " * (room - room // 2)
    return text + " " * room


def _table(lines: list[str], start: int) -> tuple[str, int]:
    """The table whose header is ``lines[start]``; returns a ``<pre>`` block and the
    next line. Columns are padded to their widest cell, a ``─`` rule under the header."""
    header = [_cell_text(cell) for cell in _cells(lines[start])]
    aligns = []
    for spec in _cells(lines[start + 1]):
        if spec.endswith(":"):
            aligns.append("center" if spec.startswith(":") else "right")
        else:
            aligns.append("left")
    columns = len(header)
    rows: list[list[str]] = []
    end = start + 2
    while end < len(lines) and "|" in lines[end] and lines[end].strip():
        cells = [_cell_text(cell) for cell in _cells(lines[end])][:columns]
        rows.append(cells + [""] * (columns - len(cells)))
        end += 1
    widths = [max(display_width(row[i]) for row in [header, *rows]) for i in range(columns)]

    def render(row: list[str]) -> str:
        return "  ".join(
            _pad(c, w, a) for c, w, a in zip(row, widths, aligns, strict=True)
        ).rstrip()

    rule = "─" * (sum(widths) + 2 * (columns - 1))
    text = "\n".join([render(header), rule, *(render(row) for row in rows)])
    return f"<pre>{_escape(text)}</pre>", end


def markdown_to_html(text: str) -> str:
    """The agent's Markdown as Telegram HTML; every tag produced is closed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
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
            block, index = _code_block(lines, index, fence)
            out.append(block)
        elif _is_table_start(lines, index):
            block, index = _table(lines, index)
            out.append(block)
        elif _QUOTE.match(line):
            end = index
            while end < len(lines) and _QUOTE.match(lines[end]):
                end += 1
            quoted = (_line(_QUOTE_PREFIX.sub("", quote)) for quote in lines[index:end])
            out.append("<blockquote>" + "\n".join(quoted) + "</blockquote>")
            index = end
        else:
            out.append(_line(line))
            index += 1
    return "\n".join(out).strip("\n")


# --- Splitting -------------------------------------------------------------------------

# A tag, an entity or one character: the units a cut may fall between.
_TOKEN = re.compile(
    r"</?[A-Za-z][^<>]*>|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,15});|.",
    re.DOTALL,
)
_TAG = re.compile(r"<(/?)([A-Za-z][\w-]*)")
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


@dataclass(frozen=True)
class _Open:
    """A tag open at some point of the text; ``shown`` is false for one that had to be
    dropped because it and its closing tag leave no room for text under the limit."""

    name: str
    tag: str
    shown: bool = True


@dataclass(frozen=True)
class _Cut:
    pieces: int  # how many output pieces of the chunk come before the cut
    resume: int  # the token the next chunk starts at
    stack: tuple[_Open, ...]  # the tags open at the cut


def _closing(stack: tuple[_Open, ...] | list[_Open]) -> str:
    return "".join(f"</{entry.name}>" for entry in reversed(stack) if entry.shown)


def _break_after(tokens: list[str], index: int) -> tuple[int, int]:
    """Priority of a cut before the whitespace at ``index`` (3 blank line, 2 newline,
    1 space) and the token after the whitespace that the cut swallows."""
    char = tokens[index]
    end = index
    while end < len(tokens) and tokens[end] == char:
        end += 1
    if char == " ":
        return 1, end
    return (3 if end - index >= 2 else 2), end


def _next_chunk(
    tokens: list[str], start: int, open_tags: tuple[_Open, ...], limit: int
) -> tuple[str, int, tuple[_Open, ...]]:
    """The chunk starting at ``tokens[start]`` with ``open_tags`` reopened; returns the
    chunk, the token the next one starts at and the tags open there."""
    stack = list(open_tags)
    pieces = [entry.tag for entry in stack if entry.shown]
    size = sum(utf16_len(piece) for piece in pieces)
    min_fill = limit // 4  # a cut earlier than this would make a needlessly short message
    breaks: dict[int, _Cut] = {}
    after_text: _Cut | None = None
    index = start
    while index < len(tokens):
        token = tokens[index]
        tag = _TAG.match(token) if token.startswith("<") and len(token) > 1 else None
        if tag and tag.group(1):
            name = tag.group(2).lower()
            found = [i for i, entry in enumerate(stack) if entry.name == name]
            if found:  # a closing tag without its opening one is dropped
                closing = _closing(stack[found[-1] :])
                pieces.append(closing)
                size += utf16_len(closing)
                del stack[found[-1] :]
            index += 1
            if after_text is not None:
                after_text = _Cut(len(pieces), index, tuple(stack))
            continue
        if tag:
            entry = _Open(tag.group(2).lower(), token)
            need = size + utf16_len(token) + utf16_len(_closing([*stack, entry]))
            if need <= limit:
                pieces.append(token)
                size += utf16_len(token)
            elif after_text is not None:
                break
            else:
                entry = replace(entry, shown=False)
            stack.append(entry)
            index += 1
            continue
        width = utf16_len(token)
        if size + width + utf16_len(_closing(stack)) > limit:
            if after_text is not None:
                break
            if not any(entry.shown for entry in stack):
                raise ValueError(f"split limit {limit} leaves no room for {token!r}")
            # Nothing written yet and the open tags alone fill the chunk: drop them.
            stack = [replace(entry, shown=False) for entry in stack]
            pieces, size = [], 0
            continue
        if after_text is not None and token in ("\n", " ") and size >= min_fill:
            priority, resume = _break_after(tokens, index)
            breaks[priority] = _Cut(len(pieces), resume, tuple(stack))
        pieces.append(token)
        size += width
        index += 1
        after_text = _Cut(len(pieces), index, tuple(stack))
    else:
        return "".join(pieces) + _closing(stack), index, tuple(stack)
    cut = next((breaks[p] for p in (3, 2, 1) if p in breaks), after_text)
    assert cut is not None  # the loop only breaks once some text is in the chunk
    return "".join(pieces[: cut.pieces]) + _closing(cut.stack), cut.resume, cut.stack


def split_html(html_text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``html_text`` in chunks of at most ``limit`` UTF-16 units, each valid on its own.

    Cuts prefer a blank line, then a line break, then a space, and fall back to a cut
    between two characters; the whitespace at a cut is dropped. Tags open at a cut are
    closed at the end of the chunk and reopened, attributes and all, in the next one.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"split limit must be at least {MIN_LIMIT}, not {limit}")
    if utf16_len(html_text) <= limit:
        return [html_text] if html_text.strip() else []
    tokens = _TOKEN.findall(html_text)
    chunks: list[str] = []
    open_tags: tuple[_Open, ...] = ()
    index = 0
    while index < len(tokens):
        chunk, index, open_tags = _next_chunk(tokens, index, open_tags, limit)
        if html_to_plain(chunk).strip():
            chunks.append(chunk)
    return chunks


def html_to_plain(html_text: str) -> str:
    """The text of Telegram HTML: tags removed, entities decoded."""
    return html.unescape(_ANY_TAG.sub("", html_text))

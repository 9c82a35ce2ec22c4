"""HTML cut into messages a messenger accepts, never inside a tag or an entity.

:func:`split_html` cuts at paragraph, line or word boundaries and closes the tags open
at a cut, reopening them in the next piece, so each piece stands alone. How big a piece
may be is the messenger's business: Telegram counts UTF-16 code units (the default
``measure``), Matrix counts the bytes of the whole event (matrix/html.py).
:func:`html_to_plain` gives the text of such HTML. Stdlib only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["MIN_LIMIT", "html_to_plain", "split_html", "utf16_len"]

MIN_LIMIT = 32  # room for the longest entity plus some text; smaller limits are refused


def utf16_len(text: str) -> int:
    """The length of ``text`` as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


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


Measure = Callable[[str], int]


def _next_chunk(
    tokens: list[str], start: int, open_tags: tuple[_Open, ...], limit: int, measure: Measure
) -> tuple[str, int, tuple[_Open, ...]]:
    """The chunk starting at ``tokens[start]`` with ``open_tags`` reopened; returns the
    chunk, the token the next one starts at and the tags open there."""
    stack = list(open_tags)
    pieces = [entry.tag for entry in stack if entry.shown]
    size = sum(measure(piece) for piece in pieces)
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
                size += measure(closing)
                del stack[found[-1] :]
            index += 1
            if after_text is not None:
                after_text = _Cut(len(pieces), index, tuple(stack))
            continue
        if tag:
            entry = _Open(tag.group(2).lower(), token)
            need = size + measure(token) + measure(_closing([*stack, entry]))
            if need <= limit:
                pieces.append(token)
                size += measure(token)
            elif after_text is not None:
                break
            else:
                entry = replace(entry, shown=False)
            stack.append(entry)
            index += 1
            continue
        width = measure(token)
        if size + width + measure(_closing(stack)) > limit:
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


def split_html(html_text: str, limit: int, measure: Measure = utf16_len) -> list[str]:
    """``html_text`` in chunks of at most ``limit`` as ``measure`` counts (UTF-16 units
    by default), each valid on its own.

    Cuts prefer a blank line, then a line break, then a space, and fall back to a cut
    between two characters; the whitespace at a cut is dropped. Tags open at a cut are
    closed at the end of the chunk and reopened, attributes and all, in the next one.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"split limit must be at least {MIN_LIMIT}, not {limit}")
    if measure(html_text) <= limit:
        return [html_text] if html_text.strip() else []
    tokens = _TOKEN.findall(html_text)
    chunks: list[str] = []
    open_tags: tuple[_Open, ...] = ()
    index = 0
    while index < len(tokens):
        chunk, index, open_tags = _next_chunk(tokens, index, open_tags, limit, measure)
        if html_to_plain(chunk).strip():
            chunks.append(chunk)
    return chunks


def html_to_plain(html_text: str) -> str:
    """The text of HTML: tags removed, entities decoded."""
    return html.unescape(_ANY_TAG.sub("", html_text))

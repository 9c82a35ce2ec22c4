"""What Element shows of a message's ``formatted_body``: the lines a person reads.

Element renders the HTML with ``white-space: normal``: a run of spaces and newlines is
one space, and only markup breaks a line (``<br>``, and block elements such as ``<p>``,
``<h1>``, ``<li>``, ``<pre>``, ``<blockquote>``, ``<tr>``, ``<hr>``); inside ``<pre>``
the text is shown as it is. List items get a bullet or their number, table cells are
joined with " | ". Stdlib only, and independent of the code under test.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["visible_lines"]

BLOCKS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "pre",
    "blockquote", "table", "thead", "tbody", "tr", "hr",
}  # fmt: skip


class _Element(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.pre = 0
        self.lists: list[list[int]] = []
        self.cells = 0

    def _break(self) -> None:
        if self.lines[-1].strip():
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.lines.append("")
        elif tag in BLOCKS:
            self._break()
        if tag in ("ul", "ol"):
            start = dict(attrs).get("start")
            self.lists.append([int(start or 1)] if tag == "ol" else [])
        elif tag == "li":
            numbering = self.lists[-1] if self.lists else []
            marker = f"{numbering[0]}. " if numbering else "• "
            if numbering:
                numbering[0] += 1
            self.lines[-1] += marker
        elif tag == "pre":
            self.pre += 1
        elif tag == "tr":
            self.cells = 0
        elif tag in ("td", "th"):
            self.lines[-1] += " | " if self.cells else ""
            self.cells += 1
        elif tag == "hr":
            self.lines[-1] += "———"
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag == "pre":
            self.pre -= 1
        if tag in BLOCKS:
            self._break()

    def handle_data(self, data: str) -> None:
        if self.pre:
            first, *rest = data.split("\n")
            self.lines[-1] += first
            self.lines.extend(rest)
            return
        text = re.sub(r"\s+", " ", data)
        if not self.lines[-1] or self.lines[-1].endswith(" "):
            text = text.lstrip(" ")
        self.lines[-1] += text


def visible_lines(formatted_body: str) -> list[str]:
    """The non-empty lines Element shows for ``formatted_body``, stripped."""
    parser = _Element()
    parser.feed(formatted_body)
    parser.close()
    return [line.strip() for line in parser.lines if line.strip()]

"""Where each key of a TOML document sits: its line and its character spans.

tomllib and tomlkit hand out values, not positions, yet an error must name the line of
the offending key and an edit must touch only the bytes of one value. The scanner walks
the text once and records, for every key path, where its key and value are, and for
every table how it was defined (``[header]``, ``[[array]]`` element, dotted key, inline
table). It assumes valid TOML: run it only on text that tomllib has accepted.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from enum import StrEnum

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class TableKind(StrEnum):
    ROOT = "root"
    HEADER = "header"  # [a.b]
    IMPLICIT = "implicit"  # a in [a.b] when there is no [a]
    ARRAY = "array"  # the array of [[a.b]]
    ELEMENT = "element"  # one [[a.b]] section
    DOTTED = "dotted"  # a in a.b = 1
    INLINE = "inline"  # a = { ... }, or an inline table inside an array


@dataclass
class Entry:
    """A ``key = value`` (or an element of an array value)."""

    path: KeyPath
    local_key: tuple[str, ...]  # as written, relative to its container; () for elements
    container: KeyPath
    start: int  # first character of the key (of the value for elements)
    value_start: int
    value_end: int
    end: int  # statements: past the trailing comment and newline; else value_end
    statement: bool  # a line of its own in a section (not inside an inline table/array)
    indent: str = ""


@dataclass
class Section:
    path: KeyPath
    kind: TableKind  # ROOT, HEADER or ELEMENT
    start: int  # start of the header line (0 for the root)
    body_start: int
    end: int  # start of the next header line, or the end of the text
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Table:
    path: KeyPath
    kind: TableKind
    start: int
    section: Section | None = None  # HEADER/ELEMENT: its own; DOTTED: where it was written
    prefix: tuple[str, ...] = ()  # DOTTED: the dotted key that created it, as written


@dataclass
class ScannedDocument:
    text: str
    sections: list[Section]
    entries: dict[KeyPath, Entry]
    tables: dict[KeyPath, Table]
    _newlines: list[int] = field(repr=False, default_factory=list)

    def line_at(self, pos: int) -> int:
        """1-based line number of a character offset."""
        return bisect_left(self._newlines, pos) + 1

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the key (or table header) at ``path``, else of its nearest parent."""
        while path:
            if path in self.entries:
                return self.line_at(self.entries[path].start)
            if path in self.tables:
                return self.line_at(self.tables[path].start)
            path = path[:-1]
        return None

    def line_start(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1


def dotted(path: KeyPath) -> str:
    """A key path as people write it: ``heartbeat.group_targets[0].chat_id``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


def render_key(parts: tuple[str, ...]) -> str:
    return ".".join(
        part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        for part in parts
    )


def parse_key(text: str) -> tuple[str, ...]:
    """A dotted key as TOML writes it: ``a.b``, ``project_roots."my topic"``."""
    scanner = _Scanner(text)
    try:
        parts = tuple(part for part, _ in scanner.key())
    except (IndexError, ValueError):
        parts = ()
    if not parts or scanner.i != scanner.n:
        raise ValueError(f"not a valid key: {text!r}")
    return parts


def scan(text: str) -> ScannedDocument:
    return _Scanner(text).document()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.entries: dict[KeyPath, Entry] = {}
        self.tables: dict[KeyPath, Table] = {}
        self.array_length: dict[KeyPath, int] = {}

    def document(self) -> ScannedDocument:
        root = Section((), TableKind.ROOT, 0, 0, self.n)
        self.tables[()] = Table((), TableKind.ROOT, 0, root)
        sections = [root]
        current = root
        while True:
            self.skip_blank()
            if self.i >= self.n:
                break
            if self.s[self.i] == "[":
                line_start = self.s.rfind("\n", 0, self.i) + 1
                current.end = line_start
                current = self.header(line_start)
                sections.append(current)
            else:
                indent_from = self.s.rfind("\n", 0, self.i) + 1
                entry = self.keyval(current.path, current)
                entry.indent = self.s[indent_from : entry.start]
                entry.end = self.rest_of_line()
                current.entries.append(entry)
        current.end = self.n
        newlines = [m.start() for m in re.finditer("\n", self.s)]
        return ScannedDocument(self.s, sections, self.entries, self.tables, newlines)

    # -- lexing helpers ------------------------------------------------------------

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                end = self.s.find("\n", self.i)
                self.i = self.n if end < 0 else end
            else:
                break

    def rest_of_line(self) -> int:
        self.skip_ws()
        end = self.s.find("\n", self.i)
        self.i = self.n if end < 0 else end + 1
        return self.i

    def expect(self, token: str) -> None:
        if not self.s.startswith(token, self.i):
            raise ValueError(f"expected {token!r} at offset {self.i}")
        self.i += len(token)

    def key(self) -> list[tuple[str, int]]:
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_ws()
            start = self.i
            c = self.s[self.i]
            if c == '"':
                self.basic_string()
                parts.append((_decode_basic(self.s[start + 1 : self.i - 1]), start))
            elif c == "'":
                self.literal_string()
                parts.append((self.s[start + 1 : self.i - 1], start))
            else:
                match = _BARE_KEY.match(self.s, self.i)
                if match is None:
                    raise ValueError(f"expected a key at offset {self.i}")
                self.i = match.end()
                parts.append((match.group(), start))
            self.skip_ws()
            if self.i < self.n and self.s[self.i] == ".":
                self.i += 1
                continue
            return parts

    # -- statements ----------------------------------------------------------------

    def header(self, line_start: int) -> Section:
        start = self.i
        is_array = self.s.startswith("[[", self.i)
        self.i += 2 if is_array else 1
        names = [name for name, _ in self.key()]
        self.expect("]]" if is_array else "]")
        body_start = self.rest_of_line()

        resolved: KeyPath = ()
        for name in names[:-1]:
            resolved = self.descend(resolved, name, start)
        last: KeyPath = (*resolved, names[-1])
        if is_array:
            index = self.array_length.get(last, 0)
            self.array_length[last] = index + 1
            self.tables.setdefault(last, Table(last, TableKind.ARRAY, start))
            path: KeyPath = (*last, index)
            section = Section(path, TableKind.ELEMENT, line_start, body_start, self.n)
            self.tables[path] = Table(path, TableKind.ELEMENT, start, section)
        else:
            path = last
            section = Section(path, TableKind.HEADER, line_start, body_start, self.n)
            self.tables[path] = Table(path, TableKind.HEADER, start, section)
        return section

    def descend(self, resolved: KeyPath, name: str, start: int) -> KeyPath:
        path: KeyPath = (*resolved, name)
        if path in self.array_length:  # [[a]] then [a.b]: b is in the last element of a
            return (*path, self.array_length[path] - 1)
        self.tables.setdefault(path, Table(path, TableKind.IMPLICIT, start))
        return path

    def keyval(self, container: KeyPath, section: Section | None) -> Entry:
        start = self.i
        parts = self.key()
        names = tuple(name for name, _ in parts)
        for depth in range(1, len(names)):
            table_path: KeyPath = (*container, *names[:depth])
            if table_path not in self.tables:
                self.tables[table_path] = Table(
                    table_path, TableKind.DOTTED, parts[depth - 1][1], section, names[:depth]
                )
        path: KeyPath = (*container, *names)
        self.skip_ws()
        self.expect("=")
        self.skip_ws()
        value_start = self.i
        self.value(path)
        entry = Entry(
            path, names, container, start, value_start, self.i, self.i, section is not None
        )
        self.entries[path] = entry
        return entry

    def value(self, path: KeyPath) -> None:
        s, i = self.s, self.i
        if s.startswith('"""', i):
            self.multiline_string('"""')
        elif s.startswith("'''", i):
            self.multiline_string("'''")
        elif s[i] == '"':
            self.basic_string()
        elif s[i] == "'":
            self.literal_string()
        elif s[i] == "[":
            self.array(path)
        elif s[i] == "{":
            self.inline_table(path)
        else:
            while self.i < self.n and s[self.i] not in ",]}#\n":
                self.i += 1
            while self.i > i and s[self.i - 1] in " \t\r":
                self.i -= 1

    def basic_string(self) -> None:
        self.i += 1
        while self.s[self.i] != '"':
            self.i += 2 if self.s[self.i] == "\\" else 1
        self.i += 1

    def literal_string(self) -> None:
        self.i = self.s.index("'", self.i + 1) + 1

    def multiline_string(self, quote: str) -> None:
        j = self.i + 3
        while True:
            if quote == '"""' and self.s[j] == "\\":
                j += 2
            elif self.s.startswith(quote, j):
                break
            else:
                j += 1
        end = j + 3
        extra = 0  # up to two quotes right before the delimiter belong to the content
        while extra < 2 and end < self.n and self.s[end] == quote[0]:
            end += 1
            extra += 1
        self.i = end

    def array(self, path: KeyPath) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip_blank()
            if self.s[self.i] == "]":
                self.i += 1
                return
            element: KeyPath = (*path, index)
            start = self.i
            self.value(element)
            self.entries[element] = Entry(element, (), path, start, start, self.i, self.i, False)
            index += 1
            self.skip_blank()
            if self.s[self.i] == ",":
                self.i += 1

    def inline_table(self, path: KeyPath) -> None:
        self.tables[path] = Table(path, TableKind.INLINE, self.i)
        self.i += 1
        while True:
            self.skip_blank()
            if self.s[self.i] == "}":
                self.i += 1
                return
            self.keyval(path, None)
            self.skip_blank()
            if self.s[self.i] == ",":
                self.i += 1


def _decode_basic(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        code = raw[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in "uU":
            width = 4 if code == "u" else 8
            out.append(chr(int(raw[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:
            out.append(code)
            i += 2
    return "".join(out)

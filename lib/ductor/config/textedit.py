"""Text surgery on a TOML document: replace, insert or remove one key's bytes.

Positions come from the scanner; tomlkit renders the values. tomlkit's own insertion puts
a new key after the comments that introduce the next table, so placement is decided here:
a new key goes right after the last key of its table (with the same indent), a missing
table is appended as a ``[header]`` section, a new top-level key goes above the comment
block of the first table. Callers re-parse the result and compare it with the data they
expect before writing anything.
"""

from __future__ import annotations

from typing import Any

from ductor.config.scan import (
    Entry,
    KeyPath,
    ScannedDocument,
    Section,
    TableKind,
    dotted,
    render_key,
    scan,
)
from ductor.config.validate import Kind, Spec
from ductor.errors import ConfigError

# -- rendering ------------------------------------------------------------------------


def render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render_key((k,))} = {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    import tomlkit

    return str(tomlkit.item(value).as_string())


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _aot(parts: tuple[str, ...], items: list[dict[str, Any]], nl: str) -> str:
    blocks = []
    for item in items:
        lines = [f"[[{render_key(parts)}]]"]
        lines += [f"{render_key((k,))} = {render(v)}" for k, v in item.items()]
        blocks.append(nl.join(lines) + nl)
    return nl.join(blocks)


# -- setting --------------------------------------------------------------------------


def set_in_text(text: str, parts: tuple[str, ...], value: Any, spec: Spec) -> str:
    """``text`` with ``parts`` set to ``value`` (already checked against ``spec``)."""
    doc = scan(text)
    entry = doc.entries.get(parts)
    if entry is not None and entry.local_key:
        return text[: entry.value_start] + render(value) + text[entry.value_end :]
    table = doc.tables.get(parts)
    if table is not None and table.kind is TableKind.ARRAY and spec.kind is Kind.TABLES:
        first = min(s.start for s in doc.sections if s.path[: len(parts)] == parts)
        text = remove_from_text(doc, parts)
        if value:
            nl = _newline(text)
            rest = text[first:]
            block = _aot(parts, value, nl) + (nl if rest.strip() else "")
            return text[:first] + block + rest
        doc = scan(text)
    elif table is not None:
        raise ConfigError(
            "cannot set this key: the file has a table of that name", key=dotted(parts)
        )
    return _insert(doc, parts, value, spec)


def _insert(doc: ScannedDocument, parts: tuple[str, ...], value: Any, spec: Spec) -> str:
    depth = len(parts) - 1
    while depth > 0 and parts[:depth] not in doc.tables:
        depth -= 1
    owner, rest = parts[:depth], parts[depth:]
    table = doc.tables[owner]
    line = f"{render_key(rest)} = {render(value)}"
    nl = _newline(doc.text)
    if table.kind is TableKind.INLINE:
        return _insert_inline(doc, owner, line)
    if table.kind is TableKind.DOTTED:
        container = owner[: len(owner) - len(table.prefix)]
        dotted_line = f"{render_key((*table.prefix, *rest))} = {render(value)}"
        if table.section is None:
            return _insert_inline(doc, container, dotted_line)
        return _insert_in_section(doc, table.section, dotted_line, table.prefix)
    if table.kind is TableKind.ARRAY:
        raise ConfigError("cannot set a key inside an array of tables", key=dotted(parts))
    if table.kind is TableKind.ELEMENT and table.section is not None:
        return _insert_in_section(doc, table.section, line)
    if spec.kind is Kind.TABLES and value:
        return _append_block(doc.text, _aot(parts, value, nl))
    if len(rest) == 1 and table.kind is TableKind.HEADER and table.section is not None:
        return _insert_in_section(doc, table.section, line)
    if len(rest) == 1 and table.kind is TableKind.ROOT:
        return _insert_top_level(doc, line)
    block = f"[{render_key(parts[:-1])}]{nl}{render_key(parts[-1:])} = {render(value)}{nl}"
    if len(rest) == 1 and table.kind is TableKind.IMPLICIT:  # [a] next to an existing [a.b]
        first = min(s.start for s in doc.sections if s.path[:depth] == owner)
        position = _comment_block_start(doc.text, first)
        return doc.text[:position] + block + nl + doc.text[position:]
    return _append_block(doc.text, block)


def _insert_line(text: str, position: int, line: str) -> str:
    nl = _newline(text)
    before = "" if position == 0 or text[position - 1] == "\n" else nl
    return text[:position] + before + line + nl + text[position:]


def _insert_in_section(
    doc: ScannedDocument, section: Section, line: str, prefix: tuple[str, ...] = ()
) -> str:
    entries = [e for e in section.entries if e.local_key[: len(prefix)] == prefix]
    if not entries:
        return _insert_line(doc.text, section.body_start, line)
    anchor = entries[-1]
    return _insert_line(doc.text, anchor.end, anchor.indent + line)


def _insert_top_level(doc: ScannedDocument, line: str) -> str:
    root = doc.sections[0]
    if root.entries or len(doc.sections) == 1:
        if not root.entries:
            return _append_block(doc.text, line + _newline(doc.text))
        return _insert_in_section(doc, root, line)
    position = _comment_block_start(doc.text, doc.sections[1].start)
    nl = _newline(doc.text)
    return doc.text[:position] + line + nl + nl + doc.text[position:]


def _insert_inline(doc: ScannedDocument, table: KeyPath, item: str) -> str:
    inner = [
        e for e in doc.entries.values() if e.container == table and e.local_key and not e.statement
    ]
    text = doc.text
    if inner:
        last = max(inner, key=lambda e: e.value_end)
        return text[: last.value_end] + ", " + item + text[last.value_end :]
    opening = doc.tables[table].start + 1
    closing = text.index("}", opening)
    return text[:opening] + item + text[closing:]


def _comment_block_start(text: str, position: int) -> int:
    """Start of the comment lines directly above the line at ``position``."""
    while position > 0:
        previous = text.rfind("\n", 0, position - 1) + 1
        if not text[previous:position].lstrip().startswith("#"):
            break
        position = previous
    return position


def _append_block(text: str, block: str) -> str:
    nl = _newline(text)
    if text and not text.endswith("\n"):
        text += nl
    if text.strip() and not text.endswith(nl + nl):
        text += nl
    return text + block


# -- removing -------------------------------------------------------------------------


def remove_from_text(doc: ScannedDocument, parts: tuple[str, ...]) -> str:
    """The document without ``parts``: its keys, sections and array-of-tables elements."""
    spans: list[tuple[int, int]] = []
    size = len(parts)
    for entry in doc.entries.values():
        if entry.path[:size] != parts or not entry.local_key:
            continue
        if len(entry.container) >= size and entry.container[:size] == parts:
            continue  # inside a table that goes as a whole
        spans.append(_entry_span(doc, entry))
    for section in doc.sections:
        if section.kind is not TableKind.ROOT and section.path[:size] == parts:
            spans.append(_section_span(doc, section))
    text = doc.text
    for start, end in reversed(_union(spans)):
        text = text[:start] + text[end:]
    nl = _newline(text)
    if text.endswith(nl + nl) and not doc.text.endswith(nl + nl):
        text = text.rstrip("\r\n") + nl
    return text


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _entry_span(doc: ScannedDocument, entry: Entry) -> tuple[int, int]:
    text = doc.text
    if entry.statement:
        start, end = doc.line_start(entry.start), entry.end
        blank_before = start == 0 or not text[doc.line_start(start - 1) : start].strip()
        next_end = text.find("\n", end)
        next_end = len(text) if next_end < 0 else next_end + 1
        if blank_before and end < len(text) and not text[end:next_end].strip():
            end = next_end  # do not leave two blank lines where the key was
        return start, end
    before = entry.start
    while before > 0 and text[before - 1] in " \t\r\n":
        before -= 1
    if text[before - 1] == ",":  # take the comma in front, if there is one
        return before - 1, entry.value_end
    after = entry.value_end
    while after < len(text) and text[after] in " \t\r\n":
        after += 1
    if after < len(text) and text[after] == ",":
        after += 1
        while after < len(text) and text[after] in " \t":
            after += 1
        return entry.start, after
    return entry.start, entry.value_end


def _section_span(doc: ScannedDocument, section: Section) -> tuple[int, int]:
    """The header and the keys of a section, and the blank lines after them (comments
    further down may introduce the next table, so they stay)."""
    end = section.entries[-1].end if section.entries else section.body_start
    text = doc.text
    while end < section.end:
        line_end = text.find("\n", end)
        line_end = section.end if line_end < 0 or line_end >= section.end else line_end + 1
        if text[end:line_end].strip():
            break
        end = line_end
    return section.start, end

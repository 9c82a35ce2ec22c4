"""Finding the line and span of every key of a TOML document (tomllib gives no positions)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from ductor.config.scan import KeyPath, TableKind, dotted, parse_key, scan

TRICKY = '''\
# comment with [brackets] and key = "value"
title = "a # not a comment"
"quoted.key" = 1
site."google.com".up = true   # dotted, quoted
multi = """
[not_a_table]
fake = 1
"""
literal = \'\'\'C:\\path\\\'\'\'
after_multi = 2
ml_quotes = """ends with quotes"""""
array = [
  1,   # one
  2,
  [3, 4],
]
inline = { a = 1, b = { c = [1, {d = 2}] } }
date = 1979-05-27 07:32:00Z

[table]
key = "v"
sub.key = 'x'

[table.child]
x = -1_000

[[products]]
name = "Hammer"

[products.dimensions]
weight = 1.5

[[products]]
name = "Nail"
colors = ["grey", "silver"]

[[products.variants]]
size = "S"
'''


def leaves(data: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in leaves(value, (*path, key))]
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return [leaf for i, item in enumerate(data) for leaf in leaves(item, (*path, i))]
    return [(path, data)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_value_span_holds_exactly_the_value_tomllib_reads(newline: str) -> None:
    text = TRICKY.replace("\n", newline)
    data = tomllib.loads(text)
    doc = scan(text)
    for path, value in leaves(data):
        entry = doc.entries[path]
        snippet = text[entry.value_start : entry.value_end]
        assert tomllib.loads(f"v = {snippet}")["v"] == value, dotted(path)


def test_lines_of_keys_in_tables_dotted_keys_and_arrays_of_tables() -> None:
    doc = scan(TRICKY)
    expected = {
        ("title",): 2,
        ("quoted.key",): 3,
        ("site", "google.com", "up"): 4,
        ("after_multi",): 10,
        ("array", 1): 14,
        ("array", 2, 0): 15,
        ("inline", "b", "c", 1, "d"): 17,
        ("table", "key"): 21,
        ("table", "sub", "key"): 22,
        ("table", "child", "x"): 25,
        ("products", 0, "name"): 28,
        ("products", 0, "dimensions", "weight"): 31,
        ("products", 1, "name"): 34,
        ("products", 1, "colors", 1): 35,
        ("products", 1, "variants", 0, "size"): 38,
    }
    assert {path: doc.line_of(path) for path in expected} == expected


def test_lines_of_tables_are_their_headers() -> None:
    doc = scan(TRICKY)
    assert doc.line_of(("table",)) == 20
    assert doc.line_of(("table", "child")) == 24
    assert doc.line_of(("products", 1)) == 33
    assert doc.line_of(("products", 1, "variants", 0)) == 37


def test_how_each_table_was_defined_is_recorded() -> None:
    doc = scan(TRICKY)
    kinds = {path: doc.tables[path].kind for path in doc.tables}
    assert kinds[("table",)] is TableKind.HEADER
    assert kinds[("site",)] is TableKind.DOTTED
    assert kinds[("inline",)] is TableKind.INLINE
    assert kinds[("inline", "b", "c", 1)] is TableKind.INLINE
    assert kinds[("products",)] is TableKind.ARRAY
    assert kinds[("products", 0)] is TableKind.ELEMENT
    assert kinds[("products", 0, "dimensions")] is TableKind.HEADER


def test_implicit_parent_table_gets_the_line_of_its_first_child_header() -> None:
    doc = scan("a = 1\n\n[memory.flush]\nenabled = true\n\n[memory.compaction]\n")
    assert doc.tables[("memory",)].kind is TableKind.IMPLICIT
    assert doc.line_of(("memory",)) == 3


def test_header_defined_after_its_child_becomes_a_header_table() -> None:
    doc = scan("[a.b]\nx = 1\n[a]\ny = 2\n")
    assert doc.tables[("a",)].kind is TableKind.HEADER
    assert doc.line_of(("a", "y")) == 4


def test_an_unknown_path_falls_back_to_the_line_of_its_nearest_parent() -> None:
    doc = scan("[[targets]]\nchat_id = 1\n\n[[targets]]\ntopic_id = 2\n")
    assert doc.line_of(("targets", 1, "chat_id")) == 4
    assert doc.line_of(("nowhere",)) is None


def test_statements_span_their_whole_line_including_the_comment() -> None:
    text = "a = 1\n  b = [\n 2,\n ] # two\nc = 3"
    doc = scan(text)
    b = doc.entries[("b",)]
    assert text[doc.line_start(b.start) : b.end] == "  b = [\n 2,\n ] # two\n"
    assert b.indent == "  "
    c = doc.entries[("c",)]
    assert c.end == len(text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("a",), "a"),
        (("heartbeat", "group_targets", 0, "chat_id"), "heartbeat.group_targets[0].chat_id"),
        (("project_roots", "my topic"), 'project_roots."my topic"'),
        (("x", "a.b"), 'x."a.b"'),
    ],
)
def test_dotted_writes_paths_the_way_toml_reads_them(path: KeyPath, text: str) -> None:
    assert dotted(path) == text


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("streaming.min_chars", ("streaming", "min_chars")),
        ('project_roots."my.topic"', ("project_roots", "my.topic")),
        ("a . 'b c'", ("a", "b c")),
    ],
)
def test_parse_key_reads_dotted_and_quoted_keys(text: str, parts: tuple[str, ...]) -> None:
    assert parse_key(text) == parts


@pytest.mark.parametrize("text", ["", "a.", "a..b", "a b", "[a]", "a = 1"])
def test_parse_key_refuses_what_is_not_a_key(text: str) -> None:
    with pytest.raises(ValueError, match="not a valid key"):
        parse_key(text)

"""A setting that nothing reads is marked "not yet acted on", in code and in the docs.

"Read" is decided from the library's syntax trees (everything but ``ductor.config``): a
key counts as read when its last part is used as an attribute (not only called as a
method) or named in a ``getattr`` (a ``getattr`` of a table with a computed name reads
all its keys), and each table above it is used as an attribute too
or its dataclass is named. That is a lower bound on what is unread: an unread key whose
name happens to be used elsewhere slips through, which is why pending keys are also
listed by hand in ``ductor.config.pending``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ductor.config import pending, schema

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "lib" / "ductor"


def _names_used(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(attributes read, identifiers named) in one module."""
    called: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called.add(id(node.func))
    attributes: set[str] = set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in called:
            attributes.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            attributes.add(node.args[1].value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Attribute)
        ):
            attributes.add(f"{node.args[0].attr}.*")  # getattr(config.table, computed name)
    return attributes, names


def _library_usage() -> tuple[set[str], set[str]]:
    attributes: set[str] = set()
    names: set[str] = set()
    for module in LIBRARY.rglob("*.py"):
        if "config" in module.relative_to(LIBRARY).parts:
            continue
        more_attributes, more_names = _names_used(ast.parse(module.read_text("utf-8")))
        attributes |= more_attributes
        names |= more_names
    return attributes, names


def _keys_with_tables(cls: type[Any], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            for key, tables in _keys_with_tables(type(default), f"{prefix}{f.name}."):
                yield key, [type(default).__name__, *tables]
        else:
            yield prefix + f.name, []


def unread_keys() -> list[str]:
    attributes, names = _library_usage()
    unread = []
    for key, classes in _keys_with_tables(schema.AgentConfig):
        *tables, leaf = key.split(".")
        read = (leaf in attributes or f"{(tables or [''])[-1]}.*" in attributes) and all(
            table in attributes or cls in names for table, cls in zip(tables, classes, strict=True)
        )
        if not read:
            unread.append(key)
    return unread


def test_every_key_that_no_code_reads_is_marked_pending() -> None:
    unmarked = [key for key in unread_keys() if pending.pending_reason(key) is None]
    assert unmarked == [], (
        "these settings are read by no code: build what reads them, or add them to"
        f" ductor.config.pending.PENDING and mark them in the docs: {unmarked}"
    )


def test_the_pending_list_names_only_keys_of_the_schema() -> None:
    for entry in pending.PENDING:
        if entry.endswith("."):
            assert any(key.startswith(entry) for key in schema.SCHEMA_KEYS), entry
        else:
            assert entry in schema.SCHEMA_KEYS, entry


def _example_comment_above(lines: list[str], index: int) -> str:
    above = []
    for line in reversed(lines[:index]):
        if not line.startswith("#"):
            break
        above.append(line)
    return "\n".join(above)


def _table_of(lines: list[str], index: int) -> str:
    for line in reversed(lines[: index + 1]):
        header = re.match(r"^\[\[?([^\]]+)\]\]?\s*$", line)
        if header:
            return header.group(1)
    return ""


def test_the_example_config_marks_every_pending_key() -> None:
    lines = (REPO / "etc" / "ductor.toml").read_text("utf-8").splitlines()
    for key in pending.PENDING_KEYS:
        *tables, leaf = key.split(".")
        table = ".".join(tables)
        parts = key.split(".")
        enclosing = {f"[{'.'.join(parts[:n])}]" for n in range(1, len(parts) + 1)}
        if any(
            line in enclosing and lines[i + 1].startswith("# Not yet acted on")
            for i, line in enumerate(lines[:-1])
        ):
            continue  # a whole table (or a top-level table key like project_roots)
        setting = next(
            i
            for i, line in enumerate(lines)
            if re.match(rf"^{leaf}\s*=", line) and _table_of(lines, i) == table
        )
        assert "Not yet acted on" in _example_comment_above(lines, setting), key


def _doc_sections(text: str) -> list[tuple[str, list[str]]]:
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("### "):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def test_the_config_docs_mark_every_pending_key() -> None:
    sections = _doc_sections((REPO / "docs" / "config.md").read_text("utf-8"))
    for key in pending.PENDING_KEYS:
        tables = key.split(".")[:-1]
        candidates = [s for s in sections if tables and f"`[{'.'.join(tables)}]`" in s[0]]
        if not tables:
            candidates = [s for s in sections if s[0] == "### Top-level keys"]
        if not candidates:  # a sub-table documented in its parent's section
            candidates = [s for s in sections if f"`[{tables[0]}." in s[0]]
        assert candidates, f"{key}: no section of docs/config.md documents its table"
        heading, body = candidates[0]
        marked_section = any(line.startswith("**Not yet acted on**") for line in body)
        rows = [
            line
            for line in body
            if line.startswith("| `")
            and re.match(r"^\| `([^`]+)`", line)
            and key.endswith(re.match(r"^\| `([^`]+)`", line).group(1))  # type: ignore[union-attr]
        ]
        marked_row = any("Not yet acted on" in row for row in rows)
        assert marked_section or marked_row, f"{key} is not marked in docs/config.md ({heading})"

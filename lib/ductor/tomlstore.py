"""Records of one kind kept in a TOML file of an agent's state, one ``[TABLE.KEY]`` table
each (cron jobs, webhooks).

The file is rewritten atomically (mode 0600) under an exclusive lock beside it, so the
user's ``ductor`` command and the agent's tool scripts can change it at the same time
without losing an edit. Reading needs no lock: a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ductor import atomic
from ductor.config.load import parse_toml, read_text
from ductor.config.scan import scan
from ductor.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True)
class TableFile(Generic[R]):
    """How records of type ``record`` (a frozen dataclass) are laid out in ``file_name``."""

    file_name: str
    record: type[R]
    table: str  # the top-level table: [jobs.NAME]
    key: str  # the record's field that is the table's key ("name")
    key_pattern: str  # a regular expression every key matches in full
    title: str  # what a record is called in messages to the user: "cron job"
    noun: str  # one record in messages about the file: "job"
    plural: str  # "jobs"
    validate: Callable[[R], R]  # checks every field (UsageError), returns the record to keep
    required: tuple[str, ...]  # fields a table must give
    header: str  # the comment lines at the top of the file
    # Further checks of one record's values: (problem, field) or None.
    check: Callable[[dict[str, Any]], tuple[str, str] | None] | None = None

    def field_types(self) -> dict[str, str]:
        return {f.name: str(f.type) for f in dataclasses.fields(self.record)}

    def editable(self) -> frozenset[str]:
        """The fields an update may change: all but the key and the time stamps."""
        return frozenset(self.field_types()) - {self.key, "created_at", "updated_at"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class TomlStore(Generic[R]):
    """The records of one agent, kept in ``STATE_DIR/FILE_NAME`` (mode 0600)."""

    def __init__(self, state_dir: Path, layout: TableFile[R]) -> None:
        self.state_dir = state_dir
        self.layout = layout
        self.path = state_dir / layout.file_name

    def load(self) -> dict[str, R]:
        """Every record by key; {} when there is no file yet. ConfigError if it is broken."""
        text = read_text(self.path)
        if text is None:
            return {}
        return parse(text, self.path, self.layout)

    def get(self, key: str) -> R:
        return self.require(self.load(), key)

    def require(self, records: dict[str, R], key: str) -> R:
        """The record ``key`` of ``records``; UsageError naming the ones there are."""
        if key not in records:
            known = ", ".join(sorted(records)) or "none"
            raise UsageError(
                f"no {self.layout.title} named {key!r} (existing {self.layout.plural}: {known})"
            )
        return records[key]

    def update(self, key: str, **changes: Any) -> R:
        """Change fields of the record ``key`` (validated again); ``updated_at`` moves
        when something changed."""
        unknown = sorted(set(changes) - self.layout.editable())
        if unknown:
            raise UsageError(f"cannot change {', '.join(unknown)} of a {self.layout.title}")
        with self._locked() as records:
            old = self.require(records, key)
            record = self.layout.validate(dataclasses.replace(old, **changes))
            if record != old:
                record = dataclasses.replace(record, updated_at=now_iso())
            records[key] = record
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, R]]:
        """Read the records under an exclusive lock, yield them for changing, write them
        back if they changed (atomically, 0600)."""
        atomic.make_directories(self.state_dir)
        fd = atomic.open_lock_file(self.state_dir / f".{self.layout.file_name}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self.load()
            before = dict(records)
            yield records
            if records != before:
                atomic.write_text(self.path, render(records, self.layout), mode=0o600)
        finally:
            os.close(fd)


def render(records: dict[str, R], layout: TableFile[R]) -> str:
    """The TOML text of ``records``: the header, then one table each, sorted by key."""
    import tomlkit

    doc = tomlkit.document()
    for line in layout.header.splitlines():
        doc.add(tomlkit.comment(line))
    table = tomlkit.table(is_super_table=True)
    for key in sorted(records):
        entry = tomlkit.table()
        for name, value in dataclasses.asdict(records[key]).items():
            if name == layout.key or value is None:
                continue
            multiline = isinstance(value, str) and "\n" in value
            entry.add(name, tomlkit.string(value, multiline=True) if multiline else value)
        table.add(key, entry)
    doc.add(layout.table, table)
    return tomlkit.dumps(doc)


def parse(text: str, path: Path, layout: TableFile[R]) -> dict[str, R]:
    """The records in ``text``; ConfigError names the file, the key and its line."""
    data = parse_toml(text, path)
    table_name, key_field, noun = layout.table, layout.key, layout.noun
    field_types = layout.field_types()
    key_pattern = re.compile(layout.key_pattern)

    def error(detail: str, *keys: str) -> ConfigError:
        line = scan(text).line_of(keys) if keys else None
        return ConfigError(detail, file=path, key=".".join(keys) or None, line=line)

    extra = sorted(set(data) - {table_name})
    if extra:
        only = f"[{table_name}.{key_field.upper()}]"
        raise error(f"unknown key (this file holds only {only} tables)", extra[0])
    tables = data.get(table_name, {})
    if not isinstance(tables, dict):
        raise error(f"expected a table of {layout.plural}", table_name)
    records: dict[str, R] = {}
    for key, raw in tables.items():
        if not isinstance(raw, dict):
            raise error("expected a table", table_name, key)
        if not key_pattern.fullmatch(key):
            raise error(
                f"invalid {noun} {key_field} (expected {layout.key_pattern})", table_name, key
            )
        values: dict[str, Any] = {key_field: key}
        for name, value in raw.items():
            kind = field_types.get(name)
            if kind is None or name == key_field:
                raise error("unknown key", table_name, key, name)
            if not _has_type(value, kind):
                raise error(f"expected {kind.replace(' | None', '')}", table_name, key, name)
            values[name] = value
        for name in layout.required:
            if name not in values:
                raise error(f"the {noun} has no {name!r}", table_name, key)
        problem = layout.check(values) if layout.check is not None else None
        if problem is not None:
            detail, name = problem
            raise error(detail, table_name, key, name)
        records[key] = layout.record(**values)
    return records


def _has_type(value: object, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)  # "int | None"

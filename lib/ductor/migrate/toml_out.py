"""The mapped settings as an agent's TOML file, with comments, checked by the loader.

A setting the config loader refuses (a value the original accepted but this product
checks more strictly, e.g. an unknown time zone) is taken out and reported as dropped
with the loader's own message, so the file written always loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from ductor.config.load import evaluate, layer_from_text, secret_advice
from ductor.migrate.config_map import MappedConfig, Setting

MARKER = "# Migrated from the original ductor by `ductor migrate`."
_TABLE_LISTS = frozenset(
    {"heartbeat.group_targets", "notifications.startup_targets", "notifications.upgrade_targets"}
)


def _node(doc: tomlkit.TOMLDocument, parts: list[str]) -> Any:
    node: Any = doc
    for part in parts:
        if part not in node:
            node.add(part, tomlkit.table())
        node = node[part]
    return node


def _item(setting: Setting) -> Any:
    value = setting.value
    if setting.key in _TABLE_LISTS:
        array = tomlkit.aot()
        for target in value:
            table = tomlkit.table()
            for key, entry in target.items():
                table.add(key, entry)
            array.append(table)
        return array
    if setting.key == "project_roots":
        table = tomlkit.table()
        for key, entry in value.items():
            table.add(key, entry)
        return table
    if isinstance(value, str) and "\n" in value:
        item: Any = tomlkit.string(value, multiline=True)
    else:
        item = tomlkit.item(list(value) if isinstance(value, tuple) else value)
    if setting.note:
        item.comment(f"was {setting.note}")
    return item


def render(mapped: MappedConfig, *, agent: str, source: Path) -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment(MARKER[2:]))
    doc.add(tomlkit.comment(f"Agent {agent!r}, from {source}."))
    doc.add(tomlkit.comment("Only settings that differ from this product's defaults are here;"))
    doc.add(tomlkit.comment("secrets went to the credentials directory. See docs/migrate.md."))
    doc.add(tomlkit.nl())
    top = [s for s in mapped.settings if "." not in s.key and s.key != "project_roots"]
    nested = [s for s in mapped.settings if s not in top]
    for setting in top:
        doc.add(setting.key, _item(setting))
    for setting in sorted(nested, key=lambda s: s.key.split(".")[:-1]):
        parts = setting.key.split(".")
        if setting.key == "project_roots":
            doc.add("project_roots", _item(setting))
            continue
        table: Table = _node(doc, parts[:-1])
        table.add(parts[-1], _item(setting))
    return tomlkit.dumps(doc)


def problems(text: str, file: Path, agent: str) -> list[tuple[str | None, str]]:
    """Every problem the config loader finds in ``text``: (key, detail)."""
    advice = secret_advice(file.parent.parent / "credentials", agent)
    layer = layer_from_text(file, text, advice)
    if layer.fatal is not None:
        return [(None, layer.fatal.detail)]
    _, errors = evaluate([layer])
    return [(error.key, error.detail) for error in errors]


def config_text(mapped: MappedConfig, *, agent: str, source: Path, file: Path) -> str:
    """The agent's TOML text, with every setting the loader refuses moved to dropped."""
    for _ in range(len(mapped.settings) + 1):
        text = render(mapped, agent=agent, source=source)
        found = problems(text, file, agent)
        if not found:
            return text
        key, detail = found[0]
        before = len(mapped.settings)
        if key is not None:
            mapped.remove(_base_key(key), f"refused by this product's checks: {detail}")
        if key is None or len(mapped.settings) == before:
            raise AssertionError(f"migrated config does not load: {key}: {detail}")
    raise AssertionError("migrated config does not converge")


def _base_key(key: str) -> str:
    """``heartbeat.group_targets[1].chat_id`` → ``heartbeat.group_targets``."""
    return key.split("[", 1)[0]

"""Settings the schema accepts but no part of ductor acts on yet.

The schema follows the original product's keys, so a config written for a feature that
is still to come loads cleanly. Until that feature exists, setting such a key changes
nothing, and the user must be told so rather than left to believe it works: each key
here is marked "not yet acted on" in etc/ductor.toml and docs/config.md, a value that
differs from its default is reported with its file and line at load (one warning per
key) and by ``ductor doctor``. A lint test fails when a key that no code reads is not
listed here, and when the docs do not mark a listed key; as features land, entries go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ductor.config import schema
from ductor.config.load import layers_of
from ductor.paths import Paths

#: Dotted key, or a table prefix ending in ".", and what the user is waiting for.
PENDING: dict[str, str] = {
    "language": "translations are not built yet; every message is in English",
    "streaming.max_edit_failures": "failed edits are retried by the sender, not counted",
    "timeouts.background": "named sessions are not built yet",
    "cleanup.": "the cleanup timer is not built yet",
    "memory.flush.": "the pre-compaction memory flush is not built yet",
    "memory.compaction.": "memory compaction is not built yet",
    "notifications.upgrade_targets": "upgrade notices are not built yet",
    "cron.delivery_retry.": "the spool retries every delivery with its own backoff",
    "cron.preflight.": "cron preflight checks are not built yet",
}


def pending_reason(key: str) -> str | None:
    """Why ``key`` (dotted, array indexes allowed) has no effect yet; None if it has one."""
    base = key.split("[", 1)[0]
    for prefix, reason in PENDING.items():
        if base == prefix or (prefix.endswith(".") and base.startswith(prefix)):
            return reason
    return None


PENDING_KEYS: tuple[str, ...] = tuple(k for k in schema.SCHEMA_KEYS if pending_reason(k))
"""Every schema key that is not yet acted on, in schema order."""


@dataclass(frozen=True)
class InertSetting:
    """A pending key that a config file sets to something other than its default."""

    file: Path
    line: int | None
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.key} is not yet acted on ({self.reason}); the setting has no effect"


def _lookup(data: Any, path: Sequence[str]) -> tuple[bool, Any]:
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _default(key: str) -> Any:
    node: Any = schema.AgentConfig()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _normalised(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_normalised(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _normalised(v) for k, v in value.items()}
    return value


def inert_settings(
    layers: Sequence[tuple[Path, Mapping[str, Any], Callable[[tuple[str, ...]], int | None]]],
) -> list[InertSetting]:
    """The pending keys that ``layers`` set away from their defaults.

    Each layer is (file, checked data, a ``line_of(path)`` callable).
    """
    found: list[InertSetting] = []
    for file, data, line_of in layers:
        for key in PENDING_KEYS:
            path = tuple(key.split("."))
            present, value = _lookup(data, path)
            if not present:
                continue
            default = _default(key)
            if _normalised(value) == _normalised(default):
                continue
            reason = pending_reason(key) or ""
            found.append(InertSetting(file, line_of(path), key, reason))
    return found


def inert_settings_of(paths: Paths, name: str) -> list[InertSetting]:
    """The pending keys that agent ``name``'s config files set (files unreadable: none)."""
    return inert_settings(
        [(layer.file, layer.data, layer.line_of) for layer in layers_of(paths, name)]
    )

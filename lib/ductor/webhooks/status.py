"""Each hook's last call, for ``ductor status``, ``ductor webhook list`` and ``/status``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ductor.errors import DuctorError
from ductor.webhooks.store import HookStore


def last_call_line(last: Mapping[str, Any]) -> str:
    """``2026-12-07T10:00:00+00:00 → ok`` (and the last refusal, if any)."""
    when = last.get("last_called_at") or "never called"
    result = last.get("last_result") or "-"
    line = f"{when} → {result}" if last.get("last_called_at") else when
    if last.get("last_error"):
        line += f" ({last['last_error']})"
    if last.get("last_refused"):
        line += f"; last refused: {last['last_refused']} at {last.get('last_refused_at', '?')}"
    return line


def summary(state_dir: Path) -> list[dict[str, Any]]:
    """One entry per hook: id, mode, enabled and its last call; [] when the file is
    missing or unreadable (``ductor webhook list`` reports why)."""
    store = HookStore(state_dir)
    try:
        hooks = store.load()
    except (DuctorError, OSError):
        return []
    return [
        {
            "id": hook.id,
            "mode": hook.mode,
            "enabled": hook.enabled,
            "last_call": store.last_call(hook.id),
        }
        for hook in (hooks[name] for name in sorted(hooks))
    ]


def lines(state_dir: Path) -> list[str]:
    """``ci (wake): 2026-12-07T10:00:00+00:00 → ok`` per hook."""
    return [
        f"{entry['id']} ({entry['mode']}{'' if entry['enabled'] else ', disabled'}):"
        f" {last_call_line(entry['last_call'])}"
        for entry in summary(state_dir)
    ]

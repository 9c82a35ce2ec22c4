"""The original's ``config.json`` (and a sub-agent's ``agents.json`` entry) → this
product's settings, secrets and ``.env`` lines.

Every key of the original ends up in exactly one place: a setting (written when it
differs from this product's default), a secret file, a ``.env`` line, or the list of
dropped keys with the reason. Renames and drops come from the table the config loader
uses for old key names (``ductor.config.unknown``), so both say the same thing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ductor.config import schema
from ductor.config import secrets as secret_names
from ductor.config.unknown import DROPPED, MOVED

# Texts the original ships (fingerprints, not the texts): a prompt equal to one of them
# was never chosen by the user, so this product's own default text applies instead.
BUILT_IN_TEXTS = frozenset(
    {
        "a58d0b048f970f88",  # heartbeat.prompt
        "3ede4f8fa0873d81",  # memory_flush.flush_prompt
        "64f121e612f8b0d8",  # memory_reflection.prompt
        "ab9b85e8b385735d",  # memory_compaction.prompt
        "405274223e2c6b6b",  # the default heartbeat group target's prompt
        "d69b9eab75aea236",  # the example config's heartbeat group target's prompt
    }
)
# Ids the example config ships: a disabled target with one of these is the placeholder.
EXAMPLE_CHAT_IDS = frozenset({-1001234567890, -1009876543210, 123456789})
NULL_IS_ZERO = frozenset({"max_budget_usd", "max_turns", "max_session_messages"})
SUB_AGENT_ONLY = frozenset({"name"})
TRANSPORT_NAMES = {"tg": "telegram", "mx": "matrix", "telegram": "telegram", "matrix": "matrix"}


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_placeholder(value: object) -> bool:
    """A value the example config ships instead of a real one (``YOUR_BOT_TOKEN_HERE``)."""
    return not isinstance(value, str) or not value.strip() or value.strip().startswith("YOUR_")


@dataclass(frozen=True)
class Setting:
    key: str  # dotted key of this product
    value: Any
    note: str = ""  # where it came from, when the name changed


@dataclass
class MappedConfig:
    settings: list[Setting] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # secret file name → value
    dotenv: dict[str, str] = field(default_factory=dict)  # NAME → value for the .env
    dropped: list[tuple[str, str]] = field(default_factory=list)  # original key, reason
    defaults: list[str] = field(default_factory=list)  # original keys equal to our default

    def drop(self, key: str, reason: str) -> None:
        self.dropped.append((key, reason))

    def remove(self, key: str, reason: str) -> None:
        """Take back a setting that did not pass validation."""
        for setting in self.settings:
            if setting.key == key or key.startswith(setting.key + "."):
                self.settings.remove(setting)
                self.drop(setting.note or setting.key, reason)
                return


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the non-null values of ``over`` (tables merged key by key), as the
    original builds a sub-agent's effective config."""
    merged = dict(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_config(main: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A sub-agent's config: the main config with its ``agents.json`` overrides. Its
    own credentials are never inherited from main (each agent is its own bot)."""
    base = {k: v for k, v in main.items() if k not in ("telegram_token", "api")}
    if isinstance(base.get("webhooks"), dict):
        base["webhooks"] = {k: v for k, v in base["webhooks"].items() if k != "token"}
    if isinstance(base.get("matrix"), dict):
        base["matrix"] = {
            k: v for k, v in base["matrix"].items() if k not in ("password", "access_token")
        }
    over = {k: v for k, v in entry.items() if k not in SUB_AGENT_ONLY}
    if isinstance(over.get("transport"), str):
        over["transports"] = [over["transport"]]
    return deep_merge(base, over)


def _default_of(key: str) -> Any:
    value: Any = schema.AgentConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return tuple(norm(x) for x in v)
        if isinstance(v, Mapping):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, bool):
            return v
        if isinstance(v, int | float):
            return float(v)
        return v

    return bool(norm(a) == norm(b))


def _renamed(key: str) -> str:
    """The key's name in this product (``memory_flush.flush_prompt`` →
    ``memory.flush.prompt``)."""
    if key in MOVED:
        return MOVED[key]
    head, _, rest = key.partition(".")
    if head in MOVED and rest:
        return _renamed(f"{MOVED[head]}.{rest}")
    return key


def _dropped_reason(key: str) -> str | None:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        reason = DROPPED.get(".".join(parts[:end]))
        if reason is not None:
            return reason
    return None


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = prefix + key
        if isinstance(value, dict) and value and dotted != "project_roots":
            found.extend(_leaves(value, dotted + "."))
        else:
            found.append((dotted, value))
    return found


def _target(
    raw: object, where: str, rooms: Mapping[int, str], out: MappedConfig, *, heartbeat: bool
) -> dict[str, Any] | None:
    """One heartbeat or notification target of the original, in this product's form."""
    if not isinstance(raw, dict):
        out.drop(where, "not a table: skipped")
        return None
    chat = raw.get("chat_id")
    if not raw.get("enabled", True) and (chat is None or chat in EXAMPLE_CHAT_IDS):
        out.drop(where, "the example config's disabled placeholder target")
        return None
    target: dict[str, Any] = {"enabled": bool(raw.get("enabled", True))}
    transport = TRANSPORT_NAMES.get(str(raw.get("transport") or "tg"))
    if transport is None:
        out.drop(where, f"transport {raw.get('transport')!r} is not supported here")
        return None
    target["transport"] = transport
    if transport == "matrix":
        room = rooms.get(chat) if isinstance(chat, int) else None
        if room is None:
            out.drop(where, "its Matrix room is not in matrix_store/room_id_map.json")
            return None
        target["room"] = room
    elif isinstance(chat, int):
        target["chat_id"] = chat
    if isinstance(raw.get("topic_id"), int):
        target["topic_id"] = raw["topic_id"]
    keys = ("prompt", "ack_token", "interval_minutes", "quiet_start", "quiet_end")
    for key in keys if heartbeat else ():
        value = raw.get(key)
        if value is None:
            continue
        if key == "prompt" and isinstance(value, str) and fingerprint(value) in BUILT_IN_TEXTS:
            continue
        target[key] = value
    for key in sorted(set(raw) - {"enabled", "transport", "chat_id", "topic_id", *keys}):
        out.drop(f"{where}.{key}", "not a target key this product knows")
    return target


def _targets(
    key: str, value: object, rooms: Mapping[int, str], out: MappedConfig
) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        out.drop(key, "expected a list: skipped")
        return None
    heartbeat = key.startswith("heartbeat.")
    targets = [
        t
        for index, raw in enumerate(value)
        if (t := _target(raw, f"{key}[{index}]", rooms, out, heartbeat=heartbeat)) is not None
    ]
    return targets


def map_config(
    original: Mapping[str, Any],
    *,
    rooms: Mapping[int, str] | None = None,
    matrix_login: Mapping[str, Any] | None = None,
) -> MappedConfig:
    """Map one agent's effective original config; see the module docstring."""
    rooms = rooms or {}
    out = MappedConfig()
    transports = _transports(original, out)
    uses_matrix = "matrix" in transports
    leaves = _leaves(original)
    for key, value in leaves:
        _map_leaf(key, value, out, rooms, uses_matrix=uses_matrix)
    out.settings.insert(0, Setting("transports", transports, "transport/transports"))
    if uses_matrix and matrix_login:
        token = matrix_login.get("access_token")
        if not is_placeholder(token) and secret_names.MATRIX_ACCESS_TOKEN not in out.secrets:
            out.secrets[secret_names.MATRIX_ACCESS_TOKEN] = str(token)
            device = matrix_login.get("device_id")
            if isinstance(device, str) and device:
                out.settings.append(Setting("matrix.device_id", device, "matrix_store login"))
    return out


def _transports(original: Mapping[str, Any], out: MappedConfig) -> list[str]:
    raw = original.get("transports") or [original.get("transport") or "telegram"]
    names: list[str] = []
    for item in raw if isinstance(raw, list) else [raw]:
        name = TRANSPORT_NAMES.get(str(item))
        if name is None:
            out.drop(f"transports ({item})", f"transport {item!r} is not supported here")
        elif name not in names:
            names.append(name)
    return names


def _map_leaf(
    key: str,
    value: Any,
    out: MappedConfig,
    rooms: Mapping[int, str],
    *,
    uses_matrix: bool,
) -> None:
    if key.startswith("_comment") or key in ("transport", "transports"):
        return  # the example config's comments; transports are mapped once
    if key == "telegram_token":
        if not is_placeholder(value):
            out.secrets[secret_names.TELEGRAM_TOKEN] = value.strip()
        return
    if key == "gemini_api_key":
        if not is_placeholder(value) and value.strip() != "null":
            out.dotenv["GEMINI_API_KEY"] = value.strip()
        return
    if key in ("matrix.password", "matrix.access_token"):
        name = {"matrix.password": secret_names.MATRIX_PASSWORD}.get(
            key, secret_names.MATRIX_ACCESS_TOKEN
        )
        if uses_matrix and not is_placeholder(value):
            out.secrets[name] = value.strip()
        return
    if key == "webhooks.token":
        if not is_placeholder(value):
            out.secrets[secret_names.WEBHOOK_TOKEN] = value.strip()
        return
    reason = _dropped_reason(key)
    if reason is not None:
        out.drop(key, reason)
        return
    if key.startswith("matrix.") and not uses_matrix:
        out.drop(key, "Matrix is not among this agent's transports (the example's value)")
        return
    new = _renamed(key)
    if key in ("allowed_user_ids", "allowed_group_ids", "allowed_channel_ids"):
        kept = [i for i in value if i not in EXAMPLE_CHAT_IDS] if isinstance(value, list) else value
        if kept != value:
            out.drop(f"{key} (the example's ids)", "placeholders of the example config")
        value = kept
    if key == "group_mention_only":
        _setting(out, "telegram.group_mention_only", value, key)
        if uses_matrix:
            _setting(out, "matrix.group_mention_only", value, key)
        return
    if new in ("heartbeat.group_targets", "notifications.startup_targets") or new == (
        "notifications.upgrade_targets"
    ):
        targets = _targets(key, value, rooms, out)
        if targets:
            out.settings.append(Setting(new, targets, key if new != key else ""))
        elif targets is not None:
            out.defaults.append(key)
        return
    if value is None:
        if new in NULL_IS_ZERO:
            out.defaults.append(key)  # null = no limit = 0, this product's default
        else:
            out.drop(key, "null: this product's default applies")
        return
    if isinstance(value, str) and fingerprint(value) in BUILT_IN_TEXTS:
        out.drop(key, "the original's built-in text: this product's own default applies")
        return
    if new not in schema.SCHEMA_KEYS:
        out.drop(key, "not a setting this product knows")
        return
    _setting(out, new, value, key)


def _setting(out: MappedConfig, new: str, value: Any, key: str) -> None:
    if isinstance(value, dict) and new == "project_roots":
        value = dict(value)
    if _same(value, _default_of(new)):
        out.defaults.append(key)
        return
    out.settings.append(Setting(new, value, key if key != new else ""))

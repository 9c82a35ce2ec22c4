"""Keys the schema does not know: typos, settings of the original ductor, and secrets.

A typo gets a "did you mean", a key of the original ductor says where it went or why it
was dropped, and anything that looks like a secret is refused with the file it belongs
in, without ever repeating its value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ductor.config import schema
from ductor.config import secrets as secret_names
from ductor.config.scan import KeyPath, dotted


@dataclass(frozen=True)
class Problem:
    """What is wrong at a key path: the "expected ..., got ..." part of a ConfigError."""

    path: KeyPath
    detail: str


def close_match(word: str, candidates: list[str]) -> str | None:
    import difflib

    lowered = {candidate.lower(): candidate for candidate in candidates}
    if word.lower() in lowered:
        return lowered[word.lower()]
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


MOVED = {
    "allowed_user_ids": "telegram.allowed_user_ids",
    "allowed_group_ids": "telegram.allowed_group_ids",
    "allowed_channel_ids": "telegram.allowed_channel_ids",
    "group_mention_only": "telegram.group_mention_only",
    "transport": "transports",
    "cli_timeout": "timeouts.oneshot",
    "memory_flush": "memory.flush",
    "memory_reflection": "memory.reflection",
    "memory_compaction": "memory.compaction",
    "memory.flush.flush_prompt": "memory.flush.prompt",
    "cron_delivery_retry": "cron.delivery_retry",
    "cron_preflight": "cron.preflight",
    "cleanup.telegram_files_days": "cleanup.media_files_days",
}
DROPPED = {
    "ductor_home": "directories come from systemd and XDG (see docs/paths.md)",
    "docker": "the systemd sandbox replaces the Docker sandbox",
    "interagent_port": "agents talk through their Unix sockets",
    "update_check": "install.sh and the package manager handle upgrades",
    "slack": "Slack is not supported",
    "api": "the WebSocket API is not part of this product",
    "timeouts.subagent": "it was never used",
    "cleanup.api_files_days": "the WebSocket API is not part of this product",
    "cli_parameters.antigravity": "only claude, codex and gemini are supported",
    "cli_parameters.grok": "only claude, codex and gemini are supported",
    "skills.sync.grok": "only claude, codex and gemini are supported",
}
CONFIG_SECRETS = {
    "telegram_token": secret_names.TELEGRAM_TOKEN,
    "telegram.token": secret_names.TELEGRAM_TOKEN,
    "telegram.bot_token": secret_names.TELEGRAM_TOKEN,
    "matrix.password": secret_names.MATRIX_PASSWORD,
    "matrix.access_token": secret_names.MATRIX_ACCESS_TOKEN,
    "webhooks.token": secret_names.WEBHOOK_TOKEN,
    # Not a file of its own: the Gemini CLI reads it from its environment, which the
    # agent's .env fills (a credential file of that name would be read by nothing).
    "gemini_api_key": "GEMINI_API_KEY",
}
_SECRET_WORDS = ("token", "password", "passwd", "secret", "api_key", "apikey")

SecretAdvice = Callable[[str | None], str]
"""Given a credential name (or None if the key has no known one), how to store it."""


def looks_secret(path: KeyPath) -> bool:
    name = str(path[-1]).lower().replace("-", "_")
    return dotted(path) in CONFIG_SECRETS or any(word in name for word in _SECRET_WORDS)


def unknown_key(path: KeyPath, siblings: list[str], advice: SecretAdvice) -> Problem:
    key = dotted(path)
    if looks_secret(path):
        return Problem(path, advice(CONFIG_SECRETS.get(key)))
    if key in MOVED:
        return Problem(path, f'unknown key: this setting is now "{MOVED[key]}"')
    if key in DROPPED:
        return Problem(path, f"unknown key: this setting was dropped ({DROPPED[key]})")
    name = str(path[-1])
    suggestion = close_match(name, siblings)
    if suggestion is not None:
        return Problem(path, f'unknown key (did you mean "{dotted((*path[:-1], suggestion))}"?)')
    last_parts = sorted({key.rsplit(".", 1)[-1] for key in schema.SCHEMA_KEYS})
    elsewhere = close_match(name, last_parts)
    if elsewhere is not None:
        keys = [key for key in schema.SCHEMA_KEYS if key.rsplit(".", 1)[-1] == elsewhere]
        listed = ", ".join(f'"{key}"' for key in keys[:3]) + (", ..." if len(keys) > 3 else "")
        return Problem(
            path, f"unknown key (did you mean {'one of ' if len(keys) > 1 else ''}{listed}?)"
        )
    return Problem(path, "unknown key")

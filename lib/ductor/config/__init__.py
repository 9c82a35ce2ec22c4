"""Configuration of ductor agents: schema, loading, validation, edits and secrets.

Effective config of agent NAME = schema defaults, overlaid by ``CONFIG_DIR/ductor.toml``,
overlaid by ``CONFIG_DIR/agents/NAME.toml`` (tables merged key by key, arrays replaced).
Stdlib + tomlkit only. Oneshots load config on their fast path, so the editing half
(and tomlkit) is imported only when an edit function is first used. See docs/config.md.
"""

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "FILE_ACCESS",
    "GEMINI_API_KEY",
    "HOT_KEYS",
    "IMAGE_FORMATS",
    "KNOWN_SECRETS",
    "LANGUAGES",
    "LOG_LEVELS",
    "MATRIX_ACCESS_TOKEN",
    "MATRIX_PASSWORD",
    "PERMISSION_MODES",
    "PROVIDERS",
    "REASONING_EFFORTS",
    "SCHEMA_KEYS",
    "TELEGRAM_TOKEN",
    "TRANSPORTS",
    "TRANSPORT_OUTBOX",
    "WEBHOOK_TOKEN",
    "AgentConfig",
    "ChatTarget",
    "CleanupConfig",
    "CliParametersConfig",
    "CronConfig",
    "CronDeliveryRetryConfig",
    "CronPreflightConfig",
    "HeartbeatConfig",
    "HeartbeatTarget",
    "ImageConfig",
    "LimitsConfig",
    "MatrixConfig",
    "MemoryCompactionConfig",
    "MemoryConfig",
    "MemoryFlushConfig",
    "MemoryReflectionConfig",
    "NotificationsConfig",
    "SceneConfig",
    "SkillSyncConfig",
    "SkillsConfig",
    "StreamingConfig",
    "TasksConfig",
    "TelegramConfig",
    "TimeoutsConfig",
    "TranscriptionConfig",
    "WebhooksConfig",
    "changed_keys",
    "get_value",
    "is_hot",
    "load_agent_config",
    "load_files",
    "read_secret",
    "remove_secret",
    "remove_value",
    "restart_needed",
    "secret_path",
    "set_value",
    "set_values",
    "validate_all",
    "validate_global",
    "value_from_text",
    "write_secret",
]

if TYPE_CHECKING:
    from ductor.config.edit import remove_value, set_value, set_values, value_from_text
    from ductor.config.load import (
        changed_keys,
        get_value,
        is_hot,
        load_agent_config,
        load_files,
        restart_needed,
        validate_all,
        validate_global,
    )
    from ductor.config.schema import (
        FILE_ACCESS,
        HOT_KEYS,
        IMAGE_FORMATS,
        LANGUAGES,
        LOG_LEVELS,
        PERMISSION_MODES,
        PROVIDERS,
        REASONING_EFFORTS,
        SCHEMA_KEYS,
        TRANSPORT_OUTBOX,
        TRANSPORTS,
        AgentConfig,
        ChatTarget,
        CleanupConfig,
        CliParametersConfig,
        CronConfig,
        CronDeliveryRetryConfig,
        CronPreflightConfig,
        HeartbeatConfig,
        HeartbeatTarget,
        ImageConfig,
        LimitsConfig,
        MatrixConfig,
        MemoryCompactionConfig,
        MemoryConfig,
        MemoryFlushConfig,
        MemoryReflectionConfig,
        NotificationsConfig,
        SceneConfig,
        SkillsConfig,
        SkillSyncConfig,
        StreamingConfig,
        TasksConfig,
        TelegramConfig,
        TimeoutsConfig,
        TranscriptionConfig,
        WebhooksConfig,
    )
    from ductor.config.secrets import (
        GEMINI_API_KEY,
        KNOWN_SECRETS,
        MATRIX_ACCESS_TOKEN,
        MATRIX_PASSWORD,
        TELEGRAM_TOKEN,
        WEBHOOK_TOKEN,
        read_secret,
        remove_secret,
        secret_path,
        write_secret,
    )

# Each name is imported from its module when first used: ``from ductor import config`` costs
# nothing until then, so a command that never reads a config (``ductor chat``, ``ductor
# --help``) does not pay for the schema (~25 ms of dataclasses) or the loader. A name of
# __all__ not named here with its module is one of the schema.
_MODULES = {
    **dict.fromkeys(__all__, "schema"),
    **dict.fromkeys(
        (
            "changed_keys",
            "get_value",
            "is_hot",
            "load_agent_config",
            "load_files",
            "restart_needed",
            "validate_all",
            "validate_global",
        ),
        "load",
    ),
    **dict.fromkeys(
        (
            "GEMINI_API_KEY",
            "KNOWN_SECRETS",
            "MATRIX_ACCESS_TOKEN",
            "MATRIX_PASSWORD",
            "TELEGRAM_TOKEN",
            "WEBHOOK_TOKEN",
            "read_secret",
            "remove_secret",
            "secret_path",
            "write_secret",
        ),
        "secrets",
    ),
    **dict.fromkeys(("remove_value", "set_value", "set_values", "value_from_text"), "edit"),
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ductor.config.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value

"""The configuration schema: one frozen dataclass per TOML table, nested in AgentConfig.

Every setting has its default here and nowhere else. Field metadata carries what a type
cannot say (allowed values, ranges, extra checks); ``validate`` reads it. TOML has no
null, so "no limit" is spelled 0 (or ""), and ``None`` only means "not set in any file"
(heartbeat group targets inherit those settings from ``[heartbeat]``).

docs/config.md describes every key; etc/ductor.toml shows every key with its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ductor.config import checks
from ductor.config.checks import HOUR, NO_RULE, Rule, hour, setting

PROVIDERS = ("claude", "codex", "gemini")
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk")
REASONING_EFFORTS = ("default", "none", "minimal", "low", "medium", "high", "xhigh", "max")
FILE_ACCESS = ("all", "home", "workspace")
TRANSPORTS = ("telegram", "matrix")
#: Each transport's short name: its session key prefix and its outbox in the spool.
TRANSPORT_OUTBOX = {"telegram": "tg", "matrix": "mx"}
LANGUAGES = ("en", "de", "nl", "fr", "ru", "es", "pt")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
IMAGE_FORMATS = ("webp", "jpeg", "png")
#: Which devices of allowed Matrix users get the keys of encrypted rooms (docs/matrix.md).
DEVICE_TRUSTS = ("tofu", "known")
#: What the CLIs of an agent can see (docs/sandbox.md): the whole home, or an empty home
#: with only the workspace, the CLIs' own folders, project roots and mounts in it.
SANDBOX_MODES = ("home", "workspace")
SANDBOX_NETWORKS = ("host", "none")


def _empty_map() -> Mapping[str, str]:
    return MappingProxyType({})


HEARTBEAT_PROMPT = (
    "This is a heartbeat check. Review memory_system/MAINMEMORY.md and cron_tasks/."
    " If there is something useful to tell or suggest to the user right now, write it."
    " Otherwise reply exactly: HEARTBEAT_OK"
)
FLUSH_PROMPT = (
    "## PRE-COMPACTION MEMORY FLUSH\n"
    "The context of this session is about to be compacted. APPEND durable facts,"
    " decisions and preferences from it that are not recorded yet to"
    " memory_system/MAINMEMORY.md (short dated entries). Do not tell the user."
    " If there is nothing to add, reply exactly: FLUSH_NOOP"
)
REFLECTION_PROMPT = (
    "## MEMORY REFLECTION\n"
    "Before you answer, check whether this conversation revealed durable facts about the"
    " user, decisions or preferences that belong in memory_system/MAINMEMORY.md."
    " If so, update it silently."
)
COMPACTION_PROMPT = (
    "## MEMORY COMPACTION\n"
    "memory_system/MAINMEMORY.md has grown long. Rewrite it: keep the entries of the last"
    " {preserve_days} days verbatim, merge duplicates, group older entries by topic and"
    " aim for about {target_lines} lines. If it is already short, reply exactly: COMPACT_NOOP"
)


@dataclass(frozen=True)
class TelegramConfig:
    allowed_user_ids: tuple[int, ...] = setting((), unique=True)
    allowed_group_ids: tuple[int, ...] = setting((), unique=True)
    allowed_channel_ids: tuple[int, ...] = setting((), unique=True)
    group_mention_only: bool = False
    api_base_url: str = setting("https://api.telegram.org", check=checks.http_url)

    def allows_chat(self, chat_id: int) -> bool:
        """Whether the bot may write to ``chat_id``: an allowed user's private chat (its id
        is the user's), an allowed group or an allowed channel."""
        return chat_id in (
            *self.allowed_user_ids,
            *self.allowed_group_ids,
            *self.allowed_channel_ids,
        )


@dataclass(frozen=True)
class MatrixConfig:
    homeserver: str = setting("", check=checks.optional_http_url)
    user_id: str = setting("", check=checks.matrix_user_id)
    device_id: str = ""
    allowed_rooms: tuple[str, ...] = setting((), unique=True)
    allowed_users: tuple[str, ...] = setting((), unique=True)
    store_path: str = setting("matrix_store", check=checks.non_empty)
    device_trust: str = setting("tofu", choices=DEVICE_TRUSTS)
    group_mention_only: bool = False


@dataclass(frozen=True)
class StreamingConfig:
    enabled: bool = True
    min_chars: int = setting(200, min=1)
    max_chars: int = setting(4000, min=1)
    idle_ms: int = setting(800, min=0)
    edit_interval_seconds: float = setting(2.0, min=0)
    max_edit_failures: int = setting(3, min=0)
    append_mode: bool = False
    sentence_break: bool = True
    show_reasoning_stream: bool = False
    show_tool_progress: bool = True
    show_thinking_indicator: bool = True
    max_messages: int = setting(4, min=0)


@dataclass(frozen=True)
class ChatTarget:
    """A chat to deliver to: a Telegram chat (and topic) or a Matrix room."""

    enabled: bool = True
    transport: str = setting("telegram", choices=TRANSPORTS)
    chat_id: int = 0
    topic_id: int = setting(0, min=0)
    room: str = ""


@dataclass(frozen=True)
class HeartbeatTarget(ChatTarget):
    """A group or topic with its own heartbeat; unset fields inherit ``[heartbeat]``."""

    prompt: str | None = setting(None, check=checks.non_empty)
    ack_token: str | None = setting(None, check=checks.non_empty)
    interval_minutes: int | None = setting(None, min=1)
    quiet_start: int | None = setting(None, min=HOUR[0], max=HOUR[1])
    quiet_end: int | None = setting(None, min=HOUR[0], max=HOUR[1])


@dataclass(frozen=True)
class HeartbeatConfig:
    enabled: bool = False
    interval_minutes: int = setting(30, min=1)
    cooldown_minutes: int = setting(5, min=0)
    quiet_start: int = hour(21)
    quiet_end: int = hour(8)
    prompt: str = setting(HEARTBEAT_PROMPT, check=checks.non_empty)
    ack_token: str = setting("HEARTBEAT_OK", check=checks.non_empty)
    group_targets: tuple[HeartbeatTarget, ...] = ()


@dataclass(frozen=True)
class TimeoutsConfig:
    normal: float = setting(600.0, min=1)
    background: float = setting(1800.0, min=1)
    oneshot: float = setting(1800.0, min=1)
    warning_intervals: tuple[float, ...] = setting((60.0, 10.0), min=1)
    extend_on_activity: bool = True
    activity_extension: float = setting(120.0, min=1)
    max_extensions: int = setting(3, min=0)


@dataclass(frozen=True)
class SceneConfig:
    seen_reaction: bool = False
    status_reaction: bool = True
    technical_footer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    max_dimension: int = setting(2000, min=16, max=20000)
    output_format: str = setting("webp", choices=IMAGE_FORMATS)
    quality: int = setting(85, min=1, max=100)
    # Decoding costs about 4 bytes a pixel whatever the file size: past this, refused.
    max_megapixels: int = setting(50, min=1, max=400)


@dataclass(frozen=True)
class CleanupConfig:
    enabled: bool = True
    media_files_days: int = setting(30, min=1)
    output_to_user_days: int = setting(30, min=1)
    check_hour: int = hour(3)


@dataclass(frozen=True)
class WebhooksConfig:
    enabled: bool = False
    host: str = setting("127.0.0.1", check=checks.non_empty)
    port: int = setting(8742, min=1, max=65535)
    # HOST:PORT or a Unix socket path for ductor-webhook@NAME.socket; "" = host:port.
    listen: str = setting("", check=checks.listen_address)
    max_body_bytes: int = setting(262144, min=1)
    rate_limit_per_minute: int = setting(30, min=1)


@dataclass(frozen=True)
class TasksConfig:
    enabled: bool = True
    max_parallel: int = setting(5, min=1)
    timeout_seconds: float = setting(3600.0, min=1)
    finished_retention_hours: int = setting(168, min=0)
    finished_keep_last: int = setting(100, min=0)


@dataclass(frozen=True)
class MemoryFlushConfig:
    enabled: bool = True
    prompt: str = setting(FLUSH_PROMPT, check=checks.non_empty)
    dedup_seconds: int = setting(300, min=0)


@dataclass(frozen=True)
class MemoryReflectionConfig:
    enabled: bool = False
    every_n_messages: int = setting(10, min=1)
    prompt: str = setting(REFLECTION_PROMPT, check=checks.non_empty)


@dataclass(frozen=True)
class MemoryCompactionConfig:
    enabled: bool = True
    trigger_lines: int = setting(70, min=1)
    target_lines: int = setting(40, min=1)
    preserve_recency_days: int = setting(14, min=0)
    prompt: str = setting(
        COMPACTION_PROMPT, check=checks.placeholders("preserve_days", "target_lines")
    )


@dataclass(frozen=True)
class MemoryConfig:
    flush: MemoryFlushConfig = field(default_factory=MemoryFlushConfig)
    reflection: MemoryReflectionConfig = field(default_factory=MemoryReflectionConfig)
    compaction: MemoryCompactionConfig = field(default_factory=MemoryCompactionConfig)


@dataclass(frozen=True)
class NotificationsConfig:
    startup_targets: tuple[ChatTarget, ...] = ()
    upgrade_targets: tuple[ChatTarget, ...] = ()


@dataclass(frozen=True)
class TranscriptionConfig:
    audio_command: str = ""
    video_command: str = ""


@dataclass(frozen=True)
class SkillSyncConfig:
    claude: bool = True
    codex: bool = True
    gemini: bool = True


@dataclass(frozen=True)
class SkillsConfig:
    sync_enabled: bool = True
    sync: SkillSyncConfig = field(default_factory=SkillSyncConfig)


@dataclass(frozen=True)
class CronDeliveryRetryConfig:
    enabled: bool = False
    interval_seconds: int = setting(300, min=1)
    max_attempts: int = setting(12, min=1)


@dataclass(frozen=True)
class CronPreflightConfig:
    enabled: bool = False
    timeout_seconds: float = setting(15.0, min=1)
    skip_marker: str = setting("HEARTBEAT_OK", check=checks.non_empty)


@dataclass(frozen=True)
class CronConfig:
    delivery_retry: CronDeliveryRetryConfig = field(default_factory=CronDeliveryRetryConfig)
    preflight: CronPreflightConfig = field(default_factory=CronPreflightConfig)


@dataclass(frozen=True)
class CliParametersConfig:
    claude: tuple[str, ...] = ()
    codex: tuple[str, ...] = ()
    gemini: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    max_parallel_sessions: int = setting(4, min=1)
    frame_max_bytes: int = setting(1024 * 1024, min=4096, max=64 * 1024 * 1024)
    memory_max: str = setting("", check=checks.memory_max)
    tasks_max: int = setting(0, min=0)
    cpu_weight: int = setting(0, min=0, max=10000)


def _sandbox_mount(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    path = value[:-3] if value.endswith((":ro", ":rw")) else value
    if not path.startswith("/") or ":" in path or "%" in path or "\n" in path:
        return 'expected an absolute path, with ":ro" at the end for read-only ("/srv/data:ro")'
    return None


@dataclass(frozen=True)
class SandboxConfig:
    mode: str = setting("home", choices=SANDBOX_MODES)
    network: str = setting("host", choices=SANDBOX_NETWORKS)
    mounts: tuple[str, ...] = setting((), check=_sandbox_mount, unique=True)


@dataclass(frozen=True)
class AgentConfig:
    """The effective configuration of one agent."""

    description: str = ""
    provider: str = setting("claude", choices=PROVIDERS)
    model: str = setting("opus", check=checks.non_empty)
    reasoning_effort: str = setting("medium", choices=REASONING_EFFORTS)
    permission_mode: str = setting("bypassPermissions", choices=PERMISSION_MODES)
    language: str = setting("en", choices=LANGUAGES)
    user_timezone: str = setting("", check=checks.time_zone)
    log_level: str = setting("INFO", choices=LOG_LEVELS)
    transports: tuple[str, ...] = setting(("telegram",), choices=TRANSPORTS, unique=True)
    file_access: str = setting("workspace", choices=FILE_ACCESS)
    idle_timeout_minutes: int = setting(1440, min=0)
    session_age_warning_hours: int = setting(12, min=0)
    daily_reset_enabled: bool = False
    daily_reset_hour: int = hour(4)
    max_budget_usd: float = setting(0.0, min=0)
    max_turns: int = setting(0, min=0)
    max_session_messages: int = setting(0, min=0)
    append_system_prompt_files: tuple[str, ...] = setting((), check=checks.workspace_relative)
    project_roots: Mapping[str, str] = field(
        default_factory=_empty_map, metadata={"rule": Rule(check=checks.non_empty)}
    )
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    matrix: MatrixConfig = field(default_factory=MatrixConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    transcription: TranscriptionConfig = field(default_factory=TranscriptionConfig)
    skills: SkillsConfig = field(default_factory=SkillsConfig)
    cron: CronConfig = field(default_factory=CronConfig)
    cli_parameters: CliParametersConfig = field(default_factory=CliParametersConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    @property
    def outboxes(self) -> tuple[str, ...]:
        """The outboxes of the transports this agent runs (``tg``, ``mx``), primary first."""
        return tuple(TRANSPORT_OUTBOX[t] for t in self.transports)


def rule_of(f: dataclasses.Field[Any]) -> Rule:
    rule = f.metadata.get("rule", NO_RULE)
    assert isinstance(rule, Rule)
    return rule


def _leaf_keys(cls: type[Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            keys.extend(_leaf_keys(type(default), name + "."))
        else:
            keys.append(name)
    return keys


SCHEMA_KEYS: tuple[str, ...] = tuple(_leaf_keys(AgentConfig))
"""Every settable key, dotted, in schema order (tables' keys after the top-level ones)."""

# Following the "hot" column of the original's schema; cli_timeout became timeouts.oneshot.
_HOT_TOP = (
    "description",
    "provider",
    "model",
    "reasoning_effort",
    "permission_mode",
    "file_access",
    "user_timezone",
    "language",
    "idle_timeout_minutes",
    "session_age_warning_hours",
    "daily_reset_enabled",
    "daily_reset_hour",
    "max_budget_usd",
    "max_turns",
    "max_session_messages",
    "project_roots",
    "timeouts.oneshot",
    "telegram.allowed_user_ids",
    "telegram.allowed_group_ids",
    "telegram.group_mention_only",
)
_HOT_TABLES = (
    "streaming.",
    "heartbeat.",
    "cleanup.",
    "cli_parameters.",
    "scene.",
    "image.",
    "skills.",
)

HOT_KEYS: frozenset[str] = frozenset(
    key for key in SCHEMA_KEYS if key in _HOT_TOP or key.startswith(_HOT_TABLES)
)
"""Keys whose new value applies on ``systemctl reload`` without restarting any unit."""

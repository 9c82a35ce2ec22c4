"""The original's config.json → this product's settings, secrets and .env lines."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ductor.config import load_files
from ductor.migrate.config_map import effective_config, map_config
from ductor.migrate.toml_out import MARKER, config_text

FILE = Path("/nonexistent/config/agents/main.toml")


def settings_of(original: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return {s.key: s.value for s in map_config(original, **kwargs).settings}


def dropped_of(original: dict[str, Any]) -> dict[str, str]:
    return dict(map_config(original).dropped)


def test_renamed_keys_land_under_their_new_names_with_the_old_name_in_a_comment() -> None:
    original = {
        "allowed_user_ids": [7],
        "cli_timeout": 900.0,
        "memory_flush": {"flush_prompt": "Save facts. FLUSH_NOOP", "dedup_seconds": 60},
        "cron_preflight": {"enabled": True},
        "cleanup": {"telegram_files_days": 9},
    }
    mapped = map_config(original)
    settings = {s.key: s for s in mapped.settings}
    assert settings["telegram.allowed_user_ids"].value == [7]
    assert settings["timeouts.oneshot"].value == 900.0
    assert settings["memory.flush.prompt"].value == "Save facts. FLUSH_NOOP"
    assert settings["memory.flush.dedup_seconds"].value == 60
    assert settings["cron.preflight.enabled"].value is True
    assert settings["cleanup.media_files_days"].value == 9
    text = config_text(mapped, agent="main", source=Path("/h/.ductor"), file=FILE)
    assert text.startswith(MARKER)
    assert "# was cli_timeout" in text


def test_values_equal_to_this_products_defaults_are_not_written() -> None:
    mapped = map_config({"streaming": {"min_chars": 200}, "language": "en", "max_turns": None})
    assert [s.key for s in mapped.settings] == ["transports"]
    assert {"streaming.min_chars", "language", "max_turns"} <= set(mapped.defaults)


def test_every_dropped_key_says_why() -> None:
    dropped = dropped_of(
        {
            "docker": {"enabled": True},
            "api": {"enabled": False},
            "slack": {"bot_token": "xoxb-1"},
            "interagent_port": 8799,
            "cli_parameters": {"grok": ["--fast"]},
            "some_future_key": 1,
            "timeouts": {"subagent": 3600.0},
        }
    )
    assert "Docker sandbox" in dropped["docker.enabled"]
    assert "WebSocket API" in dropped["api.enabled"]
    assert "Slack" in dropped["slack.bot_token"]
    assert "Unix sockets" in dropped["interagent_port"]
    assert "claude, codex and gemini" in dropped["cli_parameters.grok"]
    assert dropped["some_future_key"] == "not a setting this product knows"
    assert "never used" in dropped["timeouts.subagent"]


def test_tokens_become_secret_files_and_the_gemini_key_a_dotenv_line() -> None:
    mapped = map_config(
        {
            "telegram_token": "1:abc",
            "webhooks": {"token": "hook-secret"},
            "gemini_api_key": "AIza-k",
            "transports": ["telegram", "matrix"],
            "matrix": {"homeserver": "https://m.org", "password": "pw", "access_token": ""},
        }
    )
    assert mapped.secrets == {
        "telegram-token": "1:abc",
        "webhook-token": "hook-secret",
        "matrix-password": "pw",
    }
    assert mapped.dotenv == {"GEMINI_API_KEY": "AIza-k"}
    text = config_text(mapped, agent="main", source=Path("/h"), file=FILE)
    for secret in ("1:abc", "hook-secret", 'pw"', "AIza-k"):
        assert secret not in text


def test_the_example_configs_placeholders_are_not_taken_for_real_values() -> None:
    mapped = map_config(
        {
            "telegram_token": "YOUR_BOT_TOKEN_HERE",
            "gemini_api_key": "null",
            "matrix": {"password": "YOUR_MATRIX_PASSWORD", "homeserver": "https://x.org"},
            "heartbeat": {
                "group_targets": [
                    {"enabled": False, "chat_id": -1001234567890, "topic_id": 5},
                ]
            },
        }
    )
    assert mapped.secrets == {} and mapped.dotenv == {}
    dropped = dict(mapped.dropped)
    assert "placeholder" in dropped["heartbeat.group_targets[0]"]
    assert "not among this agent's transports" in dropped["matrix.homeserver"]


def test_the_originals_built_in_prompts_give_way_to_this_products_defaults() -> None:
    import json

    fixture = Path(__file__).parents[1] / "fixtures" / "original-home" / "ductor-home"
    original = json.loads((fixture / "config" / "config.json").read_text())
    builtin = original["heartbeat"]["prompt"]
    assert "built-in text" in dropped_of({"heartbeat": {"prompt": builtin}})["heartbeat.prompt"]
    custom = settings_of({"heartbeat": {"prompt": "Check my inbox. HEARTBEAT_OK"}})
    assert custom["heartbeat.prompt"] == "Check my inbox. HEARTBEAT_OK"


def test_heartbeat_targets_use_transport_names_and_matrix_rooms() -> None:
    rooms = {42: "!ops:example.org"}
    settings = settings_of(
        {
            "transports": ["matrix"],
            "matrix": {"homeserver": "https://example.org", "user_id": "@bot:example.org"},
            "heartbeat": {
                "group_targets": [
                    {"enabled": True, "transport": "mx", "chat_id": 42, "quiet_start": 23},
                    {"enabled": True, "transport": "tg", "chat_id": -100, "topic_id": 3},
                ]
            },
        },
        rooms=rooms,
    )
    assert settings["heartbeat.group_targets"] == [
        {"enabled": True, "transport": "matrix", "room": "!ops:example.org", "quiet_start": 23},
        {"enabled": True, "transport": "telegram", "chat_id": -100, "topic_id": 3},
    ]
    assert settings["transports"] == ["matrix"]


def test_a_matrix_agent_logs_in_with_the_originals_stored_access_token() -> None:
    mapped = map_config(
        {"transports": ["matrix"], "matrix": {"homeserver": "https://e.org", "password": ""}},
        matrix_login={"user_id": "@b:e.org", "device_id": "DEV1", "access_token": "syt_x"},
    )
    assert mapped.secrets == {"matrix-access-token": "syt_x"}
    assert ("matrix.device_id", "DEV1") in [(s.key, s.value) for s in mapped.settings]


def test_a_sub_agent_gets_mains_settings_with_its_overrides_but_never_mains_token() -> None:
    main = {
        "telegram_token": "main:tok",
        "model": "sonnet",
        "streaming": {"enabled": True, "min_chars": 50},
        "webhooks": {"token": "main-hook"},
    }
    entry = {
        "name": "research",
        "telegram_token": "sub:tok",
        "model": "haiku",
        "streaming": {"min_chars": 80},
        "max_turns": None,
    }
    effective = effective_config(main, entry)
    mapped = map_config(effective)
    settings = {s.key: s.value for s in mapped.settings}
    assert settings["model"] == "haiku"
    assert settings["streaming.min_chars"] == 80
    assert mapped.secrets == {"telegram-token": "sub:tok"}
    assert map_config(effective_config(main, {"name": "x"})).secrets == {}


def test_a_value_this_product_refuses_is_dropped_with_the_loaders_reason(
    tmp_path: Path,
) -> None:
    mapped = map_config({"user_timezone": "Mars/Olympus_Mons", "model": "sonnet"})
    file = tmp_path / "agents" / "main.toml"
    text = config_text(mapped, agent="main", source=Path("/h"), file=file)
    assert "Mars" not in text
    reason = dict(mapped.dropped)["user_timezone"]
    assert reason.startswith("refused by this product's checks")
    file.parent.mkdir()
    file.write_text(text)
    assert load_files([file]).model == "sonnet"


def test_the_fixture_homes_config_becomes_a_file_that_loads(tmp_path: Path) -> None:
    import json

    fixture = Path(__file__).parents[1] / "fixtures" / "original-home" / "ductor-home"
    original = json.loads((fixture / "config" / "config.json").read_text())
    mapped = map_config(original)
    file = tmp_path / "agents" / "main.toml"
    file.parent.mkdir()
    file.write_text(config_text(mapped, agent="main", source=fixture, file=file))
    config = load_files([file])
    assert config.telegram.allowed_user_ids == (100,)
    assert config.user_timezone == "Europe/Berlin"
    assert config.heartbeat.enabled and config.heartbeat.group_targets[0].chat_id == -100200
    assert config.file_access == "all"  # the original's default, kept
    assert tomllib.loads(file.read_text())["timeouts"]["oneshot"] == 600.0
    # every leaf key of the original is accounted for
    accounted = {note for s in mapped.settings for note in (s.note, s.key)}
    accounted |= {key.split("[")[0] for key, _ in mapped.dropped} | set(mapped.defaults)
    secrets = {"telegram_token", "gemini_api_key", "webhooks.token", "matrix.password"}
    secrets |= {"matrix.access_token", "transport", "transports", "_comment"}
    secrets |= {"_comment_project_roots"}

    def leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
        out: list[str] = []
        for key, value in data.items():
            if isinstance(value, dict) and value and prefix + key != "project_roots":
                out += leaves(value, f"{prefix}{key}.")
            else:
                out.append(prefix + key)
        return out

    missing = [k for k in leaves(original) if k not in accounted | secrets]
    assert missing == []


def test_the_example_configs_chat_ids_are_not_allowed_in() -> None:
    mapped = map_config(
        {"allowed_user_ids": [123456789, 7], "allowed_group_ids": [-1001234567890, -1009876543210]}
    )
    settings = {s.key: s.value for s in mapped.settings}
    assert settings["telegram.allowed_user_ids"] == [7]
    assert "telegram.allowed_group_ids" not in settings
    assert "allowed_group_ids (the example's ids)" in dict(mapped.dropped)

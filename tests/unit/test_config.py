"""Loading and validating agent config: defaults, merge order, and every kind of error."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from ductor import config
from ductor.config import AgentConfig, HeartbeatTarget, load_agent_config, validate_all
from ductor.config.scan import scan
from ductor.errors import ConfigError, ExitCode
from ductor.paths import Mode, Paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "etc" / "ductor.toml"
AGENT_EXAMPLE = REPO / "etc" / "agent.toml"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(
        mode=Mode.USER,
        config_dir=tmp_path / "config",
        state_dir=tmp_path / "state",
        runtime_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
    )


def write_global(paths: Paths, text: str) -> Path:
    paths.global_config.parent.mkdir(parents=True, exist_ok=True)
    paths.global_config.write_text(text, encoding="utf-8")
    return paths.global_config


def write_agent(paths: Paths, text: str, name: str = "main") -> Path:
    file = paths.agent_config(name)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def only_error(paths: Paths) -> ConfigError:
    errors = validate_all(paths, "main")
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# -- defaults and merging --------------------------------------------------------------


def test_without_config_files_an_agent_gets_the_defaults(paths: Paths) -> None:
    cfg = load_agent_config(paths, "main")
    assert cfg == AgentConfig()
    assert cfg.provider == "claude"
    assert cfg.transports == ("telegram",)
    assert cfg.telegram.api_base_url == "https://api.telegram.org"
    assert cfg.limits.max_parallel_sessions == 4
    assert cfg.limits.frame_max_bytes == 1024 * 1024
    assert cfg.limits.memory_max == ""
    assert cfg.heartbeat.group_targets == ()
    assert dict(cfg.project_roots) == {}


def test_config_is_frozen(paths: Paths) -> None:
    cfg = load_agent_config(paths, "main")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = "sonnet"  # type: ignore[misc]


def test_agent_file_overrides_global_file_which_overrides_defaults(paths: Paths) -> None:
    write_global(paths, 'provider = "codex"\nmodel = "gpt-5.5"\nlanguage = "de"\n')
    write_agent(paths, 'model = "gpt-5.4"\n')
    cfg = load_agent_config(paths, "main")
    assert (cfg.provider, cfg.model, cfg.language) == ("codex", "gpt-5.4", "de")
    assert cfg.log_level == "INFO"


def test_other_agents_do_not_see_an_agents_file(paths: Paths) -> None:
    write_agent(paths, 'model = "sonnet"\n', name="main")
    assert load_agent_config(paths, "research").model == "opus"


def test_tables_are_merged_key_by_key_across_files(paths: Paths) -> None:
    write_global(paths, "[streaming]\nmin_chars = 100\nappend_mode = true\n")
    write_agent(paths, "[streaming]\nmin_chars = 50\n")
    streaming = load_agent_config(paths, "main").streaming
    assert (streaming.min_chars, streaming.append_mode, streaming.max_chars) == (50, True, 4000)


def test_arrays_in_the_agent_file_replace_those_of_the_global_file(paths: Paths) -> None:
    write_global(
        paths,
        'transports = ["telegram", "matrix"]\n[telegram]\nallowed_user_ids = [1, 2]\n'
        "[[heartbeat.group_targets]]\nchat_id = -100\n"
        "[[heartbeat.group_targets]]\nchat_id = -200\n",
    )
    write_agent(
        paths,
        'transports = ["matrix"]\n[telegram]\nallowed_user_ids = [3]\n'
        "[[heartbeat.group_targets]]\nchat_id = -300\n",
    )
    cfg = load_agent_config(paths, "main")
    assert cfg.transports == ("matrix",)
    assert cfg.telegram.allowed_user_ids == (3,)
    assert cfg.heartbeat.group_targets == (HeartbeatTarget(chat_id=-300),)


def test_project_roots_merge_topic_by_topic(paths: Paths) -> None:
    write_global(paths, '[project_roots]\nweb = "~/src/web"\napi = "~/src/api"\n')
    write_agent(paths, '[project_roots]\napi = "~/code/api"\n"-100:7" = "/srv"\n')
    roots = load_agent_config(paths, "main").project_roots
    assert dict(roots) == {"web": "~/src/web", "api": "~/code/api", "-100:7": "/srv"}


def test_an_integer_is_accepted_where_a_number_is_expected(paths: Paths) -> None:
    write_agent(paths, "max_budget_usd = 3\n[streaming]\nedit_interval_seconds = 1\n")
    cfg = load_agent_config(paths, "main")
    assert cfg.max_budget_usd == 3.0
    assert isinstance(cfg.streaming.edit_interval_seconds, float)


def test_heartbeat_targets_leave_unset_overrides_as_none(paths: Paths) -> None:
    write_agent(paths, "[[heartbeat.group_targets]]\nchat_id = -5\nquiet_end = 6\n")
    (target,) = load_agent_config(paths, "main").heartbeat.group_targets
    assert (target.chat_id, target.quiet_end, target.quiet_start, target.prompt) == (
        -5,
        6,
        None,
        None,
    )


def test_empty_files_and_a_byte_order_mark_are_fine(paths: Paths) -> None:
    write_global(paths, "")
    paths.agent_config("main").parent.mkdir(parents=True, exist_ok=True)
    paths.agent_config("main").write_bytes(b'\xef\xbb\xbfmodel = "sonnet"\n')
    assert load_agent_config(paths, "main").model == "sonnet"


# -- errors: each names the file, the key, the line and what was expected ---------------


def test_wrong_type_error_names_file_key_line_and_expected_type(paths: Paths) -> None:
    file = write_agent(
        paths, '# mine\n\n[streaming]\nenabled = true\nedit_interval_seconds = "fast"\n'
    )
    error = only_error(paths)
    assert (
        str(error)
        == f'{file}:5: streaming.edit_interval_seconds: expected a number, got string "fast"'
    )
    assert (error.file, error.key, error.line) == (file, "streaming.edit_interval_seconds", 5)


def test_a_boolean_is_not_an_integer(paths: Paths) -> None:
    file = write_global(paths, "max_turns = true\n")
    assert str(only_error(paths)) == f"{file}:1: max_turns: expected an integer, got boolean true"


def test_a_number_is_not_a_boolean(paths: Paths) -> None:
    write_global(paths, "[scene]\ntechnical_footer = 1\n")
    assert only_error(paths).detail == "expected true or false, got integer 1"


def test_unknown_key_error_names_file_key_and_line_and_suggests_the_right_key(paths: Paths) -> None:
    file = write_agent(paths, "[streaming]\nenabled = true\nedit_intervall_seconds = 1\n")
    assert str(only_error(paths)) == (
        f"{file}:3: streaming.edit_intervall_seconds: unknown key"
        ' (did you mean "streaming.edit_interval_seconds"?)'
    )


def test_unknown_key_in_the_wrong_table_suggests_the_full_key(paths: Paths) -> None:
    write_agent(paths, "cooldown_minutes = 5\n")
    assert only_error(paths).detail == 'unknown key (did you mean "heartbeat.cooldown_minutes"?)'


def test_unknown_key_without_a_close_match_just_says_unknown(paths: Paths) -> None:
    write_agent(paths, "[limits]\nzzzz = 1\n")
    error = only_error(paths)
    assert (error.key, error.line, error.detail) == ("limits.zzzz", 2, "unknown key")


def test_unknown_table_is_reported_once(paths: Paths) -> None:
    write_agent(paths, "[nonsense]\na = 1\nb = 2\n")
    assert only_error(paths).key == "nonsense"


def test_key_of_the_original_ductor_says_where_it_moved(paths: Paths) -> None:
    write_global(paths, "allowed_user_ids = [1]\ncli_timeout = 30\n")
    errors = validate_all(paths, "main")
    assert [e.detail for e in errors] == [
        'unknown key: this setting is now "telegram.allowed_user_ids"',
        'unknown key: this setting is now "timeouts.oneshot"',
    ]


def test_dropped_key_of_the_original_ductor_says_why(paths: Paths) -> None:
    write_global(paths, "[docker]\nenabled = true\n")
    error = only_error(paths)
    assert error.key == "docker"
    assert "dropped" in error.detail
    assert "systemd sandbox" in error.detail


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ('provider = "gpt"', "provider", '"claude", "codex", "gemini"'),
        ('permission_mode = "yolo"', "permission_mode", '"bypassPermissions"'),
        ('reasoning_effort = "extreme"', "reasoning_effort", '"xhigh", "max"'),
        ('file_access = "everything"', "file_access", '"all", "home", "workspace"'),
        ('language = "it"', "language", '"en", "de", "nl", "fr", "ru", "es", "pt"'),
        ('[image]\noutput_format = "gif"', "image.output_format", '"webp", "jpeg", "png"'),
    ],
)
def test_bad_choice_lists_the_allowed_values(
    paths: Paths, line: str, key: str, allowed: str
) -> None:
    write_agent(paths, line + "\n")
    error = only_error(paths)
    assert error.key == key
    assert error.detail.startswith("expected one of ")
    assert allowed in error.detail


def test_bad_choice_with_the_wrong_case_suggests_the_right_spelling(paths: Paths) -> None:
    write_agent(paths, 'log_level = "debug"\n')
    assert only_error(paths).detail.endswith('got string "debug" (did you mean "DEBUG"?)')


def test_unknown_transport_names_the_array_element_and_its_line(paths: Paths) -> None:
    file = write_agent(paths, 'transports = [\n  "telegram",\n  "slack",\n]\n')
    assert str(only_error(paths)) == (
        f'{file}:3: transports[1]: expected one of "telegram", "matrix", got string "slack"'
    )


def test_a_transport_listed_twice_is_refused(paths: Paths) -> None:
    write_agent(paths, 'transports = ["matrix", "matrix"]\n')
    error = only_error(paths)
    assert (error.key, error.detail) == (
        "transports[1]",
        'expected each value once, got string "matrix" again',
    )


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ("daily_reset_hour = 24", "daily_reset_hour", "expected an integer from 0 to 23, got 24"),
        (
            "[heartbeat]\nquiet_start = -1",
            "heartbeat.quiet_start",
            "expected an integer from 0 to 23, got -1",
        ),
        (
            "[heartbeat]\nquiet_end = 30",
            "heartbeat.quiet_end",
            "expected an integer from 0 to 23, got 30",
        ),
        (
            "[cleanup]\ncheck_hour = 99",
            "cleanup.check_hour",
            "expected an integer from 0 to 23, got 99",
        ),
        ("[webhooks]\nport = 0", "webhooks.port", "expected an integer from 1 to 65535, got 0"),
        (
            "[webhooks]\nport = 65536",
            "webhooks.port",
            "expected an integer from 1 to 65535, got 65536",
        ),
        ("idle_timeout_minutes = -1", "idle_timeout_minutes", "expected an integer >= 0, got -1"),
        ("[timeouts]\nnormal = 0.5", "timeouts.normal", "expected a number >= 1, got 0.5"),
        ("[timeouts]\nnormal = inf", "timeouts.normal", "expected a number >= 1, got inf"),
        (
            "[limits]\ncpu_weight = 20000",
            "limits.cpu_weight",
            "expected an integer from 0 to 10000, got 20000",
        ),
        ("[image]\nquality = 101", "image.quality", "expected an integer from 1 to 100, got 101"),
    ],
)
def test_value_out_of_range_names_the_range(paths: Paths, text: str, key: str, detail: str) -> None:
    write_agent(paths, text + "\n")
    error = only_error(paths)
    assert (error.key, error.detail, error.line) == (key, detail, text.count("\n") + 1)


def test_quiet_hours_of_a_heartbeat_target_are_range_checked(paths: Paths) -> None:
    write_agent(paths, "[[heartbeat.group_targets]]\nchat_id = -1\nquiet_start = 25\n")
    error = only_error(paths)
    assert (error.key, error.line) == ("heartbeat.group_targets[0].quiet_start", 3)


def test_invalid_time_zone_is_refused_and_a_real_one_accepted(paths: Paths) -> None:
    file = write_agent(paths, 'user_timezone = "Mars/Olympus_Mons"\n')
    error = only_error(paths)
    assert error.line == 1
    assert error.key == "user_timezone"
    assert 'expected an IANA time zone name such as "Europe/Berlin"' in error.detail
    file.write_text('user_timezone = "America/Argentina/Buenos_Aires"\n', encoding="utf-8")
    assert load_agent_config(paths, "main").user_timezone == "America/Argentina/Buenos_Aires"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[telegram]\napi_base_url = "api.telegram.org"', "telegram.api_base_url"),
        ('[matrix]\nhomeserver = "matrix.org"', "matrix.homeserver"),
        ('[matrix]\nuser_id = "ductor"', "matrix.user_id"),
        ('[limits]\nmemory_max = "lots"', "limits.memory_max"),
        ('append_system_prompt_files = ["../secret.md"]', "append_system_prompt_files[0]"),
        ('model = ""', "model"),
    ],
)
def test_malformed_strings_are_refused_with_an_example_of_a_good_one(
    paths: Paths, text: str, key: str
) -> None:
    write_agent(paths, text + "\n")
    error = only_error(paths)
    assert error.key == key
    assert error.detail.startswith("expected ")


@pytest.mark.parametrize("value", ["2G", "512M", "80%", "infinity", "1073741824", ""])
def test_systemd_memory_limits_are_accepted(paths: Paths, value: str) -> None:
    write_agent(paths, f'[limits]\nmemory_max = "{value}"\n')
    assert load_agent_config(paths, "main").limits.memory_max == value


def test_compaction_target_above_trigger_is_blamed_on_the_file_that_sets_it(paths: Paths) -> None:
    write_global(paths, "[memory.compaction]\ntrigger_lines = 50\n")
    agent = write_agent(paths, "# agent\n[memory.compaction]\ntarget_lines = 60\n")
    assert str(only_error(paths)) == (
        f"{agent}:3: memory.compaction.target_lines: expected at most"
        " memory.compaction.trigger_lines (50), got 60"
    )


def test_compaction_trigger_lowered_below_target_is_blamed_on_the_trigger(paths: Paths) -> None:
    file = write_agent(paths, "[memory.compaction]\ntrigger_lines = 30\n")
    error = only_error(paths)
    assert (error.file, error.key, error.line) == (file, "memory.compaction.trigger_lines", 2)
    assert error.detail == "expected at least memory.compaction.target_lines (40), got 30"


def test_compaction_prompt_may_only_use_its_placeholders(paths: Paths) -> None:
    write_agent(paths, '[memory.compaction]\nprompt = "keep {days} days"\n')
    error = only_error(paths)
    assert error.key == "memory.compaction.prompt"
    assert "{preserve_days}, {target_lines}" in error.detail


def test_enabled_telegram_heartbeat_target_needs_a_chat_id(paths: Paths) -> None:
    write_agent(paths, "[heartbeat]\nenabled = true\n\n[[heartbeat.group_targets]]\ntopic_id = 3\n")
    error = only_error(paths)
    assert (error.key, error.line) == ("heartbeat.group_targets[0].chat_id", 4)
    assert "chat id" in error.detail


def test_disabled_placeholder_target_without_chat_id_is_fine(paths: Paths) -> None:
    write_agent(paths, "[[heartbeat.group_targets]]\nenabled = false\n")
    assert load_agent_config(paths, "main").heartbeat.group_targets[0].enabled is False


def test_matrix_notification_target_needs_a_room(paths: Paths) -> None:
    write_agent(paths, '[[notifications.startup_targets]]\ntransport = "matrix"\n')
    assert only_error(paths).key == "notifications.startup_targets[0].room"


def test_toml_syntax_error_names_file_line_and_key(paths: Paths) -> None:
    file = write_agent(paths, "[streaming]\nenabled = true\nmin_chars = lots\n")
    error = only_error(paths)
    assert (error.file, error.line, error.key) == (file, 3, "streaming.min_chars")
    assert str(error).startswith(f"{file}:3: streaming.min_chars: invalid TOML: ")


def test_toml_syntax_error_at_the_end_of_the_file_has_a_line(paths: Paths) -> None:
    write_agent(paths, 'model = "sonnet"\nprovider = "claude\n')
    error = only_error(paths)
    assert error.line == 2
    assert error.key == "provider"


def test_duplicate_key_is_a_syntax_error(paths: Paths) -> None:
    write_agent(paths, 'model = "a"\nmodel = "b"\n')
    error = only_error(paths)
    assert (error.line, "invalid TOML" in error.detail) == (2, True)


def test_a_file_that_is_not_utf8_is_refused_with_its_line(paths: Paths) -> None:
    paths.agent_config("main").parent.mkdir(parents=True)
    paths.agent_config("main").write_bytes(b'model = "a"\nlanguage = "\xff"\n')
    error = only_error(paths)
    assert (error.line, error.detail) == (2, "expected UTF-8 text")


@pytest.mark.timeout(20)
def test_a_fifo_in_place_of_the_config_file_is_refused_without_hanging(paths: Paths) -> None:
    paths.agent_config("main").parent.mkdir(parents=True)
    os.mkfifo(paths.agent_config("main"))
    with pytest.raises(ConfigError) as caught:
        load_agent_config(paths, "main")
    assert caught.value.file == paths.agent_config("main")
    assert "not a regular file" in caught.value.detail
    assert caught.value.exit_code is ExitCode.CONFIG


def test_a_symlink_to_a_config_file_is_read(paths: Paths, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "main.toml"
    real.parent.mkdir()
    real.write_text('model = "sonnet"\n')
    paths.agent_config("main").parent.mkdir(parents=True)
    paths.agent_config("main").symlink_to(real)
    assert load_agent_config(paths, "main").model == "sonnet"


def test_the_default_file_access_is_the_workspace(paths: Paths) -> None:
    assert load_agent_config(paths, "main").file_access == "workspace"


def test_load_raises_the_first_problem_and_exits_78(paths: Paths) -> None:
    write_global(paths, "max_turns = -1\n")
    write_agent(paths, 'provider = "nope"\n')
    with pytest.raises(ConfigError) as caught:
        load_agent_config(paths, "main")
    assert caught.value.file == paths.global_config
    assert caught.value.exit_code is ExitCode.CONFIG
    assert int(caught.value.exit_code) == 78


def test_validate_all_reports_every_problem_of_both_files_in_order(paths: Paths) -> None:
    write_global(paths, 'max_turns = -1\nprovider = "x"\n')
    write_agent(paths, "max_turns = true\n[heartbeat]\nquiet_end = 24\n[bogus]\n")
    found = [(e.file, e.line, e.key) for e in validate_all(paths, "main")]
    assert found == [
        (paths.global_config, 1, "max_turns"),
        (paths.global_config, 2, "provider"),
        (paths.agent_config("main"), 1, "max_turns"),
        (paths.agent_config("main"), 3, "heartbeat.quiet_end"),
        (paths.agent_config("main"), 4, "bogus"),
    ]


def test_a_syntax_error_in_one_file_does_not_hide_problems_in_the_other(paths: Paths) -> None:
    write_global(paths, "model = \n")
    write_agent(paths, "max_turns = -1\n")
    assert [e.file for e in validate_all(paths, "main")] == [
        paths.global_config,
        paths.agent_config("main"),
    ]


def test_validate_global_checks_only_the_global_file(paths: Paths) -> None:
    write_global(paths, "max_turns = -1\n")
    write_agent(paths, "max_turns = -2\n")
    assert [(e.file, e.key) for e in config.validate_global(paths)] == [
        (paths.global_config, "max_turns")
    ]


# -- secrets in config files -----------------------------------------------------------

SECRET = "123456789:AAHk-SuperSecretValue_do_not_print"


@pytest.mark.parametrize(
    ("text", "key", "credential"),
    [
        (f'telegram_token = "{SECRET}"', "telegram_token", "telegram-token"),
        (f'[telegram]\ntoken = "{SECRET}"', "telegram.token", "telegram-token"),
        (f'[matrix]\npassword = "{SECRET}"', "matrix.password", "matrix-password"),
        (f'matrix = {{access_token = "{SECRET}"}}', "matrix.access_token", "matrix-access-token"),
        (f'[webhooks]\ntoken = "{SECRET}"', "webhooks.token", "webhook-token"),
        (f'gemini_api_key = "{SECRET}"', "gemini_api_key", ".env"),
    ],
)
def test_secret_in_a_config_file_is_refused_pointing_at_its_credentials_file(
    paths: Paths, text: str, key: str, credential: str
) -> None:
    write_agent(paths, "# mine\n" + text + "\n")
    error = only_error(paths)
    credentials_file = paths.config_dir / "credentials" / "main" / credential
    assert (error.key, error.line) == (key, text.count("\n") + 2)
    assert f"chmod 600 {credentials_file}" in error.detail
    assert "must not be stored in config files" in error.detail
    assert SECRET not in str(error)
    assert SECRET[:20] not in repr(error.args)


def test_a_gemini_api_key_in_a_config_file_is_sent_to_the_env_file_the_cli_reads(
    paths: Paths,
) -> None:
    write_agent(paths, f'gemini_api_key = "{SECRET}"\n')
    error = only_error(paths)
    env_file = paths.config_dir / "credentials" / "main" / ".env"
    assert f"{env_file} as the line GEMINI_API_KEY=VALUE" in error.detail
    assert "gemini-api-key" not in error.detail  # no code reads a file of that name
    assert SECRET not in str(error)


def test_any_key_that_looks_like_a_password_or_token_is_refused_without_its_value(
    paths: Paths,
) -> None:
    write_global(paths, f'[matrix]\nbot_password = "{SECRET}"\n[limits]\napi_token = "{SECRET}"\n')
    errors = validate_all(paths, "main")
    assert [e.key for e in errors] == ["matrix.bot_password", "limits.api_token"]
    assert all("credentials/main/" in e.detail and SECRET not in str(e) for e in errors)


def test_secret_pasted_into_the_wrong_key_is_not_echoed(paths: Paths) -> None:
    write_agent(paths, f'[telegram]\nallowed_user_ids = "{SECRET}"\n')
    error = only_error(paths)
    assert (
        error.detail == f"expected an array of integers, got a string of {len(SECRET)} characters"
    )
    assert SECRET not in str(error)


def test_secret_in_a_syntax_error_line_is_not_echoed(paths: Paths) -> None:
    write_agent(paths, f'[telegram]\ntoken = "{SECRET}\n')
    assert SECRET not in str(only_error(paths))


def test_heartbeat_ack_token_is_a_setting_not_a_secret(paths: Paths) -> None:
    write_agent(paths, '[heartbeat]\nack_token = "ALL_QUIET"\n')
    assert load_agent_config(paths, "main").heartbeat.ack_token == "ALL_QUIET"


def test_validate_all_also_reports_secret_files_others_can_read(paths: Paths) -> None:
    secret = config.write_secret(paths, "main", config.TELEGRAM_TOKEN, "t")
    secret.chmod(0o644)
    error = only_error(paths)
    assert error.file == secret
    assert f"chmod 600 {secret}" in str(error)


# -- hot keys and changes --------------------------------------------------------------


def test_hot_keys_follow_the_hot_column_of_the_reference() -> None:
    hot = config.HOT_KEYS
    assert hot <= set(config.SCHEMA_KEYS)
    for key in (
        "model",
        "provider",
        "reasoning_effort",
        "permission_mode",
        "user_timezone",
        "language",
        "project_roots",
        "telegram.allowed_user_ids",
        "telegram.allowed_group_ids",
        "telegram.group_mention_only",
        "streaming.edit_interval_seconds",
        "heartbeat.group_targets",
        "cleanup.check_hour",
        "cli_parameters.codex",
        "scene.technical_footer",
        "image.quality",
        "timeouts.oneshot",
    ):
        assert key in hot, key
    for key in (
        "log_level",
        "transports",
        "append_system_prompt_files",
        "telegram.allowed_channel_ids",
        "telegram.api_base_url",
        "matrix.homeserver",
        "timeouts.normal",
        "webhooks.port",
        "tasks.max_parallel",
        "memory.flush.enabled",
        "limits.memory_max",
    ):
        assert key not in hot, key


def test_is_hot_ignores_array_indexes() -> None:
    assert config.is_hot("heartbeat.group_targets[2].chat_id")
    assert not config.is_hot("notifications.startup_targets[0].chat_id")


def test_changed_keys_tell_which_changes_need_a_restart(paths: Paths) -> None:
    old = load_agent_config(paths, "main")
    write_agent(paths, 'model = "sonnet"\nlog_level = "DEBUG"\n[streaming]\nenabled = false\n')
    new = load_agent_config(paths, "main")
    assert config.changed_keys(old, new) == ["model", "log_level", "streaming.enabled"]
    assert config.restart_needed(old, new) == ["log_level"]
    assert config.get_value(new, "streaming.enabled") is False


# -- the shipped examples --------------------------------------------------------------

_COMMENTED_SETTING = re.compile(r'^# ((?:[a-z_]+|"[^"]*") = .*|\[\[?[a-z_.]+\]\]?)$')


def uncommented(text: str) -> str:
    """The example with its commented-out settings switched on."""
    return "\n".join(
        m.group(1) if (m := _COMMENTED_SETTING.match(line)) else line for line in text.splitlines()
    )


def every_key(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            keys += every_key(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def test_loading_the_example_gives_exactly_the_defaults() -> None:
    assert config.load_files([EXAMPLE]) == AgentConfig()


def test_the_example_shows_every_key_of_the_schema() -> None:
    doc = scan(uncommented(EXAMPLE.read_text(encoding="utf-8")))
    shown = {".".join(str(p) for p in path if isinstance(p, str)) for path in doc.entries}
    shown |= {".".join(str(p) for p in path if isinstance(p, str)) for path in doc.tables}
    missing = [key for key in config.SCHEMA_KEYS if key not in shown]
    item_keys = [f"heartbeat.group_targets.{key}" for key in every_key(HeartbeatTarget)]
    item_keys += [f"notifications.startup_targets.{key}" for key in every_key(config.ChatTarget)]
    item_keys += [f"notifications.upgrade_targets.{key}" for key in every_key(config.ChatTarget)]
    missing += [key for key in item_keys if key not in shown]
    assert missing == []


def test_the_example_with_its_commented_settings_switched_on_is_valid(tmp_path: Path) -> None:
    file = tmp_path / "ductor.toml"
    file.write_text(uncommented(EXAMPLE.read_text(encoding="utf-8")), encoding="utf-8")
    cfg = config.load_files([file])
    assert cfg.heartbeat.group_targets[0].chat_id == -1001234567890
    assert cfg.notifications.upgrade_targets[0].transport == "matrix"
    assert cfg.project_roots["my-project"] == "~/src/my-project"


def test_every_key_in_the_example_has_a_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    doc = scan(text)
    for entry in doc.entries.values():
        if not entry.statement:
            continue
        index = doc.line_at(entry.start) - 1
        above = lines[index - 1].lstrip() if index else ""
        assert above.startswith("#") or "#" in lines[index], lines[index]


def test_the_agent_example_is_valid_on_top_of_the_global_example() -> None:
    cfg = config.load_files([EXAMPLE, AGENT_EXAMPLE])
    assert cfg.model == "sonnet"
    assert cfg.heartbeat.group_targets[0].topic_id == 42
    assert cfg.heartbeat.cooldown_minutes == 5  # from the global file


def test_the_docs_describe_every_key() -> None:
    docs = (REPO / "docs" / "config.md").read_text(encoding="utf-8")

    def documented(key: str) -> bool:
        parts = key.split(".")
        return any(f"`{'.'.join(parts[i:])}`" in docs for i in range(len(parts)))

    assert [key for key in config.SCHEMA_KEYS if not documented(key)] == []

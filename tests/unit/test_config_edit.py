"""Editing config files: one key changes, every other byte (comments, blank lines) stays."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from ductor import config
from ductor.config import ChatTarget, remove_value, set_value, set_values, value_from_text
from ductor.errors import ConfigError

ORIGINAL = """\
# My ductor settings
# (written by hand)

provider = "claude"   # the CLI
model = "opus"

# How answers stream
[streaming]
enabled = true   # on/off
  # throttle edits: Telegram limits them
  edit_interval_seconds = 2.0 # seconds

# Heartbeat: keep it quiet at night
[heartbeat]
enabled = false

[[heartbeat.group_targets]]
chat_id = -1001 # team group

# tail comment
"""


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "ductor.toml"
    path.write_text(ORIGINAL, encoding="utf-8")
    return path


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_changing_a_value_keeps_its_comment_and_every_other_byte(file: Path) -> None:
    set_value(file, "streaming.edit_interval_seconds", 3.5)
    assert text_of(file) == ORIGINAL.replace(
        "edit_interval_seconds = 2.0 # seconds", "edit_interval_seconds = 3.5 # seconds"
    )


def test_changing_a_top_level_value_keeps_every_other_byte(file: Path) -> None:
    set_value(file, "model", "sonnet")
    assert text_of(file) == ORIGINAL.replace('model = "opus"', 'model = "sonnet"')


def test_a_new_key_goes_after_the_last_key_of_its_table_with_its_indent(file: Path) -> None:
    set_value(file, "streaming.min_chars", 100)
    assert text_of(file) == ORIGINAL.replace(
        "edit_interval_seconds = 2.0 # seconds\n",
        "edit_interval_seconds = 2.0 # seconds\n  min_chars = 100\n",
    )


def test_a_new_key_does_not_slip_under_the_comment_of_the_next_table(file: Path) -> None:
    set_value(file, "heartbeat.interval_minutes", 60)
    assert text_of(file) == ORIGINAL.replace(
        "enabled = false\n", "enabled = false\ninterval_minutes = 60\n"
    )


def test_a_new_top_level_key_goes_after_the_other_top_level_keys(file: Path) -> None:
    set_value(file, "language", "de")
    assert text_of(file) == ORIGINAL.replace(
        'model = "opus"\n', 'model = "opus"\nlanguage = "de"\n'
    )


def test_a_new_top_level_key_in_a_file_of_tables_goes_above_the_first_tables_comment(
    tmp_path: Path,
) -> None:
    file = tmp_path / "a.toml"
    file.write_text("# agent\n\n# streaming\n[streaming]\nenabled = false\n", encoding="utf-8")
    set_value(file, "model", "sonnet")
    assert (
        text_of(file)
        == '# agent\n\nmodel = "sonnet"\n\n# streaming\n[streaming]\nenabled = false\n'
    )


def test_a_key_of_a_missing_table_adds_the_table_at_the_end(file: Path) -> None:
    set_value(file, "telegram.allowed_user_ids", [1, 2])
    assert text_of(file) == ORIGINAL + "\n[telegram]\nallowed_user_ids = [1, 2]\n"


def test_a_key_of_a_missing_sub_table_adds_the_sub_table(file: Path) -> None:
    set_value(file, "memory.compaction.trigger_lines", 90)
    assert text_of(file) == ORIGINAL + "\n[memory.compaction]\ntrigger_lines = 90\n"


def test_a_key_of_a_table_known_only_from_its_sub_table_gets_its_own_header(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text("x = 1\n\n# which CLIs\n[skills.sync]\nclaude = false\n", encoding="utf-8")
    set_value(file, "skills.sync_enabled", False)
    assert text_of(file) == (
        "x = 1\n\n[skills]\nsync_enabled = false\n\n# which CLIs\n[skills.sync]\nclaude = false\n"
    )


def test_a_table_written_with_dotted_keys_gets_another_dotted_key(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text("streaming.enabled = false  # c\nmodel = 'x'\n\n[scene]\n", encoding="utf-8")
    set_value(file, "streaming.min_chars", 10)
    assert text_of(file) == (
        "streaming.enabled = false  # c\nstreaming.min_chars = 10\nmodel = 'x'\n\n[scene]\n"
    )


def test_an_inline_table_gets_the_new_key_inside_its_braces(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text('matrix = { homeserver = "https://m.org" }  # mine\n', encoding="utf-8")
    set_value(file, "matrix.device_id", "DEV")
    assert text_of(file) == 'matrix = { homeserver = "https://m.org", device_id = "DEV" }  # mine\n'
    set_value(file, "matrix.homeserver", "https://example.org")
    assert 'homeserver = "https://example.org", device_id' in text_of(file)


def test_an_array_of_tables_is_replaced_where_it_was(file: Path) -> None:
    set_value(
        file, "heartbeat.group_targets", [{"chat_id": -5, "topic_id": 3}, ChatTarget(chat_id=-6)]
    )
    assert text_of(file) == ORIGINAL.replace(
        "[[heartbeat.group_targets]]\nchat_id = -1001 # team group\n",
        "[[heartbeat.group_targets]]\nchat_id = -5\ntopic_id = 3\n\n"
        "[[heartbeat.group_targets]]\nchat_id = -6\n",
    )
    targets = config.load_files([file]).heartbeat.group_targets
    assert [(t.chat_id, t.topic_id) for t in targets] == [(-5, 3), (-6, 0)]


def test_an_empty_array_of_tables_is_written_as_an_empty_array(file: Path) -> None:
    set_value(file, "heartbeat.group_targets", [])
    assert "group_targets = []" in text_of(file)
    assert "[[heartbeat.group_targets]]" not in text_of(file)
    assert config.load_files([file]).heartbeat.group_targets == ()


def test_a_project_root_with_a_quoted_topic_name_can_be_set(file: Path) -> None:
    set_value(file, 'project_roots."my topic"', "~/src/x")
    set_value(file, ["project_roots", "-100:7"], "/srv/y")
    roots = config.load_files([file]).project_roots
    assert dict(roots) == {"my topic": "~/src/x", "-100:7": "/srv/y"}


def test_set_values_applies_several_edits_in_one_write(file: Path) -> None:
    before = file.stat().st_ino
    set_values(file, [("model", "sonnet"), ("streaming.enabled", False), ("max_turns", 5)])
    cfg = config.load_files([file])
    assert (cfg.model, cfg.streaming.enabled, cfg.max_turns) == ("sonnet", False, 5)
    assert file.stat().st_ino != before  # replaced by rename, not rewritten in place
    assert sorted(os.listdir(file.parent)) == ["ductor.toml"]  # no temp file left


def test_a_missing_file_and_directory_are_created(tmp_path: Path) -> None:
    file = tmp_path / "config" / "agents" / "main.toml"
    set_value(file, "telegram.allowed_user_ids", [42])
    set_value(file, "provider", "gemini")
    assert text_of(file) == 'provider = "gemini"\n\n[telegram]\nallowed_user_ids = [42]\n'
    assert stat.S_IMODE(file.stat().st_mode) == 0o644


def test_an_edit_keeps_the_file_mode(file: Path) -> None:
    file.chmod(0o600)
    set_value(file, "model", "sonnet")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_an_edit_through_a_symlink_changes_the_target_and_keeps_the_link(
    tmp_path: Path, file: Path
) -> None:
    link = tmp_path / "link.toml"
    link.symlink_to(file)
    set_value(link, "model", "sonnet")
    assert link.is_symlink()
    assert 'model = "sonnet"' in text_of(file)


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_bytes(b'model = "opus"\r\n\r\n[streaming]\r\nenabled = true\r\n')
    set_value(file, "streaming.min_chars", 9)
    set_value(file, "language", "fr")
    assert file.read_bytes() == (
        b'model = "opus"\r\nlanguage = "fr"\r\n\r\n'
        b"[streaming]\r\nenabled = true\r\nmin_chars = 9\r\n"
    )


def test_strings_are_escaped_as_toml_requires(file: Path) -> None:
    weird = 'say "hi"\\ \n\t\x7f ünï 😀'
    set_value(file, "heartbeat.prompt", weird)
    assert tomllib.loads(text_of(file))["heartbeat"]["prompt"] == weird


# -- refused edits leave the file alone -------------------------------------------------


def test_a_value_of_the_wrong_type_is_refused_and_the_file_left_alone(file: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        set_value(file, "streaming.edit_interval_seconds", "fast")
    assert str(caught.value) == (
        f'{file}: streaming.edit_interval_seconds: expected a number, got string "fast"'
    )
    assert text_of(file) == ORIGINAL


def test_a_value_out_of_range_is_refused(file: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"heartbeat\.quiet_start: expected an integer from 0 to 23, got 24"
    ):
        set_value(file, "heartbeat.quiet_start", 24)
    assert text_of(file) == ORIGINAL


def test_an_unknown_key_is_refused_with_a_suggestion(file: Path) -> None:
    with pytest.raises(ConfigError, match=r'did you mean "streaming\.min_chars"'):
        set_value(file, "streaming.min_char", 5)
    assert text_of(file) == ORIGINAL


def test_a_table_cannot_be_set_as_a_whole(file: Path) -> None:
    with pytest.raises(ConfigError, match="set its keys one by one"):
        set_value(file, "streaming", {"enabled": False})


def test_a_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    file = tmp_path / "config" / "agents" / "main.toml"
    with pytest.raises(ConfigError) as caught:
        set_value(file, "telegram.token", "123:very-secret-value")
    message = str(caught.value)
    assert "very-secret-value" not in message
    assert f"chmod 600 {tmp_path / 'config' / 'credentials' / 'main' / 'telegram-token'}" in message
    assert not file.exists()


def test_an_edit_that_breaks_a_rule_across_keys_is_refused(file: Path) -> None:
    set_value(file, "memory.compaction.trigger_lines", 50)
    with pytest.raises(
        ConfigError, match=r"target_lines: expected at most .*trigger_lines \(50\), got 60"
    ):
        set_value(file, "memory.compaction.target_lines", 60)
    assert "target_lines" not in text_of(file)


def test_rules_across_keys_see_the_files_underneath(tmp_path: Path, file: Path) -> None:
    agent = tmp_path / "agents" / "main.toml"
    set_value(file, "memory.compaction.trigger_lines", 200)
    with pytest.raises(ConfigError):
        set_value(agent, "memory.compaction.target_lines", 150)
    set_value(agent, "memory.compaction.target_lines", 150, under=[file])
    assert config.load_files([file, agent]).memory.compaction.target_lines == 150


def test_an_old_problem_elsewhere_in_the_file_does_not_block_an_edit(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text("max_turns = -1\nbogus = 1\n", encoding="utf-8")
    set_value(file, "model", "sonnet")
    assert text_of(file) == 'max_turns = -1\nbogus = 1\nmodel = "sonnet"\n'


def test_a_file_with_a_toml_syntax_error_is_not_edited(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text("model = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"a\.toml:1: model: invalid TOML"):
        set_value(file, "provider", "codex")
    assert text_of(file) == "model = \n"


# -- removing --------------------------------------------------------------------------


def test_removing_a_key_takes_its_line_and_keeps_the_rest(file: Path) -> None:
    assert remove_value(file, "streaming.enabled") is True
    assert text_of(file) == ORIGINAL.replace("enabled = true   # on/off\n", "")


def test_removing_an_absent_key_changes_nothing(file: Path) -> None:
    before = file.stat().st_mtime_ns
    assert remove_value(file, "scene.seen_reaction") is False
    assert remove_value(file, "scene") is False
    assert file.stat().st_mtime_ns == before
    assert remove_value(file.parent / "missing.toml", "model") is False


def test_removing_a_table_removes_its_header_and_keys_but_not_the_next_tables_comment(
    file: Path,
) -> None:
    remove_value(file, "streaming")
    assert text_of(file) == ORIGINAL.replace(
        "[streaming]\nenabled = true   # on/off\n  # throttle edits: Telegram limits them\n"
        "  edit_interval_seconds = 2.0 # seconds\n\n",
        "",
    )


def test_removing_an_array_of_tables_removes_every_element(file: Path) -> None:
    set_value(file, "heartbeat.group_targets", [{"chat_id": 1}, {"chat_id": 2}])
    remove_value(file, "heartbeat.group_targets")
    assert "group_targets" not in text_of(file)
    assert text_of(file).endswith("[heartbeat]\nenabled = false\n\n# tail comment\n")


def test_a_secret_someone_pasted_into_a_file_can_be_removed(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text(
        'model = "x"\n[telegram]\ntoken = "123:abc"\nallowed_user_ids = [1]\n', encoding="utf-8"
    )
    remove_value(file, "telegram.token")
    assert text_of(file) == 'model = "x"\n[telegram]\nallowed_user_ids = [1]\n'


def test_removing_a_key_of_an_inline_table_keeps_the_others(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text(
        'matrix = {homeserver = "https://m.org", device_id = "D", user_id = ""}\n', encoding="utf-8"
    )
    remove_value(file, "matrix.device_id")
    assert text_of(file) == 'matrix = {homeserver = "https://m.org", user_id = ""}\n'
    remove_value(file, "matrix.homeserver")
    assert text_of(file) == 'matrix = {user_id = ""}\n'


def test_removing_a_top_level_key_does_not_leave_a_double_blank_line(tmp_path: Path) -> None:
    file = tmp_path / "a.toml"
    file.write_text('# head\n\nmodel = "x"\n\n[scene]\n', encoding="utf-8")
    remove_value(file, "model")
    assert text_of(file) == "# head\n\n[scene]\n"


# -- values typed on a command line ------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("streaming.enabled", "off", False),
        ("max_turns", "12", 12),
        ("max_budget_usd", "2.5", 2.5),
        ("model", " sonnet", " sonnet"),
        ("transports", "telegram, matrix", ["telegram", "matrix"]),
        ("telegram.allowed_user_ids", "[1, 2]", [1, 2]),
        ("cli_parameters.claude", "", []),
    ],
)
def test_values_typed_on_a_command_line_get_the_type_of_their_key(
    key: str, text: str, value: object
) -> None:
    assert value_from_text(key, text) == value


def test_a_command_line_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ConfigError, match='max_turns: expected an integer, got string "many"'):
        value_from_text("max_turns", "many")

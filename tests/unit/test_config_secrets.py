"""Secrets: per-agent files (0600, ours) or systemd credentials; never shown in errors."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from ductor.config import (
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
from ductor.errors import ConfigError, UsageError
from ductor.paths import Mode, Paths

TOKEN = "123456789:AAHk-secret-token-value"


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


def put(file: Path, data: str, mode: int = 0o600) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(data, encoding="utf-8")
    file.chmod(mode)
    return file


def test_secret_names_are_the_documented_file_names() -> None:
    assert (
        TELEGRAM_TOKEN,
        MATRIX_PASSWORD,
        MATRIX_ACCESS_TOKEN,
        WEBHOOK_TOKEN,
        GEMINI_API_KEY,
    ) == (
        "telegram-token",
        "matrix-password",
        "matrix-access-token",
        "webhook-token",
        "gemini-api-key",
    )
    assert len(set(KNOWN_SECRETS)) == 5


def test_a_written_secret_reads_back_from_a_private_file_in_a_private_directory(
    paths: Paths,
) -> None:
    file = write_secret(paths, "main", TELEGRAM_TOKEN, TOKEN)
    assert (
        file
        == paths.agent_credentials("main") / "telegram-token"
        == secret_path(paths, "main", TELEGRAM_TOKEN)
    )
    assert read_secret(paths, "main", TELEGRAM_TOKEN) == TOKEN
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(file.parent.parent.stat().st_mode) == 0o700
    assert file.read_text(encoding="utf-8") == TOKEN + "\n"


def test_writing_again_replaces_the_secret_atomically(paths: Paths) -> None:
    write_secret(paths, "main", WEBHOOK_TOKEN, "old")
    write_secret(paths, "main", WEBHOOK_TOKEN, "new")
    assert read_secret(paths, "main", WEBHOOK_TOKEN) == "new"
    assert [p.name for p in paths.agent_credentials("main").iterdir()] == ["webhook-token"]


def test_write_makes_an_existing_open_directory_private(paths: Paths) -> None:
    directory = paths.agent_credentials("main")
    directory.mkdir(parents=True, mode=0o755)
    directory.chmod(0o755)
    write_secret(paths, "main", TELEGRAM_TOKEN, TOKEN)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_secret_that_ends_in_a_newline_survives_the_round_trip(paths: Paths) -> None:
    write_secret(paths, "main", MATRIX_PASSWORD, "pass\n")
    assert read_secret(paths, "main", MATRIX_PASSWORD) == "pass\n"


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("tok\n", "tok"),
        ("tok", "tok"),
        ("tok\r\n", "tok"),
        ("tok\n\n", "tok\n"),
        (" tok \n", " tok "),
    ],
)
def test_exactly_one_trailing_newline_is_stripped(paths: Paths, content: str, value: str) -> None:
    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, content)
    assert read_secret(paths, "main", TELEGRAM_TOKEN) == value


def test_a_missing_or_empty_secret_is_none(paths: Paths) -> None:
    assert read_secret(paths, "main", TELEGRAM_TOKEN) is None
    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, "\n")
    assert read_secret(paths, "main", TELEGRAM_TOKEN) is None


def test_systemd_credentials_win_and_need_no_mode_check(paths: Paths, tmp_path: Path) -> None:
    credentials = tmp_path / "run-credentials"
    put(credentials / TELEGRAM_TOKEN, "from-systemd\n", mode=0o444)
    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, "from-file\n")
    unit = dataclasses.replace(paths, credentials_dir=credentials)
    assert read_secret(unit, "main", TELEGRAM_TOKEN) == "from-systemd"


def test_without_a_systemd_credential_the_agents_file_is_used(paths: Paths, tmp_path: Path) -> None:
    credentials = tmp_path / "run-credentials"
    credentials.mkdir()
    put(paths.agent_credentials("main") / GEMINI_API_KEY, "from-file\n")
    unit = dataclasses.replace(paths, credentials_dir=credentials)
    assert read_secret(unit, "main", GEMINI_API_KEY) == "from-file"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_others_can_read_is_refused_with_the_chmod_that_fixes_it(
    paths: Paths, mode: int
) -> None:
    file = put(paths.agent_credentials("main") / TELEGRAM_TOKEN, TOKEN + "\n", mode=mode)
    with pytest.raises(ConfigError) as caught:
        read_secret(paths, "main", TELEGRAM_TOKEN)
    message = str(caught.value)
    assert caught.value.file == file
    assert message.startswith(f"{file}: mode {mode:04o} lets other users read this secret")
    assert f"run `chmod 600 {file}`" in message
    assert TOKEN not in message


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_a_secret_only_its_owner_can_read_is_accepted(paths: Paths, mode: int) -> None:
    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, TOKEN, mode=mode)
    assert read_secret(paths, "main", TELEGRAM_TOKEN) == TOKEN


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_secret_owned_by_someone_else_is_refused(paths: Paths) -> None:
    file = put(paths.agent_credentials("main") / TELEGRAM_TOKEN, TOKEN)
    os.chown(file, 65534, 65534)
    with pytest.raises(ConfigError) as caught:
        read_secret(paths, "main", TELEGRAM_TOKEN)
    message = str(caught.value)
    assert "owned by uid 65534" in message
    assert f"chmod 600 {file}" in message
    assert "chown " in message
    assert TOKEN not in message


def test_a_directory_where_a_secret_should_be_is_refused(paths: Paths, tmp_path: Path) -> None:
    (paths.agent_credentials("main") / TELEGRAM_TOKEN).mkdir(parents=True)
    with pytest.raises(ConfigError, match="telegram-token: a secret must be a regular file"):
        read_secret(paths, "main", TELEGRAM_TOKEN)
    (tmp_path / "creds" / WEBHOOK_TOKEN).mkdir(parents=True)
    unit = dataclasses.replace(paths, credentials_dir=tmp_path / "creds")
    with pytest.raises(ConfigError, match="webhook-token: a secret must be a regular file"):
        read_secret(unit, "main", WEBHOOK_TOKEN)


def test_a_fifo_where_a_secret_should_be_is_refused_without_hanging(paths: Paths) -> None:
    fifo = paths.agent_credentials("main") / TELEGRAM_TOKEN
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="a secret must be a regular file"):
        read_secret(paths, "main", TELEGRAM_TOKEN)


def test_a_secret_that_is_not_utf8_is_refused_without_its_bytes(paths: Paths) -> None:
    file = paths.agent_credentials("main") / TELEGRAM_TOKEN
    file.parent.mkdir(parents=True)
    file.write_bytes(b"\xffsecret\xfe")
    file.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        read_secret(paths, "main", TELEGRAM_TOKEN)
    assert "secret" not in str(caught.value).replace("a secret file", "").replace(str(file), "")


@pytest.mark.parametrize("name", ["../config", "a/b", "", ".hidden", "UPPER"])
def test_a_secret_name_that_could_escape_the_directory_is_refused(paths: Paths, name: str) -> None:
    with pytest.raises(UsageError, match="invalid secret name"):
        read_secret(paths, "main", name)
    with pytest.raises(UsageError):
        write_secret(paths, "main", name, "x")


def test_an_empty_secret_is_not_written(paths: Paths) -> None:
    with pytest.raises(UsageError, match="empty secret"):
        write_secret(paths, "main", TELEGRAM_TOKEN, "  \n")
    assert not paths.agent_credentials("main").exists()


def test_remove_secret_deletes_the_file(paths: Paths) -> None:
    write_secret(paths, "main", TELEGRAM_TOKEN, TOKEN)
    assert remove_secret(paths, "main", TELEGRAM_TOKEN) is True
    assert read_secret(paths, "main", TELEGRAM_TOKEN) is None
    assert remove_secret(paths, "main", TELEGRAM_TOKEN) is False


@pytest.mark.parametrize("content", [f"{TOKEN}\n\n", f"{TOKEN} \n", f"\t{TOKEN}\r\n"])
def test_a_used_secret_is_stripped_and_that_value_is_masked_in_logs(
    paths: Paths, content: str
) -> None:
    from ductor.config.secrets import load_secret
    from ductor.log import mask

    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, content)
    assert load_secret(paths, "main", TELEGRAM_TOKEN) == TOKEN
    assert TOKEN not in mask(f"The token `{TOKEN}` was rejected by the server.")


def test_a_blank_secret_is_not_used(paths: Paths) -> None:
    from ductor.config.secrets import load_secret

    put(paths.agent_credentials("main") / TELEGRAM_TOKEN, " \n\n")
    assert load_secret(paths, "main", TELEGRAM_TOKEN) is None

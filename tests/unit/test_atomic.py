"""ductor.atomic: a state file is either the old one or the new one, never half of each."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from ductor import atomic
from ductor.atomic import CorruptFileError


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


def test_write_bytes_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    atomic.write_bytes(target, b"new")

    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_written_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        atomic.write_text(tmp_path / "secret", "token")
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_write_bytes_honours_an_explicit_mode(tmp_path: Path) -> None:
    atomic.write_bytes(tmp_path / "shared", b"x", mode=0o644)

    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o644


def test_failed_rename_keeps_the_old_content_and_removes_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sessions.json"
    target.write_text("old")

    def refuse(self: Path, target: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_text(target, "new")

    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_failed_write_of_the_temporary_file_leaves_the_target_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cron_jobs.json"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic.write_text(target, "new")

    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_temporary_file_can_live_in_another_directory_of_the_same_filesystem(
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    atomic.write_bytes(tmp_path / "target", b"data", temp_dir=scratch)

    assert (tmp_path / "target").read_bytes() == b"data"
    assert list(scratch.iterdir()) == []


def test_write_json_keeps_unicode_readable_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"

    atomic.write_json(path, {"title": "Grüße 🚀", "ids": [1, 2]})

    text = path.read_text(encoding="utf-8")
    assert "Grüße 🚀" in text
    assert text.endswith("}\n")
    assert atomic.read_json(path) == {"title": "Grüße 🚀", "ids": [1, 2]}


def test_read_json_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "a": 1,\n  "b" 2\n}\n')

    with pytest.raises(CorruptFileError) as caught:
        atomic.read_json(path)

    message = str(caught.value)
    assert str(path) in message
    assert "line 3 column 7" in message


def test_read_json_of_binary_garbage_names_the_offending_byte(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b'{"a": "\xff"}')

    with pytest.raises(CorruptFileError, match=r"not UTF-8 text .*offset 7"):
        atomic.read_json(path)


def test_remove_stale_temp_files_keeps_fresh_ones_and_other_files(tmp_path: Path) -> None:
    stale = atomic.write_temp_file(tmp_path, b"crashed writer", name="state.json")
    fresh = atomic.write_temp_file(tmp_path, b"writer at work", name="state.json")
    unrelated = tmp_path / "state.json"
    unrelated.write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(unrelated, (an_hour_ago, an_hour_ago))

    removed = atomic.remove_stale_temp_files(tmp_path, older_than=60)

    assert removed == [stale]
    assert fresh.exists()
    assert unrelated.exists()


def test_make_directories_creates_missing_parents_with_the_given_mode(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "c"

    atomic.make_directories(leaf, mode=0o700)
    atomic.make_directories(leaf, mode=0o700)  # a second time is fine

    for directory in (tmp_path / "a", tmp_path / "a" / "b", leaf):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

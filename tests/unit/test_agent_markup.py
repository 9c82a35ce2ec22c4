from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ductor.agent import markup
from ductor.agent.markup import FileRefused
from ductor.errors import DuctorError
from ductor.paths import Mode, Paths

# --- buttons -------------------------------------------------------------------------


def test_markers_on_one_line_form_a_row_and_each_line_a_new_row() -> None:
    text, rows = markup.extract_buttons(
        "Deploy now?\n[button:Deploy] [button:Wait]\n[button:Show the diff]"
    )
    assert text == "Deploy now?"
    assert rows == [["Deploy", "Wait"], ["Show the diff"]]


def test_markers_inside_a_sentence_leave_the_sentence_readable() -> None:
    text, rows = markup.extract_buttons("Pick one: [button:Yes] or [button:No] please")
    assert text == "Pick one: or please"
    assert rows == [["Yes", "No"]]


def test_markers_in_code_blocks_and_inline_code_stay_as_they_are() -> None:
    source = (
        "Write it like this:\n"
        "```\n"
        "[button:Example]\n"
        "```\n"
        "or inline `[button:Inline]`, then\n"
        "[button:Got it]"
    )
    text, rows = markup.extract_buttons(source)
    assert rows == [["Got it"]]
    assert text == source.removesuffix("\n[button:Got it]")


def test_an_unclosed_fence_protects_the_rest_of_the_text() -> None:
    source = "```python\nprint('[button:No]')\n"
    assert markup.extract_buttons(source) == (source, [])


def test_text_without_markers_is_returned_untouched() -> None:
    source = "  indented\n\n\ntrailing spaces   \n"
    assert markup.extract_buttons(source) == (source, [])


def test_removed_button_lines_leave_no_doubled_blank_lines_or_trailing_noise() -> None:
    text, rows = markup.extract_buttons("Intro\n\n[button:A]\n\nMore text\n\n[button:B]\n")
    assert text == "Intro\n\nMore text"
    assert rows == [["A"], ["B"]]


def test_empty_labels_are_dropped() -> None:
    text, rows = markup.extract_buttons("Hi [button: ] [button:  Ok  ]")
    assert (text, rows) == ("Hi", [["Ok"]])


def test_button_data_keeps_short_labels_and_cuts_long_ones_on_a_character() -> None:
    assert markup.button_data("Yes") == "Yes"
    label = "a" * 63 + "ä"  # the umlaut is two bytes: it does not fit any more
    assert markup.button_data(label) == "a" * 63
    data = markup.button_data("🙂" * 20)
    assert data == "🙂" * 16
    assert len(data.encode()) <= 64


# --- file tags -----------------------------------------------------------------------


def test_file_tags_are_collected_and_removed() -> None:
    text, files = markup.extract_files(
        "Here is the report: <file:/srv/out/report.pdf>\n<file:/srv/out/chart.png>\nBye"
    )
    assert text == "Here is the report:\nBye"
    assert files == ["/srv/out/report.pdf", "/srv/out/chart.png"]


def test_file_tags_in_code_are_not_sent_and_duplicates_are_sent_once() -> None:
    text, files = markup.extract_files(
        "Use `<file:/x>` like so.\n```\n<file:/y>\n```\n<file:/z> and <file:/z>"
    )
    assert files == ["/z"]
    assert "`<file:/x>`" in text and "<file:/y>" in text


def test_file_uris_become_paths() -> None:
    _, files = markup.extract_files("<file:file:///tmp/a%20b.txt>")
    assert files == ["/tmp/a b.txt"]


def test_strip_markup_removes_both_kinds() -> None:
    assert markup.strip_markup("Done <file:/tmp/x.txt>\n[button:Thanks]") == "Done"


# --- checking files ------------------------------------------------------------------


def paths_in(home: Path, *, credentials_dir: Path | None = None) -> Paths:
    """ductor's directories as a user install has them, under ``home``."""
    return Paths(
        mode=Mode.USER,
        config_dir=home / ".config" / "ductor",
        state_dir=home / ".local" / "state" / "ductor",
        runtime_dir=home / "run" / "ductor",
        cache_dir=home / ".cache" / "ductor",
        data_dir=home / ".local" / "share" / "ductor",
        credentials_dir=credentials_dir,
    )


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    workspace = paths_in(home).workspace("main")
    workspace.mkdir(parents=True)
    return home, workspace


def check(path: Path | str, roots: tuple[Path, Path], access: str, **paths: Path) -> Path:
    home, workspace = roots
    return markup.check_file(
        str(path),
        paths=paths_in(home, **paths),
        workspace=workspace,
        home=home,
        file_access=access,
    )


def refusal(path: Path | str, roots: tuple[Path, Path], access: str, **paths: Path) -> str:
    with pytest.raises(FileRefused) as caught:
        check(path, roots, access, **paths)
    assert isinstance(caught.value, DuctorError)
    return caught.value.reason


def test_a_file_in_the_workspace_is_allowed_in_every_mode(roots: tuple[Path, Path]) -> None:
    file = roots[1] / "output_to_user" / "a.txt"
    file.parent.mkdir()
    file.write_text("hi")
    for access in ("all", "home", "workspace"):
        assert check(file, roots, access) == file.resolve()


def test_roots_are_enforced_per_mode(roots: tuple[Path, Path], tmp_path: Path) -> None:
    in_home = roots[0] / "notes.txt"
    in_home.write_text("x")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    assert check(in_home, roots, "home") == in_home.resolve()
    assert refusal(in_home, roots, "workspace") == "outside the workspace"
    assert refusal(outside, roots, "home") == "outside the home directory"
    assert check(outside, roots, "all") == outside.resolve()
    assert refusal(outside, roots, "something else") == "outside the workspace"


def test_symlinks_are_followed_before_the_root_check(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    link = roots[1] / "innocent.txt"
    link.symlink_to(outside)
    assert refusal(link, roots, "workspace") == "outside the workspace"
    assert refusal(f"{roots[1]}/../../../secret.txt", roots, "workspace") == (
        "outside the workspace"
    )


def test_a_relative_path_is_taken_from_the_workspace(roots: tuple[Path, Path]) -> None:
    file = roots[1] / "output_to_user" / "a.txt"
    file.parent.mkdir()
    file.write_text("hi")
    assert check("output_to_user/a.txt", roots, "workspace") == file.resolve()
    assert refusal("../../elsewhere.txt", roots, "workspace")  # never out of it


def test_bad_paths_are_refused_with_a_reason(roots: tuple[Path, Path]) -> None:
    assert refusal("output_to_user/a.txt", roots, "all") == "no such file"
    assert refusal(roots[1] / "missing.txt", roots, "all") == "no such file"
    assert refusal(roots[1], roots, "all") == "not a regular file"
    assert "control characters" in refusal(f"{roots[1]}/a\nb", roots, "all")


def test_files_over_50_mb_are_refused(roots: tuple[Path, Path]) -> None:
    big = roots[1] / "big.bin"
    with open(big, "wb") as stream:
        stream.truncate(markup.MAX_FILE_BYTES + 1)
    assert refusal(big, roots, "all") == "larger than 50 MB"
    with open(big, "wb") as stream:
        stream.truncate(markup.MAX_FILE_BYTES)
    assert check(big, roots, "all") == big.resolve()


def test_unreadable_files_are_refused(roots: tuple[Path, Path]) -> None:
    if os.geteuid() != 0:
        file = roots[1] / "private.txt"
        file.write_text("x")
        file.chmod(0)
        assert refusal(file, roots, "all") == "not readable"
        return
    # Root reads every file: check as another user, in a folder that user may enter.
    folder = Path(tempfile.mkdtemp(prefix="ductor-markup-"))
    try:
        folder.chmod(0o755)
        file = folder / "private.txt"
        file.write_text("x")
        file.chmod(0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(65534)
                os.setuid(65534)
                answer = refusal(file, (folder, folder), "all")
                os.write(write_end, answer.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        answer = os.read(read_end, 1000).decode()
        os.close(read_end)
    finally:
        shutil.rmtree(folder)
    assert answer == "not readable"


def test_the_refusal_message_names_the_path(roots: tuple[Path, Path]) -> None:
    with pytest.raises(FileRefused, match=r"missing\.txt: no such file"):
        check(roots[1] / "missing.txt", roots, "all")


# --- what never leaves, whatever file_access says --------------------------------------


def secret_file(roots: tuple[Path, Path], name: str = "telegram-token") -> Path:
    """A token where ductor keeps it: CONFIG/credentials/main/NAME."""
    file = paths_in(roots[0]).agent_credentials("main") / name
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("123456:SECRET\n")
    file.chmod(0o600)
    return file


@pytest.mark.parametrize("access", ["all", "home", "workspace"])
def test_the_token_and_the_dotenv_are_never_sent(roots: tuple[Path, Path], access: str) -> None:
    for name in ("telegram-token", ".env"):
        assert refusal(secret_file(roots, name), roots, access) == (
            "ductor's credentials are never sent"
        )


@pytest.mark.parametrize("access", ["all", "home", "workspace"])
def test_a_symlink_in_the_workspace_to_the_token_is_refused(
    roots: tuple[Path, Path], access: str
) -> None:
    link = roots[1] / "output_to_user" / "report.txt"
    link.parent.mkdir()
    link.symlink_to(secret_file(roots))
    assert refusal(link, roots, access) == "ductor's credentials are never sent"


def test_dot_dot_out_of_the_workspace_into_the_credentials_is_refused(
    roots: tuple[Path, Path],
) -> None:
    secret_file(roots)
    sneaky = f"{roots[1]}/../../../../../.config/ductor/credentials/main/telegram-token"
    assert Path(sneaky).resolve() == secret_file(roots).resolve()
    assert refusal(sneaky, roots, "all") == "ductor's credentials are never sent"


def test_a_hard_link_to_the_token_in_the_workspace_is_refused(roots: tuple[Path, Path]) -> None:
    link = roots[1] / "innocent.txt"
    os.link(secret_file(roots), link)
    assert refusal(link, roots, "workspace") == "ductor's credentials are never sent"


def test_the_units_credentials_directory_is_never_sent(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    loaded = tmp_path / "run-credentials"
    loaded.mkdir()
    (loaded / "telegram-token").write_text("123456:SECRET\n")
    assert refusal(loaded / "telegram-token", roots, "all", credentials_dir=loaded) == (
        "ductor's credentials are never sent"
    )


@pytest.mark.parametrize("path", ["/proc/self/environ", "/proc/self/cmdline", "/sys/kernel/notes"])
def test_kernel_files_are_never_sent(roots: tuple[Path, Path], path: str) -> None:
    assert refusal(path, roots, "all") == "files under /proc, /sys and /dev are never sent"


def test_a_symlink_to_proc_environ_is_refused(roots: tuple[Path, Path]) -> None:
    link = roots[1] / "env.txt"
    link.symlink_to("/proc/self/environ")
    assert refusal(link, roots, "all") == "files under /proc, /sys and /dev are never sent"
    assert refusal("/dev/stdin", roots, "all") == "files under /proc, /sys and /dev are never sent"


def test_state_outside_the_workspace_is_never_sent(roots: tuple[Path, Path]) -> None:
    state = paths_in(roots[0]).agent_state("main")
    sessions = state / "sessions.json"
    sessions.write_text("{}")
    other_workspace = paths_in(roots[0]).workspace("research") / "notes.md"
    other_workspace.parent.mkdir(parents=True)
    other_workspace.write_text("x")
    for file in (sessions, other_workspace):
        assert refusal(file, roots, "all") == (
            "ductor's state is never sent (only files in the workspace are)"
        )
    mine = roots[1] / "output_to_user" / "chart.png"
    mine.parent.mkdir()
    mine.write_bytes(b"png")
    assert check(mine, roots, "workspace") == mine.resolve()


def test_a_fifo_in_the_workspace_is_refused_without_opening_it(roots: tuple[Path, Path]) -> None:
    fifo = roots[1] / "pipe"
    os.mkfifo(fifo)
    assert refusal(fifo, roots, "workspace") == "not a regular file"

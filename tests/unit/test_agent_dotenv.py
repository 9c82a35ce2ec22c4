from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from ductor import log as ductor_log
from ductor.agent.dotenv import (
    DotEnv,
    agent_dotenv,
    parse_dotenv,
    parse_dotenv_with_problems,
)
from ductor.paths import Mode, resolve

# --- parsing -------------------------------------------------------------------------


def test_plain_assignments_comments_and_blank_lines() -> None:
    text = "# secrets\n\nA=1\n  B = two  \nexport C=3\n"
    assert parse_dotenv(text) == {"A": "1", "B": "two", "C": "3"}


def test_inline_comments_end_unquoted_values_only_after_whitespace() -> None:
    text = "A=value # comment\nB=pa#ss\nC= # only a comment\nD=#literal\n"
    assert parse_dotenv(text) == {"A": "value", "B": "pa#ss", "C": "", "D": "#literal"}


def test_single_quotes_are_literal() -> None:
    assert parse_dotenv("A='x # y \\n z'  # note\n") == {"A": "x # y \\n z"}


def test_double_quotes_understand_escapes() -> None:
    text = 'A="line\\nnext \\"quoted\\" back\\\\slash \\q"\n'
    assert parse_dotenv(text) == {"A": 'line\nnext "quoted" back\\slash \\q'}


def test_double_quoted_values_may_span_lines() -> None:
    text = 'KEY="-----BEGIN-----\nabc\n-----END-----"\nAFTER=1\n'
    values, problems = parse_dotenv_with_problems(text)
    assert values == {"KEY": "-----BEGIN-----\nabc\n-----END-----", "AFTER": "1"}
    assert problems == []


def test_empty_values_and_last_assignment_wins() -> None:
    assert parse_dotenv("A=\nB=''\nA=again\n") == {"A": "again", "B": ""}


def test_bad_lines_are_skipped_and_reported_by_number() -> None:
    text = 'GOOD=1\nnot an assignment\n1BAD=x\nBAD-NAME=x\nexport\nOPEN="never closed\n'
    values, problems = parse_dotenv_with_problems(text)
    assert values == {"GOOD": "1"}
    assert problems == [2, 3, 4, 5, 6]


def test_text_after_a_closing_quote_is_a_problem() -> None:
    values, problems = parse_dotenv_with_problems("A='x' junk\nB=\"y\"  # fine\n")
    assert values == {"B": "y"}
    assert problems == [1]


# --- the file ------------------------------------------------------------------------


def write(file: Path, text: str, *, mode: int = 0o600, mtime_ns: int | None = None) -> None:
    file.write_text(text)
    file.chmod(mode)
    if mtime_ns is not None:
        os.utime(file, ns=(mtime_ns, mtime_ns))


def test_missing_file_means_no_secrets(tmp_path: Path) -> None:
    assert DotEnv(tmp_path / ".env").values() == {}


def test_values_are_read_again_after_the_file_changes(tmp_path: Path) -> None:
    file = tmp_path / ".env"
    write(file, "TOKEN=first-value\n", mtime_ns=1_000_000_000)
    env = DotEnv(file)
    assert env.values() == {"TOKEN": "first-value"}
    # Same size, new content and time: an editor saving in place.
    write(file, "TOKEN=other-value\n", mtime_ns=2_000_000_000)
    assert env.values() == {"TOKEN": "other-value"}
    file.unlink()
    assert env.values() == {}


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    file = tmp_path / ".env"
    write(file, "A=1\n", mtime_ns=1_000_000_000)
    env = DotEnv(file)
    assert env.values() == {"A": "1"}
    write(file, "A=2\n", mtime_ns=1_000_000_000)  # same size and time: stat sees no change
    assert env.values() == {"A": "1"}


def test_the_caller_cannot_change_the_cached_values(tmp_path: Path) -> None:
    file = tmp_path / ".env"
    write(file, "A=1\n")
    env = DotEnv(file)
    env.values()["A"] = "changed"
    assert env.values() == {"A": "1"}


def test_a_file_others_can_read_is_refused_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / ".env"
    write(file, "API_KEY=refused-secret-value\n", mode=0o644)
    env = DotEnv(file)
    with caplog.at_level(logging.ERROR):
        assert env.values() == {}
        assert env.values() == {}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per change of the file, not once per call
    assert "chmod 600" in errors[0] and str(file) in errors[0]
    assert "refused-secret-value" not in caplog.text
    file.chmod(0o600)
    assert env.values() == {"API_KEY": "refused-secret-value"}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_file_owned_by_someone_else_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / ".env"
    write(file, "A=1\n")
    os.chown(file, 12345, -1)
    with caplog.at_level(logging.ERROR):
        assert DotEnv(file).values() == {}
    assert "owned by uid 12345" in caplog.text


def test_bad_lines_are_logged_by_number_never_by_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / ".env"
    write(file, "GOOD=1\nthis-line-holds-a-secret-oops\n# c\nalso bad\n")
    with caplog.at_level(logging.WARNING):
        assert DotEnv(file).values() == {"GOOD": "1"}
    assert "lines 2, 4" in caplog.text and str(file) in caplog.text
    assert "secret-oops" not in caplog.text


def test_values_are_masked_in_log_output(tmp_path: Path) -> None:
    file = tmp_path / ".env"
    write(file, "OPENAI_API_KEY=sk-test-0123456789abcdef\n")
    DotEnv(file).values()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        logger = ductor_log.setup("INFO", stream=stream, journal=False)
        logger.info("calling with key sk-test-0123456789abcdef now")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "sk-test-0123456789abcdef" not in stream.getvalue()
    assert "calling with key *** now" in stream.getvalue()


def test_a_unit_reads_the_env_its_manager_loaded_even_when_root_owns_it(tmp_path: Path) -> None:
    # System mode: the manager copies root's .env into $CREDENTIALS_DIRECTORY, owned by
    # root and readable by the unit's account through an ACL (mode 0440 here).
    loaded = tmp_path / "credentials"
    loaded.mkdir()
    (loaded / "dotenv").write_text("API_KEY=from-the-manager\n")
    (loaded / "dotenv").chmod(0o440)
    if os.geteuid() == 0:
        os.chown(loaded / "dotenv", 0, 0)
    paths = resolve(
        Mode.SYSTEM,
        env={"CREDENTIALS_DIRECTORY": str(loaded)},
        config_dir=tmp_path / "etc",
        state_dir=tmp_path / "state",
    )
    assert agent_dotenv(paths, "main").values() == {"API_KEY": "from-the-manager"}


def test_without_a_loaded_credential_the_users_own_env_file_is_read(tmp_path: Path) -> None:
    paths = resolve(Mode.USER, env={"HOME": str(tmp_path)}, config_dir=tmp_path / "config")
    file = paths.agent_credentials("main") / ".env"
    file.parent.mkdir(parents=True)
    file.write_text("API_KEY=from-the-user\n")
    file.chmod(0o600)
    assert agent_dotenv(paths, "main").values() == {"API_KEY": "from-the-user"}
    file.chmod(0o640)  # the user's own file is still refused when others can read it
    assert agent_dotenv(paths, "main").values() == {}

from __future__ import annotations

import pytest

from ductor.errors import CommandError
from ductor.run import describe, run


def test_run_captures_output_and_passes_an_explicit_environment() -> None:
    result = run(["sh", "-c", 'printf "%s" "$X"'], env={"X": "value", "PATH": "/usr/bin:/bin"})
    assert result.ok
    assert result.stdout == "value"


def test_stdin_is_closed_unless_input_is_given() -> None:
    assert run(["cat"]).stdout == ""
    assert run(["cat"], input="hello").stdout == "hello"


def test_failure_raises_with_masked_argv_and_stderr() -> None:
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo token-abcdef >&2; exit 3", "token-abcdef"], secrets=["token-abcdef"])
    assert info.value.returncode == 3
    assert "token-abcdef" not in str(info.value)
    assert "***" in str(info.value)


def test_missing_command_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="command not found"):
        run(["surely-not-a-command-ductor"])
    assert run(["surely-not-a-command-ductor"], check=False).returncode == 127


def test_timeouts_are_reported() -> None:
    with pytest.raises(CommandError, match="timed out"):
        run(["sleep", "5"], timeout=0.2)


def test_describe_quotes_for_a_shell() -> None:
    assert describe(["echo", "a b"]) == "echo 'a b'"

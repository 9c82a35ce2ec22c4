"""Exceptions a person can act on, and the exit codes `main()` turns them into.

Only entry points call :func:`exit_code_for`; everything below raises.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    TEMPFAIL = 75  # EX_TEMPFAIL: try again later (systemd restarts us)
    CONFIG = 78  # EX_CONFIG: units set RestartPreventExitStatus=78


class DuctorError(Exception):
    """A failure with a message that says what went wrong and what to do."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(DuctorError):
    exit_code = ExitCode.USAGE


class TemporaryError(DuctorError):
    exit_code = ExitCode.TEMPFAIL


class ConfigError(DuctorError):
    """Bad configuration: names the file, the key, the line and what was expected."""

    exit_code = ExitCode.CONFIG

    def __init__(
        self,
        message: str,
        *,
        file: Path | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.detail}"


class CommandError(DuctorError):
    """An external command failed; carries its (masked) argv and stderr."""

    def __init__(self, message: str, *, returncode: int, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


def exit_code_for(exc: BaseException) -> ExitCode:
    return exc.exit_code if isinstance(exc, DuctorError) else ExitCode.FAILURE

"""The one subprocess helper: argv lists only, stdin closed unless asked, explicit
environment, secrets masked in logs and errors."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ductor.errors import CommandError
from ductor.log import mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def describe(argv: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """A shell-quoted rendering of argv for logs, with secrets masked."""
    return mask(shlex.join(argv), secrets)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float | None = 60,
    secrets: Iterable[str] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> Result:
    """Run ``argv`` to completion and capture its output as text.

    ``env`` replaces the environment (default: ours); ``extra_env`` is laid over it.
    Raises CommandError when ``check`` and the command fails, could not start, or
    timed out; the message masks ``secrets``.
    """
    secrets = tuple(secrets)
    merged = dict(os.environ if env is None else env)
    if extra_env:
        merged.update(extra_env)
    shown = describe(argv, secrets)
    log.debug("running %s", shown)
    try:
        proc = subprocess.run(
            list(argv),
            env=merged,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError:
        if not check:
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
        raise CommandError(f"{argv[0]}: command not found", returncode=127) from None
    except subprocess.TimeoutExpired:
        if not check:
            return Result(tuple(argv), 124, "", f"timed out after {timeout} s")
        raise CommandError(f"{shown}: timed out after {timeout} s", returncode=124) from None
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        err = mask(proc.stderr.strip(), secrets)
        raise CommandError(
            f"{shown} failed with exit code {proc.returncode}" + (f": {err}" if err else ""),
            returncode=proc.returncode,
            stderr=err,
        )
    return result

"""Secrets live in files of their own, never in config files, never in argv or logs.

``read_secret`` looks in ``$CREDENTIALS_DIRECTORY`` first (systemd ``LoadCredential=``:
systemd already made the file private to the unit, so its mode is not checked), then in
``CONFIG_DIR/credentials/AGENT/``, where every file must be owned by the reading user and
readable by nobody else (mode 0600 or stricter). One trailing newline is stripped, so
``echo TOKEN > file`` works; an empty file counts as "not set".

``load_secret`` is what a program that *uses* a secret calls: the value with the
surrounding whitespace stripped (a token or password as typed never has any, an editor
adds some), registered with :mod:`ductor.log` so that exactly the value sent is masked
in every log line, including the error of a server that refuses it.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ductor import atomic
from ductor import log as ductor_log
from ductor.errors import ConfigError, UsageError
from ductor.paths import Paths

# The names of the secret files (not secrets themselves, whatever S105 thinks).
TELEGRAM_TOKEN = "telegram-token"  # noqa: S105
MATRIX_PASSWORD = "matrix-password"  # noqa: S105
MATRIX_ACCESS_TOKEN = "matrix-access-token"  # noqa: S105
WEBHOOK_TOKEN = "webhook-token"  # noqa: S105
GEMINI_API_KEY = "gemini-api-key"
KNOWN_SECRETS = (
    TELEGRAM_TOKEN,
    MATRIX_PASSWORD,
    MATRIX_ACCESS_TOKEN,
    WEBHOOK_TOKEN,
    GEMINI_API_KEY,
)

MAX_SECRET_BYTES = 64 * 1024
_SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _checked_name(key: str) -> str:
    if not _SECRET_NAME.match(key):
        raise UsageError(
            f"invalid secret name {key!r}: use lower-case letters, digits, '.', '_' or '-'"
        )
    return key


def secret_path(paths: Paths, agent: str, key: str) -> Path:
    """The per-agent file of secret ``key`` (where ``write_secret`` puts it)."""
    return paths.agent_credentials(agent) / _checked_name(key)


def _shell_quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def permission_problem(file: Path, st: os.stat_result) -> ConfigError | None:
    """Why a secret file must not be trusted, with the command that fixes it."""
    quoted = _shell_quote(file)
    if not stat.S_ISREG(st.st_mode):
        return ConfigError("a secret must be a regular file", file=file)
    if st.st_uid != os.getuid():
        return ConfigError(
            f"this secret is owned by uid {st.st_uid}, not by {_user_name()} (uid"
            f" {os.getuid()}) who reads it: run `chown {_user_name()} {quoted}"
            f" && chmod 600 {quoted}`",
            file=file,
        )
    if st.st_mode & 0o077:
        return ConfigError(
            f"mode {stat.S_IMODE(st.st_mode):04o} lets other users read this secret:"
            f" run `chmod 600 {quoted}`",
            file=file,
        )
    return None


def _read(file: Path, *, check_permissions: bool) -> str | None:
    try:
        # O_NONBLOCK: a FIFO planted where a secret should be must not hang the reader.
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read this secret: {exc.strerror}", file=file) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("a secret must be a regular file", file=file)
        problem = permission_problem(file, st) if check_permissions else None
        if problem is not None:
            raise problem
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"a secret file must be smaller than {MAX_SECRET_BYTES} bytes", file=file)
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("a secret file must be UTF-8 text", file=file) from None
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    return value or None


def read_secret(paths: Paths, agent: str, key: str) -> str | None:
    """The secret ``key`` of ``agent``, or None where it is not set."""
    _checked_name(key)
    if paths.credentials_dir is not None:
        value = _read(paths.credentials_dir / key, check_permissions=False)
        if value is not None:
            return value
    return _read(paths.agent_credentials(agent) / key, check_permissions=True)


def load_secret(paths: Paths, agent: str, key: str) -> str | None:
    """The secret ``key`` as it is used: stripped, masked in logs from now on; None when
    it is not set or blank. The one place where a used secret is stripped and masked."""
    value = (read_secret(paths, agent, key) or "").strip()
    if not value:
        return None
    ductor_log.register_secret(value)
    return value


def write_secret(paths: Paths, agent: str, key: str, value: str) -> Path:
    """Store a secret (directory 0700, file 0600, atomic) and return its file."""
    file = secret_path(paths, agent, key)
    if not value.strip():
        raise UsageError(f"refusing to store an empty secret in {file}")
    if len(value.encode("utf-8")) >= MAX_SECRET_BYTES:
        raise UsageError(f"a secret must be smaller than {MAX_SECRET_BYTES} bytes")
    _private_directory(file.parent.parent)
    _private_directory(file.parent)
    try:
        atomic.write_bytes(file, value.encode("utf-8") + b"\n", mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write this secret: {exc.strerror or exc}", file=file) from None
    return file


def remove_secret(paths: Paths, agent: str, key: str) -> bool:
    """Delete a stored secret; False if there was none."""
    try:
        secret_path(paths, agent, key).unlink()
    except FileNotFoundError:
        return False
    return True


def check_secret_files(paths: Paths, agent: str) -> list[ConfigError]:
    """Every stored secret of ``agent`` that ``read_secret`` would refuse."""
    directory = paths.agent_credentials(agent)
    problems: list[ConfigError] = []
    try:
        files = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return problems
    except OSError as exc:
        return [ConfigError(f"cannot list the secrets: {exc.strerror}", file=directory)]
    for file in files:
        if file.name.startswith("."):
            continue  # editor backups and temp files of writers
        try:
            st = file.stat()
        except OSError as exc:
            problems.append(ConfigError(f"cannot read this secret: {exc.strerror}", file=file))
            continue
        problem = permission_problem(file, st)
        if problem is not None:
            problems.append(problem)
    return problems


def _private_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(directory.stat().st_mode) != 0o700:
            directory.chmod(0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create a private directory: {exc.strerror}", file=directory
        ) from None

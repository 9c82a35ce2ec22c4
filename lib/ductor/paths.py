"""Every directory ductor uses, resolved in one place.

Order for each directory: an explicit value (argument or ``DUCTOR_*_DIR``), then what
systemd exports to the unit (``STATE_DIRECTORY``, ``RUNTIME_DIRECTORY``, ...), then XDG,
then the documented default. See docs/paths.md.

User units on systemd 252 map ``StateDirectory=`` to ``$XDG_CONFIG_HOME``; 254 and newer
map it to ``$XDG_STATE_HOME``. A ``ductor`` command run from a shell has no
``$STATE_DIRECTORY``, so it computes the directory the units will get from the version
of the manager, and both sides agree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from ductor.errors import UsageError

APP = "ductor"
SYSTEM_CONFIG_DIR = Path("/etc/ductor")
SYSTEM_STATE_DIR = Path("/var/lib/ductor")
SYSTEM_CACHE_DIR = Path("/var/cache/ductor")
SYSTEM_RUNTIME_DIR = Path("/run/ductor")
SYSTEM_DATA_DIR = Path("/opt/ductor")
STATE_DIRECTORY_MOVED_IN = 254  # systemd release that moved user StateDirectory=

# Names that would collide with files next to agent directories, or that systemd
# instance names cannot carry cleanly.
_AGENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED_AGENT_NAMES = frozenset({"agents", "credentials", "ductor", "spool"})


class Mode(StrEnum):
    USER = "user"
    SYSTEM = "system"


def validate_agent_name(name: str) -> str:
    if not _AGENT_NAME.fullmatch(name):
        raise UsageError(
            f"invalid agent name {name!r}: use 1-32 characters, lower-case letters, digits,"
            " '_' or '-', starting with a letter"
        )
    if name in RESERVED_AGENT_NAMES:
        raise UsageError(f"invalid agent name {name!r}: the name is reserved")
    return name


@cache
def systemd_version() -> int | None:
    """Version of the installed systemd, or None where there is none."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        out = subprocess.run(
            [systemctl, "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else None


def _first(value: str | None) -> Path | None:
    # systemd joins several configured directories with ':'; ours is the first.
    if not value:
        return None
    return Path(value.split(":", 1)[0])


@dataclass(frozen=True)
class Paths:
    mode: Mode
    config_dir: Path
    state_dir: Path
    runtime_dir: Path
    cache_dir: Path
    data_dir: Path
    credentials_dir: Path | None = None
    """``$CREDENTIALS_DIRECTORY`` of the running unit (flat, one file per secret)."""

    @property
    def global_config(self) -> Path:
        return self.config_dir / "ductor.toml"

    @property
    def agents_config_dir(self) -> Path:
        return self.config_dir / "agents"

    def agent_config(self, name: str) -> Path:
        return self.agents_config_dir / f"{name}.toml"

    def agent_credentials(self, name: str) -> Path:
        return self.config_dir / "credentials" / name

    def agent_state(self, name: str) -> Path:
        return self.state_dir / name

    def workspace(self, name: str) -> Path:
        return self.agent_state(name) / "workspace"

    def spool(self, name: str) -> Path:
        return self.agent_state(name) / "spool"

    def agent_runtime(self, name: str) -> Path:
        return self.runtime_dir / name

    def agent_socket(self, name: str) -> Path:
        return self.agent_runtime(name) / "agent.sock"

    @property
    def venv_dir(self) -> Path:
        return self.data_dir / "venv"

    def as_dict(self) -> dict[str, str]:
        return {
            "mode": str(self.mode),
            "config_dir": str(self.config_dir),
            "state_dir": str(self.state_dir),
            "runtime_dir": str(self.runtime_dir),
            "cache_dir": str(self.cache_dir),
            "data_dir": str(self.data_dir),
            "credentials_dir": str(self.credentials_dir or ""),
        }


def detect_mode(env: Mapping[str, str]) -> Mode:
    """``$DUCTOR_MODE`` if set (system units set it), else user mode."""
    value = env.get("DUCTOR_MODE", "").strip().lower()
    if not value:
        return Mode.USER
    try:
        return Mode(value)
    except ValueError:
        raise UsageError(f"DUCTOR_MODE={value!r} is neither 'user' nor 'system'") from None


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    value = env.get(var)
    if value and Path(value).is_absolute():
        return Path(value)
    return _home(env) / fallback


def _user_state_base(env: Mapping[str, str]) -> Path:
    version = systemd_version()
    if version is not None and version < STATE_DIRECTORY_MOVED_IN:
        return _xdg(env, "XDG_CONFIG_HOME", ".config")
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def _user_runtime_base(env: Mapping[str, str]) -> Path:
    value = env.get("XDG_RUNTIME_DIR")
    if value:
        return Path(value)
    return Path(f"/run/user/{os.getuid()}")


def resolve(
    mode: Mode | None = None,
    env: Mapping[str, str] | None = None,
    *,
    config_dir: Path | None = None,
    state_dir: Path | None = None,
    runtime_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> Paths:
    """Resolve every directory for ``mode`` (default: from the environment)."""
    env = os.environ if env is None else env
    mode = mode or detect_mode(env)

    def pick(explicit: Path | None, own: str, systemd_var: str) -> Path | None:
        if explicit is not None:
            return explicit
        if env.get(own):
            return Path(env[own])
        return _first(env.get(systemd_var))

    config = pick(config_dir, "DUCTOR_CONFIG_DIR", "CONFIGURATION_DIRECTORY")
    state = pick(state_dir, "DUCTOR_STATE_DIR", "STATE_DIRECTORY")
    runtime = pick(runtime_dir, "DUCTOR_RUNTIME_DIR", "RUNTIME_DIRECTORY")
    cache_ = pick(cache_dir, "DUCTOR_CACHE_DIR", "CACHE_DIRECTORY")
    data = Path(env["DUCTOR_DATA_DIR"]) if env.get("DUCTOR_DATA_DIR") else None

    if mode is Mode.SYSTEM:
        config = config or SYSTEM_CONFIG_DIR
        state = state or SYSTEM_STATE_DIR
        runtime = runtime or SYSTEM_RUNTIME_DIR
        cache_ = cache_ or SYSTEM_CACHE_DIR
        data = data or SYSTEM_DATA_DIR
    else:
        config = config or _xdg(env, "XDG_CONFIG_HOME", ".config") / APP
        state = state or _user_state_base(env) / APP
        runtime = runtime or _user_runtime_base(env) / APP
        cache_ = cache_ or _xdg(env, "XDG_CACHE_HOME", ".cache") / APP
        data = data or _xdg(env, "XDG_DATA_HOME", ".local/share") / APP

    return Paths(
        mode=mode,
        config_dir=config,
        state_dir=state,
        runtime_dir=runtime,
        cache_dir=cache_,
        data_dir=data,
        # One directory, never a list: its name is the unit's, which holds a ':' for
        # instances like ductor-cron@AGENT:JOB.service.
        credentials_dir=Path(env["CREDENTIALS_DIRECTORY"])
        if env.get("CREDENTIALS_DIRECTORY")
        else None,
    )

"""Finding the AI CLIs the way the units will: the manager's PATH plus the places
npm, nvm and pip put user-installed programs."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

PROVIDER_COMMANDS = {"claude": "claude", "codex": "codex", "gemini": "gemini"}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def extra_dirs(home: Path) -> list[Path]:
    """User install locations, newest nvm node first."""
    nvm = sorted((home / ".nvm" / "versions" / "node").glob("*/bin"), key=_version_key)
    return [
        home / ".local" / "bin",
        home / ".npm-global" / "bin",
        home / ".bun" / "bin",
        *reversed(nvm),
        Path("/usr/local/bin"),
    ]


def unit_path(env: Mapping[str, str] | None = None) -> str:
    """The PATH ductor gives the CLIs: base PATH, then user install locations."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    parts: list[str] = []
    for part in [*(env.get("PATH") or DEFAULT_PATH).split(":"), *map(str, extra_dirs(home))]:
        if part and part not in parts:
            parts.append(part)
    return ":".join(parts)


def find_cli(provider: str, env: Mapping[str, str] | None = None) -> Path | None:
    command = PROVIDER_COMMANDS.get(provider, provider)
    found = shutil.which(command, path=unit_path(env))
    return Path(found) if found else None


def logged_in(
    provider: str, env: Mapping[str, str] | None = None, dotenv: Mapping[str, str] | None = None
) -> tuple[bool, str]:
    """Best-effort check whether the CLI has credentials; returns (ok, where).

    ``dotenv`` is the agent's ``.env``, which the agent lays under every CLI it runs: an
    API key there logs the CLI in as well as one in the environment does."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    candidates: dict[str, tuple[list[str], list[Path]]] = {
        "claude": (
            ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"],
            [home / ".claude" / ".credentials.json"],
        ),
        "codex": (
            ["OPENAI_API_KEY", "CODEX_API_KEY"],
            [Path(env.get("CODEX_HOME") or home / ".codex") / "auth.json"],
        ),
        "gemini": (
            ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            [home / ".gemini" / "oauth_creds.json"],
        ),
    }
    variables, files = candidates.get(provider, ([], []))
    for var in variables:
        if env.get(var):
            return True, f"${var}"
    for var in variables:
        if dotenv and dotenv.get(var):
            return True, f"{var} in the agent's .env"
    for file in files:
        if file.is_file():
            return True, str(file)
    return False, " or ".join([*(f"${v}" for v in variables), *map(str, files)])

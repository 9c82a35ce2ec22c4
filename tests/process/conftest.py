"""Fixtures for running the real Claude Code CLI against a local Anthropic API stub.

``real_claude`` is the pinned CLI that tests/install-claude puts in .cache/npm (installed
on first use). Where it cannot be installed (no npm, no registry) the tests that need it
are skipped with the reason, except under CI (CI=true), where they fail: CI must never
pass by silently skipping the real CLI.

For an end-to-end test elsewhere::

    from tests.process.conftest import claude_env

    def test_something(real_claude: Path, anthropic_stub: AnthropicStub, tmp_path: Path):
        env = claude_env(anthropic_stub, tmp_path / "home")

(the fixtures are visible to every test under tests/process/; a test elsewhere imports
them from here next to ``claude_env``, see ``__all__``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from tests.stubs.anthropic_api import AnthropicStub

__all__ = ["anthropic_stub", "claude_env", "real_claude"]

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_CLAUDE = REPO_ROOT / "tests" / "install-claude"
INSTALL_TIMEOUT = 300  # seconds; a cold npm install takes about 10


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI=true fail instead, so the layer cannot vanish unseen."""
    if running_in_ci():
        pytest.fail(f"CI=true and the real Claude CLI is not available: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_claude() -> Path:
    """The path of the pinned ``claude`` binary, installed by tests/install-claude."""
    try:
        installed = subprocess.run(
            [str(INSTALL_CLAUDE)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        skip_or_fail(f"tests/install-claude could not run: {error}")
    lines = installed.stdout.strip().splitlines()
    if installed.returncode != 0 or not lines:
        detail = (installed.stderr.strip() or installed.stdout.strip())[-1000:]
        skip_or_fail(f"tests/install-claude failed ({installed.returncode}): {detail}")
    binary = Path(lines[-1])
    if not os.access(binary, os.X_OK):
        skip_or_fail(f"tests/install-claude printed {binary}, which is not executable")
    return binary


@pytest.fixture
def anthropic_stub() -> Iterator[AnthropicStub]:
    """A running stub of the Anthropic Messages API, answering ``ECHO: <prompt>``."""
    with AnthropicStub() as stub:
        yield stub


def claude_env(stub: AnthropicStub, home: Path, **extra: str) -> dict[str, str]:
    """The environment Claude Code needs to talk to ``stub`` and nothing else.

    ``home`` (created if missing) stands in for the user's home: Claude keeps its
    configuration and sessions in ``~/.claude`` and ``~/.claude.json``, and its scratch
    directories (``claude-<uid>``, ``cc-socks``) in ``$TMPDIR``, so both point inside it
    and a test never touches the real ones. The key is a fake the stub accepts.
    ``extra`` adds or overrides variables (``CLAUDE_CODE_MAX_RETRIES="0"``).

    As root, ``--permission-mode bypassPermissions`` also needs ``IS_SANDBOX=1``; the
    provider module adds it (``spec.provider_env(request, is_root=True)``).
    """
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "ANTHROPIC_BASE_URL": stub.base_url,
        "ANTHROPIC_API_KEY": "sk-fake",  # not a secret: the stub takes any key
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PATH": os.environ.get("PATH", os.defpath),
    }
    env.update(extra)
    return env

"""Fixtures for testing the Matrix transport against a real Synapse homeserver.

``synapse`` is one server for the whole session (tests/stubs/synapse.py), run with the
pinned Synapse that tests/install-synapse puts in .cache/synapse-venv (installed on first
use). Where it cannot be installed (no python3-venv, no package index) the tests that need
it are skipped with the reason, except under CI (CI=true), where they fail: CI must never
pass by silently skipping the homeserver. Once installed, a server that does not start is
an error everywhere, with the tail of its log.

``matrix_users`` registers fresh users for each test (``bot``, ``alice``, ``mallory``),
named uniquely so tests sharing the server never see each other's rooms or invites.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from tests.stubs.synapse import MatrixUser, Synapse

__all__ = ["MatrixUsers", "matrix_users", "synapse", "synapse_python"]

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SYNAPSE = REPO_ROOT / "tests" / "install-synapse"
INSTALL_TIMEOUT = 600  # seconds; a cold install with byte-compiling takes about 30

_RUN = secrets.token_hex(3)  # localparts differ between runs against a kept server, too
_SERIAL = itertools.count(1)


@dataclass(frozen=True)
class MatrixUsers:
    """Three fresh users: the bot under test, the person it serves, and a stranger."""

    bot: MatrixUser
    alice: MatrixUser
    mallory: MatrixUser


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI=true fail instead, so the layer cannot vanish unseen."""
    if running_in_ci():
        pytest.fail(f"CI=true and Synapse is not available: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def synapse_python() -> Path:
    """The python of the virtual environment tests/install-synapse puts Synapse in."""
    try:
        installed = subprocess.run(
            [str(INSTALL_SYNAPSE)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        skip_or_fail(f"tests/install-synapse could not run: {error}")
    lines = installed.stdout.strip().splitlines()
    if installed.returncode != 0 or not lines:
        detail = (installed.stderr.strip() or installed.stdout.strip())[-1000:]
        skip_or_fail(f"tests/install-synapse failed ({installed.returncode}): {detail}")
    python = Path(lines[-1])
    if not os.access(python, os.X_OK):
        skip_or_fail(f"tests/install-synapse printed {python}, which is not executable")
    return python


@pytest.fixture(scope="session")
def synapse(synapse_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """One running homeserver (``localhost``) for the session; its files stay in the
    session's temporary directory, so a failed run leaves homeserver.log to read."""
    with Synapse(synapse_python, tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture
def matrix_users(synapse: Synapse) -> MatrixUsers:
    """Fresh ``bot``, ``alice`` and ``mallory`` (localparts like ``alice-1a2b3c-7``)."""
    serial = next(_SERIAL)

    def fresh(role: str) -> MatrixUser:
        return synapse.register(f"{role}-{_RUN}-{serial}", secrets.token_urlsafe(16))

    return MatrixUsers(bot=fresh("bot"), alice=fresh("alice"), mallory=fresh("mallory"))

"""Fixtures for the systemd layer: one real systemd per session, booted by harness.py.

Every test in this directory is marked `systemd`. Where the machine cannot boot one (not
root, no unshare, no overlayfs, no /lib/systemd/systemd) the tests are skipped with the
missing thing as the reason, except under CI (CI=true), where they fail: CI must never
pass by silently skipping this layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.systemd.harness import (
    REPO_ROOT,
    BootedSystemd,
    missing_prerequisites,
    wheelhouse,
)

HERE = Path(__file__).resolve().parent
SOURCE_INSIDE = "/opt/ductor-src"
WHEELHOUSE_INSIDE = "/opt/wheelhouse"
#: Left out of the copy of the repository: environments, caches and VCS data of the host.
SOURCE_EXCLUDES = (
    ".venv",
    ".git",
    ".cache",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`; under CI=true fail instead, so the layer cannot vanish unseen."""
    if running_in_ci():
        pytest.fail(f"CI=true and the systemd tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def require_systemd_prerequisites() -> None:
    missing = missing_prerequisites()
    if missing:
        skip_or_fail("cannot boot a test systemd, missing: " + "; ".join(missing))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.systemd)


@pytest.fixture(scope="session")
def wheelhouse_dir() -> Path:
    """Wheels of runtime.lock and dev.lock (built once, cached in .cache/wheelhouse)."""
    require_systemd_prerequisites()
    return wheelhouse(REPO_ROOT, dev=True)


@pytest.fixture(scope="session")
def systemd(wheelhouse_dir: Path) -> Iterator[BootedSystemd]:
    """A booted systemd with D-Bus and the user manager of root running, this repository
    at /opt/ductor-src and the wheelhouse at /opt/wheelhouse (install offline with
    PIP_NO_INDEX=1 PIP_FIND_LINKS=/opt/wheelhouse). Shared by the whole session: tests
    leave it as they would like to find it."""
    with BootedSystemd() as booted:
        booted.start_user_manager()
        booted.copy_in(REPO_ROOT, SOURCE_INSIDE, exclude=SOURCE_EXCLUDES)
        booted.copy_in(wheelhouse_dir, WHEELHOUSE_INSIDE)
        yield booted

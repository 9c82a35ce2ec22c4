"""``ductor doctor`` on an agent's webhook units: what systemd says about
``ductor-webhook@NAME.socket`` and ``.service`` against the config, with a fix line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ductor.cli.context import Context
from ductor.cli.doctor import Check, Level, check_webhooks
from ductor.config import load_agent_config
from ductor.paths import Mode, resolve
from ductor.units import Manager
from ductor.webhooks.units import sync_socket

SOCKET = "ductor-webhook@main.socket"
SERVICE = "ductor-webhook@main.service"


@dataclass(frozen=True)
class Shown(Manager):
    """A manager that answers ``systemctl show`` with fixed properties per unit."""

    units: dict[str, dict[str, str]] = field(default_factory=dict)

    def show(self, units: Sequence[str], properties: Sequence[str]) -> list[dict[str, str]]:
        return [self.units.get(unit, {}) for unit in units]


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    paths = resolve(Mode.USER, config_dir=tmp_path / "config", state_dir=tmp_path / "state")
    paths.agents_config_dir.mkdir(parents=True)
    paths.agent_config("main").write_text(
        'transports = []\n[webhooks]\nenabled = true\nlisten = "127.0.0.1:9911"\n'
    )
    paths.agent_config("quiet").write_text("transports = []\n")  # webhooks off: not checked
    return Context(paths=paths)


def checks(ctx: Context, units: Path, **shown: dict[str, str]) -> list[Check]:
    manager = Shown(Mode.USER, {SOCKET: shown.get("socket", {}), SERVICE: shown.get("service", {})})
    return check_webhooks(ctx, ["main", "quiet"], manager, units)


def synced(ctx: Context, tmp_path: Path) -> Path:
    units = tmp_path / "units"
    sync_socket(units, "main", load_agent_config(ctx.paths, "main"), command="ductor agent sync")
    return units


LISTENING = {"ActiveState": "active", "Result": "success", "Listen": "127.0.0.1:9911 (Stream)"}


def test_doctor_says_the_webhook_socket_listens_where_the_config_says(
    ctx: Context, tmp_path: Path
) -> None:
    found = checks(
        ctx, synced(ctx, tmp_path), socket=LISTENING, service={"ActiveState": "inactive"}
    )
    assert found == [
        Check("webhooks main", Level.OK, f"{SOCKET} listens on 127.0.0.1:9911"),
    ]


def test_doctor_wants_a_sync_when_the_socket_drop_in_does_not_match_the_config(
    ctx: Context, tmp_path: Path
) -> None:
    units = synced(ctx, tmp_path)
    ctx.paths.agent_config("main").write_text(
        'transports = []\n[webhooks]\nenabled = true\nlisten = "127.0.0.1:9922"\n'
    )
    (found,) = checks(ctx, units, socket=LISTENING)
    assert found.level is Level.WARN and "127.0.0.1:9922" in found.detail
    assert found.fix == "ductor agent sync main"
    (missing,) = checks(ctx, tmp_path / "nothing", socket=LISTENING)
    assert missing.fix == "ductor agent sync main"


def test_doctor_fails_a_failed_webhook_service_and_says_how_to_recover(
    ctx: Context, tmp_path: Path
) -> None:
    failed = {"ActiveState": "failed", "Result": "exit-code"}
    (found,) = checks(ctx, synced(ctx, tmp_path), socket=LISTENING, service=failed)
    assert found.level is Level.FAIL
    assert found.detail == f"{SERVICE} failed (exit-code)"
    assert f"systemctl --user reset-failed {SOCKET} {SERVICE}" in found.fix
    assert found.fix.endswith(f"systemctl --user restart {SOCKET}")


def test_doctor_warns_when_the_webhook_socket_listens_elsewhere_or_not_at_all(
    ctx: Context, tmp_path: Path
) -> None:
    units = synced(ctx, tmp_path)
    elsewhere = {**LISTENING, "Listen": "127.0.0.1:8742 (Stream)"}
    (old,) = checks(ctx, units, socket=elsewhere)
    assert old.level is Level.WARN
    assert old.detail == f"{SOCKET} listens on 127.0.0.1:8742, the config says 127.0.0.1:9911"
    assert old.fix == f"systemctl --user daemon-reload && systemctl --user restart {SOCKET}"
    (stopped,) = checks(ctx, units, socket={"ActiveState": "inactive"})
    assert stopped.level is Level.WARN and "nothing listens" in stopped.detail
    assert stopped.fix == "systemctl --user start ductor@main.target"

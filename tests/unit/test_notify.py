from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ductor.notify import Notifier


def listen(tmp_path: Path) -> tuple[socket.socket, str]:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock, address


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.watchdog_interval is None


def test_ready_and_status_reach_the_manager_as_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = listen(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier()
    assert notifier.ready("3 chats — 1 running ✓")
    assert sock.recv(4096).decode("utf-8") == "READY=1\nSTATUS=3 chats — 1 running ✓"
    assert notifier.status("line one\nline two")
    assert sock.recv(4096) == b"STATUS=line one line two"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_a_dead_notify_socket_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert Notifier().ready() is False
    assert "sd_notify" in caplog.text


def test_watchdog_interval_is_half_the_configured_timeout() -> None:
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval == 10.0
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None

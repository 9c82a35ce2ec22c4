"""sd_notify for our daemons: a thin wrapper over ``sdnotify`` that does not hide errors.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op that returns False.
Under systemd a send error is logged once as a warning instead of being swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    """``env`` is for reading settings in tests; sdnotify itself always connects to the
    ``$NOTIFY_SOCKET`` of the process environment, which is where systemd puts it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = env.get("NOTIFY_SOCKET", "")
        self._watchdog_usec = _watchdog_usec(env)
        self._client: Any = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half the configured WatchdogSec=), or None if off."""
        if not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2_000_000

    def send(self, *fields: str) -> bool:
        if not self._address:
            return False
        message = "\n".join(fields)
        try:
            if self._client is None:
                import sdnotify

                self._client = sdnotify.SystemdNotifier(debug=True)
            # sdnotify encodes str as latin-1; handing it the UTF-8 bytes spelled as
            # latin-1 makes the datagram carry exactly those UTF-8 bytes.
            latin = message.encode("utf-8").decode("latin-1")
            self._client.notify(latin)
        except Exception as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self._address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping the watchdog from the event loop, so a stuck loop is caught by systemd."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _watchdog_usec(env: Mapping[str, str]) -> int:
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0
    try:
        return int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0

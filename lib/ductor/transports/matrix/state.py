"""What the Matrix transport keeps between runs, under ``$STATE_DIRECTORY/NAME/matrix/``.

- ``login.json`` (0600): the user id, device id and access token of the password login
  of the first start, reused afterwards so the bot keeps one device;
- ``sync.json``: the ``since`` token of the next ``/sync``, and the ids of the events of
  the batch in progress that are already handled. The token moves forward only once
  every event of a batch was handled (the agent accepted it, or it was refused), so a
  message that arrived while anything was down is fetched again after a restart, and a
  batch cut by a crash is not replayed: its handled events are skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ductor import atomic
from ductor.errors import DuctorError

__all__ = ["ButtonMemory", "Login", "SyncState"]


@dataclass(frozen=True)
class Login:
    user_id: str
    device_id: str
    access_token: str

    @classmethod
    def load(cls, file: Path) -> Login | None:
        with contextlib.suppress(OSError, ValueError, DuctorError):
            data = atomic.read_json(file)
            if isinstance(data, dict) and all(
                isinstance(data.get(k), str) and data[k]
                for k in ("user_id", "device_id", "access_token")
            ):
                return cls(data["user_id"], data["device_id"], data["access_token"])
        return None

    def save(self, file: Path) -> None:
        atomic.write_json(
            file,
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "access_token": self.access_token,
            },
            mode=0o600,
        )


@dataclass
class SyncState:
    file: Path
    since: str = ""
    handled: list[str] = field(default_factory=list)

    def load(self) -> SyncState:
        with contextlib.suppress(OSError, ValueError, DuctorError):
            data = atomic.read_json(self.file)
            if isinstance(data, dict):
                if isinstance(data.get("since"), str):
                    self.since = data["since"]
                handled = data.get("handled")
                if isinstance(handled, list):
                    self.handled = [str(h) for h in handled]
        return self

    def is_handled(self, event_id: str) -> bool:
        return event_id in self.handled

    def mark(self, event_id: str) -> None:
        """``event_id`` of the current batch is handled: never process it again."""
        if event_id and event_id not in self.handled:
            self.handled.append(event_id)
            self._save()

    def advance(self, next_batch: str, *, keep: Collection[str] = ()) -> None:
        """Every batch up to the one ending at ``next_batch`` is handled: the next sync
        after a restart starts there. ``keep``: handled events of later batches (fetched
        already, not yet complete), still to be skipped when those are read again."""
        self.since, self.handled = next_batch, [h for h in self.handled if h in keep]
        self._save()

    def _save(self) -> None:
        atomic.write_json(self.file, {"since": self.since, "handled": self.handled}, mode=0o600)


class ButtonMemory:
    """Which of the bot's messages show numbered buttons (event id → button data), and
    the latest such message per room (pressed by typing its number). Kept in
    ``buttons.json`` so that a reaction after a restart of the transport still presses
    its button; only the newest ``limit`` messages are remembered."""

    def __init__(self, file: Path, limit: int = 500) -> None:
        self.file = file
        self.limit = limit
        self.messages: dict[str, list[str]] = {}
        self.open: dict[str, list[str]] = {}

    def load(self) -> ButtonMemory:
        with contextlib.suppress(OSError, ValueError, DuctorError):
            data = atomic.read_json(self.file)
            if isinstance(data, dict):
                self.messages = _string_lists(data.get("messages"))
                self.open = _string_lists(data.get("open"))
        return self

    def offer(self, room: str, event_id: str, data: list[str], *, typed: bool = True) -> None:
        """``event_id`` in ``room`` shows buttons ``data``; ``typed``: a bare number
        typed in the room presses one of them (the newest such message wins)."""
        self.messages.pop(event_id, None)
        self.messages[event_id] = list(data)
        while len(self.messages) > self.limit:
            del self.messages[next(iter(self.messages))]
        if typed:
            self.open[room] = list(data)
        self._save()

    def buttons(self, event_id: str) -> list[str] | None:
        return self.messages.get(event_id)

    def close(self, room: str) -> None:
        """No bare number presses a button in ``room`` any more (a message came in)."""
        if self.open.pop(room, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic.write_json(self.file, {"messages": self.messages, "open": self.open}, mode=0o600)


def _string_lists(value: object) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        return {}
    return {
        str(key): [str(item) for item in items]
        for key, items in value.items()
        if isinstance(items, list)
    }

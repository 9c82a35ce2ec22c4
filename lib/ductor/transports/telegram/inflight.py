"""What the chat shows of the turns being answered, kept across restarts of the transport.

While a turn is followed, ``inflight.json`` (in the transport's state directory, written
atomically) holds, by turn id: the chat and topic, the user's message (the answer is a
reply to it, and it carries the status reaction) and the messages the transport has sent
for the turn so far (streamed text, the queue notice). The record goes once the answer is
shown and acknowledged.

When the transport dies mid-stream (kill -9, a crash, a stop), or the agent dies under
a live transport, the record stays: the next start of the transport removes the status
reactions it left, and when the turn's answer comes through the outbox (``reply-<turn>``)
the drain sends it whole, as a reply to the user's message, and deletes the partial
messages, so the chat ends with one complete answer. An answer already shown whose
acknowledgement was lost is not sent again. Records nobody claims are forgotten after
:data:`KEEP_SECONDS`.

Inside an event loop the file is written by a worker thread (the fsync takes
milliseconds that the chats' streams should not wait for); each write carries a
version, and an older one never overwrites a newer. Stdlib only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ductor import atomic

__all__ = ["INFLIGHT_FILE", "InflightTurn", "InflightTurns"]

log = logging.getLogger(__name__)

INFLIGHT_FILE = "inflight.json"
KEEP_SECONDS = 7 * 24 * 3600.0  # a turn's answer may wait in the agent for days


@dataclass(frozen=True)
class InflightTurn:
    turn: str
    chat_id: int
    thread_id: int | None = None
    user_message: int | None = None  # the answer replies to it; it carries the reaction
    messages: tuple[int, ...] = ()  # sent for this turn and still in the chat
    shown: bool = False  # the final answer is on screen; only its ack may be missing
    started: float = 0.0  # unix time

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "thread_id": self.thread_id,
            "user_message": self.user_message,
            "messages": list(self.messages),
            "shown": self.shown,
            "started": self.started,
        }

    @classmethod
    def from_json(cls, turn: str, data: object) -> InflightTurn:
        if not isinstance(data, dict):
            raise TypeError("expected an object")
        chat, thread, user = data.get("chat_id"), data.get("thread_id"), data.get("user_message")
        messages = data.get("messages", [])
        if not isinstance(chat, int) or not isinstance(messages, list):
            raise TypeError("chat_id or messages missing")
        return cls(
            turn=turn,
            chat_id=chat,
            thread_id=thread if isinstance(thread, int) else None,
            user_message=user if isinstance(user, int) else None,
            messages=tuple(m for m in messages if isinstance(m, int)),
            shown=data.get("shown") is True,
            started=float(data.get("started") or 0.0),
        )


class InflightTurns:
    """The inflight records of one agent's Telegram transport, kept in ``directory``."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = directory / INFLIGHT_FILE
        self._clock = clock
        self._turns = self._load()
        self._version = 0  # of the records in memory
        self._written = 0  # the version on disk
        self._write_lock = threading.Lock()

    def _load(self) -> dict[str, InflightTurn]:
        try:
            data = atomic.read_json(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, atomic.CorruptFileError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return {}
        turns: dict[str, InflightTurn] = {}
        for turn, value in (data.get("turns") or {}).items() if isinstance(data, dict) else ():
            try:
                turns[str(turn)] = InflightTurn.from_json(str(turn), value)
            except (TypeError, ValueError) as exc:
                log.warning("%s: skipping turn %s: %s", self.path, turn, exc)
        oldest = self._clock() - KEEP_SECONDS
        return {turn: record for turn, record in turns.items() if record.started >= oldest}

    def _save(self) -> None:
        data = {"turns": {turn: record.to_json() for turn, record in self._turns.items()}}
        self._version += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(data, self._version)
            return
        loop.run_in_executor(None, self._write, data, self._version)

    def _write(self, data: dict[str, Any], version: int) -> None:
        with self._write_lock:
            if version <= self._written:
                return
            try:
                atomic.write_json(self.path, data, mode=0o600)
            except OSError as exc:  # the chat goes on; only a crash's leftovers are at stake
                log.warning("could not write %s: %s", self.path, exc)
                return
            self._written = version

    # -- the live side ---------------------------------------------------------------------

    def begin(
        self, turn: str, chat_id: int, *, thread_id: int | None, user_message: int | None
    ) -> None:
        if turn in self._turns:
            return
        self._turns[turn] = InflightTurn(
            turn, chat_id, thread_id, user_message, started=self._clock()
        )
        self._save()

    def messages(self, turn: str, message_ids: Iterable[int]) -> None:
        """The messages of ``turn`` in the chat now (written only when they change)."""
        record = self._turns.get(turn)
        ids = tuple(message_ids)
        if record is not None and record.messages != ids:
            self._turns[turn] = replace(record, messages=ids)
            self._save()

    def shown(self, turn: str, message_ids: Iterable[int]) -> None:
        """The final answer of ``turn`` is on screen as ``message_ids``."""
        record = self._turns.get(turn)
        if record is not None:
            self._turns[turn] = replace(record, messages=tuple(message_ids), shown=True)
            self._save()

    def end(self, turn: str) -> None:
        if self._turns.pop(turn, None) is not None:
            self._save()

    # -- after a restart -------------------------------------------------------------------

    def get(self, turn: str) -> InflightTurn | None:
        return self._turns.get(turn)

    def all(self) -> list[InflightTurn]:
        return list(self._turns.values())

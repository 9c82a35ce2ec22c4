"""Names of forum topics, as far as the transport has seen them.

Telegram offers no call that lists a forum's topics, so names are learned from the
"topic created" and "topic edited" notices as they pass by. They are kept in the
transport's state (``topic_names.json``, written atomically when a name changes), so a
restart does not forget a topic that was named long ago, and go to the agent with each
request from that topic (``topic_name``), which shows them in ``/status``. Stdlib only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ductor import atomic

__all__ = ["TOPICS_FILE", "TopicNames"]

log = logging.getLogger(__name__)

TOPICS_FILE = "topic_names.json"


class TopicNames:
    """A map ``(chat, topic) → name``; persisted in ``directory`` when one is given."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = None if directory is None else directory / TOPICS_FILE
        self._names: dict[tuple[int, int], str] = {}
        if self.path is not None:
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            data = atomic.read_json(path)
        except FileNotFoundError:
            return
        except (OSError, atomic.CorruptFileError) as exc:
            log.warning("ignoring %s (%s): topic names are learned again", path, exc)
            return
        topics = data.get("topics") if isinstance(data, dict) else None
        if not isinstance(topics, dict):
            log.warning('ignoring %s: no "topics" object', path)
            return
        for key, name in topics.items():
            chat, _, topic = str(key).partition(":")
            try:
                if isinstance(name, str) and name.strip():
                    self._names[(int(chat), int(topic))] = name.strip()
            except ValueError:
                continue

    def learn(self, chat: int, topic: int, name: str) -> None:
        name = name.strip()
        if not name or self._names.get((chat, topic)) == name:
            return
        self._names[(chat, topic)] = name
        if self.path is not None:
            topics = {f"{c}:{t}": n for (c, t), n in sorted(self._names.items())}
            try:
                atomic.write_json(self.path, {"topics": topics})
            except OSError as exc:
                log.warning("could not save topic names to %s: %s", self.path, exc)

    def known(self, chat: int, topic: int | None) -> str:
        """The topic's name as learned; "" while it is unknown (or for no topic)."""
        return "" if topic is None else self._names.get((chat, topic), "")

    def name(self, chat: int, topic: int) -> str:
        """The topic's name, or ``Topic #<id>`` while it is unknown."""
        return self._names.get((chat, topic), f"Topic #{topic}")

    def find(self, chat: int, name: str) -> int | None:
        """The id of the topic of ``chat`` called ``name`` (any case, a leading ``@``
        allowed, as in ``/new @Name``); None when no topic of that name is known."""
        wanted = name.strip().removeprefix("@").strip().casefold()
        if not wanted:
            return None
        for (known_chat, topic), known in self._names.items():
            if known_chat == chat and known.casefold() == wanted:
                return topic
        return None

    def __len__(self) -> int:
        return len(self._names)

"""Names of forum topics, as far as the transport has seen them.

Telegram offers no call that lists a forum's topics, so names are learned from the
"topic created" and "topic edited" notices as they pass by (and may be seeded from what
the agent remembers). Stdlib only.
"""

from __future__ import annotations

__all__ = ["TopicNames"]


class TopicNames:
    """An in-memory map ``(chat, topic) → name``."""

    def __init__(self) -> None:
        self._names: dict[tuple[int, int], str] = {}

    def learn(self, chat: int, topic: int, name: str) -> None:
        name = name.strip()
        if name:
            self._names[(chat, topic)] = name

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

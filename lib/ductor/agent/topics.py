"""What the agent keeps about each forum topic (or room) beyond its session: its name and
its lasting default model.

Sessions expire and ``/new`` resets them; a topic's name (learned from the transport's
``topic_name``) and its ``/topicmodel`` default must outlive both, so they live here, in
``topics.json`` in the agent's state, written atomically (mode 0600) on every change.
Resolution of a session's model: ``@model`` > the topic's default > the agent's default.
Stdlib only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ductor.atomic import CorruptFileError, make_directories, read_json, write_json

log = logging.getLogger(__name__)

TOPICS_FILE: Final = "topics.json"


@dataclass
class Topic:
    name: str = ""
    model: str = ""  # the topic's lasting default model; "" = the agent's
    provider: str = ""


class TopicStore:
    def __init__(self, file: Path) -> None:
        self.file = file
        self._topics: dict[str, Topic] = {}
        self._load()

    def name(self, key: str) -> str:
        topic = self._topics.get(key)
        return topic.name if topic else ""

    def learn(self, key: str, name: str) -> None:
        """Remember ``key``'s topic name (a transport sends it with each request)."""
        topic = self._topics.setdefault(key, Topic())
        if name and topic.name != name:
            topic.name = name
            self._save()

    def find(self, chat_prefix: str, name: str) -> str | None:
        """The key of the topic called ``name`` (any case) among keys that start with
        ``chat_prefix`` (``tg:-100123:``), or None."""
        wanted = name.strip().casefold()
        for key, topic in self._topics.items():
            if key.startswith(chat_prefix) and topic.name.casefold() == wanted:
                return key
        return None

    def default(self, key: str) -> tuple[str, str] | None:
        """The topic's lasting (provider, model), or None when it follows the agent's."""
        topic = self._topics.get(key)
        return (topic.provider, topic.model) if topic and topic.model else None

    def set_default(self, key: str, provider: str, model: str) -> None:
        """``/topicmodel MODEL``; an empty ``model`` goes back to the agent's default."""
        topic = self._topics.setdefault(key, Topic())
        topic.provider, topic.model = (provider, model) if model else ("", "")
        self._save()

    def _save(self) -> None:
        data = {
            key: {"name": t.name, "model": t.model, "provider": t.provider}
            for key, t in self._topics.items()
            if t.name or t.model
        }
        make_directories(self.file.parent)
        write_json(self.file, {"version": 1, "topics": data}, mode=0o600)

    def _load(self) -> None:
        try:
            document = read_json(self.file)
        except FileNotFoundError:
            return
        except (OSError, CorruptFileError) as exc:
            log.warning("%s: %s; topic names and defaults start empty", self.file, exc)
            return
        records = document.get("topics") if isinstance(document, dict) else None
        if not isinstance(records, dict):
            log.warning("%s: no 'topics' object; topic names and defaults start empty", self.file)
            return
        for key, record in records.items():
            if not isinstance(record, dict):
                log.warning("%s: skipping topic %r: not an object", self.file, key)
                continue
            values = [record.get(f, "") for f in ("name", "model", "provider")]
            if not all(isinstance(v, str) for v in values):
                log.warning("%s: skipping topic %r: a field is not a string", self.file, key)
                continue
            self._topics[str(key)] = Topic(*(str(v) for v in values))

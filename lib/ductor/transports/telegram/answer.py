"""An answer too long for the chat: a short summary, and the whole of it as a document.

An answer whose HTML would need more than ``streaming.max_messages`` Telegram messages
(0: no limit) is shown as its first paragraph (at most :data:`SUMMARY_CHARS`) with a
note, and its full Markdown follows as ``answer-<id>.md``. A live answer (app.py) and an
envelope from the outbox (outbox.py) both go through :class:`LongAnswers`, so a cron
result of a megabyte is one summary and one file, like a long live answer.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ductor.errors import DuctorError
from ductor.transports.telegram.formatting import MESSAGE_LIMIT, markdown_to_html, split_html
from ductor.transports.telegram.media import safe_name
from ductor.transports.telegram.sender import Sender

__all__ = ["SUMMARY_CHARS", "LongAnswers", "summarise"]

log = logging.getLogger(__name__)

SUMMARY_CHARS = 300  # at most this much of a long answer is shown above its document


def summarise(text: str) -> str:
    """The first paragraph of a long answer, at most ``SUMMARY_CHARS`` of it, and a
    note that the whole answer is attached."""
    first = text.strip().split("\n\n", 1)[0].strip()
    if len(first) > SUMMARY_CHARS:
        cut = first.rfind(" ", 0, SUMMARY_CHARS)
        first = first[: cut if cut > SUMMARY_CHARS // 2 else SUMMARY_CHARS].rstrip() + " …"
    return f"{first}\n\n_Full answer attached ({len(text)} characters)._"


@dataclass(frozen=True)
class LongAnswers:
    """``streaming.max_messages``, and where a document is written for its upload."""

    max_messages: int
    directory: Path

    def too_long(self, markdown: str) -> bool:
        """Whether ``markdown`` needs more messages than allowed."""
        if not self.max_messages or len(markdown) <= MESSAGE_LIMIT:
            return False
        return len(split_html(markdown_to_html(markdown))) > self.max_messages

    async def send_document(
        self, sender: Sender, chat_id: int, markdown: str, *, name: str, thread_id: int | None
    ) -> int | None:
        """Send ``markdown`` as the file ``name``; its message id, None when it failed."""
        path = self.directory / safe_name(name, fallback="answer.md")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(markdown, encoding="utf-8")
            return await sender.send_file(chat_id, path, thread_id=thread_id)
        except (DuctorError, OSError) as exc:
            log.warning("could not send a long answer as a file to chat %s: %s", chat_id, exc)
            return None
        finally:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

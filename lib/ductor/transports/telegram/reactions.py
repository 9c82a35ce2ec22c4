"""The emoji reaction on the user's message that says what the agent is doing.

With ``scene.status_reaction`` (the default) the message that started a turn carries
one reaction that follows the turn's events: 🤔 while the model thinks (and from the
start), 👀 for tools that read (``Read``, ``Grep``, ``Glob``, ``LS``; the agent's
``Search``, ``Find``, ``List``), ✍ for tools that write (``Edit``, ``Write``,
``MultiEdit``, ``str_replace``), 👨‍💻 for shell tools (``Bash``, ``Shell``, ``run``,
``exec``) and 💯 for system events (compacting, timeout warnings); it is removed when
the turn ends. All five are in Telegram's standard reaction set
(``telegram.constants.ReactionEmoji``); ✍ is U+270D without a variation selector, as
Telegram lists it: with one, Telegram refuses it as REACTION_INVALID.

:class:`StatusReaction` never sends the same reaction twice in a row and never makes
the turn wait: changes are sent by a background task that always sends the latest
wanted state, skipping the ones overtaken meanwhile. A reaction Telegram refuses (a
chat without reactions, a bot without the right) ends the reactions of that turn.
"""

from __future__ import annotations

import asyncio
import logging

from ductor.protocol import Event, EventType
from ductor.transports.telegram.sender import Sender, SendError

__all__ = ["SEEN", "THINKING", "StatusReaction", "reaction_for"]

log = logging.getLogger(__name__)

THINKING = "🤔"
SEEN = "👀"
READING = "👀"
WRITING = "✍"
SHELL = "👨‍💻"
SYSTEM = "💯"

# By the start of the tool's name, lower case: the agent's neutral names (Shell, Read,
# Search, Find, List, Write, Edit) and the raw names of tools it does not map.
_READ_PREFIXES = ("read", "grep", "glob", "ls", "search", "find", "list")
_WRITE_PREFIXES = ("edit", "write", "multiedit", "str_replace", "notebookedit", "replace")
_SHELL_PREFIXES = ("bash", "shell", "run", "exec", "powershell")
_SHELL_NAMES = frozenset({"sh", "zsh", "cmd"})


def _tool_reaction(name: str) -> str | None:
    word = name.strip().lower()
    if word.startswith(_WRITE_PREFIXES):
        return WRITING
    if word.startswith(_SHELL_PREFIXES) or word in _SHELL_NAMES:
        return SHELL
    if word.startswith(_READ_PREFIXES):
        return READING
    return None


def reaction_for(event: Event) -> str | None:
    """The reaction an event moves the turn to; None when it changes nothing."""
    if event.type is EventType.THINKING:
        return THINKING
    if event.type is EventType.TOOL:
        return _tool_reaction(event.get_str("name"))
    if event.type is EventType.STATUS:
        return SYSTEM
    return None


class StatusReaction:
    """The one reaction of one message, kept in step with what is wanted."""

    def __init__(self, sender: Sender, chat_id: int, message_id: int) -> None:
        self.sender = sender
        self.chat_id = chat_id
        self.message_id = message_id
        self._wanted: str | None = None
        self._shown: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._refused = False

    def want(self, emoji: str | None) -> None:
        """Show ``emoji`` (None: no reaction) as soon as the ones before it are sent."""
        self._wanted = emoji
        if self._task is None and not self._refused and self._shown != emoji:
            self._task = asyncio.create_task(self._sync())

    def on_event(self, event: Event) -> None:
        emoji = reaction_for(event)
        if emoji is not None:
            self.want(emoji)

    async def clear(self) -> None:
        """Remove the reaction and wait until Telegram has been told."""
        self.want(None)
        task = self._task
        if task is not None:
            await task

    def abandon(self) -> None:
        """Stop sending (the transport is shutting down); what is shown stays."""
        self._refused = True
        if self._task is not None:
            self._task.cancel()

    async def _sync(self) -> None:
        try:
            while self._shown != self._wanted:
                emoji = self._wanted
                try:
                    await self.sender.react(self.chat_id, self.message_id, emoji)
                except SendError as exc:
                    log.info("no status reactions in chat %s: %s", self.chat_id, exc)
                    self._refused = True
                    return
                self._shown = emoji
        finally:
            self._task = None

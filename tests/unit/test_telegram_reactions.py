"""The status reaction on the user's message: which emoji, sent once each, cleared."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from telegram.constants import ReactionEmoji

from ductor.protocol import Events
from ductor.transports.telegram import reactions
from ductor.transports.telegram.reactions import StatusReaction, reaction_for
from ductor.transports.telegram.sender import SendRefused


@dataclass
class FakeSender:
    """Records reactions; each call takes ``delay`` seconds."""

    sent: list[str | None] = field(default_factory=list)
    delay: float = 0.0
    refuse: bool = False

    async def react(self, chat_id: int, message_id: int, emoji: str | None) -> None:
        await asyncio.sleep(self.delay)
        if self.refuse:
            raise SendRefused("Telegram refused: REACTION_INVALID")
        self.sent.append(emoji)


def test_every_status_emoji_is_one_telegram_accepts_as_a_reaction() -> None:
    allowed = {emoji.value for emoji in ReactionEmoji}
    for emoji in (reactions.THINKING, reactions.READING, reactions.WRITING, reactions.SHELL):
        assert emoji in allowed
    assert {reactions.SYSTEM, reactions.SEEN} <= allowed


@pytest.mark.parametrize(
    ("name", "emoji"),
    [
        ("Shell", "👨‍💻"),
        ("Bash", "👨‍💻"),
        ("run_shell_command", "👨‍💻"),
        ("Read", "👀"),
        ("Grep", "👀"),
        ("Glob", "👀"),
        ("List", "👀"),
        ("Search", "👀"),
        ("Edit", "✍"),
        ("Write", "✍"),
        ("MultiEdit", "✍"),
        ("str_replace_editor", "✍"),
        ("WebSearch", None),
        ("Agent", None),
    ],
)
def test_a_tool_event_moves_the_reaction_by_the_tool_name(name: str, emoji: str | None) -> None:
    assert reaction_for(Events.tool("r", name)) == emoji


def test_thinking_and_status_events_have_their_emoji_and_text_has_none() -> None:
    assert reaction_for(Events.thinking("r", "hmm")) == "🤔"
    assert reaction_for(Events.status("r", "compacting", "Compacting…")) == "💯"
    assert reaction_for(Events.text("r", "Hello")) is None


def test_repeated_states_are_sent_once_and_the_end_clears_the_reaction() -> None:
    async def scenario() -> list[str | None]:
        sender = FakeSender()
        reaction = StatusReaction(sender, 1, 2)
        for event in (
            Events.thinking("r", "a"),
            Events.thinking("r", "b"),
            Events.tool("r", "Shell"),
        ):
            reaction.on_event(event)
            await asyncio.sleep(0.01)
        reaction.on_event(Events.tool("r", "Bash"))
        await reaction.clear()
        return sender.sent

    assert asyncio.run(scenario()) == ["🤔", "👨‍💻", None]


def test_states_overtaken_while_a_call_is_in_flight_are_skipped() -> None:
    async def scenario() -> list[str | None]:
        sender = FakeSender(delay=0.05)
        reaction = StatusReaction(sender, 1, 2)
        reaction.want("🤔")
        await asyncio.sleep(0.01)  # 🤔 is on its way
        reaction.want("👀")
        reaction.want("✍")
        await reaction.clear()
        return sender.sent

    assert asyncio.run(scenario()) == ["🤔", None]


def test_a_refused_reaction_ends_the_reactions_of_the_turn() -> None:
    async def scenario() -> FakeSender:
        sender = FakeSender(refuse=True)
        reaction = StatusReaction(sender, 1, 2)
        reaction.want("🤔")
        await asyncio.sleep(0.01)
        sender.refuse = False
        reaction.want("👀")
        await reaction.clear()
        return sender

    assert asyncio.run(scenario()).sent == []

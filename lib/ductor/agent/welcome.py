"""``/start`` in a private chat: a welcome and three quick-start buttons.

The welcome greets the user by name, says which CLIs are ready and which model answers,
and points at ``/model``, ``/showfiles`` and ``/help``. Each button (``w:1`` .. ``w:3``)
sends a longer prompt as if the user had typed it; :func:`quick_start_prompt` turns the
callback data into that prompt. In a group, a topic or a Matrix room ``/start`` is
``/help``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ductor import clipath, protocol
from ductor.agent.execute import SEP

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

PREFIX = "w:"
PROVIDER_NAMES = {"claude": "Claude Code", "codex": "Codex", "gemini": "Gemini CLI"}

QUICK_STARTS = {
    "w:1": (
        "Let's get to know each other",
        "Hi! I have just set up ductor and I would like you to get to know me. Ask me a few"
        " questions, one at a time, about who I am, what I work on and how I like answers"
        " (short or detailed, formal or casual). Save what you learn to your memory.",
    ),
    "w:2": (
        "Show me what you can do",
        "Give me a short tour of what you can do for me here: scheduled jobs, background"
        " tasks, files I send you (voice notes included), files you make for me, and"
        " anything else in your workspace's tools. Keep it brief and concrete, with one"
        " example of each that I could try right away.",
    ),
    "w:3": (
        "Who are you? Who am I?",
        "Who are you, what do you remember about me, and what should I know about how you"
        " work (your workspace, your memory, the model you run on)? Answer in a few short"
        " paragraphs.",
    ),
}


def quick_start_prompt(data: str) -> str | None:
    """The prompt a quick-start button sends, or None when ``data`` is no such button."""
    found = QUICK_STARTS.get(data)
    return found[1] if found else None


def auth_line(agent: Agent) -> str:
    dotenv = agent.dotenv.values()
    ready = [
        name
        for provider, name in PROVIDER_NAMES.items()
        if clipath.find_cli(provider, agent.env) is not None
        and clipath.logged_in(provider, agent.env, dotenv)[0]
    ]
    if not ready:
        return (
            "No CLI is logged in yet: log in to Claude Code, Codex or Gemini CLI as the"
            " user the agent runs as (or put an API key in the agent's .env)."
        )
    return f"{' + '.join(ready)} ready. Model: **{agent.config.model}**."


def welcome(agent: Agent, request: protocol.Request) -> CommandResult:
    from ductor.agent.commands import CommandResult

    first = (request.user.name if request.user else "").split(" ", 1)[0]
    lines = [
        f"**Welcome to ductor{', ' + first if first else ''}!** {SEP}",
        f"I am `{agent.name}`, a coding agent you talk to from here: every chat and topic is"
        " its own session, and I can schedule work, run background tasks and send you files.",
        "",
        auth_line(agent),
        "",
        "/model chooses the model · /showfiles the files I made for you · /help all commands",
    ]
    buttons = [[{"label": label, "data": data}] for data, (label, _) in QUICK_STARTS.items()]
    return CommandResult("\n".join(lines), buttons)


async def cmd_start(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    from ductor.agent.commands import cmd_help, is_private

    if not is_private(request):
        return await cmd_help(agent, request, args)
    return await asyncio.to_thread(welcome, agent, request)

"""Commands about forum topics: ``/topicmodel`` (a topic's lasting default model),
``/new @TopicName`` (reset another topic's session) and the project line of ``/status``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ductor import protocol
from ductor.agent.execute import SEP
from ductor.agent.selectors import unknown_model
from ductor.providers import Provider
from ductor.providers.models import canonical_model, known_model_ids, provider_for_model

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

CLEAR_WORDS = frozenset({"reset", "clear", "off", "default", "none"})


def _result(text: str) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text)


def _label(agent: Agent, key: str) -> str:
    name = agent.topics.name(key)
    return f'topic "{name}"' if name else "this chat"


def _session(request: protocol.Request) -> str:
    if not request.session:
        raise protocol.ProtocolError(
            protocol.ErrorCode.BAD_REQUEST, "this command needs a session", "session"
        )
    return request.session


async def cmd_topicmodel(agent: Agent, request: protocol.Request, args: str) -> CommandResult:
    key = _session(request)
    label = _label(agent, key)
    word = args.split(maxsplit=1)[0] if args else ""
    current = agent.topics.default(key)
    if not word:
        shown = current[1] if current else f"none (the agent's: {agent.config.model})"
        return _result(
            f"**Topic model** {SEP} Default model of {label}: {shown}.\n"
            "`/topicmodel MODEL` sets it: new sessions here and /new start on it, also after"
            " a session expires; `@model` in a message still wins. `/topicmodel reset` goes"
            " back to the agent's default."
        )
    if word.lower() in CLEAR_WORDS:
        agent.topics.set_default(key, "", "")
        return _result(
            f"**Topic model** {SEP} {label.capitalize()} follows the agent's default model"
            f" again ({agent.config.model}) from its next session or /new."
        )
    known = known_model_ids(agent.models[Provider.CODEX].ids(), agent.gemini_ids())
    model = canonical_model(word, known)
    if model is None:
        return unknown_model(agent, word)
    provider = str(provider_for_model(model, gemini_ids=agent.gemini_ids()))
    agent.topics.set_default(key, provider, model)
    return _result(
        f"**Topic model** {SEP} Default model of {label}: {model} ({provider}). New sessions"
        " here and /new start on it; /model still switches the running session."
    )


async def new_in_topic(agent: Agent, request: protocol.Request, name: str) -> CommandResult:
    """``/new @TopicName``: reset another topic of this chat without entering it."""
    parsed = protocol.parse_session_key(_session(request))
    key = agent.topics.find(f"{parsed.transport}:{parsed.chat}:", name)
    if key is None:
        return _result(f'Topic "{name}" not found.')
    await agent.stop(key)
    provider, model = agent.turn_env().defaults(key)
    session = agent.sessions.new_session(key, default_provider=provider, default_model=model)
    return _result(
        f"**Session Reset** {SEP} New {session.provider} session ({session.model}) in topic"
        f' "{agent.topics.name(key)}". Sessions with other providers were kept.'
    )


def project_lines(agent: Agent, key: str) -> list[str]:
    """``/status``: the project folder this topic works in, if it has one."""
    project = agent.turn_env().project(key)
    if project is None:
        return []
    state = "" if project.exists else " (missing: messages here are refused until it exists)"
    return [f'**Project** {SEP} {project.path}{state} (project_roots."{project.entry}")']

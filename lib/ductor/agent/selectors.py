"""The ``/model`` and ``/effort`` selectors and their ``ms:`` button callbacks.

Callback data: ``ms:p:<provider>`` (models of a provider), ``ms:m:<model>`` (pick a
model), ``ms:r:<effort>:<model>`` (pick a model with an effort), ``ms:e:<effort>`` (this
session's effort), ``ms:b:root`` / ``ms:b:<provider>`` (back). A switch inside a topic
changes that topic's session only; in a private chat it also becomes the agent's
default, written to the agent's config file with its comments kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ductor import clipath, config, protocol
from ductor.providers import Provider
from ductor.providers.models import (
    CLAUDE_ALIASES,
    GEMINI_ALIASES,
    canonical_model,
    efforts_for,
    known_model_ids,
    provider_for_model,
)

if TYPE_CHECKING:
    from ductor.agent.commands import CommandResult
    from ductor.agent.core import Agent

log = logging.getLogger(__name__)


def _result(text: str, buttons: list[list[dict[str, str]]] | None = None) -> CommandResult:
    from ductor.agent.commands import CommandResult

    return CommandResult(text, buttons or [])


def _button(label: str, data: str) -> dict[str, str]:
    return {"label": label, "data": data[:64]}


def _current(agent: Agent, request: protocol.Request) -> tuple[str, str, str]:
    session = agent.sessions.get(request.session or "")
    if session is None:
        return agent.config.provider, agent.config.model, agent.config.reasoning_effort
    return session.provider, session.model, session.effort or agent.config.reasoning_effort


def available_providers(agent: Agent) -> list[str]:
    found = [p for p in ("claude", "codex", "gemini") if clipath.find_cli(p, agent.env)]
    return found or [agent.config.provider]


def model_root(agent: Agent, request: protocol.Request) -> CommandResult:
    provider, model, effort = _current(agent, request)
    header = f"**Model** ─── current: {model}" + (f" ({effort})" if provider != "gemini" else "")
    from ductor.agent.commands import is_private

    if request.session and is_private(request):
        header += f"\nconfigured default: {agent.config.model}"
    providers = available_providers(agent)
    if len(providers) == 1:
        return model_menu(agent, request, providers[0], header=header)
    rows: list[list[dict[str, str]]] = []
    for i in range(0, len(providers), 2):
        rows.append([_button(p.upper(), f"ms:p:{p}") for p in providers[i : i + 2]])
    return _result(header + "\nChoose a provider:", rows)


def models_of(agent: Agent, provider: str) -> list[str]:
    if provider == Provider.CLAUDE:
        return list(CLAUDE_ALIASES)
    ids = list(agent.models[Provider(provider)].ids())
    if provider == Provider.GEMINI:
        return list(GEMINI_ALIASES) + [i for i in ids if i not in GEMINI_ALIASES]
    return ids


def model_menu(
    agent: Agent, request: protocol.Request, provider: str, *, header: str = ""
) -> CommandResult:
    models = models_of(agent, provider)
    per_row = 1 if provider == Provider.CODEX else 3
    rows = [
        [_button(_label(provider, m), f"ms:m:{m}") for m in models[i : i + per_row]]
        for i in range(0, len(models), per_row)
    ]
    if len(available_providers(agent)) > 1:
        rows.append([_button("« Back", "ms:b:root")])
    text = (header + "\n" if header else "") + f"Choose a {provider} model:"
    return _result(text, rows)


def _label(provider: str, model: str) -> str:
    if provider == Provider.CLAUDE:
        return model.upper()
    if provider == Provider.GEMINI:
        return model.removeprefix("gemini-")
    return model


def effort_choice(agent: Agent, model: str) -> CommandResult:
    provider = str(provider_for_model(model, gemini_ids=agent.gemini_ids()))
    efforts = efforts_for(model, agent.models[Provider.CODEX].models())
    rows = [
        [_button(e, f"ms:r:{e}:{model}") for e in efforts[i : i + 3]]
        for i in range(0, len(efforts), 3)
    ]
    rows.append([_button("« Back", f"ms:b:{provider}")])
    return _result(f"Reasoning effort for {model}:", rows)


def effort_menu(agent: Agent, request: protocol.Request) -> CommandResult:
    provider, model, effort = _current(agent, request)
    efforts = efforts_for(model, agent.models[Provider.CODEX].models())
    if not efforts:
        return _result(f"{provider} has no reasoning-effort setting.")
    rows = [
        [_button(e + (" ✓" if e == effort else ""), f"ms:e:{e}") for e in efforts[i : i + 3]]
        for i in range(0, len(efforts), 3)
    ]
    return _result(f"Reasoning effort for this chat (now {effort}):", rows)


def set_effort(agent: Agent, request: protocol.Request, effort: str) -> CommandResult:
    provider, model, _ = _current(agent, request)
    efforts = efforts_for(model, agent.models[Provider.CODEX].models())
    if not efforts:
        return _result(f"{provider} has no reasoning-effort setting.")
    if effort not in efforts:
        effort = "medium" if "medium" in efforts else efforts[0]
    assert request.session is not None
    agent.sessions.retarget(
        request.session,
        provider=provider,
        model=model,
        default_provider=agent.config.provider,
        default_model=agent.config.model,
    )
    agent.sessions.set_effort(request.session, effort)
    return _result(f"Reasoning effort for this chat: {effort}.")


async def switch_model(
    agent: Agent, request: protocol.Request, model: str, *, effort: str | None
) -> CommandResult:
    from ductor.agent.commands import is_private, session_of

    key = session_of(request)
    known = known_model_ids(agent.models[Provider.CODEX].ids(), agent.gemini_ids())
    canonical = canonical_model(model, known)
    if canonical is None:
        return unknown_model(agent, model)
    model = canonical
    old_provider, old_model, old_effort = _current(agent, request)
    provider = str(provider_for_model(model, gemini_ids=agent.gemini_ids()))
    efforts = efforts_for(model, agent.models[Provider.CODEX].models())
    if effort is not None and efforts and effort not in efforts:
        effort = "medium" if "medium" in efforts else efforts[0]
    if model == old_model and (effort is None or effort == old_effort):
        return _result(f"Already running {model}. No changes made.")
    session = agent.sessions.retarget(
        key,
        provider=provider,
        model=model,
        effort=effort if efforts else "",
        default_provider=agent.config.provider,
        default_model=agent.config.model,
    )
    lines = [f"**Model switched** ─── {old_model} → {model}"]
    if provider != old_provider:
        lines.append(f"provider: {old_provider} → {provider}")
    if effort and efforts:
        lines.append(f"reasoning: {effort}")
    bucket = session.bucket(provider)
    if bucket.session_id:
        lines.append(f"Resuming the earlier {provider} session ({bucket.message_count} messages).")
    if is_private(request):
        _write_default(agent, provider, model, effort if efforts else None)
        lines.append("Also saved as this agent's default model.")
    lane = agent.lanes.get(key)
    if lane is not None and lane.running is not None:
        lines.append("A reply is still running; the new model applies to the next message.")
    return _result("\n".join(lines))


def unknown_model(agent: Agent, model: str) -> CommandResult:
    """The refusal of a model no CLI has, with the models there are."""
    lists = {
        "claude": CLAUDE_ALIASES,
        "codex": agent.models[Provider.CODEX].ids(),
        "gemini": (*GEMINI_ALIASES, *agent.gemini_ids()),
    }
    lines = [f"Unknown model `{model}`: nothing was changed. Models you can choose:"]
    lines += [f"{provider}: {', '.join(dict.fromkeys(ids))}" for provider, ids in lists.items()]
    lines.append("Any full `claude-...` model id works too; /model shows buttons.")
    return _result("\n".join(lines))


def _write_default(agent: Agent, provider: str, model: str, effort: str | None) -> None:
    values: list[tuple[str, object]] = [("provider", provider), ("model", model)]
    if effort:
        values.append(("reasoning_effort", effort))
    file = agent.paths.agent_config(agent.name)
    try:
        config.set_values(file, values, under=[agent.paths.global_config])
        agent.apply_config(config.load_agent_config(agent.paths, agent.name))
    except Exception as exc:  # the switch itself worked; the default could not be saved
        log.error("could not save the default model to %s: %s", file, exc)


async def handle_button(agent: Agent, request: protocol.Request) -> CommandResult | None:
    """The result of an ``ms:`` callback, or None when the data is not ours."""
    data = request.data
    if not data.startswith("ms:"):
        return None
    parts = data.split(":", 3)
    action = parts[1] if len(parts) > 1 else ""
    arg = parts[2] if len(parts) > 2 else ""
    if action == "p" and arg in {p.value for p in Provider}:
        return model_menu(agent, request, arg)
    if action == "b":
        if arg in {p.value for p in Provider}:
            return model_menu(agent, request, arg)
        return model_root(agent, request)
    if action == "m" and arg:
        if efforts_for(arg, agent.models[Provider.CODEX].models()):
            return effort_choice(agent, arg)
        return await switch_model(agent, request, arg, effort=None)
    if action == "r" and len(parts) == 4:
        return await switch_model(agent, request, parts[3], effort=arg)
    if action == "e" and arg:
        return set_effort(agent, request, arg)
    return _result("This button is no longer valid.")

"""Agents asking each other: synchronously over the target's socket, asynchronously
through the spool inboxes of both (docs/agents.md).

Sync (``ask_agent.py``): the tool script sends an ``agent`` request with the verb
``ask`` to its own agent, which checks the target exists and runs, and sends it an
``ask`` request; the target runs the framed message in its inter-agent session for this
sender × chat × topic and the answer is the final event, passed back to the script.

Async (``ask_agent_async.py``): the sender's agent writes a ``interagent`` request
envelope into the target's ``spool/inbox/`` and answers with a task id at once. The
target's inbox reader turns it into a durable ``ask`` turn (its id derived from the
envelope's, the reply address kept in ``interagent/``), and when that turn ends, writes
an ``inject`` envelope with the result (or a failure notice) into the inbox of the
sender (or of ``--reply-to``), whose inbox reader injects it into the chat's active
session. Both hops are spool envelopes: nothing is lost when either agent is down, and
every id is derived from the task id, so a retried step never repeats a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from typing import Any

from ductor import agents, atomic, protocol
from ductor.agent import agent_admin, shared_memory
from ductor.agent.core import Agent, Sink
from ductor.agent.execute import SEP, Outcome
from ductor.agent.turns import TurnKind, TurnRecord
from ductor.config import load_agent_config
from ductor.errors import ConfigError, DuctorError
from ductor.protocol import ErrorCode, Events, RequestType
from ductor.protocol.client import call
from ductor.spool import Envelope, Execution, ExecutionStatus, Kind, Payload, Routing, Spool
from ductor.units import Manager

log = logging.getLogger(__name__)

IA_TRANSPORT = "ia"  # session keys of inter-agent sessions: ``ia:<session name>``
PROMPT_KEY = "prompt"  # docs/spool.md: the prompt an inject envelope carries
REQUEST_PREVIEW = 200
ERROR_LIMIT = 2000
ASK_MARGIN = 60.0  # seconds a sync asker waits beyond the target's own turn timeout

FRAME = (
    "[INTER-AGENT MESSAGE from '{sender}' to '{target}']\n{message}\n"
    "[END INTER-AGENT MESSAGE]\n\n"
    "You are agent '{target}'. Respond to this inter-agent request from '{sender}'."
    " Be direct and concise."
)
RESPONSE_FRAME = (
    "[ASYNC INTER-AGENT RESPONSE from '{target}' (task {task_id})]\n{result}\n"
    "[END ASYNC INTER-AGENT RESPONSE]\n\n"
    "Original task you sent to '{target}': {request}\n\n"
    "The user can continue that conversation in {target}'s chat with"
    " `@{session} <message>`.\n\n"
    "You are agent '{sender}'. Process this response from '{target}' and communicate the"
    " relevant results to the user."
)
RECEIVED = (
    "📥 **Async task received** from `{sender}`\nSession: `{session}` · Task ID: `{task_id}`"
    "\n\n_{summary}_"
)
SWITCHED = (
    "**Provider Switch Detected** {sep} `{target}` now runs on {new} (it was {old}): its"
    " earlier conversation with `{sender}` was ended and this answer starts a new one."
)
FAILED = "**Inter-Agent Request Failed**\nAgent: `{target}`\nError: {error}\nRequest: {request}"


class InterAgentError(DuctorError):
    """A request to another agent that cannot go out; the message says why."""


# -- names and texts -----------------------------------------------------------------------


def session_name(sender: str, origin: str | None) -> str:
    """The target's session for ``sender`` asking from chat ``origin`` (a session key):
    ``ia.<sender>.t<topic>.x<hash>`` (one per sender × chat × topic), ``ia-<sender>``
    without a chat."""
    if not origin:
        return f"ia-{sender}"
    key = protocol.parse_session_key(origin)
    slug = re.sub(r"[^a-z0-9_-]", "", sender.lower())[:12] or "agent"
    topic = re.sub(r"[^A-Za-z0-9]", "", key.topic or "")[:12] or "0"
    digest = hashlib.sha256(
        f"{sender}\0{key.transport}:{key.chat}\0{key.topic or ''}".encode()
    ).hexdigest()[:8]
    return f"ia.{slug}.t{topic}.x{digest}"


def session_key(name: str) -> str:
    return f"{IA_TRANSPORT}:{name}"


def frame(sender: str, target: str, message: str) -> str:
    return FRAME.format(sender=sender, target=target, message=message)


def new_task_id() -> str:
    return os.urandom(6).hex()


# -- the target: an ask request over the socket ---------------------------------------------


def ask_record(agent: Agent, request: protocol.Request) -> TurnRecord:
    """The turn a sync ``ask`` request becomes: the framed message in the sender's
    inter-agent session (``--new`` ends that session's previous conversation first)."""
    key = request.session or session_key(session_name(request.sender, None))
    if _wants_new(request.data):
        agent.sessions.remove(key)
    provider_switch(agent, key, request.sender)
    asked = protocol.Request(
        type=RequestType.ASK,
        id=request.id,
        session=key,
        text=frame(request.sender, agent.name, request.text),
        sender=request.sender,
        origin=request.origin or f"agent {request.sender}",
    )
    return agent.new_record(asked, TurnKind.ASK, asked.text)


_CONTINUE = re.compile(r"@(ia[.-][A-Za-z0-9._-]+)(?:\s+(.*))?", re.DOTALL)


def continue_in_chat(agent: Agent, request: protocol.Request, sink: Sink) -> bool:
    """``@<inter-agent session> <text>`` in this agent's chat: the user continues a
    conversation another agent started, in that session; the answer goes to this chat's
    client (inter-agent sessions have no outbox). False when the message names none."""
    if not request.text.lstrip().startswith("@ia"):  # every message passes here
        return False
    match = _CONTINUE.fullmatch(request.text.strip())
    if match is None or agent.sessions.get(session_key(match.group(1))) is None:
        return False
    text = (match.group(2) or "").strip()
    if not text:
        sink.send(
            Events.final(
                request.id, text=f"Send `@{match.group(1)} <text>` to continue it.", command=True
            )
        )
        return True
    continued = protocol.Request(
        type=RequestType.MESSAGE,
        id=request.id,
        session=session_key(match.group(1)),
        text=text,
        user=request.user,
        origin=f"continued from {request.session}",
    )
    record = agent.new_record(continued, TurnKind.MESSAGE, text)
    agent.submit(record, request_id=request.id, sink=sink)
    return True


def provider_switch(agent: Agent, key: str, sender: str) -> str:
    """End inter-agent session ``key`` when this agent's provider changed since it began
    (its CLI session belongs to the old CLI); the notice saying so, else ""."""
    session = agent.sessions.get(key)
    if session is None or session.provider == agent.config.provider:
        return ""
    agent.sessions.remove(key)
    log.info("%s: provider changed from %s, session ended", key, session.provider)
    return SWITCHED.format(
        sep=SEP, target=agent.name, sender=sender, new=agent.config.provider, old=session.provider
    )


def _wants_new(data: str) -> bool:
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        return False
    return isinstance(parsed, dict) and bool(parsed.get("new_session"))


# -- the sender: the ``agent`` request of the tool scripts ----------------------------------


async def handle_request(agent: Agent, request: protocol.Request) -> protocol.Event:
    """``agent`` requests from this agent's own tool scripts: ``ask``, ``ask_async``,
    ``list``."""
    if request.sender != agent.name:
        return Events.error(
            request.id,
            ErrorCode.UNAUTHORIZED,
            f"this is agent {agent.name!r}; DUCTOR_AGENT_NAME is {request.sender or 'not set'!r}",
        )
    try:
        args = json.loads(request.data) if request.data else {}
    except ValueError as exc:
        return Events.error(request.id, ErrorCode.BAD_REQUEST, f"data: {exc}")
    if not isinstance(args, dict):
        return Events.error(request.id, ErrorCode.BAD_REQUEST, "data: expected a JSON object")
    try:
        if request.text == "ask":
            return await ask(agent, request, args)
        if request.text == "ask_async":
            return await asyncio.to_thread(ask_async, agent, request, args)
        if request.text == "list":
            roster = await asyncio.to_thread(agent_roster, agent)
            return Events.final(request.id, text=roster_text(roster), agents=roster)
        if request.text in ("create", "remove"):
            return await asyncio.to_thread(_admin, agent, request, args)
        if request.text == "shared":
            text = await asyncio.to_thread(_shared, agent, args)
            return Events.final(request.id, text=text, shared=text)
    except InterAgentError as exc:
        return Events.error(request.id, ErrorCode.NOT_FOUND, str(exc))
    return Events.error(
        request.id,
        ErrorCode.BAD_REQUEST,
        f"unknown verb {request.text!r}: ask, ask_async, list, shared, create or remove",
    )


def _target(agent: Agent, args: dict[str, Any], field: str = "to") -> str:
    target = str(args.get(field) or "").strip().lower()
    if not target:
        raise InterAgentError(f"{field}: name the agent to ask")
    if target == agent.name:
        raise InterAgentError(f"{target!r} is this agent itself: answer it yourself")
    known = agents.list_agents(agent.paths)
    if target not in known:
        others = ", ".join(n for n in known if n != agent.name) or "none"
        raise InterAgentError(f"there is no agent named {target!r} (other agents: {others})")
    return target


def _message(args: dict[str, Any]) -> str:
    message = str(args.get("message") or "").strip()
    if not message:
        raise InterAgentError("message: say what to ask")
    return message


async def ask(agent: Agent, request: protocol.Request, args: dict[str, Any]) -> protocol.Event:
    target = _target(agent, args)
    message = _message(args)
    socket_path = agent.paths.agent_socket(target)
    if not socket_path.exists():
        raise InterAgentError(
            f"agent {target!r} is stopped: start it (`ductor agent start {target}` or"
            f" /agent_start {target}), or use ask_agent_async.py, whose request waits for it"
        )
    name = session_name(agent.name, request.session)
    asked = protocol.Request(
        type=RequestType.ASK,
        id=protocol.new_request_id(),
        session=session_key(name),
        text=message,
        sender=agent.name,
        origin=f"agent {agent.name}" + (f" from {request.session}" if request.session else ""),
        data=json.dumps({"new_session": True}) if args.get("new") else "",
    )
    timeout = max(agent.config.timeouts.oneshot, 300.0) + ASK_MARGIN
    try:
        events = await asyncio.to_thread(call, socket_path, asked, timeout=timeout)
    except DuctorError as exc:
        raise InterAgentError(f"agent {target!r} did not answer: {exc}") from exc
    last = events[-1] if events else None
    if last is None or last.type is not protocol.EventType.FINAL:
        why = last.text if last is not None else "no answer"
        return Events.error(request.id, ErrorCode.OTHER, f"agent {target!r} failed: {why}")
    notice = last.get_str("notice")
    text = f"{notice}\n\n{last.text}" if notice else last.text
    log.info("asked agent %s in %s", target, name)
    return Events.final(
        request.id, text=text, agent=target, session=name, is_error=bool(last.data.get("is_error"))
    )


@dataclass(frozen=True)
class AsyncRequest:
    """What the target keeps of an async request until its answer is written."""

    task_id: str
    sender: str
    target: str
    message: str
    session: str  # the target's inter-agent session name
    reply_agent: str  # whose inbox gets the result
    reply_session: str  # the chat (session key) the result is injected into; "" for none
    summary: str = ""
    silent: bool = False
    new_session: bool = False
    notice: str = ""  # told the reply chat before the answer (a provider switch)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsyncRequest:
        return cls(
            task_id=str(data["task_id"]),
            sender=str(data["sender"]),
            target=str(data["target"]),
            message=str(data["message"]),
            session=str(data["session"]),
            reply_agent=str(data["reply_agent"]),
            reply_session=str(data.get("reply_session") or ""),
            summary=str(data.get("summary") or ""),
            silent=bool(data.get("silent")),
            new_session=bool(data.get("new_session")),
            notice=str(data.get("notice") or ""),
        )


def ask_async(agent: Agent, request: protocol.Request, args: dict[str, Any]) -> protocol.Event:
    target = _target(agent, args)
    message = _message(args)
    reply_to = str(args.get("reply_to") or "").strip().lower()
    if reply_to and reply_to != agent.name:
        _target(agent, {"reply_to": reply_to}, "reply_to")
    reply_agent = reply_to or agent.name
    task_id = new_task_id()
    pending = AsyncRequest(
        task_id=task_id,
        sender=agent.name,
        target=target,
        message=message,
        session=session_name(agent.name, request.session),
        reply_agent=reply_agent,
        reply_session=(request.session or "") if reply_agent == agent.name else "",
        summary=str(args.get("summary") or ""),
        silent=bool(args.get("silent")) or bool(reply_to),
        new_session=bool(args.get("new")),
    )
    envelope = Envelope.create(
        agent=agent.name,
        kind=Kind.INTERAGENT,
        envelope_id=f"ia-{task_id}",
        routing=Routing(
            transport=IA_TRANSPORT, chat_id=pending.session, origin=f"agent {agent.name}"
        ),
        payload=Payload(metadata={"request": pending.to_dict()}),
    )
    Spool(agent.paths.spool(target)).inbox().put(envelope)
    running = wake_agent(agent, target)
    log.info("async request %s to %s queued (target %s)", task_id, target, running)
    where = "" if running else f" Agent {target!r} is not running: it runs when it starts."
    return Events.final(
        request.id,
        text=f"Task {task_id} sent to {target!r}; its answer comes back into this chat.{where}",
        task_id=task_id,
        agent=target,
        session=pending.session,
    )


def wake_agent(agent: Agent, name: str) -> bool:
    """Make agent ``name`` read its inbox: a health request over its socket starts a
    socket-activated agent. False when it is stopped (its inbox waits for its start)."""
    socket_path = agent.paths.agent_socket(name)
    if not socket_path.exists():
        return False
    health = protocol.Request(type=RequestType.HEALTH, id=protocol.new_request_id())
    try:
        call(socket_path, health, timeout=10)
    except DuctorError as exc:
        log.warning("agent %s did not answer a wake-up: %s", name, exc)
        return False
    return True


# -- the target: an async request from the inbox ---------------------------------------------


def pending_dir(agent: Agent) -> Any:
    return agent.state_dir / "interagent"


def turn_id(envelope_id: str) -> str:
    return "a" + hashlib.sha256(envelope_id.encode()).hexdigest()[:24]


def handle_envelope(agent: Agent, envelope: Envelope) -> None:
    """Accept an async request from the inbox as a durable ``ask`` turn; its answer is
    sent on by :func:`on_answer`."""
    raw = envelope.payload.metadata.get("request")
    if not isinstance(raw, dict):
        raise InterAgentError("an interagent envelope without its request")
    pending = AsyncRequest.from_dict(raw)
    record_id = turn_id(envelope.id)
    directory = pending_dir(agent)
    atomic.make_directories(directory, mode=0o700)
    file = directory / f"{record_id}.json"
    if file.exists() or any(r.id == record_id for r in agent.turns.load()):
        return  # accepted before a crash: recovery runs it
    key = session_key(pending.session)
    if pending.new_session:
        agent.sessions.remove(key)
    switched = provider_switch(agent, key, pending.sender)
    if switched:
        pending = replace(pending, notice=switched)
    atomic.write_json(file, pending.to_dict(), mode=0o600)
    if not pending.silent:
        chat = home_session(agent.config)
        if chat is not None:
            summary = pending.summary or pending.message[:REQUEST_PREVIEW]
            text = RECEIVED.format(
                sender=pending.sender,
                session=pending.session,
                task_id=pending.task_id,
                summary=summary,
            )
            _post_once(agent, chat, text, f"{envelope.id[:100]}-received")
    text = frame(pending.sender, agent.name, pending.message)
    record = TurnRecord(
        id=record_id,
        seq=agent.turns.next_seq(),
        session=key,
        kind=TurnKind.ASK,
        text=text,
        origin=f"async task {pending.task_id} from agent {pending.sender}",
    )
    agent.submit(record)


def home_session(config: Any) -> str | None:
    """The chat an agent's own notices go to: its first allowed Telegram user."""
    if config.telegram.allowed_user_ids:
        return f"tg:{config.telegram.allowed_user_ids[0]}"
    return None


def _post_once(agent: Agent, session: str, text: str, envelope_id: str) -> None:
    key = protocol.parse_session_key(session)
    agent.spool.post(
        Envelope.create(
            agent=agent.name,
            kind=Kind.INTERAGENT,
            envelope_id=envelope_id,
            routing=_routing(key, "inter-agent"),
            payload=Payload(text=text),
        )
    )


def _routing(key: protocol.SessionKey, origin: str) -> Routing:
    return Routing(
        transport=key.transport,
        chat_id=_id_value(key.chat),
        topic_id=_id_value(key.topic) if key.topic else None,
        origin=origin,
    )


def on_answer(agent: Agent, record: TurnRecord, outcome: Outcome) -> None:
    """An ``ask`` turn ended: when it was an async request, its answer goes to the
    reply agent's inbox (then the request is forgotten)."""
    if record.kind is not TurnKind.ASK:
        return
    file = pending_dir(agent) / f"{record.id}.json"
    try:
        data = atomic.read_json(file)
    except (OSError, ValueError, atomic.CorruptFileError):
        return  # a sync ask, or already answered
    if not isinstance(data, dict):
        return
    pending = AsyncRequest.from_dict(data)
    envelope = result_envelope(agent, pending, outcome)
    Spool(agent.paths.spool(pending.reply_agent)).inbox().put(envelope)
    file.unlink(missing_ok=True)
    log.info("async request %s answered into %s's inbox", pending.task_id, pending.reply_agent)
    if pending.reply_agent != agent.name:
        asyncio.get_running_loop().run_in_executor(None, wake_agent, agent, pending.reply_agent)


def result_envelope(agent: Agent, pending: AsyncRequest, outcome: Outcome) -> Envelope:
    reply_session = pending.reply_session
    if not reply_session:
        reply_session = _home_of(agent, pending.reply_agent) or ""
    routing = (
        _routing(protocol.parse_session_key(reply_session), f"agent {agent.name}")
        if reply_session
        else Routing(transport="tg", broadcast=True, origin=f"agent {agent.name}")
    )
    request = pending.message[:REQUEST_PREVIEW]
    failed = outcome.is_error or bool(outcome.stopped)
    if failed:
        error = (outcome.text or outcome.stopped or "no answer")[:ERROR_LIMIT]
        notice, prompt = FAILED.format(target=agent.name, error=error, request=request), ""
        execution = Execution(status=ExecutionStatus.ERROR, error=error[:200])
    else:
        notice = ""
        prompt = RESPONSE_FRAME.format(
            target=agent.name,
            sender=pending.reply_agent,
            task_id=pending.task_id,
            result=outcome.text,
            request=request,
            session=pending.session,
        )
        execution = Execution()
    if pending.notice:
        notice = f"{pending.notice}\n\n{notice}" if notice else pending.notice
    if not reply_session:
        notice = (
            notice or f"**[{agent.name}]** answered async task {pending.task_id}:\n{outcome.text}"
        )
        prompt = ""
    return Envelope.create(
        agent=agent.name,
        kind=Kind.INJECT,
        envelope_id=f"ia-{pending.task_id}-result",
        routing=routing,
        payload=Payload(text=notice, metadata={PROMPT_KEY: prompt} if prompt else {}),
        execution=execution,
    )


def _home_of(agent: Agent, name: str) -> str | None:
    if name == agent.name:
        return home_session(agent.config)
    try:
        return home_session(load_agent_config(agent.paths, name))
    except ConfigError as exc:
        log.warning("agent %s: config unreadable (%s); the answer is broadcast", name, exc)
        return None


def _admin(agent: Agent, request: protocol.Request, args: dict[str, Any]) -> protocol.Event:
    try:
        if request.text == "create":
            managed = Manager(agent.paths.mode).problem() is None
            text = agent_admin.create(args, agent.env, managed=managed)
        else:
            text = agent_admin.remove(args, agent.env, agent.name)
    except agent_admin.AdminError as exc:
        return Events.error(request.id, ErrorCode.BAD_REQUEST, str(exc))
    shared_memory.sync_all(agent.paths)  # the other agents' rosters
    return Events.final(request.id, text=text)


def _shared(agent: Agent, args: dict[str, Any]) -> str:
    if args.get("set") is not None:
        return shared_memory.edit(agent.paths, replace=str(args["set"]))
    if args.get("append") is not None:
        return shared_memory.edit(agent.paths, append=str(args["append"]))
    return shared_memory.read_shared(agent.paths)


def attach(agent: Agent) -> None:
    """At the agent's start: the shared knowledge and the roster brought up to date,
    the async answers wired in."""
    try:
        shared_memory.sync_agent(agent.paths, agent.name)
    except OSError as exc:
        log.warning("shared knowledge not synced: %s", exc)
    if not any(getattr(h, "__name__", "") == "_answered" for h in agent.answer_hooks):

        def _answered(record: TurnRecord, outcome: Outcome) -> None:
            on_answer(agent, record, outcome)

        agent.answer_hooks.append(_answered)


# -- the roster ---------------------------------------------------------------------------


def agent_roster(agent: Agent) -> list[dict[str, object]]:
    roster: list[dict[str, object]] = []
    for name in agents.list_agents(agent.paths):
        entry: dict[str, object] = {"name": name, "self": name == agent.name}
        try:
            config = agent.config if name == agent.name else load_agent_config(agent.paths, name)
        except ConfigError as exc:
            entry["error"] = str(exc)
        else:
            entry.update(
                description=" ".join(config.description.split()),
                provider=config.provider,
                model=config.model,
            )
        entry["running"] = agent.paths.agent_socket(name).exists()
        roster.append(entry)
    return roster


def roster_text(roster: list[dict[str, object]]) -> str:
    lines = []
    for entry in roster:
        what = f"{entry.get('provider', '?')}/{entry.get('model', '?')}"
        state = "ready" if entry.get("running") else "stopped"
        me = " (you)" if entry.get("self") else ""
        about = f"{entry['description']}; " if entry.get("description") else ""
        lines.append(f"- {entry['name']}{me}: {about}{what}, {state}")
    return "\n".join(lines) or "No agents."


def _id_value(text: str | None) -> int | str:
    if text is None:
        return ""
    try:
        return int(text)
    except ValueError:
        return text

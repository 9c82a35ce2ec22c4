"""One turn: from an accepted message to the final answer, with the CLI in between.

The turn resolves its session (fresh, expired, provider bucket), applies ``@model``
directives, assembles the prompt and the appended system prompt, runs the CLI and turns
its normalised events into protocol events for whoever listens. A resumed CLI session
the CLI no longer knows, or a CLI killed from outside, is retried once with a fresh
session. Errors keep the session and say why in words a user can act on.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ductor import projects, protocol, sandbox
from ductor.agent import markup, prompt, rulefiles
from ductor.agent.runner import CliNotFound, CliRun, RunSpec, TimeoutStatus
from ductor.agent.sessions import FreshnessPolicy, Session, SessionStore, session_age_note
from ductor.agent.timeouts import TimeoutPolicy, format_duration
from ductor.agent.topics import TopicStore
from ductor.agent.turns import TurnKind, TurnRecord
from ductor.config import AgentConfig
from ductor.errors import DuctorError
from ductor.paths import Paths
from ductor.protocol import Events
from ductor.providers import PermissionMode, Provider, TurnRequest
from ductor.providers.env import ChildIdentity
from ductor.providers.events import (
    Compaction,
    Error,
    ErrorKind,
    Result,
    SessionStarted,
    Status,
    StatusKind,
    TextDelta,
    ThinkingDelta,
    ToolUse,
)
from ductor.providers.models import parse_directives, provider_for_model

log = logging.getLogger(__name__)

SEP = "───"
EMPTY_ANSWER = "(The agent finished without a reply: it may have updated its memory silently.)"
_INVALID_RESUME = re.compile(
    r"invalid session|session not found|no conversation found|no rollout found"
    r"|thread/resume failed|could not find session|no session with id"
    r"|no previous sessions found|error resuming session",
    re.IGNORECASE,
)
RESTORED_NOTICE = (
    "The previous session could not be restored; a new session was started automatically."
)
# What to do when a CLI is not logged in, per provider.
LOGIN_FIX: dict[str, str] = {
    Provider.CLAUDE: "run `claude` once on the agent's machine and log in, or set"
    " ANTHROPIC_API_KEY in the agent's .env",
    Provider.CODEX: "run `codex login` once on the agent's machine, or set CODEX_API_KEY"
    " in the agent's .env",
    Provider.GEMINI: "run `gemini` once on the agent's machine and log in, or set"
    " GEMINI_API_KEY in the agent's .env",
}
_BAD_FLAG = re.compile(r"unknown (option|argument|flag)|unexpected argument", re.IGNORECASE)
_FORWARDED_STATUS = {
    StatusKind.COMPACTING: "compacting",
    StatusKind.RETRYING: "retrying",
    StatusKind.PERMISSION_DENIED: "permission_denied",
    StatusKind.WARNING: "warning",
}

Emit = Callable[[protocol.Event], None]


@dataclass
class TurnEnv:
    """What a turn needs from the agent, handed in so this module stays testable."""

    agent: str
    config: AgentConfig
    sessions: SessionStore
    workspace: Path
    temp_dir: Path
    env: Mapping[str, str]
    secrets: Callable[[], Mapping[str, str]]
    known_models: Callable[[], frozenset[str]]
    gemini_ids: Callable[[], tuple[str, ...]]
    register: Callable[[str, CliRun], None]
    unregister: Callable[[str, CliRun], None]
    paths: Paths
    topics: TopicStore | None = None  # topic names and /topicmodel defaults

    def defaults(self, key: str) -> tuple[str, str]:
        """The (provider, model) a session of ``key`` starts on and ``/new`` returns to:
        the topic's lasting default, else the agent's."""
        topic = self.topics.default(key) if self.topics is not None else None
        return topic or (self.config.provider, self.config.model)

    def project(self, key: str) -> projects.ProjectRoot | None:
        """The project folder ``key`` works in (``project_roots``), None: the workspace."""
        name = self.topics.name(key) if self.topics is not None else ""
        if not name:
            session = self.sessions.get(key)
            name = session.topic_name if session is not None else ""
        home = sandbox.account_home(self.paths, self.env)
        return projects.project_root(self.config.project_roots, key, name, home)


@dataclass
class Outcome:
    """The final answer of a turn, as the ``final`` event and the reply envelope carry it."""

    text: str
    provider: str = ""
    model: str = ""
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    duration_ms: int | None = None
    is_error: bool = False
    error_kind: str = ""
    stopped: str = ""  # "interrupt" or "stop" when a user stopped the turn
    notice: str = ""
    buttons: list[list[dict[str, str]]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    refused_files: list[str] = field(default_factory=list)

    def final_fields(self) -> dict[str, object]:
        return {
            "text": self.text,
            "provider": self.provider,
            "model": self.model,
            "session_id": self.session_id,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "duration_ms": self.duration_ms,
            "is_error": self.is_error,
            "error_kind": self.error_kind,
            "stopped": self.stopped,
            "notice": self.notice,
            "buttons": self.buttons,
            "files": self.files,
        }


def freshness(config: AgentConfig) -> FreshnessPolicy:
    return FreshnessPolicy(
        idle_timeout_minutes=config.idle_timeout_minutes,
        daily_reset_enabled=config.daily_reset_enabled,
        daily_reset_hour=config.daily_reset_hour,
        timezone=config.user_timezone,
        max_session_messages=config.max_session_messages,
    )


def identity_for(
    agent: str, session_key: str, socket: str | None = None, config: AgentConfig | None = None
) -> ChildIdentity:
    key = protocol.parse_session_key(session_key)
    transcription = config.transcription if config is not None else None
    return ChildIdentity(
        agent_name=agent,
        chat_id=key.chat,
        topic_id=key.topic,
        transport=key.transport,
        socket=socket,
        transcribe_command=transcription.audio_command if transcription else None,
        video_transcribe_command=transcription.video_command if transcription else None,
    )


def error_text(
    kind: str, detail: str, model: str, timeout_s: float, provider: str = "the CLI"
) -> str:
    """What the user reads when the CLI failed; the session is always kept.

    ``timeout_s`` is the time the turn was allowed (extensions included).
    """
    if kind == ErrorKind.TIMEOUT:
        return (
            f"**Timeout** {SEP} [{model}] The CLI was stopped after"
            f" {format_duration(timeout_s)}. Your session is kept: send another message to"
            " continue where it left off, or /new to start fresh."
        )
    head = (
        f"**Session Error** {SEP} [{model}] The CLI failed. Your session is kept: send"
        " another message to retry, or /new to start fresh."
    )
    login = LOGIN_FIX.get(provider, "log in to it again on the agent's machine")
    causes: dict[str, str] = {
        ErrorKind.AUTH: f"{provider} is not logged in, or its credentials were refused:"
        f" {login} (`ductor doctor` checks it).",
        ErrorKind.RATE_LIMIT: "a rate limit or usage quota was hit. Wait a while, then retry.",
        ErrorKind.CONTEXT_TOO_LONG: "the conversation no longer fits the model's context."
        " Use /new to start a fresh session.",
    }
    first = (detail.strip().splitlines() or ["(no detail)"])[0][:200]
    if kind in causes:
        return f"{head}\n**Cause:** {causes[kind]}\n**Detail:** `{first}`"
    if _BAD_FLAG.search(detail):
        return (
            f"{head}\n**Cause:** {provider} does not accept an option it was given: check"
            f" `cli_parameters.{provider}` in the agent's config.\n**Detail:** `{first}`"
        )
    return f"{head}\n**Detail:** `{first}`"


def cli_missing_text(error: CliNotFound, model: str) -> str:
    """What the user reads when the CLI of the turn is not installed."""
    return f"**CLI missing** {SEP} [{model}] {error}. Your session is kept."


class Turn:
    """Runs one accepted turn; :meth:`run` returns its outcome and never raises."""

    def __init__(self, env: TurnEnv, record: TurnRecord, emit: Emit, request_id: str) -> None:
        self.env = env
        self.record = record
        self.emit = emit
        self.request_id = request_id
        self.run_handle: CliRun | None = None
        self.stop_reason = ""  # set by the agent when a user stops or interrupts the turn

    async def run(self) -> Outcome:
        try:
            return await self._run()
        except DuctorError as exc:
            log.error("turn %s failed: %s", self.record.id, exc)
            return Outcome(text=str(exc), is_error=True, error_kind="other")
        except Exception:
            log.exception("turn %s failed unexpectedly", self.record.id)
            return Outcome(
                text="An internal error occurred. Please try again.",
                is_error=True,
                error_kind="internal",
            )

    async def _run(self) -> Outcome:
        config = self.env.config
        key = self.record.session
        text = self.record.text
        for pattern in prompt.scan_for_injection(text):
            log.warning(
                "possible prompt injection in %s (turn %s): %s", key, self.record.id, pattern
            )
        directives = parse_directives(text, self.env.known_models())
        default_provider, default_model = self.env.defaults(key)
        session, reason = self.env.sessions.resolve(
            key,
            default_provider=default_provider,
            default_model=default_model,
            policy=freshness(config),
        )
        if reason:
            log.info("session %s starts fresh (%s)", key, reason)
        if directives.model or directives.provider:
            provider = str(directives.provider or provider_for_model(directives.model or ""))
            model = directives.model or (
                session.model if session.provider == provider else _default_model(provider)
            )
            if not directives.text.strip():
                return Outcome(
                    text=f"Next message will use: {model} (send `@{model} <text>` to use it).",
                    provider=provider,
                    model=model,
                )
            session = self.env.sessions.retarget(
                key,
                provider=provider,
                model=model,
                default_provider=default_provider,
                default_model=default_model,
            )
            text = directives.text
        outcome = await self._attempt(session, text, retried=False)
        if outcome.is_error and outcome.error_kind == "retry_fresh":
            self.env.sessions.reset_bucket(key, session.provider)
            self.emit(Events.status(self.request_id, "recovering", "Please wait, recovering…"))
            session = self.env.sessions.get(key) or session
            outcome = await self._attempt(session, text, retried=True)
            if outcome.error_kind == "retry_fresh":
                outcome.error_kind = "other"
                outcome.text = (
                    "Could not recover your session even after starting a fresh one."
                    " Please send your request again, or /new."
                )
            elif not outcome.is_error:
                outcome.notice = RESTORED_NOTICE
        return outcome

    async def _attempt(self, session: Session, text: str, *, retried: bool) -> Outcome:
        env = self.env
        config = env.config
        provider = session.provider
        bucket = session.bucket(provider)
        new_session = bucket.session_id is None
        project = env.project(self.record.session)
        if project is not None and not project.exists:
            log.warning("turn %s: project folder %s is missing", self.record.id, project.path)
            return Outcome(
                text=projects.missing_text(project),
                provider=provider,
                model=session.model,
                is_error=True,
                error_kind="project_missing",
            )
        suffixes = prompt.hook_suffixes(
            bucket.message_count,
            new_session=new_session,
            tasks_enabled=self.record.kind is TurnKind.MESSAGE
            and prompt.tasks_available(env.workspace, enabled=config.tasks.enabled),
            reflection_every=(
                config.memory.reflection.every_n_messages if config.memory.reflection.enabled else 0
            ),
            reflection_prompt=config.memory.reflection.prompt,
        )
        rulefiles.carry_edits(env.workspace)  # an edit of CLAUDE.md reaches AGENTS.md, ...
        files = [incoming_file(Path(f)) for f in self.record.files]
        full_prompt = prompt.assemble_prompt(
            text, quoted=self.record.quoted, files=files, suffixes=suffixes
        )
        append = prompt.system_prompt_append(
            env.workspace,
            extra_files=config.append_system_prompt_files,
            memory=new_session,
            sandbox=sandbox.prompt_sentence(env.workspace, config),
        )
        if project is not None:
            # The project's own rule file applies there; the workspace stays reachable.
            append = "\n\n".join(p for p in (projects.workspace_note(env.workspace), append) if p)
        effort = session.effort or config.reasoning_effort
        request = TurnRequest(
            prompt=full_prompt,
            session_id=bucket.session_id,
            model=session.model,
            effort=effort if provider != Provider.GEMINI else "",
            permission_mode=PermissionMode(config.permission_mode)
            if config.permission_mode in {m.value for m in PermissionMode}
            else PermissionMode.DEFAULT,
            append_system_prompt=append,
            max_turns=config.max_turns or None,
            max_budget_usd=config.max_budget_usd or None,
            extra_args=tuple(getattr(config.cli_parameters, provider, ())),
        )
        timeout = (
            config.timeouts.normal
            if self.record.kind is not TurnKind.ASK
            else config.timeouts.oneshot
        )
        spec = RunSpec(
            provider=Provider(provider),
            request=request,
            cwd=project.path if project is not None else env.workspace,
            env=env.env,
            identity=identity_for(
                env.agent, self.record.session, str(env.paths.agent_socket(env.agent)), config
            ),
            secrets=env.secrets(),
            policy=TimeoutPolicy.from_config(config.timeouts, timeout),
            temp_dir=env.temp_dir,
        )
        run = CliRun(spec)
        self.run_handle = run
        env.register(self.record.session, run)
        error: Error | None = None
        result: Result | None = None
        try:
            async for event in run.events():
                if isinstance(event, SessionStarted):
                    env.sessions.record_session_id(self.record.session, provider, event.session_id)
                elif isinstance(event, TextDelta):
                    self.emit(Events.text(self.request_id, event.text))
                elif isinstance(event, ThinkingDelta):
                    self.emit(Events.thinking(self.request_id, event.text))
                elif isinstance(event, ToolUse):
                    self.emit(Events.tool(self.request_id, event.name, event.detail))
                elif isinstance(event, Status) and event.status in _FORWARDED_STATUS:
                    self.emit(
                        Events.status(self.request_id, _FORWARDED_STATUS[event.status], event.text)
                    )
                elif isinstance(event, Compaction):
                    self.emit(Events.status(self.request_id, "compacting", "Compacting context"))
                elif isinstance(event, TimeoutStatus):
                    kind = {"warning": "timeout_warning", "extended": "timeout_extended"}.get(
                        event.notice.kind
                    )
                    if kind:
                        self.emit(Events.status(self.request_id, kind, event.notice.text))
                elif isinstance(event, Error):
                    error = event
                elif isinstance(event, Result):
                    result = event
        except CliNotFound as exc:
            log.warning("turn %s: %s", self.record.id, exc)
            return Outcome(
                text=cli_missing_text(exc, session.model),
                provider=provider,
                model=session.model,
                is_error=True,
                error_kind="cli_missing",
            )
        finally:
            env.unregister(self.record.session, run)
        return self._outcome(session, run, result, error, timeout, retried=retried)

    def _outcome(
        self,
        session: Session,
        run: CliRun,
        result: Result | None,
        error: Error | None,
        timeout: float,
        *,
        retried: bool,
    ) -> Outcome:
        env = self.env
        provider, key = session.provider, self.record.session
        model = (result.model if result and result.model else "") or session.model
        base = Outcome(
            text="",
            provider=provider,
            model=model,
            session_id=result.session_id if result else None,
            input_tokens=result.input_tokens if result else 0,
            output_tokens=result.output_tokens if result else 0,
            cost_usd=result.cost_usd if result else None,
            duration_ms=result.duration_ms if result else None,
        )
        if result is not None and result.session_id:
            env.sessions.record_session_id(key, provider, result.session_id)
        if run.stopped_by is ErrorKind.INTERRUPTED:
            # A user's /stop or /interrupt: the session (id recorded above) is kept and
            # the turn ends quietly; the partial text was already streamed.
            base.stopped = self.stop_reason or "interrupt"
            return base
        failed = error is not None or result is None or result.is_error
        if failed:
            kind = error.error if error is not None else ErrorKind.OTHER
            if run.stopped_by is ErrorKind.TIMEOUT:
                # Whatever the CLI made of our SIGTERM (an "aborted" result, a silent
                # exit), the user must read that the turn timed out.
                kind = ErrorKind.TIMEOUT
            detail = error.text if error is not None else "the CLI ended without a result"
            resumed = session.bucket(provider).session_id is not None
            seen = detail + (result.text if result else "")
            invalid = resumed and bool(_INVALID_RESUME.search(seen))
            killed = kind is ErrorKind.INTERRUPTED and run.stopped_by is None
            if not retried and (invalid or killed):
                log.warning(
                    "turn %s: %s; retrying once with a fresh session", self.record.id, detail
                )
                base.is_error, base.error_kind = True, "retry_fresh"
                return base
            if killed:
                base.text = (
                    "The CLI was killed before it finished. Please send the same request again."
                )
            else:
                ours = run.stopped_by is ErrorKind.TIMEOUT
                # An API's own timeout (HTTP 408/504) is an error like others, with detail.
                shown = ErrorKind.OTHER if kind is ErrorKind.TIMEOUT and not ours else kind
                allowed = (run.time_allowed if ours else None) or timeout
                base.text = error_text(str(shown), detail, model, allowed, provider)
            base.is_error, base.error_kind = True, str(kind)
            log.warning("turn %s in %s failed (%s): %s", self.record.id, key, kind, detail)
            return base
        assert result is not None
        updated = env.sessions.record_turn(
            key,
            provider,
            session_id=result.session_id,
            model=model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cost_usd=result.cost_usd,
        )
        text = result.text.strip() or EMPTY_ANSWER
        text, labels = markup.extract_buttons(text)
        text, paths = markup.extract_files(text)
        for path in paths:
            try:
                checked = markup.check_file(
                    path,
                    paths=env.paths,
                    workspace=env.workspace,
                    home=Path(env.env.get("HOME") or Path.home()),
                    file_access=env.config.file_access,
                )
            except markup.FileRefused as exc:
                base.refused_files.append(path)
                text += f"\n\n(File not sent: {path}: {exc})"
            else:
                base.files.append(str(checked))
        base.buttons = [
            [{"label": label, "data": markup.button_data(label)} for label in row] for row in labels
        ]
        note = session_age_note(
            updated, warning_hours=env.config.session_age_warning_hours, now=_now()
        )
        base.text = f"{text}\n\n---\n{note}" if note else text
        return base


def incoming_file(path: Path) -> prompt.IncomingFile:
    """A file a transport saved for this turn, with what the agent should know of it."""
    mime = mimetypes.guess_type(path.name)[0] or ""
    try:
        size: int | None = path.stat().st_size
    except OSError:
        size = None
    return prompt.IncomingFile(path=path, mime=mime, size=size)


def _default_model(provider: str) -> str:
    return {"claude": "opus", "codex": "gpt-5.5", "gemini": "auto"}.get(provider, "")


def _now() -> datetime:
    return datetime.now(UTC)

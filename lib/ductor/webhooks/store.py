"""An agent's webhooks: ``STATE/AGENT/webhooks.toml`` (0600), one ``[hooks.ID]`` table
each, and the record of each hook's last call (``STATE/AGENT/webhook_calls/ID.json``).

The hooks file holds secrets (tokens, HMAC keys), so it lives in the agent's state, never
in the workspace, and is rewritten atomically under a lock: ``ductor webhook`` and the
agent's tool scripts can change it at the same time without losing an edit. The server
only reads it, and writes only the call records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ductor import atomic, tomlstore
from ductor.cron.jobs import dependency_problem
from ductor.errors import DuctorError, UsageError

HOOK_ID = r"[a-z0-9][a-z0-9_-]{0,47}"
_HOOK_ID = re.compile(HOOK_ID)
FILE_NAME = "webhooks.toml"
CALLS_DIR = "webhook_calls"
TRANSPORTS = {"tg": "telegram", "mx": "matrix"}


class Mode(StrEnum):
    WAKE = "wake"  # the prompt is injected into the chat's active session
    CRON_TASK = "cron_task"  # a fresh CLI run in the hook's task folder, like a cron job


class AuthMode(StrEnum):
    BEARER = "bearer"  # Authorization: Bearer <token>
    HMAC = "hmac"  # a signature of the body in a header (GitHub, Stripe-like)


ALGORITHMS = ("sha256", "sha1", "sha512")
ENCODINGS = ("hex", "base64")


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Hook:
    id: str
    prompt_template: str
    mode: str = Mode.WAKE.value
    title: str = ""
    description: str = ""
    enabled: bool = True
    task_folder: str = ""  # cron_task: folder under workspace/cron_tasks/ ("" = the id)
    auth: str = AuthMode.BEARER.value
    token: str = ""  # bearer
    hmac_secret: str = ""
    hmac_header: str = "X-Hub-Signature-256"
    hmac_algorithm: str = "sha256"
    hmac_encoding: str = "hex"
    hmac_prefix: str = "sha256="  # stripped from the header value before comparing
    provider: str = ""  # cron_task overrides; "" = the agent's defaults
    model: str = ""
    effort: str = ""
    quiet_start: int | None = None  # cron_task: hours 0-23 (user_timezone) it is skipped in
    quiet_end: int | None = None
    dependency: str = ""  # cron_task: runs sharing it (and cron jobs) never overlap
    transport: str = ""  # where it answers; "" = the agent's main user
    chat_id: str = ""
    topic_id: str = ""
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def secret(self) -> str:
        return self.token if self.auth == AuthMode.BEARER else self.hmac_secret

    def public(self) -> dict[str, Any]:
        """Everything but the secrets (for listings and the agent's tools)."""
        data = self.to_dict()
        for key in ("token", "hmac_secret"):
            data[key] = "***" if data[key] else ""
        return data


def validate(hook: Hook) -> Hook:
    """Check every field; returns the hook with the transport name normalised and a
    secret generated where its auth mode needs one. UsageError names hook and field."""

    def bad(field: str, detail: str) -> UsageError:
        return UsageError(f"webhook {hook.id!r}: {field}: {detail}")

    if not _HOOK_ID.fullmatch(hook.id):
        raise UsageError(
            f"invalid webhook id {hook.id!r}: use 1-48 characters, lower-case letters,"
            " digits, '_' or '-', starting with a letter or digit"
        )
    if hook.mode not in tuple(Mode):
        raise bad("mode", f"{hook.mode!r} is none of {', '.join(Mode)}")
    if not hook.prompt_template.strip():
        raise bad("prompt_template", "must not be empty (it is what the agent is asked)")
    if hook.auth not in tuple(AuthMode):
        raise bad("auth", f"{hook.auth!r} is none of {', '.join(AuthMode)}")
    if hook.hmac_algorithm not in ALGORITHMS:
        raise bad("hmac_algorithm", f"{hook.hmac_algorithm!r} is none of {', '.join(ALGORITHMS)}")
    if hook.hmac_encoding not in ENCODINGS:
        raise bad("hmac_encoding", f"{hook.hmac_encoding!r} is none of {', '.join(ENCODINGS)}")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", hook.hmac_header):
        raise bad("hmac_header", f"{hook.hmac_header!r} is not an HTTP header name")
    if hook.task_folder and not _HOOK_ID.fullmatch(hook.task_folder):
        raise bad("task_folder", "a plain folder name under cron_tasks/ (no '/', no '..')")
    longs = {long: short for short, long in TRANSPORTS.items()}
    transport = longs.get(hook.transport, hook.transport)
    if transport and transport not in TRANSPORTS:
        raise bad("transport", f"{hook.transport!r} is none of {', '.join(TRANSPORTS)}")
    if (hook.quiet_start is None) != (hook.quiet_end is None):
        raise bad("quiet hours", "give both a start and an end hour, or neither")
    for field, hour in (("quiet_start", hook.quiet_start), ("quiet_end", hook.quiet_end)):
        if hour is not None and not 0 <= hour <= 23:
            raise bad(field, f"{hour} is not an hour from 0 to 23")
    problem = dependency_problem(hook.dependency)
    if problem is not None:
        raise bad("dependency", problem)
    if hook.topic_id and not hook.chat_id:
        raise bad("topic_id", "a topic needs a chat (give the chat id too)")
    for field in ("chat_id", "topic_id", "token", "hmac_prefix"):
        if any(char.isspace() for char in getattr(hook, field)):
            raise bad(field, "must not contain spaces")
    changes: dict[str, Any] = {"transport": transport}
    if hook.auth == AuthMode.BEARER and not hook.token:
        changes["token"] = new_token()
    if hook.auth == AuthMode.HMAC and not hook.hmac_secret:
        changes["hmac_secret"] = new_token()
    return dataclasses.replace(hook, **changes)


class HookStore(tomlstore.TomlStore[Hook]):
    """The webhooks of one agent, kept in ``STATE_DIR/webhooks.toml`` (mode 0600)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, _LAYOUT)

    def add(self, hook: Hook) -> Hook:
        hook = validate(hook)
        with self._locked() as hooks:
            if hook.id in hooks:
                raise UsageError(
                    f"a webhook named {hook.id!r} exists already; change it with"
                    " `ductor webhook edit` or pick another name"
                )
            stamp = tomlstore.now_iso()
            hook = dataclasses.replace(hook, created_at=stamp, updated_at=stamp)
            hooks[hook.id] = hook
        return hook

    def rotate(self, hook_id: str) -> Hook:
        """A new secret for the hook's auth mode; the old one stops working at once."""
        hook = self.get(hook_id)
        key = "token" if hook.auth == AuthMode.BEARER else "hmac_secret"
        return self.update(hook_id, **{key: new_token()})

    def remove(self, hook_id: str) -> Hook:
        with self._locked() as hooks:
            hook = self.require(hooks, hook_id)
            del hooks[hook_id]
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / CALLS_DIR / f"{hook_id}.json").unlink()
        return hook

    # The record of the last calls: written by the server and the runner, read by status.

    def record_call(self, hook_id: str, **fields_: object) -> None:
        directory = self.state_dir / CALLS_DIR
        atomic.make_directories(directory)
        file = directory / f"{hook_id}.json"
        previous = self.last_call(hook_id)
        atomic.write_json(file, {**previous, **fields_}, mode=0o600)

    def last_call(self, hook_id: str) -> dict[str, Any]:
        try:
            data = atomic.read_json(self.state_dir / CALLS_DIR / f"{hook_id}.json")
        except (OSError, DuctorError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


HEADER = """\
Webhooks of this agent, written by `ductor webhook` (and the agent's webhook tools).
It holds their tokens and HMAC secrets: keep it private (mode 0600).
Change them with `ductor webhook edit AGENT ID ...`. Comments here are not kept."""


_LAYOUT = tomlstore.TableFile(
    file_name=FILE_NAME,
    record=Hook,
    table="hooks",
    key="id",
    key_pattern=HOOK_ID,
    title="webhook",
    noun="webhook",
    validate=validate,
    plural="webhooks",
    required=("prompt_template",),
    header=HEADER,
)


def render(hooks: dict[str, Hook]) -> str:
    return tomlstore.render(hooks, _LAYOUT)

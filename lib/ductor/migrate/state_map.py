"""The original's state files → this product's: sessions (with their provider buckets),
chat activity, cron jobs and named sessions. Each function takes parsed JSON and returns the new
document plus what it dropped, with the reason; nothing here touches a file."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ductor.agent import sessions as session_store
from ductor.config.schema import PROVIDERS, REASONING_EFFORTS
from ductor.cron.jobs import Job, validate
from ductor.errors import UsageError
from ductor.tasks.store import Status as TaskStatus
from ductor.tasks.store import Task, TaskKind

Dropped = list[tuple[str, str]]


@dataclass
class SessionsResult:
    document: dict[str, Any]  # the new sessions.json
    dropped: Dropped = field(default_factory=list)
    # (provider, CLI session id) of every bucket kept: their CLI files are carried.
    cli_sessions: list[tuple[str, str]] = field(default_factory=list)


def _iso(value: object) -> str | None:
    """An ISO 8601 UTC timestamp from the original's ISO string or epoch seconds."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC).isoformat()
        if isinstance(value, str) and value:
            moment = datetime.fromisoformat(value)
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            return moment.astimezone(UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def session_key(raw_key: str, record: Mapping[str, Any], rooms: Mapping[int, str]) -> str:
    """This product's key for one of the original's: ``tg:CHAT[:TOPIC]`` stays,
    legacy ``CHAT[:TOPIC]`` is Telegram, ``mx:HASH`` becomes ``mx:!room:server``.
    Raises ValueError with the reason when it cannot be mapped."""
    transport, _, rest = raw_key.partition(":")
    if transport.lstrip("-").isdigit():  # legacy key without a transport
        transport, rest = "tg", raw_key
    if transport == "tg":
        parts = rest.split(":")
        if not all(p.lstrip("-").isdigit() for p in parts) or len(parts) > 2:
            raise ValueError("not a Telegram chat id")
        return f"tg:{rest}"
    if transport == "mx":
        chat = record.get("chat_id")
        number = int(rest) if rest.lstrip("-").isdigit() else chat
        room = rooms.get(number) if isinstance(number, int) else None
        if room is None:
            raise ValueError("its Matrix room is not in matrix_store/room_id_map.json")
        return f"mx:{room}"
    if transport == "sl":
        raise ValueError("Slack is not supported")
    raise ValueError(f"unknown transport {transport!r}")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _bucket(raw: Mapping[str, Any], last_active: str | None) -> dict[str, Any]:
    tokens = _count(raw.get("total_tokens"))
    cost = raw.get("total_cost_usd")
    return {
        "session_id": raw.get("session_id") or None,
        "message_count": _count(raw.get("message_count")),
        # The original kept one total; it is counted as input here.
        "input_tokens": tokens,
        "output_tokens": 0,
        "cost_usd": float(cost) if isinstance(cost, int | float) else 0.0,
        "last_active": last_active,
    }


def map_sessions(
    original: Mapping[str, Any], *, rooms: Mapping[int, str], default_provider: str
) -> SessionsResult:
    result = SessionsResult({"version": session_store.FORMAT_VERSION, "sessions": {}})
    records: dict[str, Any] = result.document["sessions"]
    for raw_key, record in original.items():
        where = f"sessions.json {raw_key}"
        if not isinstance(record, dict):
            result.dropped.append((where, "not an object"))
            continue
        try:
            key = session_key(raw_key, record, rooms)
        except ValueError as exc:
            result.dropped.append((where, str(exc)))
            continue
        last_active = _iso(record.get("last_active"))
        created_at = _iso(record.get("created_at")) or last_active
        if last_active is None or created_at is None:
            result.dropped.append((where, "no usable created_at/last_active"))
            continue
        buckets = dict(record.get("provider_sessions") or {})
        provider = str(record.get("provider") or default_provider)
        if record.get("session_id") and provider not in buckets:  # legacy flat fields
            buckets[provider] = record
        kept: dict[str, Any] = {}
        for name, bucket in buckets.items():
            if name not in PROVIDERS:
                result.dropped.append((f"{where} {name} bucket", f"{name} is not supported"))
            elif isinstance(bucket, dict):
                kept[name] = _bucket(bucket, last_active)
                if kept[name]["session_id"]:
                    result.cli_sessions.append((name, str(kept[name]["session_id"])))
        if provider not in PROVIDERS:
            result.dropped.append((f"{where} provider", f"{provider} → {default_provider}"))
            provider, model = default_provider, ""
        else:
            model = str(record.get("model") or "")
        effort = str(record.get("reasoning_effort") or "")
        records[key] = {
            "topic_name": str(record.get("topic_name") or ""),
            "provider": provider,
            "model": model or "default",
            "effort": effort if effort in REASONING_EFFORTS else "",
            "created_at": created_at,
            "last_active": last_active,
            "provider_sessions": kept,
        }
    return result


def map_chat_activity(original: Mapping[str, Any]) -> tuple[dict[str, Any], Dropped]:
    """``chat_activity.json`` of the original → the Telegram transport's."""
    dropped: Dropped = []
    records: dict[str, Any] = {}
    raw = original.get("records")
    for key, record in (raw if isinstance(raw, dict) else {}).items():
        try:
            chat = int(record.get("chat_id", key))
        except (TypeError, ValueError, AttributeError):
            dropped.append((f"chat_activity.json {key}", "no usable chat id"))
            continue
        status = str(record.get("status") or "active")
        if status not in ("active", "rejected", "left", "kicked", "auto_left"):
            status = "active"
        records[str(chat)] = {
            "chat_id": chat,
            "chat_type": str(record.get("chat_type") or ""),
            "title": str(record.get("title") or ""),
            "status": status,
            "first_seen": _iso(record.get("first_seen")) or "",
            "last_seen": _iso(record.get("last_seen")) or "",
            "rejected_count": _count(record.get("rejected_count")),
        }
    return {"records": dict(sorted(records.items(), key=lambda kv: int(kv[0])))}, dropped


@dataclass(frozen=True)
class MappedJob:
    job: Job
    folder: str  # the original's task folder, under workspace/cron_tasks/


def job_name(raw: str) -> str:
    """A job name this product accepts (lower case, ``[a-z0-9_-]``, ≤ 48)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")[:48]
    return name or "job"


def map_cron_jobs(
    original: Mapping[str, Any], *, rooms: Mapping[int, str]
) -> tuple[list[MappedJob], Dropped]:
    dropped: Dropped = []
    jobs: list[MappedJob] = []
    names: set[str] = set()
    raw_jobs = original.get("jobs")
    for index, raw in enumerate(raw_jobs if isinstance(raw_jobs, list) else []):
        where = f"cron_jobs.json job {index}"
        if not isinstance(raw, dict) or not raw.get("id"):
            dropped.append((where, "no id"))
            continue
        where = f"cron job {raw['id']}"
        try:
            job, notes = _job(raw, rooms)
        except (UsageError, ValueError) as exc:
            dropped.append((where, f"not migrated: {exc}"))
            continue
        if job.name in names:
            dropped.append((where, f"its name {job.name!r} is taken by another job"))
            continue
        names.add(job.name)
        dropped.extend((f"{where} {what}", why) for what, why in notes)
        jobs.append(MappedJob(job, str(raw.get("task_folder") or raw["id"])))
    return jobs, dropped


def _job(raw: Mapping[str, Any], rooms: Mapping[int, str]) -> tuple[Job, Dropped]:
    notes: Dropped = []
    provider = str(raw.get("provider") or "")
    model = str(raw.get("model") or "")
    if provider and provider not in PROVIDERS:
        notes.append(("provider", f"{provider} is not supported: the agent's default runs it"))
        provider = model = ""
    effort = str(raw.get("reasoning_effort") or "")
    if effort and effort not in REASONING_EFFORTS:
        notes.append(("reasoning_effort", f"{effort!r} is not known: the default applies"))
        effort = ""
    if raw.get("cli_parameters"):
        notes.append(("cli_parameters", "per-job CLI parameters are not supported"))
    transport, chat = str(raw.get("transport") or "tg"), raw.get("chat_id")
    chat_id = topic_id = ""
    if isinstance(chat, int) and chat != 0:
        if transport == "mx":
            room = rooms.get(chat)
            if room is None:
                raise ValueError("its Matrix room is not in matrix_store/room_id_map.json")
            chat_id = room
        else:
            chat_id = str(chat)
            topic = raw.get("topic_id")
            topic_id = str(topic) if isinstance(topic, int) and topic else ""
    quiet = (raw.get("quiet_start"), raw.get("quiet_end"))
    if (quiet[0] is None) != (quiet[1] is None):
        notes.append(("quiet hours", "only one of start and end was set: dropped"))
        quiet = (None, None)
    job = Job(
        name=job_name(str(raw["id"])),
        schedule=str(raw.get("schedule") or ""),
        prompt=str(raw.get("agent_instruction") or "Read TASK_DESCRIPTION.md and carry it out."),
        title=str(raw.get("title") or ""),
        description=str(raw.get("description") or ""),
        timezone=str(raw.get("timezone") or ""),
        enabled=bool(raw.get("enabled", True)),
        provider=provider,
        model=model,
        effort=effort,
        quiet_start=quiet[0],
        quiet_end=quiet[1],
        dependency=str(raw.get("dependency") or ""),
        transport=transport if chat_id else "",
        chat_id=chat_id,
        topic_id=topic_id,
        silent_on_success=bool(raw.get("silent_on_success", False)),
        created_at=_iso(raw.get("created_at")) or "",
    )
    return validate(job), notes


def map_named_sessions(
    original: Mapping[str, Any], *, rooms: Mapping[int, str]
) -> tuple[list[Task], Dropped]:
    """``named_sessions.json`` → named-session records (``STATE/tasks/ID.json``), idle and
    ready to be continued with ``@name``. The record's id is derived from the chat and
    the name, so a second run finds the same record."""
    dropped: Dropped = []
    records: list[Task] = []
    raw_sessions = original.get("sessions")
    for index, raw in enumerate(raw_sessions if isinstance(raw_sessions, list) else []):
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(name, str) or not name:
            dropped.append((f"named_sessions.json session {index}", "no name"))
            continue
        where = f"named session {name}"
        transport = str(raw.get("transport") or "tg")
        chat, topic = raw.get("chat_id"), raw.get("topic_id")
        raw_key = f"{transport}:{chat}" + (f":{topic}" if isinstance(topic, int) else "")
        try:
            key = session_key(raw_key, raw, rooms)
        except ValueError as exc:
            dropped.append((where, str(exc)))
            continue
        provider = str(raw.get("provider") or "")
        if provider not in PROVIDERS:
            dropped.append((where, f"{provider or 'no provider'} is not supported"))
            continue
        effort = str(raw.get("reasoning_effort") or "")
        created = raw.get("created_at")
        records.append(
            Task(
                id=hashlib.sha256(f"{key}\0{name}".encode()).hexdigest()[:8],
                name=name,
                prompt=str(raw.get("last_prompt") or raw.get("prompt_preview") or ""),
                provider=provider,
                model=str(raw.get("model") or ""),
                effort=effort if effort in REASONING_EFFORTS else "",
                session=key,
                status=TaskStatus.DONE.value,
                created_at=float(created) if isinstance(created, int | float) else 0.0,
                session_id=str(raw.get("session_id") or ""),
                run=_count(raw.get("message_count")),
                kind=TaskKind.SESSION.value,
            )
        )
    return records, dropped

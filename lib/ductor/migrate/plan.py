"""The migration plan of each agent of the original: every file to write or copy, every
key or record dropped with the reason, and whether an agent of that name exists already.

Building a plan reads the original's home and this product's directories and writes
nothing; :func:`execute` carries it out. Every destination is written only when it is
missing, so a second run changes nothing, and a file changed since is never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductor import atomic
from ductor.config import secrets as secret_names
from ductor.cron import jobs as cron_jobs
from ductor.errors import UsageError
from ductor.migrate import config_map, state_map, webhooks_map
from ductor.migrate.cli_sessions import Carry, claude_carries, gemini_carries
from ductor.migrate.files import workspace_files
from ductor.migrate.source import AgentHome, OriginalHome
from ductor.migrate.toml_out import MARKER, config_text
from ductor.paths import Paths, validate_agent_name
from ductor.tasks import store as task_store
from ductor.webhooks import store as webhook_store

KEPT_ASIDE = "migrated-from-ductor-0.20"
KEPT_ASIDE_README = """\
# Kept from the original ductor

`ductor migrate` put here what this product does not take over, unchanged, so that
nothing is lost:

- `tasks.json`: the original's record of its background tasks (their folders came across
  to `workspace/tasks/`; the records are history and are not taken over).
- `SHAREDMEMORY.md`: the shared memory of all agents (its text is also in each agent's
  MAINMEMORY.md).
"""
SECRET_MODE = 0o600
CONFIG_MODE = 0o644


@dataclass(frozen=True)
class Write:
    dest: Path
    data: bytes
    what: str
    mode: int = SECRET_MODE
    secret: bool = False  # never shown, not even its size


@dataclass
class AgentPlan:
    name: str
    source: AgentHome
    conflict: str | None = None
    writes: list[Write] = field(default_factory=list)
    copies: list[tuple[str, Carry]] = field(default_factory=list)  # (what, carry)
    dropped: list[tuple[str, str]] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    jobs: list[cron_jobs.Job] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)  # webhook ids
    named: list[str] = field(default_factory=list)  # named sessions, "name (chat)"
    gemini_project: str | None = None  # to register for the new workspace
    settings: int = 0
    defaults: list[str] = field(default_factory=list)  # original keys left at our default


@dataclass
class Plan:
    source: Path
    agents: list[AgentPlan]
    problems: list[tuple[str, str]]


def _rooms(home: OriginalHome, agent: AgentHome, store: str) -> dict[int, str]:
    raw = home.read_json(agent.home / store / "room_id_map.json") or {}
    return {v: k for k, v in raw.items() if isinstance(k, str) and isinstance(v, int)}


def _json(value: object) -> bytes:
    return atomic.dumps_json(value).encode("utf-8")


def build(home: OriginalHome, paths: Paths, *, only: str | None, env: Mapping[str, str]) -> Plan:
    originals = home.agents()
    if only is not None and only not in {a.name for a in originals}:
        known = ", ".join(a.name for a in originals)
        raise UsageError(f"the original has no agent named {only!r} (it has: {known})")
    main_config = home.config()
    plans = [
        _agent_plan(home, paths, agent, main_config, env)
        for agent in originals
        if only is None or agent.name == only
    ]
    return Plan(home.root, plans, home.problems.items)


def _conflict(paths: Paths, name: str) -> str | None:
    try:
        validate_agent_name(name)
    except UsageError as exc:
        return f"{exc}; rename it in agents.json of a copy of the home and migrate that"
    file = paths.agent_config(name)
    try:
        first = file.read_text(encoding="utf-8").splitlines()[:1]
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{file} cannot be read ({exc.strerror})"
    if first == [MARKER]:
        return None  # an earlier run of ductor migrate: carry on where it stopped
    return (
        f"an agent named {name!r} exists already ({file}) and was not made by ductor"
        f" migrate; remove it (`ductor agent remove {name}`) or leave it out with --only"
    )


def _agent_plan(
    home: OriginalHome,
    paths: Paths,
    agent: AgentHome,
    main_config: dict[str, Any],
    env: Mapping[str, str],
) -> AgentPlan:
    plan = AgentPlan(agent.name, agent, conflict=_conflict(paths, agent.name))
    if plan.conflict is not None:
        return plan
    name = agent.name
    raw = main_config if agent.is_main else config_map.effective_config(main_config, agent.entry)
    matrix = raw.get("matrix")
    matrix = matrix if isinstance(matrix, dict) else {}
    store = str(matrix.get("store_path") or "matrix_store")
    rooms = _rooms(home, agent, store)
    login = home.read_json(agent.home / store / "credentials.json")
    mapped = config_map.map_config(raw, rooms=rooms, matrix_login=login)
    file = paths.agent_config(name)
    text = config_text(mapped, agent=name, source=agent.home, file=file)
    plan.writes.append(Write(file, text.encode(), "config", CONFIG_MODE))
    plan.settings, plan.defaults = len(mapped.settings), mapped.defaults
    plan.dropped.extend(mapped.dropped)
    for key, value in sorted(mapped.secrets.items()):
        dest = secret_names.secret_path(paths, name, key)
        plan.writes.append(Write(dest, value.encode() + b"\n", "secret", secret=True))
    _dotenv(home, paths, agent, mapped.dotenv, plan)
    state = paths.agent_state(name)
    default_provider = str(raw.get("provider") or "claude")
    sessions = home.read_json(agent.home / "sessions.json")
    claude_ids: list[str] = []
    gemini_ids: list[str] = []
    if sessions is not None:
        result = state_map.map_sessions(sessions, rooms=rooms, default_provider=default_provider)
        plan.writes.append(Write(state / "sessions.json", _json(result.document), "sessions"))
        plan.dropped.extend(result.dropped)
        claude_ids += [sid for provider, sid in result.cli_sessions if provider == "claude"]
        gemini_ids += [sid for provider, sid in result.cli_sessions if provider == "gemini"]
    _kept_aside(home, agent, state, plan)
    for provider, sid in _named_sessions(home, paths, agent, rooms, plan):
        {"claude": claude_ids, "gemini": gemini_ids}.get(provider, []).append(sid)
    activity = home.read_json(agent.home / "chat_activity.json")
    if activity is not None:
        document, dropped = state_map.map_chat_activity(activity)
        dest = state / "telegram" / "chat_activity.json"
        plan.writes.append(Write(dest, _json(document), "chat activity"))
        plan.dropped.extend(dropped)
    renamed = _cron(home, paths, agent, rooms, plan)
    renamed.update(_webhooks(home, paths, agent, plan))
    new_workspace = paths.workspace(name)
    files = workspace_files(agent.workspace, new_workspace, renamed=renamed)
    plan.copies.extend(("workspace", carry) for carry in files.carries)
    plan.left = files.left
    carries, missing = claude_carries(
        claude_ids, old_workspace=agent.workspace, new_workspace=new_workspace, env=env
    )
    plan.copies.extend(("claude session", carry) for carry in carries)
    if missing:
        plan.notes.append(
            f"{len(missing)} Claude session(s) have no file under ~/.claude/projects"
            " (deleted, or from another machine): those chats start fresh"
        )
    found, lost, project = gemini_carries(
        gemini_ids, new_workspace=new_workspace, agent=name, env=env
    )
    plan.copies.extend(("gemini session", carry) for carry in found)
    plan.gemini_project = project
    if project is not None:
        plan.notes.append(f"the new workspace becomes Gemini project {project!r}")
    if lost:
        plan.notes.append(
            f"{len(lost)} Gemini session(s) have no chat file under ~/.gemini/tmp:"
            " those chats start fresh"
        )
    return plan


def _dotenv(
    home: OriginalHome,
    paths: Paths,
    agent: AgentHome,
    extra: dict[str, str],
    plan: AgentPlan,
) -> None:
    text = home.read_text(agent.home / ".env")
    if text is None and not agent.is_main:
        text = home.read_text(home.root / ".env")  # the original passed the main .env on
    lines = [text.rstrip("\n")] if text else []
    for key, value in extra.items():
        if not any(line.strip().removeprefix("export ").startswith(f"{key}=") for line in lines):
            lines.append(f"{key}={value}")
    if lines:
        data = ("\n".join(lines) + "\n").encode()
        dest = paths.agent_credentials(agent.name) / ".env"
        plan.writes.append(Write(dest, data, ".env", secret=True))


def _kept_aside(home: OriginalHome, agent: AgentHome, state: Path, plan: AgentPlan) -> None:
    if not agent.is_main:
        return
    aside = state / KEPT_ASIDE
    kept = False
    for name in ("tasks.json", "SHAREDMEMORY.md"):
        data = home.read_bytes(agent.home / name)
        if data is not None:
            kept = True
            plan.writes.append(Write(aside / name, data, "kept aside"))
    if kept:
        plan.writes.append(Write(aside / "README.md", KEPT_ASIDE_README.encode(), "kept aside"))


def _named_sessions(
    home: OriginalHome,
    paths: Paths,
    agent: AgentHome,
    rooms: Mapping[int, str],
    plan: AgentPlan,
) -> list[tuple[str, str]]:
    """Plan the agent's named sessions; returns (provider, CLI session id) of each."""
    original = home.read_json(agent.home / "named_sessions.json")
    if original is None:
        return []
    records, dropped = state_map.map_named_sessions(original, rooms=rooms)
    plan.dropped.extend(dropped)
    directory = paths.agent_state(agent.name) / task_store.RECORDS_DIR
    for task in records:
        data = _json(task.to_dict())
        plan.writes.append(Write(directory / f"{task.id}.json", data, "named session"))
    plan.named = [f"{t.name} ({t.session})" for t in records]
    return [(t.provider, t.session_id) for t in records if t.session_id]


def _webhooks(
    home: OriginalHome, paths: Paths, agent: AgentHome, plan: AgentPlan
) -> dict[str, str]:
    """Plan the agent's webhooks; returns original task folder → folder here."""
    original = home.read_json(agent.home / "webhooks.json")
    if original is None:
        return {}
    hooks, dropped = webhooks_map.map_webhooks(original)
    plan.dropped.extend(dropped)
    plan.hooks = sorted(hooks)
    if hooks:
        dest = paths.agent_state(agent.name) / webhook_store.FILE_NAME
        text = webhook_store.render(hooks)
        plan.writes.append(Write(dest, text.encode(), "webhooks", secret=True))
    return webhooks_map.renamed_folders(original, hooks)


def _cron(
    home: OriginalHome,
    paths: Paths,
    agent: AgentHome,
    rooms: Mapping[int, str],
    plan: AgentPlan,
) -> dict[str, str]:
    """Plan the agent's cron jobs; returns original task folder → job name."""
    original = home.read_json(agent.home / "cron_jobs.json")
    if original is None:
        return {}
    mapped, dropped = state_map.map_cron_jobs(original, rooms=rooms)
    plan.dropped.extend(dropped)
    plan.jobs = [m.job for m in mapped]
    if not mapped:
        return {}
    state = paths.agent_state(agent.name)
    text = cron_jobs.render({m.job.name: m.job for m in mapped})
    plan.writes.append(Write(state / cron_jobs.FILE_NAME, text.encode(), "cron jobs"))
    workspace = paths.workspace(agent.name)
    for item in mapped:
        job, folder = item.job, item.folder
        target = cron_jobs.task_path(workspace, job.name)
        description = f"\n{job.description}\n" if job.description else ""
        task = cron_jobs.TASK_TEMPLATE.format(
            title=job.title or job.name, description=description, prompt=job.prompt
        )
        memory = home.read_text(agent.workspace / "cron_tasks" / folder / f"{folder}_MEMORY.md")
        rules = cron_jobs.TASK_RULES.format(name=job.name)
        for file, text_ in (
            ("TASK.md", task),
            ("RULES.md", rules),
            ("MEMORY.md", memory or cron_jobs.MEMORY_TEXT),
        ):
            plan.writes.append(Write(target / file, text_.encode(), f"cron task {job.name}"))
    return {m.folder: m.job.name for m in mapped if m.folder != m.job.name}


def sessions_count(plan: AgentPlan) -> int:
    for write in plan.writes:
        if write.what == "sessions":
            return len(json.loads(write.data)["sessions"])
    return 0

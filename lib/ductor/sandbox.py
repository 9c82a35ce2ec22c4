"""The per-agent sandbox (``[sandbox]`` in the agent's config, docs/sandbox.md).

``mode = "home"`` keeps what the hardening drop-in gives every unit that runs a CLI:
write access to the home. ``mode = "workspace"`` is the systemd version of a container
that sees only chosen folders: every unit of the agent that runs a CLI gets a drop-in
that empties the home (``ProtectHome=tmpfs``, read-only) and ductor's state directory,
then binds back only what the agent and its CLIs need. The drop-in is written by
``ductor agent sync`` (and ``ductor cron sync`` for each job's service) from
:func:`mounts`, which ``ductor doctor`` shows too.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ductor import atomic, clipath
from ductor.paths import SYSTEM_STATE_DIR, Mode, Paths
from ductor.projects import root_path
from ductor.units import Manager, remove_dropin, unit_dir, unit_name, write_dropin

if TYPE_CHECKING:  # the schema's dataclasses cost ~10 ms: `ductor chat` imports this module
    from ductor.config.schema import AgentConfig

DROPIN_NAME = "60-sandbox.conf"  # after 50-hardening.conf, whose ReadWritePaths= it resets
#: Templates whose units run a CLI for one agent (the instance is the agent's name).
AGENT_TEMPLATES = ("ductor-agent@.service", "ductor-webhook-run@.service")
#: The CLIs' own configuration and session folders, relative to the home.
CLI_FOLDERS = (".claude", ".claude.json", ".codex", ".gemini")
#: Programs the original put into its image; ``ductor doctor`` says which the CLIs can run.
MEDIA_TOOLS = ("ffmpeg", "ffprobe", "whisper", "whisper-cli", "tesseract", "pandoc", "convert")


@dataclass(frozen=True)
class Mount:
    """One folder or file the sandboxed CLI sees (at the same path)."""

    path: Path
    writable: bool
    why: str

    def describe(self) -> str:
        return f"{self.path} ({'read-write' if self.writable else 'read-only'}: {self.why})"


def account_home(paths: Paths, env: Mapping[str, str] | None = None) -> Path:
    """The home of the account the units run as (the ductor account's in system mode)."""
    if paths.mode is Mode.SYSTEM:
        return SYSTEM_STATE_DIR
    env = os.environ if env is None else env
    return Path(env.get("HOME") or Path.home())


def parse_mount(text: str) -> tuple[Path, bool]:
    """``"/srv/data:ro"`` → (``/srv/data``, False); no suffix or ``:rw`` is writable."""
    if text.endswith((":ro", ":rw")):
        return Path(text[:-3]), text.endswith(":rw")
    return Path(text), True


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _install_root(program: Path) -> Path:
    """The folder to show for an installed program: npm's prefix for a package's
    executable (``.../lib/node_modules/@scope/pkg/bin/x`` → ``...``), else its folder."""
    real = program.resolve()
    parts = real.parts
    if "node_modules" in parts:
        prefix = Path(*parts[: parts.index("node_modules")])
        return prefix.parent if prefix.name == "lib" else prefix
    return real.parent


def installations(env: Mapping[str, str] | None = None) -> list[Path]:
    """ductor's own programs, the CLIs and node, wherever they are installed."""
    found = [Path(sys.prefix), Path(sys.base_prefix)]
    search = clipath.unit_path(env)
    for command in (*clipath.PROVIDER_COMMANDS.values(), "node", "ductor-agent"):
        program = shutil.which(command, path=search)
        if program:
            found += [Path(program).parent, _install_root(Path(program))]
    return found


def mounts(
    paths: Paths, name: str, config: AgentConfig, env: Mapping[str, str] | None = None
) -> list[Mount]:
    """Everything a ``workspace`` sandbox binds back, in the order doctor lists it."""
    home = account_home(paths, env)
    found = [
        Mount(paths.agent_state(name), True, "the agent's workspace and state"),
        Mount(paths.agents_config_dir, True, "agents' config, which /model edits"),
        Mount(paths.global_config, False, "the global config"),
        Mount(paths.agent_credentials(name), False, "the agent's credentials"),
        Mount(paths.cache_dir, True, "ductor's cache"),
    ]
    if paths.mode is Mode.USER:
        # The agent schedules its own cron jobs: it writes their timers and reloads the
        # user's manager (whose bus is in the runtime directory, bound below).
        found.append(Mount(unit_dir(paths.mode, env), True, "the agent's timers"))
    found += [
        Mount(home / folder, True, "the CLIs' own config and sessions") for folder in CLI_FOLDERS
    ]
    found += [
        Mount(root_path(root, home), True, "project root") for root in config.project_roots.values()
    ]
    for text in config.sandbox.mounts:
        path, writable = parse_mount(text)
        found.append(Mount(path, writable, "sandbox.mounts"))
    hidden = [home, paths.state_dir]
    seen = {m.path for m in found}
    for program in installations(env):
        if program not in seen and any(_inside(program, h) for h in hidden):
            seen.add(program)
            found.append(Mount(program, False, "installed programs"))
    return found


def _escaped(path: Path) -> str:
    """A path as a unit file needs it: specifiers and backslashes escaped."""
    return str(path).replace("\\", "\\\\").replace("%", "%%")


def _optional(path: Path) -> str:
    """A path for ``BindPaths=`` that a missing source does not fail ("-"), quoted."""
    text = "-" + _escaped(path)
    return f'"{text}"' if " " in text else text


def dropin(
    paths: Paths, name: str, config: AgentConfig, env: Mapping[str, str] | None = None
) -> str:
    """The ``[Service]`` lines of the agent's sandbox; "" for ``mode = "home"``."""
    if config.sandbox.mode != "workspace":
        return ""
    bound = mounts(paths, name, config, env)
    # Both read-only: ProtectHome=tmpfs alone leaves the home writable once binds are in it.
    emptied = dict.fromkeys([account_home(paths, env), paths.state_dir])
    writable = " ".join(_optional(m.path) for m in bound if m.writable)
    readable = " ".join(_optional(m.path) for m in bound if not m.writable)
    lines = [
        "[Service]",
        f'# sandbox.mode = "workspace" of agent {name}: the home and ductor\'s state',
        "# directory are empty and read-only but for the folders bound below; /tmp is private.",
        "ReadWritePaths=",
        "ReadWritePaths=-%t",
        # StateDirectory= would bind the state directory of every agent back in.
        "StateDirectory=",
        f'Environment="DUCTOR_STATE_DIR={_escaped(paths.state_dir)}"',
        "ProtectHome=tmpfs",
        "TemporaryFileSystem=" + " ".join(f'"{_escaped(p)}:ro"' for p in emptied),
        "PrivateTmp=yes",
        # The binds above stay this unit's own: nothing it mounts reaches the host.
        "PrivateMounts=yes",
    ]
    if paths.mode is Mode.USER:
        # Without a user namespace a user unit ignores the lines above: better a unit
        # that does not start than a CLI that believes it is fenced in.
        lines.append("PrivateUsers=yes")
        lines.append("BindPaths=-%t")  # ProtectHome=tmpfs hides /run/user too
    if writable:
        lines.append(f"BindPaths={writable}")
    if readable:
        lines.append(f"BindReadOnlyPaths={readable}")
    if config.sandbox.network == "none":
        lines.append("PrivateNetwork=yes")
    return "\n".join(lines) + "\n"


def sync_units(directory: Path, units: Iterable[str], text: str, *, command: str) -> bool:
    """Write (or, for ``text`` "", remove) the sandbox drop-in of each unit."""
    changed = False
    for unit in units:
        if text:
            changed = (
                write_dropin(directory, unit, text, command=command, name=DROPIN_NAME) or changed
            )
        else:
            changed = remove_dropin(directory, unit, DROPIN_NAME) or changed
    return changed


def agent_units(name: str) -> list[str]:
    return [unit_name(template, name) for template in AGENT_TEMPLATES]


def summary(config: AgentConfig) -> str:
    """One line for ``/status``."""
    if config.sandbox.mode == "workspace":
        roots = len(config.project_roots) + len(config.sandbox.mounts)
        extra = f" and {roots} more folder{'s' if roots != 1 else ''}" if roots else ""
        return f"workspace (the CLI sees only its workspace, its own config{extra})"
    return "home (the CLI can read and write the whole home directory)"


def prompt_sentence(workspace: Path, config: AgentConfig) -> str:
    """What the CLI is told about its sandbox (the appended system prompt); "" in home mode.
    Rule files are written only when missing, so this reaches agents created before."""
    if config.sandbox.mode != "workspace":
        return ""
    folders = [str(workspace), *config.project_roots.values()]
    folders += [str(parse_mount(m)[0]) for m in config.sandbox.mounts]
    return (
        "You run in a sandbox: only your workspace, your own CLI config and these folders"
        f" are visible: {', '.join(folders)}. The rest of the home directory is empty and"
        " read-only, and /tmp is private. Do not try to reach other files; ask the user to"
        " add a folder to sandbox.mounts or project_roots instead."
    )


def media_tools(paths: Paths, name: str, config: AgentConfig) -> dict[str, Path | None]:
    """Which media tools the sandboxed CLI can run (None: missing or hidden by the sandbox)."""
    hidden = [account_home(paths), paths.state_dir] if config.sandbox.mode == "workspace" else []
    visible = [m.path for m in mounts(paths, name, config)] if hidden else []
    result: dict[str, Path | None] = {}
    for tool in MEDIA_TOOLS:
        found = shutil.which(tool, path=clipath.unit_path())
        program = Path(found) if found else None
        hidden_here = program is not None and any(_inside(program, h) for h in hidden)
        if program is not None and hidden_here and not any(_inside(program, v) for v in visible):
            program = None
        result[tool] = program
    return result


CRON_SERVICE = "ductor-cron@.service"
CRON_TIMER = "ductor-cron@.timer"
_CRON_TIMER_DROPIN = "10-ductor.conf"  # what ``ductor cron sync`` writes for a scheduled job


def cron_services(directory: Path, agent: str) -> tuple[set[str], set[str]]:
    """The services of the agent's scheduled jobs, and those that carry a sandbox drop-in."""
    timer_prefix = unit_name(CRON_TIMER, agent).removesuffix(".timer") + ":"
    service_prefix = unit_name(CRON_SERVICE, agent).removesuffix(".service") + ":"
    scheduled: set[str] = set()
    fenced: set[str] = set()
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return scheduled, fenced
    for entry in entries:
        name = entry.name
        timer = name.startswith(timer_prefix) and name.endswith(".timer.d")
        service = name.startswith(service_prefix) and name.endswith(".service.d")
        if timer and (entry / _CRON_TIMER_DROPIN).is_file():
            scheduled.add(name.removesuffix(".timer.d") + ".service")
        elif service and (entry / DROPIN_NAME).is_file():
            fenced.add(name.removesuffix(".d"))
    return scheduled, fenced


def sync_cron(directory: Path, agent: str, text: str, *, command: str) -> bool:
    """Give every scheduled job of the agent the sandbox drop-in ``text`` (none for "");
    jobs that are gone lose theirs. Returns whether a file changed."""
    scheduled, fenced = cron_services(directory, agent)
    wanted = scheduled if text else set()
    changed = sync_units(directory, sorted(wanted), text, command=command)
    return sync_units(directory, sorted(fenced - wanted), "", command=command) or changed


TASK_TEMPLATE = "ductor-task@.service"
TASK_SETTINGS = "10-ductor.conf"  # a task unit's limits and credentials (tasks/launch.py)


def fenced_tasks(directory: Path, agent: str) -> list[str]:
    """The agent's task units that have a sandbox drop-in (or their settings drop-in)."""
    prefix = unit_name(TASK_TEMPLATE, agent).removesuffix(".service") + ":"
    return [
        entry.name.removesuffix(".d")
        for entry in (directory.iterdir() if directory.is_dir() else [])
        if entry.name.startswith(prefix)
        and ((entry / DROPIN_NAME).is_file() or (entry / TASK_SETTINGS).is_file())
    ]


def unfence_tasks(directory: Path, units: Iterable[str]) -> bool:
    """Delete the drop-ins of these task units; returns whether a file went."""
    changed = False
    for unit in units:
        changed = remove_dropin(directory, unit, DROPIN_NAME) or changed
        changed = remove_dropin(directory, unit, TASK_SETTINGS) or changed
    return changed


def fence_task(manager: Manager, agent: str, unit: str, *, settings: str = "") -> None:
    """Give a task's unit the agent's sandbox before it starts (a task id is new each
    time, so ``ductor agent sync`` cannot write it ahead), and ``settings`` (its
    ``[limits]`` and credentials) as its own drop-in; drop-ins of the agent's finished
    tasks go. Raises OSError when a drop-in cannot be written: a task that would run
    outside the agent's sandbox or limits does not start."""
    directory = unit_dir(manager.mode)
    agent_dropin = directory / f"{unit_name(AGENT_TEMPLATES[0], agent)}.d" / DROPIN_NAME
    try:
        text = agent_dropin.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    prefix = unit_name(TASK_TEMPLATE, agent).removesuffix(".service") + ":"
    stale = fenced_tasks(directory, agent)
    if stale:
        running = set(manager.list_units([f"{prefix}*.service"], all_units=False))
        stale = [u for u in stale if u not in running and u != unit]
    changed = unfence_tasks(directory, stale)
    target = directory / f"{unit}.d" / DROPIN_NAME
    if text:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(target, text, mode=0o644)
        changed = True
    if settings:
        command = "ductor-agent (starting the task)"
        changed = (
            write_dropin(directory, unit, settings, command=command, name=TASK_SETTINGS) or changed
        )
    else:
        changed = remove_dropin(directory, unit, TASK_SETTINGS) or changed
    if changed:
        manager.daemon_reload()

"""What the agents of one machine share: ``SHAREDMEMORY.md`` and the roster.

``SHAREDMEMORY.md`` lives beside the agents' config; its content is copied into every
agent's ``memory_system/MAINMEMORY.md`` between the SHARED KNOWLEDGE markers (the rest
of the file is the agent's own). The roster (the other agents, their description,
provider and model, and how to call them) is kept in a marked block of each agent's
rule files. Both are synced when an agent starts and by ``ductor-shared-memory.service``, which
``ductor-shared-memory.path`` starts when the shared file or the set of agents changes
(docs/agents.md). Stdlib + the config loader only: the oneshot starts fast.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ductor import atomic
from ductor import log as ductor_log
from ductor.agent.workspace import MAINMEMORY, RULE_FILES
from ductor.config import load_agent_config
from ductor.errors import ConfigError, DuctorError
from ductor.paths import Mode, Paths, resolve

log = logging.getLogger(__name__)

SHARED_FILE = "SHAREDMEMORY.md"
START = "--- SHARED KNOWLEDGE START ---"
END = "--- SHARED KNOWLEDGE END ---"
ROSTER_START = "<!-- ductor: other agents (rewritten when agents change) -->"
ROSTER_END = "<!-- ductor: end of other agents -->"
SEED = "# Shared knowledge\n\nWhat every agent on this machine should know.\n"
_BLOCK = re.compile(re.escape(START) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
_ROSTER = re.compile(re.escape(ROSTER_START) + r".*?" + re.escape(ROSTER_END) + r"\n?", re.DOTALL)

ROSTER_TEXT = """\
## Other agents

Other agents run on this machine, each with its own chat, workspace and memory:

{agents}

- `python3 tools/agent_tools/ask_agent.py AGENT "MESSAGE"` asks one and prints its answer
  (add `--new` to start that conversation afresh).
- `python3 tools/agent_tools/ask_agent_async.py AGENT "MESSAGE"` hands one a longer task;
  its answer comes back into this conversation later.
- `python3 tools/agent_tools/list_agents.py` lists them; knowledge every agent should have
  goes in with `python3 tools/agent_tools/edit_shared_knowledge.py --append "TEXT"`.
"""


def shared_file(paths: Paths) -> Path:
    return paths.config_dir / SHARED_FILE


def read_shared(paths: Paths) -> str:
    try:
        return shared_file(paths).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def edit(paths: Paths, *, append: str | None = None, replace: str | None = None) -> str:
    """Change SHAREDMEMORY.md (append a line or replace it all) and sync every agent;
    returns the new content."""
    if replace is not None:
        text = replace if replace.endswith("\n") or not replace else replace + "\n"
    else:
        text = read_shared(paths) or SEED
        if append:
            text = text if text.endswith("\n") else text + "\n"
            text += append.rstrip("\n") + "\n"
    atomic.make_directories(paths.config_dir, mode=0o700)
    atomic.write_text(shared_file(paths), text, mode=0o600)
    sync_all(paths)
    return text


def merged_memory(memory: str, shared: str) -> str:
    """``memory`` with the shared block replaced by ``shared`` (removed when empty)."""
    own = _BLOCK.sub("", memory).rstrip("\n")
    if not shared.strip():
        return own + "\n" if own else ""
    block = f"{START}\n{shared.strip()}\n{END}\n"
    return f"{own}\n\n{block}" if own else block


def sync_memory(paths: Paths, name: str, shared: str | None = None) -> bool:
    """Write the shared knowledge into agent ``name``'s MAINMEMORY.md; True if changed."""
    shared = read_shared(paths) if shared is None else shared
    file = paths.workspace(name) / MAINMEMORY
    try:
        memory = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False  # the agent's first start writes its memory, then syncs
    wanted = merged_memory(memory, shared)
    if wanted == memory:
        return False
    atomic.make_directories(file.parent, mode=0o700)
    atomic.write_text(file, wanted, mode=0o600)
    log.info("agent %s: shared knowledge written into %s", name, MAINMEMORY)
    return True


def described(description: str) -> str:
    """An agent's description as the start of its roster line ("what it does; "), on one
    line whatever the config holds, or nothing."""
    text = " ".join(description.split())
    return f"{text}; " if text else ""


def roster_block(paths: Paths, name: str, names: Sequence[str]) -> str:
    lines = []
    for other in names:
        if other == name:
            continue
        try:
            config = load_agent_config(paths, other)
        except ConfigError:
            lines.append(f"- `{other}` (its config has an error)")
            continue
        lines.append(
            f"- `{other}`: {described(config.description)}{config.provider}/{config.model}"
        )
    if not lines:
        return ""
    return f"{ROSTER_START}\n{ROSTER_TEXT.format(agents=chr(10).join(lines))}{ROSTER_END}\n"


def sync_roster(paths: Paths, name: str, names: Sequence[str]) -> bool:
    """Rewrite the roster block of agent ``name``'s rule files; True if one changed."""
    block = roster_block(paths, name, names)
    changed = False
    for rule in RULE_FILES.values():
        file = paths.workspace(name) / rule
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        own = _ROSTER.sub("", text).rstrip("\n") + "\n"
        wanted = f"{own}\n{block}" if block else own
        if wanted != text:
            atomic.write_text(file, wanted, mode=0o600)
            changed = True
    return changed


def agent_names(paths: Paths) -> list[str]:
    directory = paths.agents_config_dir
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.toml") if p.is_file())


def sync_agent(paths: Paths, name: str) -> None:
    """At an agent's start: its shared knowledge and its roster."""
    sync_memory(paths, name)
    sync_roster(paths, name, agent_names(paths))


def sync_all(paths: Paths) -> list[str]:
    """Every agent's shared knowledge and roster; returns the agents changed."""
    shared = read_shared(paths)
    names = agent_names(paths)
    changed = []
    for name in names:
        if not paths.workspace(name).is_dir():
            continue  # created but never started: its first start syncs it
        memory = sync_memory(paths, name, shared)
        roster = sync_roster(paths, name, names)
        if memory or roster:
            changed.append(name)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``ductor-shared-memory``: the oneshot of ductor-shared-memory.service."""
    parser = argparse.ArgumentParser(
        prog="ductor-shared-memory",
        description="Copy SHAREDMEMORY.md and the roster of agents into every agent.",
    )
    parser.add_argument("--system", action="store_true", help="the system-wide agents")
    args = parser.parse_args(argv)
    ductor_log.setup("INFO")
    try:
        paths = resolve(Mode.SYSTEM if args.system else None)
        changed = sync_all(paths)
    except DuctorError as exc:
        print(f"ductor-shared-memory: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    log.info("shared knowledge synced: %s", ", ".join(changed) or "nothing changed")
    return 0

"""The rule files of the workspace, one per CLI that can run: CLAUDE.md (Claude Code),
AGENTS.md (Codex), GEMINI.md (Gemini), kept alike.

Which CLIs are logged in picks the variant of the shipped text (``claude-only``,
``codex-only``, ``gemini-only``, ``all-clis``) and which of the three files exist. A
file the user (or the agent) edited is never replaced by shipped text: the newest of the
three is carried to the other two, so an edit made for one CLI reaches the others. The
file of a CLI that is not logged in goes once its text has been carried over (except in
``cron_tasks/``, whose folders a job may run with any CLI). Shipped text that nobody
changed follows the variant when the set of logged-in CLIs changes.

The folders kept this way are the workspace and the folders of cron jobs and background
tasks; nothing else in the workspace (a user's cloned repository) is touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ductor import atomic, clipath
from ductor.agent.shared_memory import ROSTER_END, ROSTER_START
from ductor.agent.workspace import RULE_FILES, rule_text

log = logging.getLogger(__name__)

FILE_MODE = 0o600
_ROSTER = re.compile(re.escape(ROSTER_START) + r".*?" + re.escape(ROSTER_END) + r"\n?", re.DOTALL)
CLI_NAMES = {"claude": "Claude Code", "codex": "the Codex CLI", "gemini": "the Gemini CLI"}
#: Folders of the workspace whose subfolders hold rule files of their own.
NESTED = ("cron_tasks", "tasks")
KEEP_STALE_IN = "cron_tasks"

VARIANT_NOTES = {
    "all-clis": (
        "## Your CLI\n\n"
        "ductor may run you as Claude Code, Codex or Gemini (the user switches with /model)."
        " These rules are in CLAUDE.md, AGENTS.md and GEMINI.md alike: when you change one,"
        " ductor carries the change to the others.\n"
    ),
    "claude-only": "## Your CLI\n\nYou run as Claude Code; these rules are CLAUDE.md.\n",
    "codex-only": "## Your CLI\n\nYou run as the Codex CLI; these rules are AGENTS.md.\n",
    "gemini-only": "## Your CLI\n\nYou run as the Gemini CLI; these rules are GEMINI.md.\n",
}


def variant(authenticated: Iterable[str]) -> str:
    """The shipped variant for the logged-in CLIs: ``all-clis`` for two or more, else the
    one CLI's (``claude-only`` when none is logged in yet)."""
    logged = [p for p in dict.fromkeys(authenticated) if p in RULE_FILES]
    if len(logged) >= 2:
        return "all-clis"
    return f"{logged[0]}-only" if logged else "claude-only"


def variant_text(agent: str, name: str) -> str:
    return f"{rule_text(agent).rstrip()}\n\n{VARIANT_NOTES[name]}"


def _own(text: str) -> str:
    """The text without the roster of other agents (rewritten by shared_memory)."""
    return _ROSTER.sub("", text).rstrip("\n") + "\n"


def _roster(text: str) -> str:
    found = _ROSTER.search(text)
    return found.group(0) if found else ""


def _read(path: Path) -> tuple[float, str] | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return path.stat().st_mtime, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def logged_in_providers(env: Mapping[str, str], dotenv: Mapping[str, str]) -> list[str]:
    """The CLIs installed and logged in (as ``/status`` reports them)."""
    return [
        provider
        for provider in RULE_FILES
        if clipath.find_cli(provider, env) and clipath.logged_in(provider, env, dotenv)[0]
    ]


def folders(workspace: Path) -> list[Path]:
    """The workspace and the folders of its cron jobs and tasks."""
    found = [workspace]
    for parent in NESTED:
        try:
            found += sorted(p for p in (workspace / parent).iterdir() if p.is_dir())
        except OSError:
            continue
    return found


def sync_folder(
    folder: Path,
    providers: Iterable[str],
    *,
    shipped: str = "",
    known: frozenset[str] = frozenset(),
) -> list[Path]:
    """Bring one folder's rule files in line; the files written or removed.

    ``providers``: the CLIs whose file must exist. ``shipped``: the text a missing set
    starts from ("" = create nothing where no rule file exists yet, as in a task's
    folder). ``known``: shipped texts nobody edited, replaced by ``shipped``.
    """
    wanted = [RULE_FILES[p] for p in dict.fromkeys(providers) if p in RULE_FILES]
    present = {name: read for name in RULE_FILES.values() if (read := _read(folder / name))}
    if not present and not shipped:
        return []
    if present:
        newest = max(present, key=lambda name: present[name][0])
        text = present[newest][1]
        if shipped and all(_own(t) in known for _, t in present.values()):
            roster = _roster(text)
            text = shipped.rstrip("\n") + "\n" + (f"\n{roster}" if roster else "")
    else:
        text = shipped
    changed: list[Path] = []
    for name in wanted:
        if name not in present or present[name][1] != text:
            atomic.write_text(folder / name, text, mode=FILE_MODE)
            changed.append(folder / name)
    if folder.parent.name != KEEP_STALE_IN and wanted:
        for name in present:
            if name not in wanted:
                (folder / name).unlink(missing_ok=True)
                changed.append(folder / name)
    return changed


def sync_rule_files(workspace: Path, *, agent: str, authenticated: Iterable[str]) -> list[Path]:
    """At start: every kept folder's rule files for the logged-in CLIs (Claude's when
    none is), the workspace's in the matching shipped variant unless edited."""
    logged = [p for p in dict.fromkeys(authenticated) if p in RULE_FILES] or ["claude"]
    shipped = variant_text(agent, variant(logged))
    known = frozenset(
        {_own(rule_text(agent))} | {_own(variant_text(agent, v)) for v in VARIANT_NOTES}
    )
    changed = sync_folder(workspace, logged, shipped=shipped, known=known)
    for folder in folders(workspace)[1:]:
        changed += sync_folder(folder, logged)
    if changed:
        log.info(
            "rule files (%s): %s",
            variant(logged),
            ", ".join(str(p.relative_to(workspace)) for p in changed),
        )
    return changed


def carry_edits(workspace: Path) -> list[Path]:
    """Before a turn: an edit of one of the workspace's rule files reaches the others
    that exist (a few stats when nothing changed); none is created or removed."""
    present = {n: read for n in RULE_FILES.values() if (read := _read(workspace / n))}
    if len(present) < 2:
        return []
    newest = max(present, key=lambda name: present[name][0])
    text = present[newest][1]
    changed = [workspace / n for n, (_, t) in present.items() if t != text]
    for path in changed:
        atomic.write_text(path, text, mode=FILE_MODE)
    if changed:
        log.info("rule files: %s carried to %s", newest, ", ".join(p.name for p in changed))
    return changed

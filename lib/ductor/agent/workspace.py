"""The agent's workspace, the CLI's working directory: its folders, the memory file and
one rule file per provider.

Laid out on first start and topped up on every later start. A file is written only when
it is missing, so whatever the user (or the agent) changed in it stays as it is; to get
the shipped text back, delete the file and restart the agent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ductor import atomic, clipath

log = logging.getLogger(__name__)

RULE_FILES = {"claude": "CLAUDE.md", "codex": "AGENTS.md", "gemini": "GEMINI.md"}
DIRECTORIES = ("memory_system", "output_to_user", "tools", "cron_tasks", "tasks")
MAINMEMORY = Path("memory_system") / "MAINMEMORY.md"
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

MAINMEMORY_TEXT = """\
# Main memory

What is worth knowing in every future conversation. One short dated line per fact
(`YYYY-MM-DD: ...`), newest at the end of its section.

## The user

## Facts learned

## Decisions and preferences
"""

RULES_TEMPLATE = """\
# Agent {agent}

You are `{agent}`, an agent run by ductor. A person talks to you from a messenger
(Telegram or Matrix); ductor passes each of their messages to you and posts your answer
back into the chat. This directory, your workspace, is your working directory: use
paths relative to it.

## You run unattended

Nobody approves your tool calls; they run as soon as you make them. Before anything
destructive (deleting or overwriting data that is not yours, force-pushing, rewriting
history) or anything that acts outside this machine (sending mail or messages, posting,
buying, calling paid APIs), describe what you are about to do and wait for the user to
say yes.

## Answering

Write for a chat window: short paragraphs, plain Markdown, no tables wider than a phone.
Do not narrate how ductor works or which files you read; just do the work and report
what matters.

## Sending files

To send the user a file, put a tag with its absolute path anywhere in your answer:
`<file:/absolute/path/to/report.pdf>`. ductor removes the tag from the text and sends the
file after it. Put files you make for the user in `output_to_user/`. Files the user sends
you are saved in the workspace and announced in the message as `[INCOMING FILE]`.

## Offering buttons

When the user is likely to answer with one of a few choices, offer them as buttons:
write `[button:Label]` markers. Markers on the same line form one row of buttons; a
marker on a new line starts a new row. Keep labels short. Markers inside code blocks or
inline code are left alone. A pressed button arrives as a message holding its label.

    Shall I deploy now?
    [button:Deploy] [button:Wait]
    [button:Show the diff first]

## Memory

Your long-term memory is `memory_system/MAINMEMORY.md`. Read it at the start of every
new session. When you learn something durable (about the user, their preferences,
decisions taken, facts about their projects), append a short dated line to it without
mentioning that you did. Never store secrets there.

## Tools, scheduled and background work

- `tools/`: scripts you can run; put helpers you write yourself in `tools/user_tools/`.
- `cron_tasks/`: one folder per scheduled job, holding the instructions that job runs
  with.
- `tasks/`: working folders of background tasks.
- Secrets such as API keys are already in your environment; never print them.
"""


def rule_text(agent: str) -> str:
    """The rule file every provider gets: who the agent is and how ductor talks to it."""
    return RULES_TEMPLATE.format(agent=agent)


def rule_file(provider: str) -> str:
    try:
        return RULE_FILES[provider]
    except KeyError:
        known = ", ".join(RULE_FILES)
        raise ValueError(f"unknown provider {provider!r} (known: {known})") from None


def _write_if_missing(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless something is there already.

    The content is written to a temporary file first and linked into place, so a crash
    never leaves a half-written file that would then count as "present" forever.
    """
    if path.exists() or path.is_symlink():
        return False
    temp = atomic.write_temp_file(path.parent, text.encode(), name=path.name, mode=FILE_MODE)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links: exclusive create is the next best thing.
        try:
            with open(path, "x", encoding="utf-8") as stream:
                stream.write(text)
        except FileExistsError:
            return False
    finally:
        temp.unlink(missing_ok=True)
    atomic.fsync_directory(path.parent)
    return True


def ensure_workspace(workspace: Path, *, agent: str, providers: Iterable[str]) -> list[Path]:
    """Create what is missing of the workspace layout; returns the paths created.

    ``providers`` names the CLIs that get a rule file (claude → CLAUDE.md,
    codex → AGENTS.md, gemini → GEMINI.md). Existing files are never rewritten.
    """
    files = [(workspace / MAINMEMORY, MAINMEMORY_TEXT)]
    rules = rule_text(agent)
    for provider in dict.fromkeys(providers):
        files.append((workspace / rule_file(provider), rules))
    created: list[Path] = []
    for directory in (workspace, *(workspace / name for name in DIRECTORIES)):
        if not directory.is_dir():
            atomic.make_directories(directory, mode=DIRECTORY_MODE)
            created.append(directory)
    for path, text in files:
        if _write_if_missing(path, text):
            created.append(path)
    if created:
        log.info("workspace %s: created %s", workspace, ", ".join(p.name for p in created))
    return created


def _find_cli(provider: str) -> str | None:
    found = clipath.find_cli(provider)
    return str(found) if found else None


def installed_providers(find: Callable[[str], str | None] = _find_cli) -> list[str]:
    """The providers whose CLI ``find`` locates, in the order claude, codex, gemini."""
    return [provider for provider in RULE_FILES if find(provider)]

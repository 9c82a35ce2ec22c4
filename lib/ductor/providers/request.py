"""What one turn asks of a CLI, independent of which CLI runs it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# Linux refuses a single argv string longer than MAX_ARG_STRLEN (32 pages = 128 KiB) with
# E2BIG; texts above this limit go through stdin or a file instead of argv.
ARGV_TEXT_LIMIT = 96 * 1024


class Provider(StrEnum):
    CLAUDE = "claude"
    CODEX = "codex"
    GEMINI = "gemini"


class PermissionMode(StrEnum):
    """How much the CLI may do without asking. Values are Claude Code's names.

    ``DEFAULT`` passes no flag, so each CLI applies its own configuration.
    """

    DEFAULT = "default"
    PLAN = "plan"  # read-only
    ACCEPT_EDITS = "acceptEdits"  # may edit files in the workspace
    BYPASS = "bypassPermissions"  # may do anything, no sandbox
    DONT_ASK = "dontAsk"  # never asks: what the CLI's settings do not allow is denied


@dataclass(frozen=True)
class TurnRequest:
    """One CLI turn. The working directory is the runner's business, never argv's.

    ``append_system_prompt`` is extra context (memory, rules) added to the CLI's own
    system prompt. ``append_system_prompt_file`` may hold the same text in a file; the
    runner always writes one for a CLI that takes the text as a flag, so that memory never
    shows in argv (the prompt itself goes on stdin).
    """

    prompt: str
    session_id: str | None = None  # resume this CLI session; None starts a new one
    model: str = ""  # "" lets the CLI pick its default
    effort: str = ""  # reasoning effort; "" or "default" passes no flag
    permission_mode: PermissionMode = PermissionMode.DEFAULT
    append_system_prompt: str = ""
    append_system_prompt_file: Path | None = None
    max_turns: int | None = None  # Claude only
    max_budget_usd: float | None = None  # Claude only
    extra_args: tuple[str, ...] = ()  # cli_parameters from config, appended verbatim

    @property
    def effective_effort(self) -> str:
        return "" if self.effort in ("", "default") else self.effort


def needs_file(text: str) -> bool:
    """Whether ``text`` is too big to pass as one argv string."""
    return len(text.encode()) > ARGV_TEXT_LIMIT


def prompt_with_context(request: TurnRequest) -> str:
    """The prompt with the appended system prompt after it, for CLIs without such a flag."""
    if not request.append_system_prompt:
        return request.prompt
    return f"{request.prompt}\n\n{request.append_system_prompt}"

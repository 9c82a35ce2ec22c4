"""What the CLI is given for one turn, around the user's own words.

- :func:`assemble_prompt`: the user text with the message it replies to, announcements of
  the files that came with it, and the hook blocks from :func:`hook_suffixes`;
- :func:`system_prompt_append`: the memory file and the configured extra files, passed
  to the CLI as an addition to its system prompt;
- :func:`scan_for_injection`: names the prompt-injection patterns a message contains
  (the caller logs them; the message is still processed);
- :func:`parse_trigger`: the bare words that stop or interrupt the running turn.
"""

from __future__ import annotations

import logging
import re
import shlex
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ductor.agent.workspace import MAINMEMORY

log = logging.getLogger(__name__)

MEMORY_CHECK_EVERY = 6
TASK_REMINDER_EVERY = 15
APPEND_LIMIT_BYTES = 256 * 1024

MEMORY_CHECK = """\
## MEMORY CHECK
If this conversation has brought up anything worth remembering beyond this session
(facts about the user, preferences, decisions, project details), append it as a short
dated line to memory_system/MAINMEMORY.md now. Do it silently: do not mention it in your
answer."""

BACKGROUND_TASKS = """\
## BACKGROUND TASKS
Work that takes more than a few minutes (long builds, research, large refactors) should
not block this chat. Hand it to a background task and answer the user right away:
  python3 tools/task_tools/create_task.py --name SHORT_NAME "complete instructions"
The task runs on its own and its result comes back into this conversation when it is
done. list_tasks.py, cancel_task.py and resume_task.py in the same folder manage
running tasks; run any of them without arguments for help."""

TASK_REMINDER = """\
## TASK REMINDER
Reminder: anything that will take more than a few minutes belongs in a background task
(python3 tools/task_tools/create_task.py), so the user is not left waiting."""

REFLECTION_HEADING = "## MEMORY REFLECTION"
#: The tool the task blocks tell the CLI to run; until a workspace has it, they are left out.
TASK_TOOL = Path("tools") / "task_tools" / "create_task.py"


def tasks_available(workspace: Path, *, enabled: bool) -> bool:
    """True when background tasks are on and the workspace holds the tool to start one.

    The prompt never points the CLI at a script that is not there.
    """
    return enabled and (workspace / TASK_TOOL).is_file()


def hook_suffixes(
    message_count: int,
    *,
    new_session: bool,
    tasks_enabled: bool,
    reflection_every: int = 0,
    reflection_prompt: str = "",
) -> list[str]:
    """The blocks appended after the user's text on this turn.

    ``message_count`` is the number of earlier successful turns in the session (0 on a
    new one), so this message is number ``message_count + 1``; the memory check comes
    with every 6th message, the task reminder with every 15th, the reflection prompt
    with every ``reflection_every``-th (when positive), and the background-task
    instructions with the first message of a new session.
    """
    number = message_count + 1
    blocks: list[str] = []
    if number % MEMORY_CHECK_EVERY == 0:
        blocks.append(MEMORY_CHECK)
    if tasks_enabled and new_session:
        blocks.append(BACKGROUND_TASKS)
    if tasks_enabled and not new_session and number % TASK_REMINDER_EVERY == 0:
        blocks.append(TASK_REMINDER)
    reflection = reflection_prompt.strip()
    if reflection_every > 0 and reflection and number % reflection_every == 0:
        if not reflection.startswith("#"):
            reflection = f"{REFLECTION_HEADING}\n{reflection}"
        blocks.append(reflection)
    return blocks


@dataclass(frozen=True)
class IncomingFile:
    """A file the user sent with the message, already saved in the workspace."""

    path: Path
    mime: str = ""
    size: int | None = None
    caption: str = ""


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    return f"{value:.1f} GiB ({size} bytes)"


#: The media tool (in the workspace's tools/media_tools/) for a kind of file, and why.
MEDIA_TOOLS = Path("tools") / "media_tools"
DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.oasis.opendocument.text",
    }
)


def media_hint(file: IncomingFile) -> str:
    """Which tool reads ``file``, as the line that tells the CLI to run it ("" if none)."""
    mime = file.mime
    if mime.startswith("audio/"):
        tool, purpose = "transcribe_audio.py", "to get what was said, then answer that"
    elif mime.startswith("video/"):
        tool, purpose = "process_video.py", "for its frames and the transcript of its sound"
    elif mime in DOCUMENT_TYPES:
        tool, purpose = "read_document.py", "for its text"
    else:
        return ""
    command = f"python3 {MEDIA_TOOLS / tool} --file {shlex.quote(str(file.path))}"
    return f"Use {command} {purpose}."


def file_block(file: IncomingFile) -> str:
    lines = ["[INCOMING FILE]", f"Path: {file.path}", f"Type: {file.mime or 'unknown'}"]
    if file.size is not None:
        lines.append(f"Size: {human_size(file.size)}")
    if file.caption.strip():
        lines.append(f"Caption: {file.caption.strip()}")
    hint = media_hint(file)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def quote_reply(quoted: str, text: str) -> str:
    lines = quoted.strip("\n").splitlines() or [""]
    quote = "\n".join(f"> {line}".rstrip() for line in lines)
    return f"The user is replying to this quoted message:\n{quote}\n\nThe user's message:\n{text}"


def assemble_prompt(
    text: str,
    *,
    quoted: str = "",
    files: Sequence[IncomingFile] = (),
    suffixes: Sequence[str] = (),
) -> str:
    """The prompt for one turn: text (with its quoted context), file blocks, hook blocks."""
    body = quote_reply(quoted, text) if quoted.strip() else text
    parts = [body, *(file_block(f) for f in files), *suffixes]
    return "\n\n".join(part for part in parts if part.strip())


def _read_for_prompt(path: Path, shown: str, workspace: Path, limit_bytes: int) -> str | None:
    """The text of ``path`` if it may go into the system prompt; logs why not otherwise."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        log.warning("not adding %s to the system prompt: %s", shown, exc)
        return None
    if not resolved.is_relative_to(workspace.resolve()):
        log.warning("not adding %s to the system prompt: it is outside the workspace", shown)
        return None
    if not resolved.is_file():
        log.warning("not adding %s to the system prompt: no such file", shown)
        return None
    size = resolved.stat().st_size
    if size > limit_bytes:
        log.warning(
            "not adding %s to the system prompt: %d bytes is over the limit of %d",
            shown,
            size,
            limit_bytes,
        )
        return None
    try:
        content = resolved.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        log.warning("not adding %s to the system prompt: %s", shown, exc)
        return None
    if not content:
        log.warning("not adding %s to the system prompt: it is empty", shown)
        return None
    return content


def system_prompt_append(
    workspace: Path,
    *,
    extra_files: Sequence[str] = (),
    limit_bytes: int = APPEND_LIMIT_BYTES,
    memory: bool = True,
    sandbox: str = "",
) -> str:
    """Text to add to the CLI's system prompt.

    First ``sandbox``, what the agent's sandbox lets the CLI reach (every turn: the rule
    files of older agents do not say it). With ``memory`` (new sessions), the content of
    memory_system/MAINMEMORY.md; then each of ``extra_files`` (``append_system_prompt_files``,
    relative to the workspace) under a heading naming it. Files outside the workspace
    (symlinks resolved), missing, empty or larger than ``limit_bytes`` are left out with a
    warning.
    """
    parts: list[str] = [sandbox] if sandbox else []
    if memory and (workspace / MAINMEMORY).exists():
        content = _read_for_prompt(workspace / MAINMEMORY, str(MAINMEMORY), workspace, limit_bytes)
        if content:
            parts.append(content)
    for name in extra_files:
        content = _read_for_prompt(workspace / name, name, workspace, limit_bytes)
        if content:
            parts.append(f"## File {name}\n\n{content}")
    return "\n\n".join(parts)


# Prompt-injection patterns: (name, regexes that must all match). Matched against the
# NFKC-folded text, so full-width look-alikes count as their ASCII letters.
_INJECTION_PATTERNS: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = tuple(
    (name, tuple(re.compile(r, re.IGNORECASE | re.MULTILINE) for r in regexes))
    for name, regexes in (
        (
            "ignore previous instructions",
            (
                r"\b(?:ignore|disregard|forget|override|skip)\s+(?:all\s+|any\s+|of\s+)?"
                r"(?:the\s+|your\s+|these\s+|those\s+)?"
                r"(?:previous|prior|above|earlier|preceding|original|initial)\s+"
                r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context)\b",
            ),
        ),
        (
            "disregard the system prompt",
            (
                r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:the\s+|your\s+|all\s+)?"
                r"(?:system\s+prompt|system\s+message|guardrails|safety\s+(?:rules|guidelines))",
            ),
        ),
        (
            "forget your rules",
            (r"\bforget\s+(?:all\s+|everything\s+about\s+)?(?:your|the)\s+(?:rules|training)\b",),
        ),
        (
            "german instruction override",
            (
                r"\b(?:ignoriere|vergiss|missachte)\s+(?:alle\s+)?(?:vorherigen|bisherigen|"
                r"obigen)\s+(?:anweisungen|instruktionen|regeln)\b",
            ),
        ),
        (
            "you are now",
            (
                r"\byou\s+are\s+now\s+(?:a|an|my|no\s+longer|dan|jailbroken|unrestricted|"
                r"in\s+(?:developer|god|dan)\s+mode)\b",
            ),
        ),
        ("new instructions", (r"^\W*(?:new|updated|real)\s+(?:system\s+)?instructions\s*:",)),
        ("role line marker", (r"^\s*(?:system|assistant|human)\s*:",)),
        ("fake role tag", (r"</?\s*(?:system|system_prompt|instructions?|assistant)\s*>",)),
        (
            "chat template token",
            (
                r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|"
                r"start_header_id|end_header_id)\|>",
            ),
        ),
        ("instruction tags", (r"\[/?INST\]|<</?SYS>>",)),
        (
            "reveal your system prompt",
            (
                r"\b(?:reveal|show|print|repeat|output|leak|dump|display|tell\s+me)\s+(?:me\s+)?"
                r"(?:your|the)\s+(?:full\s+|entire\s+|exact\s+|original\s+|hidden\s+)?"
                r"(?:system\s+prompt|initial\s+instructions|hidden\s+instructions)",
            ),
        ),
        (
            "jailbreak",
            (r"\bjailbreak(?:ing|ed)?\b|\bdo\s+anything\s+now\b|\b(?:dan|god)\s+mode\b",),
        ),
        (
            "cli flags",
            (
                r"--(?:append-)?system-prompt\b|--permission-mode\b"
                r"|--dangerously-skip-permissions\b",
            ),
        ),
        ("file tag", (r"<file:[^>\n]+>",)),
        (
            "encoded payload to execute",
            (
                r"[A-Za-z0-9+/]{80,}={0,2}",
                r"\bdecode\b.{0,60}\b(?:execute|run|eval|follow)\b",
            ),
        ),
    )
)


def scan_for_injection(text: str) -> list[str]:
    """The names of the prompt-injection patterns found in ``text`` (empty: none)."""
    folded = unicodedata.normalize("NFKC", text)
    return [
        name
        for name, regexes in _INJECTION_PATTERNS
        if all(regex.search(folded) for regex in regexes)
    ]


INTERRUPT_WORDS = frozenset({"esc", "interrupt", "skip", "überspringen"})
STOP_ALL_PHRASES = frozenset({"stop all", "stopp alle", "alles stoppen", "cancel all", "abort all"})
STOP_WORDS = frozenset(
    {
        "stop",
        "abort",
        "cancel",
        "halt",
        "hold",
        "wait",
        "quit",
        "exit",
        "stopp",
        "warte",
        "abbruch",
        "abbrechen",
        "aufhören",
    }
)


def parse_trigger(text: str) -> str | None:
    """``"interrupt"``, ``"stop_all"`` or ``"stop"`` when the whole message is one of the
    bare trigger words (any case, surrounding spaces ignored); otherwise None."""
    words = " ".join(text.split()).lower()
    if words in INTERRUPT_WORDS:
        return "interrupt"
    if words in STOP_ALL_PHRASES:
        return "stop_all"
    if words in STOP_WORDS:
        return "stop"
    return None

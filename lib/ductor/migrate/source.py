"""The original ductor's home (``~/.ductor``), read and never written.

Every file is opened read-only. A file that is missing is simply absent; a file that
cannot be parsed is reported as a problem (its content is never shown: it may hold a
token) and migration goes on without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ductor.errors import TemporaryError, UsageError

MAIN = "main"
PID_FILE = "bot.pid"


class OriginalRunningError(TemporaryError):
    """The original ductor still runs and would keep changing its files."""

    def __init__(self, pid: int, home: Path) -> None:
        super().__init__(
            f"the original ductor is running (pid {pid}, from {home / PID_FILE}); stop it"
            " first with `ductor stop` (the original's command), or `systemctl --user stop"
            " ductor` if it runs as a service, then run `ductor migrate` again"
        )


@dataclass
class Problems:
    """What could not be read, per file (relative to the home), with the reason."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, why: str) -> None:
        self.items.append((what, why))


@dataclass(frozen=True)
class AgentHome:
    """One agent of the original: ``main`` (the home itself) or a sub-agent
    (``agents/NAME/``) with its ``agents.json`` entry."""

    name: str
    home: Path
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def workspace(self) -> Path:
        return self.home / "workspace"

    @property
    def is_main(self) -> bool:
        return self.name == MAIN


class OriginalHome:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems = Problems()
        if not (root / "config" / "config.json").is_file():
            raise UsageError(
                f"{root} is not a home of the original ductor (no config/config.json);"
                " point --from at it"
            )

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def read_bytes(self, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.add(self.relative(path), f"cannot be read ({exc.strerror})")
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def read_json(self, path: Path, *, expect: type = dict) -> Any:
        """The parsed file, or None when it is missing or unusable (then a problem is
        noted, naming the line and column but never the content)."""
        data = self.read_bytes(path)
        if data is None:
            return None
        try:
            value = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            self.problems.add(self.relative(path), "not UTF-8 text: skipped")
            return None
        except json.JSONDecodeError as exc:
            self.problems.add(
                self.relative(path),
                f"invalid JSON at line {exc.lineno} column {exc.colno}: skipped",
            )
            return None
        if not isinstance(value, expect):
            self.problems.add(self.relative(path), f"expected a JSON {expect.__name__}: skipped")
            return None
        return value

    def read_text(self, path: Path) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", errors="replace")

    def config(self) -> dict[str, Any]:
        """The main config; an unreadable one stops the migration (every agent's config
        builds on it, and the original would not start with it either)."""
        value = self.read_json(self.root / "config" / "config.json")
        if not isinstance(value, dict):
            why = next((w for what, w in self.problems.items if what.startswith("config")), "")
            raise UsageError(
                f"{self.root / 'config' / 'config.json'}: {why or 'unreadable'}; fix it and"
                " run `ductor migrate` again"
            )
        return value

    def agents(self) -> list[AgentHome]:
        """``main`` first, then every sub-agent of ``agents.json``."""
        found = [AgentHome(MAIN, self.root)]
        entries = self.read_json(self.root / "agents.json", expect=list) or []
        seen = {MAIN}
        for index, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name or name in seen:
                self.problems.add("agents.json", f"entry {index} has no usable name: skipped")
                continue
            seen.add(name)
            found.append(AgentHome(name, self.root / "agents" / name, dict(entry)))
        return found

    def running_pid(self) -> int | None:
        """The pid of a running original (from ``bot.pid``), None when none runs."""
        text = self.read_text(self.root / PID_FILE)
        if text is None:
            return None
        try:
            pid = int(text.strip().split()[0])
        except (ValueError, IndexError):
            return None
        if pid <= 0 or pid == os.getpid():
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None  # a stale pid file: no such process
        return pid if b"ductor" in cmdline else None

    def require_stopped(self) -> None:
        pid = self.running_pid()
        if pid is not None:
            raise OriginalRunningError(pid, self.root)

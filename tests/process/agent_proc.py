"""Run ``bin/ductor-agent`` as a real process in a private layout, for process tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ductor import protocol
from ductor.protocol import Event, Request, RequestType, new_request_id
from ductor.protocol.client import AgentUnavailable, connect

REPO = Path(__file__).resolve().parents[2]
FAKECLI = REPO / "tests" / "fakecli"

BASE_CONFIG = """\
provider = "claude"
model = "opus"
transports = []

[timeouts]
normal = 30
"""


@dataclass
class AgentProcess:
    """One agent daemon with its own config, state and runtime directories."""

    root: Path
    name: str = "main"
    config: str = BASE_CONFIG
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {
            "PATH": f"{FAKECLI}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO / "lib"),
            "DUCTOR_CONFIG_DIR": str(self.root / "config"),
            "DUCTOR_STATE_DIR": str(self.root / "state"),
            "DUCTOR_RUNTIME_DIR": str(self.root / "run"),
            "DUCTOR_CACHE_DIR": str(self.root / "cache"),
        }
        env.update(self.extra_env)
        return env

    @property
    def socket(self) -> Path:
        return Path(self.env["DUCTOR_RUNTIME_DIR"]) / self.name / "agent.sock"

    @property
    def state(self) -> Path:
        return self.root / "state" / self.name

    @property
    def workspace(self) -> Path:
        return self.state / "workspace"

    def write_config(self, text: str | None = None) -> None:
        file = self.root / "config" / "agents" / f"{self.name}.toml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text if text is not None else self.config)
        (self.root / "home").mkdir(exist_ok=True)

    def start(self, *, wait: bool = True, env: Mapping[str, str] | None = None) -> AgentProcess:
        if not (self.root / "config" / "agents" / f"{self.name}.toml").exists():
            self.write_config()
        self.log_file = self.root / f"agent-{time.monotonic_ns()}.log"
        merged = self.env | dict(env or {})
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "bin" / "ductor-agent"), "--name", self.name],
                env=merged,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(AgentUnavailable, OSError):
                if self.call(Request(type=RequestType.HEALTH, id=new_request_id())):
                    return
            time.sleep(0.05)
        raise AssertionError(f"agent not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""

    def call(self, request: Request, *, timeout: float = 30.0) -> list[Event]:
        with connect(self.socket, request, timeout=timeout) as exchange:
            events = list(exchange.events())
            if request.want_ack and events and events[-1].type is protocol.EventType.FINAL:
                turn = events[-1].get_str("turn")
                if turn:
                    exchange.ack(turn)
        return events

    def message(
        self, text: str, *, session: str = "tg:100", want_ack: bool = True, **fields: object
    ) -> list[Event]:
        request = Request(
            type=RequestType.MESSAGE,
            id=new_request_id(),
            session=session,
            text=text,
            want_ack=want_ack,
            **fields,  # type: ignore[arg-type]
        )
        return self.call(request)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        return self.kill(signal.SIGTERM)


def final(events: list[Event]) -> Event:
    assert events, "no events"
    last = events[-1]
    assert last.type is protocol.EventType.FINAL, f"expected final, got {last}"
    return last


def texts(events: list[Event]) -> str:
    return "".join(e.text for e in events if e.type is protocol.EventType.TEXT)


@contextlib.contextmanager
def running_agent(root: Path, **kwargs: object) -> Iterator[AgentProcess]:
    agent = AgentProcess(root, **kwargs)  # type: ignore[arg-type]
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()

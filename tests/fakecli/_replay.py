"""Replay of a recorded CLI run, shared by the fake ``claude``, ``codex`` and ``gemini``.

Stdlib only, so that it runs under any python3. Environment:

- ``FAKECLI_SCENARIO``: the recorded run to replay, a fixture base name such as
  ``claude-partial`` (``partial`` alone means ``<cli>-partial``) or the path of a
  ``.jsonl`` file with its ``.meta.json`` and ``.stderr`` next to it. Default:
  ``<cli>-new``.
- ``FAKECLI_DELAY_MS``: pause between stdout lines, in milliseconds, or ``recorded`` to
  keep the recorded gaps. Default 0.
- ``FAKECLI_RECORD``: a file to which each run appends one JSON line with its argv,
  stdin, cwd, pid, process group and environment (names, and the values of the
  variables tests look at).
- ``FAKECLI_FIXTURES``: the fixture directory. Default: ``tests/fixtures/cli`` of this
  repository (recorded by ``tests/record-cli``).
- ``FAKECLI_STALL_S``: how long an interrupt scenario waits for its signal before it
  gives up with exit code 124. Default 30.

The stdout lines, stderr and exit code are the recorded ones, byte for byte, except that
a resumed run (``--resume ID``, ``resume ID``) reports the session id it was given, as
the real CLIs do. Signals behave as recorded: an interrupt scenario prints the lines that
came before the recorder's signal, waits for a signal, then prints what came after it
and exits with the recorded code. A signal at any other time gets the CLI's usual
reaction (Claude: SIGINT → an ``error_during_execution`` result and exit 0, SIGTERM →
exit 143; Codex: SIGINT → exit 1, SIGTERM → killed by it; Gemini: exit 0, no result).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SIGNAL_NAMES = {"INT": signal.SIGINT, "TERM": signal.SIGTERM}
HANDLED_SIGNALS = {signal.SIGINT, signal.SIGTERM}

# Environment variables whose values a run records (the rest only by name).
RECORDED_VALUES = ("DUCTOR_", "FAKECLI_", "GEMINI_CLI_", "IS_SANDBOX", "HOME", "PATH", "LANG")


class Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class Scenario:
    name: str
    lines: list[bytes]
    times: list[float]
    rc: int
    stderr: bytes
    signal: int | None  # the signal the recorder sent, if any
    signal_at: float | None  # when, in seconds after the start

    @property
    def session_id(self) -> str | None:
        for line in self.lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                for key in ("session_id", "thread_id"):
                    if isinstance(obj.get(key), str):
                        return obj[key]
        return None


def fixtures_dir() -> Path:
    if os.environ.get("FAKECLI_FIXTURES"):
        return Path(os.environ["FAKECLI_FIXTURES"])
    return Path(__file__).resolve().parents[1] / "fixtures" / "cli"


def scenario_base(cli: str, name: str) -> Path:
    if "/" in name:
        path = Path(name)
        return path.with_suffix("") if path.suffix == ".jsonl" else path
    if not name.startswith(f"{cli}-"):
        name = f"{cli}-{name}"
    return fixtures_dir() / name


def load_scenario(cli: str, name: str) -> Scenario:
    base = scenario_base(cli, name)
    meta = json.loads(base.with_name(base.name + ".meta.json").read_text())
    lines = base.with_name(base.name + ".jsonl").read_bytes().splitlines(keepends=True)
    times = [float(t) for t in meta.get("line_times_s") or []]
    stderr_file = base.with_name(base.name + ".stderr")
    return Scenario(
        name=base.name,
        lines=lines,
        times=times + [times[-1] if times else 0.0] * (len(lines) - len(times)),
        rc=int(meta["rc"]),
        stderr=stderr_file.read_bytes() if stderr_file.exists() else b"",
        signal=SIGNAL_NAMES.get(meta.get("signal") or ""),
        signal_at=meta.get("sigint_sent_s"),
    )


# -- argv -----------------------------------------------------------------------------


def option_value(argv: list[str], *names: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--":
            return None
        if arg in names and index + 1 < len(argv):
            return argv[index + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def resume_id(cli: str, argv: list[str]) -> str | None:
    if cli == "codex":
        if "resume" not in argv:
            return None
        after = argv[argv.index("resume") + 1 :]
        return after[0] if after and not after[0].startswith("-") else None
    value = option_value(argv, "--resume", "-r")
    if value is None or value == "latest" or value.isdigit():
        return None
    return value


# Claude options that take a value; anything else not starting with "-" is the prompt.
CLAUDE_VALUE_OPTIONS = frozenset(
    {
        "--output-format",
        "--input-format",
        "--model",
        "--fallback-model",
        "--permission-mode",
        "--resume",
        "-r",
        "--session-id",
        "--effort",
        "--system-prompt",
        "--system-prompt-file",
        "--append-system-prompt",
        "--append-system-prompt-file",
        "--max-turns",
        "--max-budget-usd",
        "--allowedTools",
        "--allowed-tools",
        "--disallowedTools",
        "--disallowed-tools",
        "--mcp-config",
        "--settings",
        "--add-dir",
        "--agents",
        "--setting-sources",
        "--permission-prompt-tool",
    }
)


def claude_prompt_in_argv(argv: list[str]) -> bool:
    skip = False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--":
            return index + 1 < len(argv)
        if arg in CLAUDE_VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return True
    return False


# -- running --------------------------------------------------------------------------


def write_out(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        os._exit(141)


def write_err(data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()


def exit_with(rc: int) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
        sys.stderr.flush()
    if rc < 0:
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
        time.sleep(1)
    os._exit(rc)


def _appended(argv: list[str]) -> str | None:
    """What ``--append-system-prompt-file`` holds (the agent removes the file after the
    run), or ``--append-system-prompt``'s value."""
    for option in ("--append-system-prompt-file", "--append-system-prompt"):
        if option in argv[:-1]:
            value = argv[argv.index(option) + 1]
            if option.endswith("-file"):
                with contextlib.suppress(OSError):
                    return Path(value).read_text(encoding="utf-8")
                return None
            return value
    return None


def record(cli: str, argv: list[str], stdin: str | None, *, relaunched: bool) -> None:
    target = os.environ.get("FAKECLI_RECORD")
    if not target:
        return
    env = dict(os.environ)
    if relaunched:  # what the parent was started with, not what it added for its child
        env.pop("GEMINI_CLI_NO_RELAUNCH", None)
        env.pop("FAKECLI_GEMINI_CHILD", None)
    entry = {
        "cli": cli,
        "argv": argv,
        "stdin": stdin,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "relaunched": relaunched,
        "env_names": sorted(env),
        "env": {k: v for k, v in env.items() if k.startswith(RECORDED_VALUES)},
        "append_system_prompt": _appended(argv),
    }
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def raise_signal(signum: int, _frame: object) -> None:
    raise Signalled(signum)


def gaps(scenario: Scenario) -> list[float]:
    setting = os.environ.get("FAKECLI_DELAY_MS", "0")
    if setting == "recorded":
        starts = [0.0, *scenario.times]
        return [max(0.0, b - a) for a, b in zip(starts, scenario.times, strict=False)]
    delay = float(setting) / 1000.0
    return [0.0] + [delay] * (len(scenario.lines) - 1)  # between lines, not before the first


def usual_reaction(cli: str, signum: int, session_id: str | None) -> None:
    """What the CLI does on a signal the scenario did not record."""
    if cli == "claude":
        if signum == signal.SIGINT:
            result = {
                "type": "result",
                "subtype": "error_during_execution",
                "is_error": True,
                "terminal_reason": "aborted_streaming",
                "session_id": session_id,
                "num_turns": 1,
                "total_cost_usd": 0,
                "usage": {"input_tokens": 0, "output_tokens": 0},
                "errors": [],
            }
            write_out(json.dumps(result).encode() + b"\n")
            exit_with(0)
        exit_with(143)
    if cli == "codex":
        exit_with(1 if signum == signal.SIGINT else -signum)
    exit_with(0)


def replay(cli: str, scenario: Scenario) -> None:
    delays = gaps(scenario)
    interrupt_at = scenario.signal_at if scenario.signal is not None else None
    before = [
        i for i, at in enumerate(scenario.times) if interrupt_at is None or at < float(interrupt_at)
    ]
    done = 0
    try:
        for index in before:
            if delays[index]:
                time.sleep(delays[index])
            # A signal must not fall between writing a line and counting it as written.
            signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
            write_out(scenario.lines[index])
            done = index + 1
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        if interrupt_at is None:
            write_err(scenario.stderr)
            exit_with(scenario.rc)
        deadline = time.monotonic() + float(os.environ.get("FAKECLI_STALL_S", "30"))
        while time.monotonic() < deadline:
            time.sleep(0.05)
        write_err(b"fakecli: the scenario waited for a signal that never came\n")
        exit_with(124)
    except Signalled as caught:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if interrupt_at is not None and caught.signum == scenario.signal:
            for line in scenario.lines[done:]:
                write_out(line)
            write_err(scenario.stderr)
            exit_with(scenario.rc)
        usual_reaction(cli, caught.signum, scenario.session_id)


def with_session(scenario: Scenario, session_id: str | None) -> Scenario:
    old = scenario.session_id
    if not session_id or not old or old == session_id:
        return scenario
    scenario.lines = [line.replace(old.encode(), session_id.encode()) for line in scenario.lines]
    return scenario


def relaunch_gemini(argv: list[str]) -> int:
    """Emulate Gemini's default start: a child does the work, the parent ignores signals."""
    env = dict(os.environ, GEMINI_CLI_NO_RELAUNCH="true", FAKECLI_GEMINI_CHILD="1")
    script = os.path.realpath(sys.argv[0])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the child installs its own handlers
    child = subprocess.Popen([sys.executable, script, *argv], env=env)
    rc = child.wait()
    return rc if rc >= 0 else 128 - rc


def main(cli: str, argv: list[str]) -> int:
    if cli == "gemini" and os.environ.get("GEMINI_CLI_NO_RELAUNCH") != "true":
        return relaunch_gemini(argv)
    signal.signal(signal.SIGINT, raise_signal)
    signal.signal(signal.SIGTERM, raise_signal)
    try:
        return start(cli, argv)
    except Signalled as caught:  # before the replay began
        usual_reaction(cli, caught.signum, None)
        return 1


def start(cli: str, argv: list[str]) -> int:
    reads_stdin = not sys.stdin.isatty() and (cli != "claude" or not claude_prompt_in_argv(argv))
    stdin = sys.stdin.read() if reads_stdin else None
    record(cli, argv, stdin, relaunched=os.environ.get("FAKECLI_GEMINI_CHILD") == "1")
    problem = check_argv(cli, argv)
    if problem is not None:
        write_err(problem.encode())
        return 1 if problem.startswith("Error:") else 2
    name = os.environ.get("FAKECLI_SCENARIO") or f"{cli}-new"
    if cli == "claude" and refuses_bypass_as_root(argv):
        name = "claude-tool-bypass-as-root-refused"
    scenario = with_session(load_scenario(cli, name), resume_id(cli, argv))
    replay(cli, scenario)
    return 0  # not reached: replay() always exits


def check_argv(cli: str, argv: list[str]) -> str | None:
    """The error the real CLI would print for argv a turn must never use, else None."""
    if cli == "claude":
        if "-p" not in argv and "--print" not in argv:
            return "fakecli: only print mode (-p) is emulated\n"
        if option_value(argv, "--output-format") == "stream-json" and "--verbose" not in argv:
            return "Error: When using --print, --output-format=stream-json requires --verbose\n"
    if cli == "codex" and (not argv or argv[0] != "exec"):
        return "fakecli: only `codex exec` is emulated\n"
    return None


def refuses_bypass_as_root(argv: list[str]) -> bool:
    bypass = (
        option_value(argv, "--permission-mode") == "bypassPermissions"
        or "--dangerously-skip-permissions" in argv
    )
    return bypass and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1"

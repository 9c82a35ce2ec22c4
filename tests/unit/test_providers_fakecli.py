"""The fake CLIs in tests/fakecli, run as real processes and read by the real parsers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ductor.providers import Provider, spec_for
from ductor.providers.env import FORBIDDEN_NAMES, ChildIdentity, child_env
from ductor.providers.events import Error, ErrorKind, Event, Result, TextDelta
from ductor.providers.request import PermissionMode, TurnRequest

FAKECLI = Path(__file__).resolve().parents[1] / "fakecli"


def fixtures_dir() -> Path:
    """The recorded CLI runs (tests/record-cli writes them)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "cli"


FIXTURES = fixtures_dir()
ALL_NAMES = sorted(p.stem for p in FIXTURES.glob("*.jsonl"))


def meta(name: str) -> dict[str, object]:
    return json.loads((FIXTURES / f"{name}.meta.json").read_text())


def session_of(name: str) -> str:
    """The session id in a recorded run's first line."""
    first = json.loads((FIXTURES / f"{name}.jsonl").read_text().splitlines()[0])
    return str(first["session_id"])


REPLAYED_WHOLE = [n for n in ALL_NAMES if not meta(n).get("signal")]
INTERRUPTS = [n for n in ALL_NAMES if meta(n).get("signal") and n != "gemini-interrupt-parent-only"]


def environment(request: TurnRequest, provider: str, **extra: str) -> dict[str, str]:
    env = child_env(
        os.environ,
        identity=ChildIdentity(agent_name="main", chat_id=42, transport="tg"),
        provider_env=spec_for(provider).provider_env(request, is_root=os.geteuid() == 0),
    )
    env["FAKECLI_FIXTURES"] = str(FIXTURES)
    return env | extra


def start(
    provider: str,
    request: TurnRequest,
    *,
    via_shebang: bool = False,
    env: dict[str, str] | None = None,
    **extra: str,
) -> subprocess.Popen[bytes]:
    spec = spec_for(provider)
    argv = spec.build_argv(request, str(FAKECLI / provider))
    if not via_shebang:
        argv = [sys.executable, *argv]
    stdin = spec.stdin_text(request)
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else environment(request, provider, **extra),
        start_new_session=True,  # its own process group, like the runner will do
    )
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin.encode())
        process.stdin.close()
        process.stdin = None  # written and closed: communicate() must leave it alone
    return process


def parse(
    provider: str, stdout: bytes, stderr: bytes, rc: int, stopped_by: ErrorKind | None = None
) -> list[Event]:
    parser = spec_for(provider).new_parser("")
    events: list[Event] = []
    for line in stdout.decode().splitlines():
        events += parser.feed(line)
    return events + parser.finish(rc, stderr.decode(), stopped_by=stopped_by)


def read_lines(process: subprocess.Popen[bytes], count: int) -> bytes:
    assert process.stdout is not None
    return b"".join(process.stdout.readline() for _ in range(count))


def lines_before_signal(name: str) -> int:
    info = meta(name)
    sent = info["sigint_sent_s"]
    times = info["line_times_s"]
    assert isinstance(sent, float)
    assert isinstance(times, list)
    return sum(1 for t in times if t < sent)


@pytest.mark.parametrize("provider", ["claude", "codex", "gemini"])
def test_fake_cli_answers_a_new_turn_that_the_parser_understands(provider: str) -> None:
    request = TurnRequest(prompt="hello", model="")
    process = start(provider, request, via_shebang=True)
    stdout, stderr = process.communicate(timeout=30)

    events = parse(provider, stdout, stderr, process.returncode)

    final = events[-1]
    assert isinstance(final, Result)
    assert (final.text, final.is_error) == ("ECHO: hello", False)
    assert final.session_id


@pytest.mark.parametrize("name", REPLAYED_WHOLE)
def test_fake_cli_replays_the_recording_byte_for_byte(name: str) -> None:
    provider = name.split("-", maxsplit=1)[0]
    process = start(provider, TurnRequest(prompt="hello"), FAKECLI_SCENARIO=name)
    stdout, stderr = process.communicate(timeout=30)

    assert stdout == (FIXTURES / f"{name}.jsonl").read_bytes()
    assert stderr == (FIXTURES / f"{name}.stderr").read_bytes()
    assert process.returncode == meta(name)["rc"]


@pytest.mark.parametrize("name", INTERRUPTS)
def test_fake_cli_reacts_to_the_recorded_signal_like_the_real_one(name: str) -> None:
    provider = name.split("-", maxsplit=1)[0]
    recorded_signal = signal.SIGINT if meta(name)["signal"] == "INT" else signal.SIGTERM
    process = start(provider, TurnRequest(prompt="stream slowly"), FAKECLI_SCENARIO=name)

    before = read_lines(process, lines_before_signal(name))
    os.killpg(process.pid, recorded_signal)
    after, stderr = process.communicate(timeout=30)

    assert before + after == (FIXTURES / f"{name}.jsonl").read_bytes()
    assert process.returncode == meta(name)["rc"]
    events = parse(provider, before + after, stderr, process.returncode, ErrorKind.INTERRUPTED)
    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED


def test_fake_cli_records_argv_stdin_and_environment(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    request = TurnRequest(prompt="hi there", session_id="thread-7", append_system_prompt="MEM")
    process = start("codex", request, FAKECLI_RECORD=str(record), NOTIFY_SOCKET="/run/x")
    stdout, stderr = process.communicate(timeout=30)

    (entry,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert entry["argv"] == spec_for("codex").build_argv(request)[1:]
    assert entry["stdin"] == "hi there\n\nMEM"
    assert entry["env"]["DUCTOR_CHAT_ID"] == "42"
    assert entry["pgid"] == process.pid
    final = parse("codex", stdout, stderr, process.returncode)[-1]
    assert isinstance(final, Result)
    assert final.session_id == "thread-7"


def test_child_env_keeps_systemd_variables_away_from_the_fake_cli(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    request = TurnRequest(prompt="hi")
    parent = dict(os.environ, NOTIFY_SOCKET="/run/n", LISTEN_FDS="1", WATCHDOG_USEC="5")
    env = child_env(parent, provider_env={"FAKECLI_RECORD": str(record)})
    env["FAKECLI_FIXTURES"] = str(FIXTURES)

    start("claude", request, env=env).communicate(timeout=30)

    names = set(json.loads(record.read_text())["env_names"])
    assert not names & (FORBIDDEN_NAMES | {"LISTEN_FDS", "WATCHDOG_USEC"})


@pytest.mark.skipif(os.geteuid() != 0, reason="Claude only refuses bypass mode as root")
def test_fake_claude_refuses_bypass_as_root_unless_the_child_env_says_sandbox() -> None:
    request = TurnRequest(prompt="run echo hi", permission_mode=PermissionMode.BYPASS)
    bare = environment(request, "claude")
    del bare["IS_SANDBOX"]

    refused = start("claude", request, env=bare)
    _, stderr = refused.communicate(timeout=30)
    allowed = start("claude", request)
    allowed.communicate(timeout=30)

    assert refused.returncode == 1
    assert b"cannot be used with root/sudo privileges" in stderr
    assert allowed.returncode == 0


def test_fake_claude_insists_on_verbose_with_stream_json_like_the_real_one() -> None:
    process = subprocess.run(
        [sys.executable, str(FAKECLI / "claude"), "-p", "--output-format", "stream-json", "hi"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )

    assert process.returncode == 1
    assert b"requires --verbose" in process.stderr


def test_delay_spaces_the_lines_out_to_emulate_token_timing() -> None:
    process = start("gemini", TurnRequest(prompt="x"), FAKECLI_DELAY_MS="100")
    assert process.stdout is not None

    arrivals = []
    for _ in process.stdout:
        arrivals.append(time.monotonic())
    process.wait(timeout=30)

    lines = len((FIXTURES / "gemini-new.jsonl").read_bytes().splitlines())
    assert len(arrivals) == lines >= 4
    assert arrivals[-1] - arrivals[0] >= 0.1 * (lines - 1) - 0.05


def test_interrupting_claude_mid_answer_ends_the_turn_as_interrupted() -> None:
    process = start("claude", TurnRequest(prompt="x"), FAKECLI_DELAY_MS="3000")

    first = read_lines(process, 1)
    os.killpg(process.pid, signal.SIGINT)
    rest, stderr = process.communicate(timeout=30)

    assert process.returncode == 0
    events = parse("claude", first + rest, stderr, process.returncode)
    error, final = events[-2:]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED
    assert isinstance(final, Result)
    assert final.session_id == session_of("claude-new")


@pytest.mark.parametrize(
    ("provider", "signum", "rc"),
    [
        ("claude", signal.SIGTERM, 143),
        ("codex", signal.SIGINT, 1),
        ("codex", signal.SIGTERM, -signal.SIGTERM),
        ("gemini", signal.SIGINT, 0),
        ("gemini", signal.SIGTERM, 0),
    ],
)
def test_signal_mid_answer_exits_the_way_the_real_cli_does(
    provider: str, signum: signal.Signals, rc: int
) -> None:
    process = start(provider, TurnRequest(prompt="x"), FAKECLI_DELAY_MS="3000")

    first = read_lines(process, 1)
    os.killpg(process.pid, signum)
    rest, _ = process.communicate(timeout=30)

    assert process.returncode == rc
    assert rest == b""
    assert first


def test_gemini_without_no_relaunch_ignores_a_signal_sent_to_its_pid_only() -> None:
    request = TurnRequest(prompt="x")
    env = environment(request, "gemini", FAKECLI_DELAY_MS="2000")
    del env["GEMINI_CLI_NO_RELAUNCH"]
    process = start(Provider.GEMINI, request, env=env)

    read_lines(process, 1)
    os.kill(process.pid, signal.SIGINT)
    time.sleep(0.3)
    still_running = process.poll() is None
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=30)

    assert still_running
    assert process.returncode == 0


def test_gemini_with_the_child_env_stops_on_a_signal_to_its_pid() -> None:
    process = start("gemini", TurnRequest(prompt="x"), FAKECLI_DELAY_MS="2000")

    first = read_lines(process, 1)
    os.kill(process.pid, signal.SIGINT)
    rest, stderr = process.communicate(timeout=5)

    events = parse("gemini", first + rest, stderr, process.returncode, ErrorKind.INTERRUPTED)
    assert process.returncode == 0
    assert not [e for e in events if isinstance(e, TextDelta)]
    error = events[-2]
    assert isinstance(error, Error)
    assert error.error is ErrorKind.INTERRUPTED

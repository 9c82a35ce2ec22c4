"""The CLI runner against the fake CLIs in tests/fakecli, as real child processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from ductor.agent import runner
from ductor.agent.runner import CliNotFound, CliRun, ProcessRegistry, RunEvent, RunSpec
from ductor.agent.runner import TimeoutStatus as TimeoutStatusEvent
from ductor.agent.timeouts import NoticeKind, TimeoutPolicy
from ductor.errors import DuctorError
from ductor.providers import Provider, TurnRequest
from ductor.providers.env import ChildIdentity
from ductor.providers.events import Error, ErrorKind, Result, SessionStarted, TextDelta

REPO = Path(__file__).resolve().parents[2]
FAKECLI = REPO / "tests" / "fakecli"


def fixtures_dir() -> Path:
    """The recorded CLI runs (tests/record-cli writes them)."""
    return REPO / "tests" / "fixtures" / "cli"


FIXTURES = fixtures_dir()


def recorded_session(name: str) -> str:
    """The session id a recorded run announced in its first line."""
    first = json.loads((FIXTURES / f"{name}.jsonl").read_text().splitlines()[0])
    return str(first["session_id"])


IDENTITY = ChildIdentity(agent_name="main", chat_id=42, topic_id=7, transport="tg")


def spec(
    provider: str,
    tmp_path: Path,
    prompt: str = "hello",
    *,
    executable: str | None = None,
    env: Mapping[str, str] | None = None,
    policy: TimeoutPolicy | None = None,
    append: str = "",
    **fake: str,
) -> RunSpec:
    """A run of the fake CLI; ``fake`` are FAKECLI_* settings (SCENARIO=..., DELAY_MS=...).

    They travel as the agent's .env secrets: the only way, besides the identity, that a
    variable not on the allowlist reaches the child.
    """
    secrets = {"FAKECLI_FIXTURES": str(FIXTURES)}
    secrets |= {f"FAKECLI_{name}": value for name, value in fake.items()}
    return RunSpec(
        provider=Provider(provider),
        request=TurnRequest(prompt=prompt, append_system_prompt=append),
        cwd=tmp_path,
        env=os.environ if env is None else env,
        identity=IDENTITY,
        secrets=secrets,
        executable=str(FAKECLI / provider) if executable is None else executable,
        policy=policy,
        temp_dir=tmp_path,
    )


OnEvent = Callable[[CliRun, RunEvent], Awaitable[None]]


def collect(run: CliRun, on_event: OnEvent | None = None) -> list[RunEvent]:
    async def main() -> list[RunEvent]:
        events = []
        async for event in run.events():
            events.append(event)
            if on_event is not None:
                await on_event(run, event)
        return events

    return asyncio.run(main())


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(*pids: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def closing(events: list[RunEvent]) -> tuple[Error | None, Result]:
    """The Error (if any) and the Result that end every stream, checking the contract."""
    results = [e for e in events if isinstance(e, Result)]
    assert len(results) == 1
    final = events[-1]
    assert isinstance(final, Result)
    before = events[-2] if len(events) > 1 else None
    return (before if isinstance(before, Error) else None), final


# -- normal turns -----------------------------------------------------------------------


def test_claude_turn_streams_the_session_then_the_text_then_the_answer(tmp_path: Path) -> None:
    events = collect(CliRun(spec("claude", tmp_path)))

    assert isinstance(events[0], SessionStarted)
    assert events[0].session_id == recorded_session("claude-new")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "ECHO: hello"
    error, final = closing(events)
    assert error is None
    assert (final.text, final.is_error) == ("ECHO: hello", False)


@pytest.mark.parametrize("provider", ["codex", "gemini"])
def test_codex_and_gemini_answer_a_new_turn_through_stdin(provider: str, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    run = CliRun(spec(provider, tmp_path, RECORD=str(record)))

    events = collect(run)

    error, final = closing(events)
    assert error is None
    assert (final.text, final.is_error) == ("ECHO: hello", False)
    assert final.session_id
    (entry,) = records(record)
    assert entry["stdin"] == "hello"
    assert entry["cwd"] == str(tmp_path)
    assert run.stopped_by is None
    assert not run.running


def test_child_gets_its_identity_and_nothing_of_the_service_manager(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    parent = dict(os.environ, NOTIFY_SOCKET="/run/n", LISTEN_FDS="1", WATCHDOG_USEC="5")

    collect(CliRun(spec("claude", tmp_path, env=parent, RECORD=str(record))))

    (entry,) = records(record)
    env = entry["env"]
    assert isinstance(env, dict)
    assert {k: v for k, v in env.items() if k.startswith("DUCTOR_")} == {
        "DUCTOR_AGENT_NAME": "main",
        "DUCTOR_CHAT_ID": "42",
        "DUCTOR_TOPIC_ID": "7",
        "DUCTOR_TRANSPORT": "tg",
    }
    names = entry["env_names"]
    assert isinstance(names, list)
    assert not {"NOTIFY_SOCKET", "LISTEN_FDS", "WATCHDOG_USEC"} & set(names)


def test_child_leads_its_own_process_group(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    run = CliRun(spec("claude", tmp_path, RECORD=str(record)))

    collect(run)

    (entry,) = records(record)
    assert entry["pid"] == entry["pgid"] == run.pid == run.pgid
    assert entry["pgid"] != os.getpgid(0)
    assert run.started_at is not None
    assert abs(run.started_at - time.time()) < 30


def test_gemini_runs_as_one_process_so_signals_reach_it(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"

    collect(CliRun(spec("gemini", tmp_path, RECORD=str(record))))

    (entry,) = records(record)  # a relaunched Gemini would have recorded twice
    assert entry["relaunched"] is False
    env = entry["env"]
    assert isinstance(env, dict)
    assert env["GEMINI_CLI_NO_RELAUNCH"] == "true"


# -- interrupt and stop -------------------------------------------------------------------


async def interrupt_once_started(run: CliRun, event: RunEvent) -> None:
    if isinstance(event, SessionStarted):
        assert run.interrupt()


def test_interrupting_claude_ends_with_its_own_interrupted_result(tmp_path: Path) -> None:
    run = CliRun(spec("claude", tmp_path, SCENARIO="claude-interrupt"))

    events = collect(run, interrupt_once_started)

    error, final = closing(events)
    assert error is not None
    assert (error.error, error.text) == (ErrorKind.INTERRUPTED, "Claude was interrupted")
    assert final.is_error
    assert final.session_id == recorded_session("claude-interrupt")
    assert run.stopped_by is ErrorKind.INTERRUPTED
    assert run.pid is not None
    assert not run.running
    assert wait_gone(run.pid)
    assert not run.interrupt()


def test_interrupting_gemini_ends_as_interrupted_not_as_a_missing_answer(
    tmp_path: Path,
) -> None:
    run = CliRun(spec("gemini", tmp_path, SCENARIO="gemini-interrupt"))

    events = collect(run, interrupt_once_started)

    error, final = closing(events)
    assert error is not None
    assert error.error is ErrorKind.INTERRUPTED
    assert "without an answer" not in error.text
    assert final.session_id == recorded_session("gemini-interrupt")


STUBBORN = """\
    import json, os, signal, subprocess, sys, time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
         " print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    child.stdout.readline()
    with open(os.environ["STUBBORN_PIDS"], "w") as file:
        json.dump([os.getpid(), child.pid], file)
    print(json.dumps({"type": "system", "subtype": "init", "session_id": "stubborn"}),
          flush=True)
    time.sleep(60)
"""


def test_stop_kills_the_whole_group_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = tmp_path / "stubborn"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(STUBBORN))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    pids_file = tmp_path / "pids.json"
    stubborn = spec("claude", tmp_path, executable=str(script))
    run = CliRun(replace(stubborn, secrets={"STUBBORN_PIDS": str(pids_file)}))
    took: list[float] = []
    stopped: list[bool] = []

    async def stop_once_started(run: CliRun, event: RunEvent) -> None:
        if isinstance(event, SessionStarted):
            start = time.monotonic()
            stopped.append(await run.stop(grace=0.3))
            took.append(time.monotonic() - start)

    events = collect(run, stop_once_started)

    leader, grandchild = json.loads(pids_file.read_text())
    assert wait_gone(leader, grandchild)
    assert stopped == [True]
    assert took[0] >= 0.3  # it waited for the grace period: SIGTERM did nothing
    error, _ = closing(events)
    assert error is not None
    assert error.error is ErrorKind.INTERRUPTED
    assert run.stopped_by is ErrorKind.INTERRUPTED


def test_stop_and_interrupt_say_so_when_nothing_is_running(tmp_path: Path) -> None:
    run = CliRun(spec("claude", tmp_path))

    assert not run.interrupt()
    assert not asyncio.run(run.stop())
    collect(run)
    assert not run.interrupt()
    assert not asyncio.run(run.stop())


def test_leaving_the_loop_early_stops_the_process(tmp_path: Path) -> None:
    run = CliRun(spec("claude", tmp_path, SCENARIO="claude-interrupt"))

    async def main() -> None:
        async for event in run.events():
            if isinstance(event, SessionStarted):
                break

    asyncio.run(main())

    assert run.pid is not None
    assert not run.running
    assert wait_gone(run.pid)


LINGERING = """\
    import json, os, subprocess
    sleeper = subprocess.Popen(["sleep", "60"])  # inherits stdout and stderr
    with open(os.environ["SLEEPER_PID"], "w") as file:
        file.write(str(sleeper.pid))
    for line in ({"type": "system", "subtype": "init", "session_id": "s1"},
                 {"type": "result", "subtype": "success", "result": "done", "is_error": False}):
        print(json.dumps(line), flush=True)
"""


def test_turn_ends_when_the_cli_exits_even_if_a_descendant_keeps_its_output_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "EXIT_DRAIN", 0.2)
    script = tmp_path / "lingering"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(LINGERING))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    pid_file = tmp_path / "sleeper.pid"
    lingering = spec("claude", tmp_path, executable=str(script))
    run = CliRun(replace(lingering, secrets={"SLEEPER_PID": str(pid_file)}))

    started = time.monotonic()
    events = collect(run)

    assert time.monotonic() - started < 1.5
    error, final = closing(events)
    assert error is None
    assert final.text == "done"
    assert wait_gone(int(pid_file.read_text()))  # it went with the group


def test_debug_log_shows_the_argv_without_the_prompt_or_secret_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = spec("claude", tmp_path, prompt="my private plans")
    request = replace(base.request, extra_args=("--settings", "sk-token-123456"))
    secrets = {**base.secrets, "SOME_TOKEN": "sk-token-123456"}
    caplog.set_level(logging.DEBUG, logger="ductor.agent.runner")

    collect(CliRun(replace(base, request=request, secrets=secrets)))

    logged = caplog.text
    assert "--output-format stream-json" in logged
    assert "my private plans" not in logged
    assert "sk-token-123456" not in logged


# -- timeouts -----------------------------------------------------------------------------


def test_stalled_turn_is_warned_then_stopped_as_timed_out(tmp_path: Path) -> None:
    policy = TimeoutPolicy(timeout=1.0, warning_intervals=(0.5,), extend_on_activity=False)
    run = CliRun(spec("claude", tmp_path, policy=policy, SCENARIO="claude-interrupt"))

    started = time.monotonic()
    events = collect(run)
    took = time.monotonic() - started

    warnings = [e for e in events if isinstance(e, TimeoutStatusEvent)]
    assert [w.notice.kind for w in warnings] == [NoticeKind.WARNING]
    assert 0.3 < warnings[0].notice.remaining <= 0.5
    assert events.index(warnings[0]) < len(events) - 2
    error, final = closing(events)
    assert error is not None
    assert error.error is ErrorKind.TIMEOUT
    assert final.is_error
    assert final.session_id == recorded_session("claude-interrupt")
    assert run.stopped_by is ErrorKind.TIMEOUT
    assert took < 2.5


def test_turn_that_keeps_printing_is_extended_and_completes(tmp_path: Path) -> None:
    policy = TimeoutPolicy(
        timeout=2.0,
        warning_intervals=(),
        activity_extension=0.6,
        max_extensions=10,
        activity_window=5.0,
    )
    # Five lines 700 ms apart: about 3.5 s in all, well past the first deadline, with
    # room for a slow interpreter start on a loaded machine.
    run = CliRun(spec("gemini", tmp_path, policy=policy, DELAY_MS="700"))

    events = collect(run)

    extended = [e for e in events if isinstance(e, TimeoutStatusEvent)]
    assert extended
    assert all(e.notice.kind is NoticeKind.EXTENDED for e in extended)
    error, final = closing(events)
    assert error is None
    assert (final.text, final.is_error) == ("ECHO: hello", False)
    assert run.stopped_by is None


# -- the appended system prompt and a missing CLI ---------------------------------------


def test_big_appended_system_prompt_goes_through_a_private_file_removed_afterwards(
    tmp_path: Path,
) -> None:
    record = tmp_path / "record.jsonl"
    memory = "remember this\n" * 8000  # 112 000 bytes: too big for one argv string
    run = CliRun(spec("claude", tmp_path, append=memory, RECORD=str(record)))
    seen: list[tuple[str, int]] = []

    async def look_at_the_file(run: CliRun, event: RunEvent) -> None:
        if isinstance(event, SessionStarted):
            argv = records(record)[0]["argv"]
            assert isinstance(argv, list)
            path = Path(argv[argv.index("--append-system-prompt-file") + 1])
            seen.append((path.read_text(), stat.S_IMODE(path.stat().st_mode)))
            seen.append((str(path), 0))

    events = collect(run, look_at_the_file)

    (content, mode), (path, _) = seen
    assert content == memory
    assert mode == 0o600
    assert Path(path).parent == tmp_path
    assert not Path(path).exists()
    assert memory not in json.dumps(records(record)[0]["argv"])
    assert closing(events)[1].text == "ECHO: hello"


def test_missing_cli_names_the_npm_package_to_install(tmp_path: Path) -> None:
    bare = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    lookup = CliRun(replace(spec("codex", tmp_path, env=bare), executable=None))
    missing = CliRun(spec("gemini", tmp_path, executable=str(tmp_path / "gemini")))

    with pytest.raises(CliNotFound, match="npm install -g @openai/codex"):
        collect(lookup)
    with pytest.raises(CliNotFound, match="npm install -g @google/gemini-cli"):
        collect(missing)


def test_missing_working_directory_is_reported_as_such(tmp_path: Path) -> None:
    run = CliRun(replace(spec("claude", tmp_path), cwd=tmp_path / "gone"))

    with pytest.raises(DuctorError, match="working directory") as info:
        collect(run)
    assert not isinstance(info.value, CliNotFound)


# -- the registry -------------------------------------------------------------------------


def test_registry_stops_one_session_and_leaves_the_others_running(tmp_path: Path) -> None:
    registry = ProcessRegistry()
    runs = {
        name: CliRun(spec("claude", tmp_path, SCENARIO="claude-interrupt"))
        for name in ("a-main", "a-bg", "b-main")
    }
    registry.add("chat-a", "main", runs["a-main"])
    registry.add("chat-a", "bg", runs["a-bg"])
    registry.add("chat-b", "main", runs["b-main"])

    async def main() -> tuple[int, int, bool, int]:
        iterators = {name: run.events() for name, run in runs.items()}
        for events in iterators.values():  # until each has started
            while not isinstance(await anext(events), SessionStarted):
                pass
        stopped = await registry.stop_session("chat-a")
        interrupted = registry.interrupt_session("chat-b")
        b_still_running = runs["b-main"].running
        for events in iterators.values():
            async for _ in events:
                pass
        return stopped, interrupted, b_still_running, await registry.stop_all()

    stopped, interrupted, b_running_after_a_stopped, left = asyncio.run(main())

    assert (stopped, interrupted, left) == (2, 1, 0)
    assert b_running_after_a_stopped
    assert runs["a-main"].stopped_by is ErrorKind.INTERRUPTED
    assert registry.for_session("chat-a") == [runs["a-main"], runs["a-bg"]]
    registry.remove("chat-a", "main", runs["a-bg"])  # not the run under that label
    assert registry.for_session("chat-a") == [runs["a-main"], runs["a-bg"]]
    registry.remove("chat-a", "main")
    assert registry.all() == [runs["a-bg"], runs["b-main"]]
    registry.remove("chat-a", "bg")
    assert registry.for_session("chat-a") == []

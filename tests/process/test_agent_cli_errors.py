"""What a user sees when the CLI behind the agent fails: the agent daemon as a real process,
its CLIs the fake ones (tests/fakecli) or small scripts that fail the way the real CLIs do.

Every answer is read back through the protocol client, as every transport reads it, so a
``final`` that the client cannot parse fails these tests too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.process.agent_proc import REPO, AgentProcess, final

from ductor import protocol

FAKECLI = REPO / "tests" / "fakecli"


def write_env(agent: AgentProcess, **values: str) -> None:
    """The agent's .env: the way FAKECLI_* settings reach the child (re-read on change)."""
    file = agent.root / "config" / "credentials" / agent.name / ".env"
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    file.chmod(0o600)


def script(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def agent_with(tmp_path: Path, config: str, bin_dir: Path | None, **env: str) -> AgentProcess:
    process = AgentProcess(tmp_path, config=config)
    if bin_dir is not None:
        process.extra_env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    process.write_config()
    write_env(process, **env)
    return process


def config_for(provider: str, model: str, extra: str = "") -> str:
    return f'provider = "{provider}"\nmodel = "{model}"\ntransports = []\n{extra}'


# -- item 2: a CLI that never gave a session id ---------------------------------------------


def test_a_missing_cli_is_named_with_its_install_command(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    process = agent_with(tmp_path, config_for("gemini", "flash"), empty)
    process.start()
    try:
        events = process.message("hello")
    finally:
        process.stop()
    end = final(events)  # parsed by the protocol client: session_id null is valid
    assert end.get_bool("is_error")
    assert end.data["session_id"] is None
    assert "gemini is not installed: npm install -g @google/gemini-cli" in end.text


NOT_LOGGED_IN_CLAUDE = """\
cat >/dev/null
echo "Not logged in · Please run /login" >&2
exit 1
"""

UNKNOWN_FLAG_CLAUDE = """\
echo "error: unknown option '--bogus-flag'" >&2
exit 1
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            NOT_LOGGED_IN_CLAUDE,
            "claude is not logged in, or its credentials were refused: run `claude` once on"
            " the agent's machine and log in, or set ANTHROPIC_API_KEY in the agent's .env",
        ),
        (UNKNOWN_FLAG_CLAUDE, "check `cli_parameters.claude` in the agent's config"),
    ],
    ids=["not-logged-in", "unknown-flag"],
)
def test_a_cli_that_exits_before_its_session_id_shows_the_real_error_and_its_fix(
    tmp_path: Path, body: str, expected: str
) -> None:
    bin_dir = tmp_path / "bin"
    script(bin_dir, "claude", body)
    process = agent_with(tmp_path, config_for("claude", "opus"), bin_dir)
    process.start()
    try:
        end = final(process.message("hello"))
    finally:
        process.stop()
    assert end.get_bool("is_error")
    assert end.data["session_id"] is None
    assert expected in end.text
    assert "expected a string" not in end.text


def test_ductor_chat_shows_the_error_of_a_cli_that_exits_early(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    script(bin_dir, "claude", NOT_LOGGED_IN_CLAUDE)
    process = agent_with(tmp_path, config_for("claude", "opus"), bin_dir)
    process.start()
    try:
        result = ductor_chat(process, "hello")
    finally:
        process.stop()
    assert result.returncode == 1, result.stderr
    assert "claude is not logged in" in result.stdout
    assert "session_id" not in result.stdout + result.stderr


# -- items 17 and 18: timeouts reach the user, in the right words -------------------------

TIMEOUT_CONFIG = "[timeouts]\nnormal = 3\nwarning_intervals = [1]\nextend_on_activity = false\n"
# Scenarios that stream, then wait for a signal that only the timeout sends.
STALLING = {
    "claude": ("opus", "claude-interrupt"),
    "codex": ("gpt-5.5", "codex-interrupt"),
    "gemini": ("flash", "gemini-interrupt"),
}


@pytest.mark.parametrize("provider", sorted(STALLING))
def test_every_providers_timeout_ends_with_the_timeout_message_and_its_true_duration(
    tmp_path: Path, provider: str
) -> None:
    model, scenario = STALLING[provider]
    process = agent_with(
        tmp_path, config_for(provider, model, TIMEOUT_CONFIG), None, FAKECLI_SCENARIO=scenario
    )
    process.start()
    try:
        events = process.message("stream slowly")
    finally:
        process.stop()
    statuses = [e.text for e in events if e.type is protocol.EventType.STATUS]
    assert "Timeout in 1 s" in statuses
    end = final(events)
    assert end.get_bool("is_error")
    assert end.get_str("error_kind") == "timeout"
    assert "**Timeout**" in end.text
    assert "stopped after 3 s" in end.text, end.text


def ductor_chat(process: AgentProcess, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bin" / "ductor"), "chat", "main", "-m", text],
        env={**process.env, "USER": "alice", "LOGNAME": "alice"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ductor_chat_shows_the_timeout_after_the_streamed_text_and_exits_1(
    tmp_path: Path,
) -> None:
    process = agent_with(
        tmp_path,
        config_for("gemini", "flash", TIMEOUT_CONFIG),
        None,
        FAKECLI_SCENARIO="gemini-interrupt",
    )
    process.start()
    try:
        result = ductor_chat(process, "stream slowly")
    finally:
        process.stop()
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] and not lines[0].startswith("["), lines  # the streamed partial answer
    assert "[Timeout in 1 s]" in lines
    assert any(line.startswith("**Timeout**") and "after 3 s" in line for line in lines), lines


# -- item 19: Gemini's retries and its lost sessions ----------------------------------------

RETRYING_GEMINI = """\
printf '%s%s\n' 'Attempt 1 failed with status 429. Retrying with backoff... ' \
    '_ApiError: {{"error":{{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}}}' >&2
echo '    at throwErrorIfNotOK (file:///gemini/bundle.js:1:1)' >&2
sleep 2
exec "{fake}" "$@"
"""


def test_geminis_api_retries_are_shown_while_it_waits(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    script(bin_dir, "gemini", RETRYING_GEMINI.format(fake=FAKECLI / "gemini"))
    process = agent_with(tmp_path, config_for("gemini", "flash"), bin_dir)
    process.start()
    try:
        seen: list[tuple[float, protocol.Event]] = []
        request = protocol.Request(
            type=protocol.RequestType.MESSAGE,
            id=protocol.new_request_id(),
            session="tg:100",
            text="hello",
        )
        started = time.monotonic()
        with protocol.connect(process.socket, request, timeout=30) as exchange:
            for event in exchange.events():
                seen.append((time.monotonic() - started, event))
    finally:
        process.stop()
    retries = [(at, e) for at, e in seen if e.get_str("status") == "retrying"]
    assert [e.text for _, e in retries] == ["API error 429 (RESOURCE_EXHAUSTED), retry 1"]
    final_at = seen[-1][0]
    assert final_at - retries[0][0] > 1.0, "the retry showed only at the end of the turn"
    assert seen[-1][1].text == "ECHO: hello"


FORGETFUL_GEMINI = """\
for arg in "$@"; do
    if [ "$arg" = "--resume" ]; then
        cat >/dev/null
        echo "Error resuming session: No previous sessions found for this project." >&2
        exit 42
    fi
done
exec "{fake}" "$@"
"""


def test_a_session_gemini_no_longer_has_is_retried_once_as_a_fresh_session(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    script(bin_dir, "gemini", FORGETFUL_GEMINI.format(fake=FAKECLI / "gemini"))
    record = tmp_path / "record.jsonl"
    process = agent_with(
        tmp_path, config_for("gemini", "flash"), bin_dir, FAKECLI_RECORD=str(record)
    )
    process.start()
    try:
        process.message("hello")
        events = process.message("again")
    finally:
        process.stop()
    end = final(events)
    assert not end.get_bool("is_error"), end.text
    assert end.text == "ECHO: hello"
    assert "a new session was started" in end.get_str("notice")
    assert any(e.get_str("status") == "recovering" for e in events)
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 2  # the failed resume never reached the fake; the fresh run did
    assert "--resume" not in runs[1]["argv"]


# -- item 14: the prompt is in no argv ------------------------------------------------------


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
    return {pid: raw.decode(errors="replace") for pid, raw in found.items()}


@pytest.mark.parametrize("provider", sorted(STALLING))
def test_no_local_user_can_read_the_prompt_or_the_memory_in_the_clis_argv(
    tmp_path: Path, provider: str
) -> None:
    model, scenario = STALLING[provider]
    record = tmp_path / "record.jsonl"
    process = agent_with(
        tmp_path,
        config_for(provider, model, "[timeouts]\nnormal = 30\n"),
        None,
        FAKECLI_SCENARIO=scenario,
        FAKECLI_RECORD=str(record),
    )
    secret = "my private question about the merger"
    process.start()
    memory = process.workspace / "memory_system" / "MAINMEMORY.md"
    memory.write_text("The user's cat is called Ziggy.\n")
    try:
        answers: dict[str, list[protocol.Event]] = {}
        turn = threading.Thread(target=lambda: answers.update(turn=process.message(secret)))
        turn.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not record.exists():
            time.sleep(0.05)
        (run,) = [json.loads(line) for line in record.read_text().splitlines()]
        argv_seen = cmdlines()[run["pid"]]  # the CLI is running: it waits for a signal
        stop = protocol.Request(
            type=protocol.RequestType.ABORT,
            id=protocol.new_request_id(),
            session="tg:100",
            mode=protocol.AbortMode.STOP,
        )
        process.call(stop)
        turn.join(30)
    finally:
        process.stop()
    assert str(FAKECLI / provider) in argv_seen  # the CLI's own process
    assert secret not in argv_seen
    assert "Ziggy" not in argv_seen
    assert secret in run["stdin"]  # the CLI still got the prompt: on stdin

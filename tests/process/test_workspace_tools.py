"""What the workspace gives a chat, with the agent (and the Telegram transport) as
processes, the fake Bot API and the fake CLI recording what it was given: a voice note
reaches the CLI with the tool that reads it (and that tool gives its text), /showfiles
sends a deliverable, /start's quick starts reach the CLI, and skills are linked into a
CLI's skill folder at start and on reload."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import AgentProcess
from tests.process.test_telegram_transport import USER, Transport, answer_texts, setup_agent
from tests.stubs.telegram_api import TelegramStub


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as running:
        yield running


def wav_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "voice.wav"
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x01" * 4000)
    return path.read_bytes()


def test_a_voice_note_names_the_transcription_tool_and_the_tool_gives_its_text(
    tmp_path: Path, stub: TelegramStub
) -> None:
    hook = tmp_path / "stt.py"
    hook.write_text("import sys\nprint('please book a table for two at eight')\n")
    record = tmp_path / "record.jsonl"
    extra = f'[transcription]\naudio_command = "{sys.executable} {hook}"\n'
    agent = setup_agent(tmp_path, stub, extra, FAKECLI_RECORD=str(record))
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        voice = stub.add_file(wav_bytes(tmp_path), "voice.wav", kind="voice")
        stub.user_sends(USER, user_id=USER, voice=voice)
        stub.wait_for(lambda: record.exists() and answer_texts(stub, USER), timeout=30)
    finally:
        transport.stop()
        agent.stop()
    run = json.loads(record.read_text().splitlines()[0])
    given = "\n".join([*run["argv"], run["stdin"] or ""])  # the prompt, wherever it went
    assert "[INCOMING FILE]" in given
    [line] = [x for x in given.splitlines() if "tools/media_tools/transcribe_audio.py" in x]
    assert line.startswith("Use python3 tools/media_tools/transcribe_audio.py --file "), line
    path = line.split("--file ", 1)[1].split(" ", 1)[0]
    assert (agent.workspace / path).is_file(), path
    assert run["env"]["DUCTOR_TRANSCRIBE_COMMAND"] == f"{sys.executable} {hook}"

    # The CLI runs the named command in the workspace, with the environment it was given.
    done = subprocess.run(
        [sys.executable, "tools/media_tools/transcribe_audio.py", "--file", path],
        cwd=agent.workspace,
        env={"PATH": "/usr/bin:/bin", **run["env"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["text"] == "please book a table for two at eight"


def keyboard(message: dict[str, object]) -> dict[str, str]:
    markup = message["reply_markup"]
    assert isinstance(markup, dict)
    return {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}


def test_showfiles_browses_to_a_deliverable_and_sends_it(
    tmp_path: Path, stub: TelegramStub
) -> None:
    agent = setup_agent(tmp_path, stub)
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        report = agent.workspace / "output_to_user" / "report.txt"
        report.write_text("Q3: up 12%\n")
        stub.user_sends(USER, "/showfiles", user_id=USER)
        stub.wait_for(lambda: any(m["reply_markup"] for m in stub.bot_messages(USER)), timeout=20)
        (browser,) = stub.bot_messages(USER)
        folder = keyboard(browser)["📁 output_to_user"]
        stub.user_presses(USER, browser["message_id"], folder, user_id=USER)
        stub.wait_for(lambda: "report.txt" in str(stub.bot_messages(USER)[0]["text"]), timeout=10)
        (browser,) = stub.bot_messages(USER)
        stub.user_presses(
            USER, browser["message_id"], keyboard(browser)["📄 report.txt"], user_id=USER
        )
        sent = stub.wait_for(
            lambda: [m["file"] for m in stub.bot_messages(USER) if m["file"] is not None],
            timeout=10,
        )
    finally:
        transport.stop()
        agent.stop()
    assert [(f.name, f.content) for f in sent] == [("report.txt", b"Q3: up 12%\n")]
    assert "Sending output_to_user/report.txt." in str(stub.bot_messages(USER)[0]["text"])


def test_start_welcomes_and_a_quick_start_button_reaches_the_cli_as_its_prompt(
    tmp_path: Path, stub: TelegramStub
) -> None:
    record = tmp_path / "record.jsonl"
    agent = setup_agent(tmp_path, stub, FAKECLI_RECORD=str(record))
    agent.start()
    transport = Transport(agent).start()
    try:
        stub.wait_for(lambda: stub.calls_to("getUpdates"), timeout=20)
        stub.user_sends(USER, "/start", user_id=USER)
        stub.wait_for(lambda: any(m["reply_markup"] for m in stub.bot_messages(USER)), timeout=20)
        (hello,) = stub.bot_messages(USER)
        assert "Welcome to ductor" in str(hello["plain_text"])
        buttons = keyboard(hello)
        stub.user_presses(
            USER, hello["message_id"], buttons["Let's get to know each other"], user_id=USER
        )
        stub.wait_for(record.exists, timeout=30)
    finally:
        transport.stop()
        agent.stop()
    run = json.loads(record.read_text().splitlines()[0])
    given = "\n".join([*run["argv"], run["stdin"] or ""])
    assert "I would like you to get to know me" in given


def test_a_skill_added_in_the_workspace_appears_in_the_cli_skill_folder_as_a_link(
    tmp_path: Path,
) -> None:
    agent = AgentProcess(tmp_path)
    agent.write_config()
    (tmp_path / "home" / ".claude").mkdir(parents=True)
    skill = agent.workspace / "skills" / "pdf-tools"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("---\nname: pdf-tools\ndescription: PDF work\n---\n")
    agent.start()
    try:
        link = tmp_path / "home" / ".claude" / "skills" / "pdf-tools"
        assert link.is_symlink() and link.resolve() == skill.resolve(), agent.log()
        # A skill added while the agent runs: ductor-skills@NAME.path reloads the agent.
        later = agent.workspace / "skills" / "review"
        later.mkdir()
        (later / "SKILL.md").write_text("---\nname: review\ndescription: Reviews\n---\n")
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        added = tmp_path / "home" / ".claude" / "skills" / "review"
        deadline = time.monotonic() + 10
        while not added.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert added.is_symlink(), agent.log()
    finally:
        agent.stop()

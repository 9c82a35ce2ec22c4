"""The media tool scripts shipped in the workspace (tools/media_tools/), run as the CLI
runs them: as processes, from the workspace, with real small files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import wave
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ductor.agent import prompt, workspace
from ductor.agent.execute import identity_for
from ductor.config import AgentConfig
from ductor.config.schema import TranscriptionConfig
from ductor.providers.env import child_env

TOOLS = workspace.MEDIA_TOOLS_DIR


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    workspace.ensure_workspace(root, agent="main", providers=["claude"])
    return root


@pytest.fixture
def bare_path(tmp_path: Path) -> str:
    """A PATH on which no ffmpeg, whisper or pdftotext is found."""
    empty = tmp_path / "bin"
    empty.mkdir()
    return str(empty)


def run_tool(
    root: Path, tool: str, *args: str, env: dict[str, str] | None = None, path: str = ""
) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": path or os.environ.get("PATH", ""), "HOME": str(root), **(env or {})}
    return subprocess.run(
        [sys.executable, str(root / TOOLS / f"{tool}.py"), *args],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def output(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def make_wav(path: Path, seconds: float = 0.5, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\x00\x01" * int(seconds * rate))
    return path


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    document = (
        f'<?xml version="1.0"?><w:document xmlns:w="{ns}"><w:body>{body}</w:body></w:document>'
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", document)
    return path


def test_the_workspace_ships_every_media_tool_as_an_executable_script(root: Path) -> None:
    for name in workspace.MEDIA_TOOL_NAMES:
        script = root / TOOLS / f"{name}.py"
        assert script.is_file() and os.access(script, os.X_OK), name


@pytest.mark.parametrize(
    "tool", ["transcribe_audio", "process_video", "read_document", "file_info"]
)
def test_a_media_tool_run_without_arguments_prints_its_tutorial(root: Path, tool: str) -> None:
    done = run_tool(root, tool)
    assert done.returncode == 0
    assert done.stdout.startswith(f"{tool}.py:") and "Usage:" in done.stdout


def test_transcription_runs_the_configured_command_with_the_file_appended(
    root: Path, tmp_path: Path, bare_path: str
) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text("import sys\nprint('you said hello, in', sys.argv[-1].rsplit('/', 1)[-1])\n")
    voice = make_wav(root / "telegram_files/2026-12-07/voice_1.wav")
    done = run_tool(
        root,
        "transcribe_audio",
        "--file",
        str(voice.relative_to(root)),
        env={"DUCTOR_TRANSCRIBE_COMMAND": f"{sys.executable} {hook}", "OPENAI_API_KEY": "k"},
        path=bare_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert output(done)["text"] == "you said hello, in voice_1.wav"
    assert output(done)["method"] == "command"


class _TranscriptionStub(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("Authorization", ""), body))
        payload = json.dumps({"text": "Remind me to water the plants."}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def transcription_api() -> Iterator[str]:
    _TranscriptionStub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TranscriptionStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_transcription_without_a_command_uses_the_openai_api_with_the_key(
    root: Path, transcription_api: str, bare_path: str
) -> None:
    voice = make_wav(root / "telegram_files/2026-12-07/voice_2.wav")
    done = run_tool(
        root,
        "transcribe_audio",
        "--file",
        str(voice),
        env={"OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": transcription_api},
        path=bare_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert output(done) == {
        "ok": True,
        "file": str(voice),
        "text": "Remind me to water the plants.",
        "method": "openai-api",
    }
    [(path, authorization, body)] = _TranscriptionStub.seen
    assert path == "/v1/audio/transcriptions"
    assert authorization == "Bearer sk-test-key"
    assert b'name="model"\r\n\r\nwhisper-1' in body
    assert voice.read_bytes() in body
    assert "sk-test-key" not in done.stdout + done.stderr


def test_transcription_with_no_way_available_names_the_three_ways(
    root: Path, bare_path: str
) -> None:
    voice = make_wav(root / "voice.wav")
    done = run_tool(root, "transcribe_audio", "--file", str(voice), path=bare_path)
    assert done.returncode == 1
    error = output(done)["error"]
    assert "transcription.audio_command" in error
    assert "OPENAI_API_KEY" in error and ".env" in error
    assert "whisper" in error and "whisper-cli" in error


def test_transcription_of_a_missing_file_says_so(root: Path, bare_path: str) -> None:
    done = run_tool(root, "transcribe_audio", "--file", "nope.ogg", path=bare_path)
    assert done.returncode == 1
    assert output(done) == {"ok": False, "error": "nope.ogg: no such file"}


def test_process_video_without_ffmpeg_says_what_to_install(root: Path, bare_path: str) -> None:
    video = root / "telegram_files/2026-12-07/clip.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    done = run_tool(root, "process_video", "--file", str(video), path=bare_path)
    assert done.returncode == 1
    assert "ffmpeg is not installed" in output(done)["error"]
    assert "apt install ffmpeg" in output(done)["error"]


def test_read_document_gives_the_paragraphs_of_a_word_file(root: Path, bare_path: str) -> None:
    docx = make_docx(root / "report.docx", ["Quarterly report", "Sales went up."])
    done = run_tool(root, "read_document", "--file", str(docx), path=bare_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert output(done)["text"] == "Quarterly report\nSales went up."
    assert output(done)["truncated"] is False


def test_read_document_of_plain_text_cuts_at_max_chars(root: Path, bare_path: str) -> None:
    (root / "notes.md").write_text("# Notes\n" + "x" * 100)
    done = run_tool(
        root, "read_document", "--file", "notes.md", "--max-chars", "10", path=bare_path
    )
    assert output(done)["text"] == "# Notes\nxx"
    assert output(done)["truncated"] is True and output(done)["chars"] == 108


def test_read_document_of_a_pdf_without_a_reader_names_what_to_install(
    root: Path, bare_path: str
) -> None:
    try:
        import pypdf  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pypdf is installed here")
    pdf = root / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    done = run_tool(root, "read_document", "--file", str(pdf), path=bare_path)
    assert done.returncode == 1
    assert "pdftotext" in output(done)["error"] and "pypdf" in output(done)["error"]


def test_file_info_of_a_wav_gives_type_size_and_duration(root: Path, bare_path: str) -> None:
    voice = make_wav(root / "voice.wav", seconds=1.5)
    done = run_tool(root, "file_info", "--file", "voice.wav", path=bare_path)
    info = output(done)
    assert info["ok"] is True
    assert info["type"] == "audio/x-wav"
    assert info["size"] == voice.stat().st_size
    assert info["duration_seconds"] == 1.5 and info["sample_rate"] == 8000
    assert len(info["sha256"]) == 64


def test_list_files_without_a_folder_lists_what_arrived_newest_first(
    root: Path, bare_path: str
) -> None:
    old = make_wav(root / "telegram_files/2026-12-06/voice_1.wav")
    os.utime(old, (1_700_000_000, 1_700_000_000))
    mid = make_wav(root / "output_to_user/chart.wav")
    os.utime(mid, (1_700_000_100, 1_700_000_100))
    make_wav(root / "matrix_files/2026-12-07/voice_2.wav")
    (root / "telegram_files/_index.json").write_text("{}")
    (root / "telegram_files/.hidden").write_text("x")
    done = run_tool(root, "list_files", path=bare_path)
    names = [f["name"] for f in output(done)["files"]]
    assert names == ["voice_2.wav", "chart.wav", "voice_1.wav"]


def test_the_configured_transcription_commands_reach_the_cli_environment() -> None:
    config = AgentConfig(
        transcription=TranscriptionConfig(audio_command="stt --fast", video_command="vtt")
    )
    identity = identity_for("main", "tg:1", None, config)
    env = child_env({"PATH": "/bin"}, identity=identity)
    assert env["DUCTOR_TRANSCRIBE_COMMAND"] == "stt --fast"
    assert env["DUCTOR_VIDEO_TRANSCRIBE_COMMAND"] == "vtt"
    unset = child_env({"PATH": "/bin"}, identity=identity_for("main", "tg:1", None, AgentConfig()))
    assert "DUCTOR_TRANSCRIBE_COMMAND" not in unset


@pytest.mark.parametrize(
    ("name", "mime", "tool"),
    [
        ("voice_1.ogg", "audio/ogg", "transcribe_audio.py"),
        ("clip.mp4", "video/mp4", "process_video.py"),
        ("report.pdf", "application/pdf", "read_document.py"),
    ],
)
def test_an_incoming_media_file_tells_the_cli_which_tool_reads_it(
    name: str, mime: str, tool: str
) -> None:
    path = Path("telegram_files/2026-12-07") / name
    text = prompt.assemble_prompt("", files=[prompt.IncomingFile(path, mime, 10)])
    assert f"python3 tools/media_tools/{tool} --file {path}" in text


def test_an_incoming_photo_names_no_media_tool() -> None:
    text = prompt.assemble_prompt("", files=[prompt.IncomingFile(Path("a.jpg"), "image/jpeg")])
    assert "media_tools" not in text


def test_wav_helper_makes_a_readable_file(tmp_path: Path) -> None:
    with wave.open(io.BytesIO(make_wav(tmp_path / "a.wav").read_bytes())) as audio:
        assert audio.getnframes() == 4000

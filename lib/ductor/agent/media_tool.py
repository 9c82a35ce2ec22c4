#!/usr/bin/env python3
"""Files the user sent: voice notes, videos, documents (ductor's tool script).

This one file is shipped as every script in tools/media_tools/ (transcribe_audio.py,
process_video.py, read_document.py, file_info.py, list_files.py): what it does follows
from the name it runs under. Standard library only, plus ``requests`` for the
transcription API when it is installed. Every script prints one JSON object; run one
without arguments for help.

Transcription tries, in this order: the command configured as
``transcription.audio_command`` (ductor exports it as DUCTOR_TRANSCRIBE_COMMAND; the
file path is appended, no shell runs), OpenAI's transcription API when OPENAI_API_KEY
is set (the agent's .env; OPENAI_BASE_URL overrides the address), then a local
``whisper`` or ``whisper-cli`` (whisper.cpp, with its model in WHISPER_CPP_MODEL).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import wave
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

COMMAND_TIMEOUT = 900.0
API_TIMEOUT = 600.0
DEFAULT_FRAMES = 6
DEFAULT_MAX_CHARS = 100_000
DEFAULT_LIMIT = 50
INCOMING_DIRS = ("telegram_files", "matrix_files", "output_to_user")
SKIPPED = frozenset({".git", "__pycache__", "node_modules", ".venv"})
WORD_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
ODF_TEXT_NS = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
PLAIN_SUFFIXES = frozenset(
    {".txt", ".md", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".xml", ".html", ".log"}
)

NO_TRANSCRIPTION = (
    "no way to transcribe audio is available here. Any one of these works: (1) set"
    " transcription.audio_command in the agent's config to a command that prints the text"
    " of the file appended to it; (2) put OPENAI_API_KEY=... in the agent's .env to use"
    " OpenAI's transcription API; (3) install a local `whisper` (pip install"
    " openai-whisper) or `whisper-cli` (whisper.cpp, with WHISPER_CPP_MODEL naming its"
    " model file)."
)

TUTORIALS = {
    "transcribe_audio": """\
transcribe_audio.py: the text spoken in an audio file (a voice note, .ogg/.mp3/.wav...).

Usage: transcribe_audio.py --file PATH [--language CODE]

Example:
  transcribe_audio.py --file telegram_files/2026-12-07/voice_1.ogg

Prints {"ok": true, "text": "...", "method": "..."}. Answer the user as if they had
typed the text.""",
    "process_video": """\
process_video.py: look at a video: still frames spread over it (JPEG files you can
view) and the transcript of its sound track.

Usage: process_video.py --file PATH [--frames N] [--no-audio]

Example:
  process_video.py --file telegram_files/2026-12-07/video_1.mp4 --frames 8

Needs ffmpeg and ffprobe. Prints the duration, the frame files and the transcript.""",
    "read_document": """\
read_document.py: the text of a document: PDF (pdftotext or pypdf), Word .docx,
OpenDocument .odt, or plain text.

Usage: read_document.py --file PATH [--max-chars N]

Example:
  read_document.py --file telegram_files/2026-12-07/report.pdf""",
    "file_info": """\
file_info.py: what a file is: type, size, dates, checksum; the duration of audio and
video, the size in pixels of images (through ffprobe when it is installed).

Usage: file_info.py --file PATH""",
    "list_files": """\
list_files.py: the files in a folder, newest first, with type and size. Without a
folder: the files the user sent (telegram_files/, matrix_files/) and output_to_user/.

Usage: list_files.py [FOLDER] [--pattern GLOB] [--limit N]

Example:
  list_files.py telegram_files --pattern "*.pdf\"""",
}


class ToolError(Exception):
    """What went wrong, for the JSON the script prints."""


def emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, ensure_ascii=False, indent=1))


def existing_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ToolError(f"{value}: no such file")
    return path


def run(argv: list[str], *, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run ``argv`` (never through a shell); its stdout, or ToolError naming the failure."""
    try:
        done = subprocess.run(
            argv,
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise ToolError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise ToolError(f"{argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        detail = last[0] if last else f"exit code {done.returncode}"
        raise ToolError(f"{Path(argv[0]).name} failed: {detail}")
    return done.stdout


# -- transcription ---------------------------------------------------------------


def hook_transcript(command: str, file: Path) -> str:
    argv = shlex.split(command)
    if not argv:
        raise ToolError("the transcription command is empty")
    return run([*argv, str(file)]).strip()


def api_transcript(file: Path, key: str, language: str) -> str:
    try:
        import requests
    except ImportError:
        raise ToolError(
            "OPENAI_API_KEY is set but the Python module `requests` is not installed"
            " (apt install python3-requests, or pip install requests)"
        ) from None
    base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    data = {"model": os.environ.get("DUCTOR_TRANSCRIBE_MODEL", "whisper-1")}
    if language:
        data["language"] = language
    try:
        with file.open("rb") as stream:
            response = requests.post(
                f"{base}/audio/transcriptions",
                headers={"Authorization": f"Bearer {key}"},
                data=data,
                files={"file": (file.name, stream)},
                timeout=API_TIMEOUT,
            )
    except requests.RequestException as exc:
        raise ToolError(
            f"the transcription API could not be reached: {type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise ToolError(f"the transcription API answered {response.status_code}: {message}")
    try:
        return str(response.json()["text"]).strip()
    except (ValueError, KeyError, TypeError):
        raise ToolError("the transcription API answered without a text") from None


def whisper_transcript(whisper: str, file: Path, language: str) -> str:
    with tempfile.TemporaryDirectory(prefix="ductor-whisper-") as folder:
        argv = [whisper, str(file), "--output_format", "txt", "--output_dir", folder]
        if language:
            argv += ["--language", language]
        run(argv)
        outputs = sorted(Path(folder).glob("*.txt"))
        if not outputs:
            raise ToolError("whisper wrote no transcript")
        return outputs[0].read_text(encoding="utf-8").strip()


def whisper_cpp_transcript(whisper_cli: str, file: Path, language: str) -> str:
    model = os.environ.get("WHISPER_CPP_MODEL", "")
    if not model:
        raise ToolError("whisper-cli is installed but WHISPER_CPP_MODEL does not name a model")
    with tempfile.TemporaryDirectory(prefix="ductor-whisper-") as folder:
        source = file
        if file.suffix.lower() != ".wav":  # whisper.cpp reads 16 kHz WAV
            ffmpeg = shutil.which("ffmpeg")
            if ffmpeg is None:
                raise ToolError("whisper-cli needs a WAV file and ffmpeg is not installed")
            source = Path(folder) / "audio.wav"
            run(
                [ffmpeg, "-nostdin", "-y", "-i", str(file), "-ar", "16000", "-ac", "1", str(source)]
            )
        argv = [whisper_cli, "-m", model, "-f", str(source), "-nt"]
        if language:
            argv += ["-l", language]
        return run(argv).strip()


def transcribe(file: Path, *, language: str = "", hook_variable: str = "") -> tuple[str, str]:
    """(text, method) of ``file`` by the first way available; ToolError if none is."""
    for variable in (hook_variable, "DUCTOR_TRANSCRIBE_COMMAND"):
        command = os.environ.get(variable, "").strip() if variable else ""
        if command:
            return hook_transcript(command, file), "command"
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if key:
        return api_transcript(file, key, language), "openai-api"
    whisper = shutil.which("whisper")
    if whisper:
        return whisper_transcript(whisper, file, language), "whisper"
    whisper_cli = shutil.which("whisper-cli")
    if whisper_cli:
        return whisper_cpp_transcript(whisper_cli, file, language), "whisper-cli"
    raise ToolError(NO_TRANSCRIPTION)


def transcribe_audio(args: argparse.Namespace) -> dict[str, Any]:
    file = existing_file(args.file)
    text, method = transcribe(file, language=args.language)
    return {"ok": True, "file": str(file), "text": text, "method": method}


# -- video -----------------------------------------------------------------------


def need(tool: str, what: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise ToolError(
            f"{tool} is not installed, so {what} is not possible here (apt install ffmpeg)"
        )
    return found


def duration_of(file: Path) -> float | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    shown = run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(file)]
    ).strip()
    try:
        return float(shown)
    except ValueError:
        return None


def process_video(args: argparse.Namespace) -> dict[str, Any]:
    file = existing_file(args.file)
    ffmpeg = need("ffmpeg", "looking into a video")
    need("ffprobe", "looking into a video")
    duration = duration_of(file) or 0.0
    frames_dir = file.with_name(f"{file.stem}_frames")
    frames_dir.mkdir(mode=0o700, exist_ok=True)
    count = max(1, min(int(args.frames), 30))
    frames: list[str] = []
    for index in range(count):
        at = duration * (index + 0.5) / count
        target = frames_dir / f"frame_{index + 1:02d}.jpg"
        run([
            ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-ss", f"{at:.2f}", "-i", str(file),
            "-frames:v", "1", "-q:v", "3", str(target),
        ])  # fmt: skip
        if target.is_file():
            frames.append(str(target))
    result: dict[str, Any] = {
        "ok": True,
        "file": str(file),
        "duration_seconds": round(duration, 2),
        "frames": frames,
    }
    if args.no_audio:
        return result
    hook = os.environ.get("DUCTOR_VIDEO_TRANSCRIBE_COMMAND", "").strip()
    try:
        if hook:
            result["transcript"], result["transcript_method"] = (
                hook_transcript(hook, file),
                "command",
            )
        else:
            with tempfile.TemporaryDirectory(prefix="ductor-video-") as folder:
                audio = Path(folder) / "audio.wav"
                run([
                    ffmpeg, "-nostdin", "-y", "-loglevel", "error", "-i", str(file),
                    "-vn", "-ar", "16000", "-ac", "1", str(audio),
                ])  # fmt: skip
                text, method = transcribe(audio, language=args.language)
                result["transcript"], result["transcript_method"] = text, method
    except ToolError as exc:
        result["transcript"] = None
        result["transcript_error"] = str(exc)
    return result


# -- documents -------------------------------------------------------------------


def zipped_xml_text(file: Path, member: str, paragraph: str, text_tags: set[str]) -> str:
    try:
        with zipfile.ZipFile(file) as archive:
            root = ElementTree.fromstring(archive.read(member))  # noqa: S314 (a user's own file)
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise ToolError(f"{file.name} is not a readable document: {exc}") from None
    lines = []
    for block in root.iter(paragraph):
        lines.append("".join(node.text or "" for node in block.iter() if node.tag in text_tags))
    return "\n".join(lines)


def pdf_text(file: Path) -> tuple[str, str]:
    pdftotext = shutil.which("pdftotext")
    if pdftotext:
        return run([pdftotext, "-layout", str(file), "-"]), "pdftotext"
    try:
        import pypdf  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ToolError(
            "reading a PDF needs pdftotext (apt install poppler-utils) or the Python module"
            " pypdf (pip install pypdf); neither is installed here"
        ) from None
    reader = pypdf.PdfReader(str(file))
    return "\n\n".join(page.extract_text() or "" for page in reader.pages), "pypdf"


def read_document(args: argparse.Namespace) -> dict[str, Any]:
    file = existing_file(args.file)
    suffix = file.suffix.lower()
    if suffix == ".pdf":
        text, method = pdf_text(file)
    elif suffix == ".docx":
        tags = {f"{WORD_NS}t", f"{WORD_NS}tab"}
        text, method = zipped_xml_text(file, "word/document.xml", f"{WORD_NS}p", tags), "docx"
    elif suffix == ".odt":
        tags = {f"{ODF_TEXT_NS}p", f"{ODF_TEXT_NS}h", f"{ODF_TEXT_NS}span"}
        text, method = zipped_xml_text(file, "content.xml", f"{ODF_TEXT_NS}p", tags), "odt"
    else:
        mime = mimetypes.guess_type(file.name)[0] or ""
        if suffix not in PLAIN_SUFFIXES and not mime.startswith("text/"):
            raise ToolError(
                f"{file.name}: reading {mime or suffix or 'this kind of file'} is not supported"
                " (PDF, .docx, .odt and plain text are)"
            )
        text, method = file.read_text(encoding="utf-8", errors="replace"), "text"
    limit = max(1, int(args.max_chars))
    return {
        "ok": True,
        "file": str(file),
        "method": method,
        "chars": len(text),
        "truncated": len(text) > limit,
        "text": text[:limit],
    }


# -- files -----------------------------------------------------------------------


def media_details(file: Path) -> dict[str, Any]:
    if file.suffix.lower() == ".wav":
        try:
            with wave.open(str(file), "rb") as audio:
                frames, rate = audio.getnframes(), audio.getframerate()
                return {
                    "duration_seconds": round(frames / rate, 3) if rate else None,
                    "sample_rate": rate,
                    "channels": audio.getnchannels(),
                }
        except (wave.Error, EOFError):
            return {}
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    try:
        shown = json.loads(
            run([ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(file)])
        )
    except (ToolError, ValueError):
        return {}
    details: dict[str, Any] = {}
    duration = shown.get("format", {}).get("duration")
    if duration:
        details["duration_seconds"] = round(float(duration), 3)
    for stream in shown.get("streams", []):
        if stream.get("codec_type") == "video" and "width" in stream:
            details["width"], details["height"] = stream["width"], stream["height"]
            break
    return details


def describe(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {
        "name": path.name,
        "path": str(path),
        "type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        "size": stat.st_size,
        "modified": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds"),
    }


def file_info(args: argparse.Namespace) -> dict[str, Any]:
    file = existing_file(args.file)
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    mime = mimetypes.guess_type(file.name)[0] or ""
    info = {"ok": True, **describe(file), "sha256": digest.hexdigest()}
    if mime.startswith(("audio/", "video/", "image/")):
        info.update(media_details(file))
    return info


def list_files(args: argparse.Namespace) -> dict[str, Any]:
    roots = [Path(args.folder)] if args.folder else [Path(name) for name in INCOMING_DIRS]
    if args.folder and not roots[0].is_dir():
        raise ToolError(f"{args.folder}: no such folder")
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob(args.pattern):
            parts = path.relative_to(root).parts
            hidden = any(p.startswith(".") or p in SKIPPED for p in parts)
            if path.is_file() and not hidden and not path.name.startswith("_index."):
                found.append(path)
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    limit = max(1, int(args.limit))
    return {
        "ok": True,
        "folders": [str(r) for r in roots],
        "total": len(found),
        "files": [describe(p) for p in found[:limit]],
    }


# -- command line ----------------------------------------------------------------


def parser_for(tool: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{tool}.py",
        description=TUTORIALS[tool],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if tool == "list_files":
        parser.add_argument("folder", nargs="?", default="")
        parser.add_argument("--pattern", default="*")
        parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
        return parser
    parser.add_argument("--file", required=True)
    if tool in {"transcribe_audio", "process_video"}:
        parser.add_argument("--language", default="")
    if tool == "process_video":
        parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
        parser.add_argument("--no-audio", action="store_true")
    if tool == "read_document":
        parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    return parser


ACTIONS = {
    "transcribe_audio": transcribe_audio,
    "process_video": process_video,
    "read_document": read_document,
    "file_info": file_info,
    "list_files": list_files,
}


def main(argv: list[str] | None = None, name: str | None = None) -> int:
    tool = Path(name or sys.argv[0]).stem
    args_given = sys.argv[1:] if argv is None else argv
    if tool not in ACTIONS:
        print(f"{tool}: run this file as one of {', '.join(f'{t}.py' for t in ACTIONS)}")
        return 2
    if tool != "list_files" and not args_given:
        print(TUTORIALS[tool])
        return 0
    args = parser_for(tool).parse_args(args_given)
    try:
        emit(ACTIONS[tool](args))
    except ToolError as exc:
        emit({"ok": False, "error": str(exc)})
        return 1
    except OSError as exc:
        emit({"ok": False, "error": f"{exc.filename or ''}: {exc.strerror or exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The linters are tests: the README's test command is the one gate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)


def shell_scripts() -> list[Path]:
    scripts = [REPO / "install.sh", REPO / "tests" / "run", REPO / "tests" / "install-claude"]
    scripts += [REPO / "tests" / "install-synapse", REPO / "tests" / "install-clis"]
    scripts += [REPO / ".ci" / "run"]
    for path in REPO.rglob("*"):
        if {".venv", ".git", ".cache"} & set(path.parts) or not path.is_file():
            continue
        if path.suffix == ".sh" or (
            path.parent.name == "bin" and path.read_bytes()[:40].startswith(b"#!/usr/bin/env bash")
        ):
            scripts.append(path)
    return sorted(set(scripts))


def test_ruff_finds_no_problems() -> None:
    result = _run([sys.executable, "-m", "ruff", "check", "--output-format=concise", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted_as_ruff_formats_it() -> None:
    result = _run([sys.executable, "-m", "ruff", "format", "--check", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_library() -> None:
    result = _run([sys.executable, "-m", "mypy"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_bin_programs_are_thin_python_entry_points() -> None:
    for program in sorted((REPO / "bin").iterdir()):
        text = program.read_text(encoding="utf-8")
        assert text.startswith("#!/usr/bin/env python3\n"), program
        assert "main()" in text, f"{program} should only call a library main()"
        assert len(text.splitlines()) <= 12, f"{program} holds more than an entry point"


def test_shell_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck is not installed (tests/run installs it: apt-get install shellcheck)"
        )
    result = _run(["shellcheck", "--severity=style", *map(str, shell_scripts())])
    assert result.returncode == 0, result.stdout + result.stderr

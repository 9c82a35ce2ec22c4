"""The repository stands on its own: a clone with nothing beside it tests itself.

Code and tests must not reach for files outside the checkout: no sibling folder
(such as a shared folder beside the clone), no environment variable naming one, no
``Path(__file__).parents[N]`` that climbs above the repository, no fixed path outside it
that the tests fill from the host. What the tests need lives in the repository (the CLI
transcripts in tests/fixtures/cli, recorded by tests/record-cli) or is installed by
tests/run.
"""

from __future__ import annotations

import re
from pathlib import Path

THIS = Path(__file__).resolve()
REPO = THIS.parents[2]
SCANNED = ("bin", "lib", "tests", "bench", ".ci")
SCRIPTS = ("install.sh",)
SKIPPED_PARTS = {"__pycache__", "fixtures", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

# Spelled in pieces so that this file does not match itself.
OUTSIDE = [
    (re.compile(r"\.\./" + "shared"), "a sibling folder of the checkout"),
    (re.compile("DUCTOR_" + "SHARED_DIR"), "an environment variable naming a folder outside"),
    (re.compile(r"/opt/" + "shared"), "a host folder copied into the test systemd"),
    (
        re.compile(r"(?:REPO|REPO_ROOT|ROOT|repo)\.parent\b"),
        "the folder that holds the repository",
    ),
    (re.compile(r"""\.parent\s*/\s*["']shared["']"""), "a sibling folder named shared"),
]
PARENTS = re.compile(r"__file__\)\.resolve\(\)\.parents\[(\d+)\]")


def scanned_files() -> list[Path]:
    files = [REPO / name for name in SCRIPTS]
    for top in SCANNED:
        for path in (REPO / top).rglob("*"):
            relative = path.relative_to(REPO).parts
            if not path.is_file() or SKIPPED_PARTS & set(relative) or path == THIS:
                continue
            if path.suffix in (".pyc", ".png", ".jpg", ".ogg"):
                continue
            files.append(path)
    return sorted(files)


def problems_in(text: str, relative: Path) -> list[str]:
    """What in ``text``, the file at ``relative`` in the repository, points outside it."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{relative}:{number}"
        for pattern, meaning in OUTSIDE:
            if pattern.search(line):
                found.append(f"{where}: {meaning}: {line.strip()}")
        for match in PARENTS.finditer(line):
            # parents[0] is the file's folder; parents[len(parts) - 1] is the repository.
            if int(match.group(1)) > len(relative.parts) - 1:
                found.append(f"{where}: climbs above the repository: {line.strip()}")
    return found


def test_nothing_in_code_or_tests_reaches_outside_the_repository() -> None:
    files = scanned_files()
    assert len(files) > 100, "the scan found too few files to mean anything"

    problems = [
        problem
        for path in files
        for problem in problems_in(
            path.read_text(encoding="utf-8", errors="replace"), path.relative_to(REPO)
        )
    ]

    assert problems == [], "\n".join(problems)


def test_the_check_catches_each_way_out() -> None:
    lines = [
        'FIXTURES = "../' + 'shared/fixtures"',
        'os.environ["DUCTOR_' + 'SHARED_DIR"]',
        'copy_in(x, "/opt/' + 'shared/fixtures")',
        "base = REPO" + ".parent / 'fixtures'",
        "Path(__file__).resolve().parents[3]",
    ]
    probe_text = "\n".join(lines) + "\nPath(__file__).resolve().parents[2]\n"
    found = problems_in(probe_text, Path("tests/lint/probe.py"))

    assert [p.split(":")[1] for p in found] == ["1", "2", "3", "4", "5"], found


def test_the_cli_transcripts_the_tests_replay_are_in_the_repository() -> None:
    fixtures = REPO / "tests" / "fixtures" / "cli"

    names = {path.name.split("-", 1)[0] for path in fixtures.glob("*.jsonl")}

    assert names == {"claude", "codex", "gemini"}
    assert (REPO / "tests" / "record-cli").is_file()

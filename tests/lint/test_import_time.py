"""Each program imports only what its first second needs (design §9: start → ready ≤ 0.5 s).

A program's import time is what ``python -X importtime`` reports for the modules it loads
before it is ready (the sum of their cumulative times), as a ratio to the wall time of a
plain ``python -c pass`` on the same machine, so that a slow or busy machine moves both.
Each is the minimum of several runs, taken in turns: on a loaded two-core machine another
process steals time from some runs, never gives any back, so the fastest run is the one
closest to the code's own cost. A ratio past its budget by more than MARGIN fails: some
import landed on a start path (a messenger library in a oneshot, Pillow before the first
image, every subcommand's modules for ``ductor --help``). Lower a budget when an
improvement makes room; raise one only with the reason beside it.

The same runs say which heavy modules are loaded at start: none of HEAVY_AT_START.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = 7
MARGIN = 0.3  # a ratio may exceed its budget by 30 % before the test fails


@dataclass(frozen=True)
class Program:
    name: str
    modules: tuple[str, ...]  # what it imports before it is ready
    budget: float  # import time / `python -c pass` wall time
    setup: str = ""  # Python run first, as the program's main() does
    never: tuple[str, ...] = ()  # top-level packages it must not load at start


# Measured on a loaded two-core machine (`python -c pass` ≈ 8.5 ms there), min of 7: agent
# 11.0 (105 ms), telegram 16.6 (PTB alone ~60 ms), matrix 6.9, cron 6.5, ductor 3.4 (was
# 9.1 while every subcommand's module was imported), ductor chat 4.6; budgets rounded up.
PROGRAMS = (
    Program("ductor-agent", ("ductor.agent.daemon",), 12.0, never=("telegram", "nio", "PIL")),
    Program(
        "ductor-telegram",
        ("ductor.transports.telegram.main", "ductor.transports.telegram.app"),
        18.0,
        setup="from ductor.transports.telegram.main import skip_unused_modules;"
        " skip_unused_modules();",
        never=("PIL", "nio", "h2", "hpack"),
    ),
    Program("ductor-matrix", ("ductor.transports.matrix.main",), 7.5, never=("telegram", "PIL")),
    Program("ductor-cron", ("ductor.cron.oneshot",), 7.0, never=("telegram", "nio", "PIL")),
    # The cron oneshot's imports plus http.server and asyncio (through ductor.notify):
    # 9.5 measured (82 ms).
    Program(
        "ductor-webhook",
        ("ductor.webhooks.command", "ductor.webhooks.server"),
        10.0,
        never=("telegram", "nio", "PIL", "requests"),
    ),
    Program("ductor", ("ductor.cli.main",), 4.0, never=("telegram", "nio", "PIL", "asyncio")),
    Program(
        "ductor chat",
        ("ductor.cli.main", "ductor.cli.chat"),
        5.0,
        never=("telegram", "nio", "PIL", "asyncio", "tomllib", "tomlkit"),
    ),
)
HEAVY_AT_START = ("PIL", "nio", "h2")

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO / "lib")
    return env


def pass_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=environment(), check=True)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Imported:
    seconds: float  # cumulative import time of the program's modules
    loaded: frozenset[str]  # top-level packages loaded by the end


def import_once(program: Program) -> Imported:
    """Import the program's modules in a fresh interpreter under ``-X importtime``."""
    imports = "".join(f"import {module};" for module in program.modules)
    report = (
        "import sys; print(' '.join(sorted("
        "{m.split('.')[0] for m, module in sys.modules.items() if module is not None})))"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", program.setup + imports + report],
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The program's own imports start after the interpreter's (site, encodings), which
    # `python -c pass` pays as well: only the top-level entries after those count.
    total = 0
    counting = False
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        cumulative, depth, name = int(match.group(2)), len(match.group(3)) // 2, match.group(4)
        if depth == 0 and name == "site":
            counting = True  # the interpreter's last start-up import
            continue
        if counting and depth == 0:
            total += cumulative
    return Imported(total / 1_000_000, frozenset(done.stdout.split()))


def measure(program: Program) -> tuple[float, Imported]:
    """(the ratio, the fastest run): runs of the program and of `pass`, taken in turns."""
    passes: list[float] = []
    runs: list[Imported] = []
    for _ in range(RUNS):
        passes.append(pass_seconds())
        runs.append(import_once(program))
    fastest = min(runs, key=lambda run: run.seconds)
    return fastest.seconds / min(passes), fastest


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_a_programs_start_imports_stay_within_their_budget(program: Program) -> None:
    ratio, fastest = measure(program)
    limit = program.budget * (1 + MARGIN)
    assert ratio <= limit, (
        f"{program.name} imports {fastest.seconds * 1000:.0f} ms at start, {ratio:.1f}×"
        f" `python -c pass`; its budget is {program.budget}× (+{MARGIN:.0%}). Find the new"
        f" import with: python -X importtime -c 'import {program.modules[-1]}'"
    )
    loaded = sorted(fastest.loaded & set(program.never))
    assert not loaded, f"{program.name} loads {loaded} at start"

"""What a cron or heartbeat oneshot costs besides the CLI it runs (design §9, Budgets).

    .venv/bin/python bench/cron_oneshot.py [--runs 10] [--dir DIR]

``bin/ductor-cron`` runs as a child of this benchmark in a private layout under a scratch
directory (``DUCTOR_*_DIR``), with no systemd involved, the way its unit runs it. Its CPU
time is read with ``os.wait4``: the child's user + system time, including the children it
waited for (the CLI). The CLI's part is measured apart, the same way.

(a) cron run
    ``ductor-cron run bench:daily``, a job added with ``JobStore.add`` (daily at 8, chat 42
    on tg), the fake claude of tests/fakecli on the PATH (``claude-new``,
    ``FAKECLI_DELAY_MS=0``, set in the agent's ``.env``, which the oneshot hands to the
    CLI). A warm-up run records the CLI's argv, folder and environment (FAKECLI_RECORD);
    the bare runs replay that invocation (argv, folder, the recorded variables). Printed:
    wall time, the oneshot's CPU with the CLI, the bare CLI's CPU, and the difference
    (medians) against the budget of 150 ms of the oneshot's own CPU. Every run must end
    with status ``ok`` and an envelope in the spool.
(b) heartbeat
    ``ductor-cron heartbeat AGENT`` when the heartbeat is off (the cheapest path) and when
    it is on but the chat has no session yet (skipped before the agent is asked). No CLI
    runs: the whole CPU is the oneshot's own, against the same 150 ms.
(c) imports
    ``python -X importtime -c "import ductor.cron.oneshot"`` (the fastest of 3): the direct
    imports of the oneshot and its packages by cumulative time, and the modules slowest by
    their own time. Then the modules loaded after importing the oneshot and after a whole
    cron run and heartbeat in one interpreter: no messenger library (``telegram``,
    ``nio``) may be among them.

For reference it also prints the CPU of a bare ``python -c pass`` (the interpreter's own
start-up, part of every oneshot). Exits 0 whatever the numbers; 1 when something fails
outright (a run that fails, a messenger library imported), with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agent_turn import cli_path, fixtures, load, percentile, verdict
from ductor.cron.jobs import Job, JobStore
from ductor.errors import DuctorError

REPO = Path(__file__).resolve().parents[1]
CRON = REPO / "bin" / "ductor-cron"
AGENT = "bench"  # heartbeat off (the default)
BEAT_AGENT = "beat"  # heartbeat on, never quiet, no session
JOB = "daily"
SCENARIO = "claude-new"
BUDGET_OWN_CPU_MS = 150.0
MESSENGERS = ("telegram", "nio")
HEAVY = ("httpx", "aiohttp", "PIL", "requests", "tomlkit", "croniter")
RUN_TIMEOUT_S = 30.0

CONFIG = """\
provider = "claude"
model = "opus"
transports = []
"""

BEAT_CONFIG = """\
provider = "claude"
model = "opus"
transports = []

[telegram]
allowed_user_ids = [42]

[heartbeat]
enabled = true
quiet_start = 0
quiet_end = 0
"""

# Run in one interpreter with the layout's environment: the modules a whole oneshot loads.
MODULES_AFTER = """\
import json, sys
from ductor.cron.oneshot import main
imported = sorted(sys.modules)
codes = [main(["run", sys.argv[1]]), main(["heartbeat", sys.argv[2]])]
print(json.dumps({"imported": imported, "ran": sorted(sys.modules), "codes": codes}))
"""


class Failure(Exception):
    """Something failed outright: there is nothing meaningful to report."""


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    cpu_ms: float  # user + system, with the children it waited for


def spawn(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> tuple[int, Sample]:
    """Run ``argv`` to its end; its exit code, wall time and CPU time (``os.wait4``)."""
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        deadline = started + RUN_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.001)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return proc.returncode, Sample(wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000)


class Layout:
    """A private config/state/runtime layout with two agents and one cron job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "runs.log"
        (root / "home").mkdir()
        for name, text in ((AGENT, CONFIG), (BEAT_AGENT, BEAT_CONFIG)):
            file = root / "config" / "agents" / f"{name}.toml"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
        JobStore(self.state).add(
            Job(name=JOB, schedule="0 8 * * *", prompt="hello", chat_id="42", transport="tg")
        )

    @property
    def state(self) -> Path:
        return self.root / "state" / AGENT

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": cli_path(self.root),
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO / "lib"),
            "DUCTOR_CONFIG_DIR": str(self.root / "config"),
            "DUCTOR_STATE_DIR": str(self.root / "state"),
            "DUCTOR_RUNTIME_DIR": str(self.root / "run"),
            "DUCTOR_CACHE_DIR": str(self.root / "cache"),
        }

    def write_dotenv(self, **values: str) -> None:
        file = self.root / "config" / "credentials" / AGENT / ".env"
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        values |= fixtures()
        file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
        file.chmod(0o600)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def oneshot(self, *args: str) -> Sample:
        rc, sample = spawn([sys.executable, str(CRON), *args], self.env, self.log)
        if rc != 0:
            raise Failure(f"ductor-cron {' '.join(args)} exited with {rc}:\n{self.log_tail()}")
        return sample

    def cron_run(self) -> Sample:
        spool = self.state / "spool"
        before = count_files(spool)
        sample = self.oneshot("run", f"{AGENT}:{JOB}")
        status = json.loads((self.state / "cron_runs" / f"{JOB}.json").read_text())
        if status.get("last_status") != "ok" or count_files(spool) <= before:
            raise Failure(f"the cron run did not end well: {status}\n{self.log_tail()}")
        return sample


def count_files(directory: Path) -> int:
    return sum(1 for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0


# -- (a) cron run ---------------------------------------------------------------------------


def recorded_cli(layout: Layout) -> tuple[list[str], Path, dict[str, str]]:
    """A warm-up run with FAKECLI_RECORD: the CLI's argv, folder and environment."""
    record = layout.root / "record.jsonl"
    layout.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0", FAKECLI_RECORD=str(record))
    layout.cron_run()
    entry = json.loads(record.read_text().splitlines()[-1])
    layout.write_dotenv(FAKECLI_SCENARIO=SCENARIO, FAKECLI_DELAY_MS="0")
    env = {name: value for name, value in entry["env"].items() if name != "FAKECLI_RECORD"}
    if entry["stdin"]:
        raise Failure("the CLI got its prompt on stdin: the bare runs do not replay that")
    return [entry["cli"], *entry["argv"]], Path(entry["cwd"]), env


def measure_cron(layout: Layout, runs: int) -> None:
    argv, cwd, cli_env = recorded_cli(layout)
    bare_log = layout.root / "bare.log"
    spawn(argv, cli_env, bare_log, cwd)  # warm-up
    oneshot: list[Sample] = []
    bare: list[Sample] = []
    for _ in range(runs):  # interleaved, so both see the same machine
        oneshot.append(layout.cron_run())
        rc, sample = spawn(argv, cli_env, bare_log, cwd)
        if rc != 0:
            raise Failure(f"the bare fake claude exited with {rc}")
        bare.append(sample)

    print(f"(a) ductor-cron run {AGENT}:{JOB}, {runs} runs, fake claude {SCENARIO!r}, no delay")
    print(f"  {'':<34}{'median':>9}{'p90':>9}  (ms)")
    rows = [
        ("oneshot: wall time", [s.wall_ms for s in oneshot]),
        ("bare CLI: wall time", [s.wall_ms for s in bare]),
        ("oneshot: CPU with the CLI", [s.cpu_ms for s in oneshot]),
        ("bare CLI: CPU", [s.cpu_ms for s in bare]),
    ]
    for label, values in rows:
        print(f"    {label:<32}{statistics.median(values):9.1f}{percentile(values, 0.9):9.1f}")
    own = statistics.median(rows[2][1]) - statistics.median(rows[3][1])
    own_p90 = percentile(rows[2][1], 0.9) - percentile(rows[3][1], 0.9)
    print(
        f"    {'oneshot own CPU (difference)':<32}{own:9.1f}{own_p90:9.1f}"
        f"   budget ≤ {BUDGET_OWN_CPU_MS:.0f} (median): {verdict(own, BUDGET_OWN_CPU_MS)}"
    )


# -- (b) heartbeat --------------------------------------------------------------------------


def measure_heartbeat(layout: Layout, runs: int) -> None:
    cases = [
        ("heartbeat off", AGENT, "heartbeat of bench is off"),
        ("no session (skipped)", BEAT_AGENT, "no session"),
    ]
    print(f"(b) ductor-cron heartbeat AGENT, {runs} runs each; no CLI, no agent daemon")
    print(f"  {'':<34}{'median':>9}{'p90':>9}  (ms)")
    for label, agent, expected in cases:
        layout.oneshot("heartbeat", agent)  # warm-up
        size = layout.log.stat().st_size
        samples = [layout.oneshot("heartbeat", agent) for _ in range(runs)]
        with layout.log.open("rb") as file:
            file.seek(size)
            said = file.read().decode(errors="replace")
        if said.count(expected) != runs:
            raise Failure(f"heartbeat {agent}: expected {expected!r} in its log:\n{said}")
        wall = [s.wall_ms for s in samples]
        cpu = [s.cpu_ms for s in samples]
        median = statistics.median(cpu)
        print(
            f"    {label + ': wall time':<32}{statistics.median(wall):9.1f}"
            f"{percentile(wall, 0.9):9.1f}"
        )
        print(
            f"    {label + ': own CPU':<32}{median:9.1f}{percentile(cpu, 0.9):9.1f}"
            f"   budget ≤ {BUDGET_OWN_CPU_MS:.0f} (median): {verdict(median, BUDGET_OWN_CPU_MS)}"
        )


def interpreter_start(layout: Layout, runs: int) -> None:
    samples = []
    for _ in range(runs + 1):
        rc, sample = spawn([sys.executable, "-c", "pass"], layout.env, layout.root / "py.log")
        if rc != 0:
            raise Failure(f"python -c pass exited with {rc}")
        samples.append(sample)
    cpu = [s.cpu_ms for s in samples[1:]]
    print(
        f"    for reference, python -c pass: CPU median {statistics.median(cpu):.1f} ms,"
        f" p90 {percentile(cpu, 0.9):.1f} ms (part of every oneshot)"
    )


# -- (c) imports ----------------------------------------------------------------------------


def parse_importtime(stderr: str) -> tuple[int, list[tuple[int, int, int, str]]]:
    """The total µs and the rows (own µs, cumulative µs, depth, name) of the oneshot's
    imports, without the interpreter's start-up."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((int(own), int(cumulative), depth, name.strip()))
    # Rows come after their children: what follows the last start-up row is the oneshot's.
    first = max(i for i, row in enumerate(rows) if row[2] == 0 and not row[3].startswith("ductor"))
    ours = rows[first + 1 :]
    return sum(row[1] for row in ours if row[2] == 0), ours


def import_times(layout: Layout, top: int = 8) -> None:
    """The imports of ``ductor.cron.oneshot`` (with its packages) that take longest."""
    argv = [sys.executable, "-X", "importtime", "-c", "import ductor.cron.oneshot"]
    best: tuple[int, list[tuple[int, int, int, str]]] | None = None
    for attempt in range(4):  # the first one warms the caches; the fastest of the others
        done = subprocess.run(argv, env=layout.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Failure(f"importing ductor.cron.oneshot failed:\n{done.stderr}")
        total, ours = parse_importtime(done.stderr)
        if attempt and (best is None or total < best[0]):
            best = total, ours
    assert best is not None
    total, ours = best
    print(
        f"(c) python -X importtime -c 'import ductor.cron.oneshot': {total / 1000:.1f} ms"
        f" for {len(ours)} modules, fastest of 3 (-X importtime adds its own overhead)"
    )
    print(f"    {'own':>7}{'cumul.':>9}  (ms)  direct imports of ductor, ductor.cron, the oneshot")
    direct = sorted((row for row in ours if row[2] == 1), key=lambda row: -row[1])
    for own, cumulative, _, name in direct[:top]:
        print(f"    {own / 1000:7.1f}{cumulative / 1000:9.1f}        {name}")
    print(f"    {'own':>7}{'cumul.':>9}  (ms)  slowest by their own time")
    for own, cumulative, _, name in sorted(ours, key=lambda row: -row[0])[:top]:
        print(f"    {own / 1000:7.1f}{cumulative / 1000:9.1f}        {name}")


def messenger_check(layout: Layout) -> None:
    argv = [sys.executable, "-c", MODULES_AFTER, f"{AGENT}:{JOB}", BEAT_AGENT]
    done = subprocess.run(argv, env=layout.env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failure(f"the in-process oneshot failed:\n{done.stderr}")
    result = json.loads(done.stdout.splitlines()[-1])
    if result["codes"] != [0, 0]:
        raise Failure(f"the in-process oneshots returned {result['codes']}:\n{done.stderr}")

    def top_level(modules: list[str], names: tuple[str, ...]) -> list[str]:
        return sorted({m.split(".")[0] for m in modules if m.split(".")[0] in names})

    problems = []
    for when, key in (("after the import", "imported"), ("after a run and a heartbeat", "ran")):
        modules = result[key]
        messengers = top_level(modules, MESSENGERS)
        heavy = top_level(modules, HEAVY)
        print(
            f"    {when}: {len(modules)} modules; messenger libraries:"
            f" {', '.join(messengers) or 'none'}; other third-party of note:"
            f" {', '.join(heavy) or 'none'}"
        )
        if messengers:
            problems.append(f"{', '.join(messengers)} imported {when}")
    if problems:
        raise Failure("; ".join(problems))


# -- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each measurement")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory's parent")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    python = sys.version.split()[0]
    print(f"cron oneshot benchmark: python {python}, {os.cpu_count()} CPUs, load {load()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ductor-bench-") as scratch:
        try:
            layout = Layout(Path(scratch))
            measure_cron(layout, args.runs)
            measure_heartbeat(layout, args.runs)
            interpreter_start(layout, args.runs)
            import_times(layout)
            messenger_check(layout)
        except (Failure, DuctorError, OSError, ValueError) as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            return 1
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long a webhook call takes from the request to its 202, cold and warm.

    .venv/bin/python bench/webhook_latency.py [--runs 20] [--dir DIR]

``bin/ductor-webhook serve`` runs in a private layout under a scratch directory
(``DUCTOR_*_DIR``) with one bearer hook in ``wake`` mode. Every 202 means the call is on
disk in the agent's inbox (fsynced).

(a) cold: ``systemd-socket-activate`` listens like ``ductor-webhook@.socket`` and starts
    the endpoint on the first connection, passing the socket (``LISTEN_FDS``); the time is
    from sending that first request to its 202, the start of the endpoint included. The
    endpoint exits right after (``--idle-exit``), so each run starts it anew.
(b) warm: the same endpoint, started once; one request after the other.

Printed: median, 90th percentile and maximum in milliseconds. No assertion: design §9
wants the 202 "fast, before any CLI runs"; compare the cold time with a unit's start
budget (0.5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from ductor.webhooks.store import Hook, HookStore

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
BODY = json.dumps({"status": "failed", "build": {"number": 1}}).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def layout(root: Path, port: int) -> dict[str, str]:
    (root / "config" / "agents").mkdir(parents=True, exist_ok=True)
    (root / "config" / "agents" / "bench.toml").write_text(
        'provider = "claude"\nmodel = "opus"\ntransports = []\n[telegram]\n'
        f'allowed_user_ids = [42]\n[webhooks]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        "rate_limit_per_minute = 100000\n"
    )
    HookStore(root / "state" / "bench").add(
        Hook(id="ci", prompt_template="Build {{build.number}}: {{status}}", token=TOKEN)
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "PYTHONPATH": str(REPO / "lib"),
        "DUCTOR_CONFIG_DIR": str(root / "config"),
        "DUCTOR_STATE_DIR": str(root / "state"),
        "DUCTOR_RUNTIME_DIR": str(root / "run"),
    }


def serve_argv(idle_exit: float) -> list[str]:
    program = str(REPO / "bin" / "ductor-webhook")
    return [sys.executable, program, "serve", "bench", "--idle-exit", str(idle_exit)]


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise SystemExit(f"nothing listens on {port}")


def post(url: str) -> float:
    started = time.perf_counter()
    answer = requests.post(url, data=BODY, headers=HEADERS, timeout=30)
    elapsed = time.perf_counter() - started
    if answer.status_code != 202:
        raise SystemExit(f"expected 202, got {answer.status_code} {answer.text}")
    return elapsed * 1000


def cold(env: dict[str, str], port: int, runs: int) -> list[float]:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        print("cold: systemd-socket-activate not found, skipped")
        return []
    times = []
    for _ in range(runs):
        # It hands the program only LISTEN_* and what -E names.
        setenv = [f"--setenv={key}={value}" for key, value in env.items()]
        listener = subprocess.Popen(
            [activate, "-l", f"127.0.0.1:{port}", *setenv, *serve_argv(0.05)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # listening, nothing started yet
        times.append(post(f"http://127.0.0.1:{port}/hooks/ci"))
        listener.wait(timeout=30)
    return times


def warm(env: dict[str, str], port: int, runs: int) -> list[float]:
    server = subprocess.Popen(
        serve_argv(0), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/hooks/ci"
        post(url)
        return [post(url) for _ in range(runs)]
    finally:
        server.terminate()
        server.wait(timeout=10)


def report(label: str, times: list[float]) -> None:
    if not times:
        return
    times = sorted(times)
    p90 = times[max(0, int(len(times) * 0.9) - 1)]
    print(
        f"{label}: median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms,"
        f" max {times[-1]:.1f} ms ({len(times)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        port = free_port()
        env = layout(Path(scratch), port)
        report("cold (socket activation)", cold(env, port, max(1, args.runs // 2)))
        report("warm", warm(env, port, args.runs))


if __name__ == "__main__":
    main()

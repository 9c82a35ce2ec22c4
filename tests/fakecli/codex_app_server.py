#!/usr/bin/env python3
"""A fake ``codex app-server``: JSON-RPC over stdin/stdout lines, as much as model
discovery uses of it. Stdlib only. Run it as ``codex_app_server.py app-server``.

It answers ``initialize`` and then ``model/list`` (``model/list`` before ``initialize``
gets the real server's "Not initialized" error). Before the model list it sends a
notification and a request of its own that happens to carry id 2, as the real server may,
so a client that does not tell them from the answer gets the wrong list. Like a server,
it never exits by itself, not even when stdin closes. Environment:

- ``FAKE_APP_SERVER_MODE``: ``ok`` (default), ``error`` (model/list gets a JSON-RPC
  error) or ``hang`` (model/list is never answered).
- ``FAKE_APP_SERVER_PIDFILE``: a file to write the server's pid to, at start.
- ``FAKE_APP_SERVER_RECORD``: a file to which each request line is appended.
- ``FAKE_APP_SERVER_IGNORE_SIGTERM=1``: survive SIGTERM (only SIGKILL stops it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

MODELS = [
    {
        "id": "gpt-5.5",
        "model": "gpt-5.5",
        "displayName": "GPT-5.5",
        "description": "Latest frontier agentic coding model.",
        "supportedReasoningEfforts": [
            {"reasoningEffort": "low", "description": "Fast responses with lighter reasoning"},
            {"reasoningEffort": "medium", "description": "Balances speed and reasoning depth"},
            {"reasoningEffort": "high", "description": "Greater reasoning depth"},
            {"reasoningEffort": "xhigh", "description": "Extra high reasoning depth"},
        ],
        "defaultReasoningEffort": "medium",
        "isDefault": True,
    },
    {
        "id": "gpt-5.4-mini",
        "model": "gpt-5.4-mini",
        "displayName": "GPT-5.4 Mini",
        "description": "Smaller, faster, cheaper.",
        "supportedReasoningEfforts": [
            {"reasoningEffort": "medium", "description": "Balanced"},
            {"reasoningEffort": "high", "description": "Deeper"},
        ],
        "defaultReasoningEffort": "medium",
        "isDefault": False,
    },
    {
        "id": "gpt-5.3-codex-spark",
        "model": "gpt-5.3-codex-spark",
        "displayName": "GPT-5.3 Codex Spark",
        "description": "Ultra-fast coding model.",
        "supportedReasoningEfforts": [],
        "defaultReasoningEffort": "low",
        "isDefault": False,
    },
]


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer(request: dict[str, object], mode: str, initialized: bool) -> None:
    method, request_id = request.get("method"), request.get("id")
    if method == "initialize":
        send({"id": request_id, "result": {"userAgent": "codex_cli_rs/0.0.0 (fake)"}})
    elif method == "model/list" and not initialized:
        send({"id": request_id, "error": {"code": -32600, "message": "Not initialized"}})
    elif method == "model/list":
        send({"method": "account/rateLimits/updated", "params": {"data": [{"id": "bogus"}]}})
        send({"id": 2, "method": "item/tool/requestUserInput", "params": {"data": []}})
        if mode == "hang":
            return
        if mode == "error":
            send({"id": request_id, "error": {"code": -32603, "message": "model list failed"}})
        else:
            send({"id": request_id, "result": {"data": MODELS, "nextCursor": None}})
    elif request_id is not None:
        send({"id": request_id, "error": {"code": -32601, "message": f"unknown {method}"}})


def main(argv: list[str]) -> int:
    if argv != ["app-server"]:
        sys.stderr.write(f"usage: codex app-server (got {argv})\n")
        return 2
    if os.environ.get("FAKE_APP_SERVER_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if pidfile := os.environ.get("FAKE_APP_SERVER_PIDFILE"):
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    record = os.environ.get("FAKE_APP_SERVER_RECORD")
    mode = os.environ.get("FAKE_APP_SERVER_MODE", "ok")
    initialized = False
    for line in sys.stdin:
        if record:
            with open(record, "a") as f:
                f.write(line)
        request = json.loads(line)
        answer(request, mode, initialized)
        initialized = initialized or request.get("method") == "initialize"
    sys.stderr.write("stdin closed; still serving\n")
    sys.stderr.flush()
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

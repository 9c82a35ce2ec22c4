#!/usr/bin/env python3
"""Background tasks of this agent (ductor's tool script; stdlib only).

This one file is shipped as every script in tools/task_tools/ (create_task.py,
list_tasks.py, cancel_task.py, delete_task.py, resume_task.py, ask_parent.py): what it
does follows from the name it runs under. It talks to the agent over its socket
(DUCTOR_AGENT_SOCKET, one JSON request line, JSON event lines back; see ductor's
docs/protocol.md) and prints the answer as JSON. Run one without arguments for help.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

TIMEOUT = 60.0

TUTORIALS = {
    "create_task": """\
create_task.py: hand work that takes more than a few minutes to a background task, so
the user is not left waiting. The task runs on its own (a separate CLI run in this
workspace); its result comes back into this conversation when it is done, and you then
review it and tell the user.

Usage: create_task.py [--name NAME] [--provider P] [--model M] [--thinking LEVEL]
                      [--priority interactive|background|batch] "PROMPT"

  PROMPT               complete, self-contained instructions: the task does not see
                       this conversation
  --name NAME          a short name the user sees ("refactor-auth")
  --provider P         claude, codex or gemini (default: yours)
  --model M            e.g. opus, sonnet, gpt-5.4 (default: your current model)
  --thinking LEVEL     reasoning effort: low, medium, high, xhigh, max
  --priority P         interactive tasks do not count against the per-chat limit

Example:
  create_task.py --name "audit deps" "List every outdated dependency of ~/src/app with
  the changelog highlights of each upgrade, as a Markdown table."

Prints the new task as JSON (its id is what the other task tools take).""",
    "list_tasks": """\
list_tasks.py: list your background tasks (running, waiting with their question,
finished) with their ids, as JSON.

Usage: list_tasks.py""",
    "cancel_task": """\
cancel_task.py: stop a running task. Its partial TASKMEMORY.md is posted to the chat.

Usage: cancel_task.py TASK_ID""",
    "delete_task": """\
delete_task.py: delete a finished task and its folder tasks/TASK_ID/.

Usage: delete_task.py TASK_ID""",
    "resume_task": """\
resume_task.py: continue a finished or waiting task in its own CLI session, with a
follow-up or the answer to its question. Its result comes back like the first one.

Usage: resume_task.py TASK_ID "FOLLOW-UP"

Example:
  resume_task.py 1f2e3d4c "Use PostgreSQL 16, not 15."
""",
    "ask_parent": """\
ask_parent.py: (inside a background task only) ask the agent that started you a
question. It is posted to the user's chat; finish your current work afterwards: you are
resumed with the answer.

Usage: ask_parent.py "QUESTION"
""",
}


def agent_socket(env: dict[str, str]) -> Path:
    if env.get("DUCTOR_AGENT_SOCKET"):
        return Path(env["DUCTOR_AGENT_SOCKET"])
    agent = env.get("DUCTOR_AGENT_NAME", "")
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime) / "ductor" / agent / "agent.sock"


def session_of(env: dict[str, str]) -> str | None:
    transport, chat = env.get("DUCTOR_TRANSPORT", ""), env.get("DUCTOR_CHAT_ID", "")
    if not (transport and chat):
        return None
    topic = env.get("DUCTOR_TOPIC_ID", "")
    return f"{transport}:{chat}:{topic}" if topic else f"{transport}:{chat}"


def call(verb: str, args: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One ``task`` request; the terminal event as a dict."""
    request: dict[str, Any] = {
        "v": 1,
        "type": "task",
        "id": secrets.token_hex(8),
        "text": verb,
        "data": json.dumps(args, ensure_ascii=False),
        "sender": env.get("DUCTOR_AGENT_NAME", ""),
        "origin": "task tool",
    }
    session = session_of(env)
    if session:
        request["session"] = session
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(agent_socket(env)))
        sock.sendall((json.dumps(request, ensure_ascii=False) + "\n").encode())
        stream = sock.makefile("rb")
        for line in stream:
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") in ("final", "error"):
                return event
    return {"event": "error", "text": "the agent closed the connection without an answer"}


def parse(tool: str, argv: list[str]) -> tuple[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog=f"{tool}.py", add_help=False)
    if tool == "create_task":
        for option in ("--name", "--provider", "--model", "--thinking", "--priority"):
            parser.add_argument(option, default="")
        parser.add_argument("prompt", nargs="+")
        ns = parser.parse_args(argv)
        args = {k: v for k, v in vars(ns).items() if v and k != "prompt"}
        return "create", {**args, "prompt": " ".join(ns.prompt)}
    if tool == "list_tasks":
        return "list", {}
    if tool == "ask_parent":
        return "ask", {
            "task_id": os.environ.get("DUCTOR_TASK_ID", ""),
            "question": " ".join(argv),
        }
    parser.add_argument("task_id")
    if tool == "resume_task":
        parser.add_argument("prompt", nargs="+")
    ns = parser.parse_args(argv)
    verb = tool.removesuffix("_task")
    if tool == "resume_task":
        return verb, {"task_id": ns.task_id, "prompt": " ".join(ns.prompt)}
    return verb, {"task_id": ns.task_id}


def fail(message: str, code: int = 1) -> int:
    print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    return code


def main(argv: list[str] | None = None, tool: str | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tool = tool or Path(sys.argv[0]).stem
    if tool not in TUTORIALS:
        return fail(f"run this script as one of: {', '.join(t + '.py' for t in TUTORIALS)}", 2)
    if (tool != "list_tasks" and not args) or args[:1] in (["-h"], ["--help"]):
        print(TUTORIALS[tool])
        return 0
    env = dict(os.environ)
    if not env.get("DUCTOR_AGENT_NAME"):
        return fail("DUCTOR_AGENT_NAME is not set: run this from the agent's workspace")
    if tool == "ask_parent" and not env.get("DUCTOR_TASK_ID"):
        return fail("ask_parent.py works only inside a background task (DUCTOR_TASK_ID)")
    try:
        verb, payload = parse(tool, args)
    except SystemExit:
        print(TUTORIALS[tool])
        return 2
    try:
        event = call(verb, payload, env)
    except (OSError, ValueError) as exc:
        return fail(f"could not reach agent {env['DUCTOR_AGENT_NAME']}: {exc}")
    if event.get("event") != "final":
        return fail(str(event.get("text") or "the agent refused"))
    out = {k: v for k, v in event.items() if k in ("text", "task", "tasks")}
    print(json.dumps({"ok": True, **out}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

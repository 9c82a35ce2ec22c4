#!/usr/bin/env python3
"""Other agents on this machine (ductor's tool script; stdlib only).

This one file is shipped as every script in tools/agent_tools/ (ask_agent.py,
ask_agent_async.py, list_agents.py, edit_shared_knowledge.py, create_agent.py,
remove_agent.py): what it does follows
from the name it runs under. It talks to this agent over its socket
(DUCTOR_AGENT_SOCKET, one JSON request line, JSON event lines back; see ductor's
docs/protocol.md), which talks to the other agent. Run one without arguments for help.
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
ASK_TIMEOUT = 3900.0  # a sync ask waits for the other agent's whole turn

TUTORIALS = {
    "ask_agent": """\
ask_agent.py: ask another agent and wait for its answer (printed here). The other agent
answers in its own inter-agent session for you and this chat, so a follow-up keeps the
context; --new starts that conversation afresh.

Usage: ask_agent.py [--new] AGENT "MESSAGE"

Example:
  ask_agent.py research "Which of our open tickets mention the payment API?"

For work that takes more than a few minutes use ask_agent_async.py.""",
    "ask_agent_async": """\
ask_agent_async.py: hand another agent a task and go on at once. Its answer comes back
into this conversation later (you are told, and then tell the user). The other agent's
chat is told it received the task.

Usage: ask_agent_async.py [--new] [--summary TEXT] [--reply-to AGENT] [--silent]
                          AGENT "MESSAGE"

  --summary TEXT     what the other agent's chat is shown instead of the message
  --reply-to AGENT   the answer goes to AGENT instead of you (implies --silent)
  --silent           the other agent's chat is not told
  --new              start the conversation with that agent afresh

Prints the task id as JSON.""",
    "list_agents": """\
list_agents.py: every agent on this machine with its description, provider, model and
whether it runs, as JSON.

Usage: list_agents.py""",
    "create_agent": """\
create_agent.py: create a new agent (its own bot, workspace and memory) and start it.
Ask the user for what you need; never put the bot token in a command line.

Usage: create_agent.py --name NAME --token-file FILE --users ID[,ID...]
                       [--provider P] [--model M] [--timezone ZONE]
                       [--description "what it is for"]
       create_agent.py --name NAME --transport matrix --homeserver URL
                       --user-id @BOT:SERVER [--password-file FILE]
                       [--allowed-users @YOU:SERVER,...] [--allowed-rooms ROOM,...]

  --token-file FILE    the Telegram bot token (from @BotFather) in FILE; '-' reads it
                       from stdin: printf '%s' "$TOKEN" | create_agent.py ... --token-file -
  --users ID,...       Telegram user ids allowed to talk to it
  --password-file FILE the Matrix bot's password ('-' = stdin)
  --description TEXT   one line on what it is for; the other agents see it

Example:
  create_agent.py --name research --token-file /tmp/token --users 123456 --model sonnet""",
    "remove_agent": """\
remove_agent.py: stop an agent and remove it (its state and workspace are kept).

Usage: remove_agent.py NAME""",
    "edit_shared_knowledge": """\
edit_shared_knowledge.py: the knowledge every agent shares (SHAREDMEMORY.md). It is
copied into each agent's memory_system/MAINMEMORY.md between the SHARED KNOWLEDGE
markers: edit it here, never there.

Usage: edit_shared_knowledge.py --show
       edit_shared_knowledge.py --append "TEXT"
       edit_shared_knowledge.py --set "TEXT"   (replaces everything)""",
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


def call(verb: str, args: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """One ``agent`` request; the terminal event as a dict."""
    request: dict[str, Any] = {
        "v": 1,
        "type": "agent",
        "id": secrets.token_hex(8),
        "text": verb,
        "data": json.dumps(args, ensure_ascii=False),
        "sender": env.get("DUCTOR_AGENT_NAME", ""),
        "origin": "agent tool",
    }
    session = session_of(env)
    if session:
        request["session"] = session
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
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
    if tool == "list_agents":
        return "list", {}
    if tool == "remove_agent":
        parser.add_argument("name")
        return "remove", {"name": parser.parse_args(argv).name}
    if tool == "create_agent":
        return "create", create_arguments(parser, argv)
    if tool == "edit_shared_knowledge":
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--show", action="store_true")
        group.add_argument("--append")
        group.add_argument("--set")
        ns = parser.parse_args(argv)
        if ns.show:
            return "shared", {"show": True}
        if ns.append is not None:
            return "shared", {"append": ns.append}
        return "shared", {"set": ns.set}
    parser.add_argument("--new", action="store_true")
    if tool == "ask_agent_async":
        parser.add_argument("--summary", default="")
        parser.add_argument("--reply-to", default="")
        parser.add_argument("--silent", action="store_true")
    parser.add_argument("agent")
    parser.add_argument("message", nargs="+")
    ns = parser.parse_args(argv)
    args: dict[str, Any] = {"to": ns.agent, "message": " ".join(ns.message), "new": ns.new}
    if tool == "ask_agent":
        return "ask", args
    args.update(summary=ns.summary, reply_to=ns.reply_to, silent=ns.silent)
    return "ask_async", args


def read_secret(source: str) -> str:
    """A secret from a file, or from stdin for '-': never from the command line."""
    if source == "-":
        return sys.stdin.readline().strip()
    return Path(source).read_text(encoding="utf-8").strip()


def create_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    parser.add_argument("--name", required=True)
    parser.add_argument("--transport", choices=("telegram", "matrix"), default="telegram")
    parser.add_argument("--token-file", default="")
    parser.add_argument("--users", default="")
    parser.add_argument("--homeserver", default="")
    parser.add_argument("--user-id", default="")
    parser.add_argument("--password-file", default="")
    parser.add_argument("--allowed-users", default="")
    parser.add_argument("--allowed-rooms", default="")
    for option in ("--provider", "--model", "--timezone", "--description"):
        parser.add_argument(option, default="")
    ns = parser.parse_args(argv)
    args: dict[str, Any] = {"name": ns.name, "provider": ns.provider, "model": ns.model}
    args.update(timezone=ns.timezone, description=ns.description)
    if ns.transport == "matrix":
        args.update(homeserver=ns.homeserver, matrix_user_id=ns.user_id)
        args.update(allowed_users=ns.allowed_users, allowed_rooms=ns.allowed_rooms)
        if ns.password_file:
            args["password"] = read_secret(ns.password_file)
    else:
        args["users"] = ns.users
        if ns.token_file:
            args["token"] = read_secret(ns.token_file)
    return args


def fail(message: str, code: int = 1) -> int:
    print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    return code


def main(argv: list[str] | None = None, tool: str | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tool = tool or Path(sys.argv[0]).stem
    if tool not in TUTORIALS:
        return fail(f"run this script as one of: {', '.join(t + '.py' for t in TUTORIALS)}", 2)
    if (tool != "list_agents" and not args) or args[:1] in (["-h"], ["--help"]):
        print(TUTORIALS[tool])
        return 0
    env = dict(os.environ)
    if not env.get("DUCTOR_AGENT_NAME"):
        return fail("DUCTOR_AGENT_NAME is not set: run this from the agent's workspace")
    if any(a.split("=")[0] in ("--token", "--password") for a in args):
        return fail("never put a secret on the command line: use --token-file or --password-file")
    try:
        verb, payload = parse(tool, args)
    except OSError as exc:
        return fail(f"cannot read the secret: {exc.strerror or exc}")
    except SystemExit:
        print(TUTORIALS[tool])
        return 2
    try:
        timeout = ASK_TIMEOUT if verb == "ask" else 180.0 if verb == "create" else TIMEOUT
        event = call(verb, payload, env, timeout)
    except (OSError, ValueError) as exc:
        return fail(f"could not reach agent {env['DUCTOR_AGENT_NAME']}: {exc}")
    if event.get("event") != "final":
        return fail(str(event.get("text") or "the agent refused"))
    if verb == "ask":  # the answer itself is what the caller reads
        print(event.get("text") or "(no answer)")
        return 1 if event.get("is_error") else 0
    keys = ("text", "task_id", "agent", "session", "agents", "shared")
    out = {k: v for k, v in event.items() if k in keys}
    print(json.dumps({"ok": True, **out}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

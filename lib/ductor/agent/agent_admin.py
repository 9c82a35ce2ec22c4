"""Creating and removing agents for the agent's tool scripts (``create_agent.py``,
``remove_agent.py``): thin wrappers over ``ductor agent add`` and ``ductor agent
remove``, run by the agent with its own environment (so the same directories and the
same service manager). Secrets travel over the agent's socket (0600, this account only)
and reach ``ductor agent add`` in its environment, never in an argv or a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from ductor.run import run

log = logging.getLogger(__name__)

TOKEN_ENV = "DUCTOR_TELEGRAM_TOKEN"  # noqa: S105 - a variable name (ductor agent add)
MATRIX_PASSWORD_ENV = "DUCTOR_MATRIX_PASSWORD"  # noqa: S105 - a variable name
DUCTOR = ("-c", "import sys; from ductor.cli.main import main; sys.exit(main())")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class AdminError(Exception):
    """The wrapped ``ductor`` command failed; the message is its own words."""


def _ductor(args: list[str], env: Mapping[str, str], secrets: Mapping[str, str]) -> str:
    result = run(
        [sys.executable, *DUCTOR, *args],
        env={**env, **secrets},
        check=False,
        timeout=120,
        secrets=[v for v in secrets.values() if v],
    )
    if result.returncode != 0:
        why = result.stderr.strip() or result.stdout.strip() or f"exit code {result.returncode}"
        raise AdminError(why.removeprefix("ductor: "))
    return result.stdout.strip()


def _list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def create(args: Mapping[str, Any], env: Mapping[str, str], *, managed: bool) -> str:
    """``ductor agent add`` with the tool's arguments; its output. ``managed``: a service
    manager runs (the new agent is enabled and started), else it is only created."""
    name = str(args.get("name") or "").strip().lower()
    if not _NAME.fullmatch(name):
        raise AdminError("name: lower-case letters, digits, '_' or '-', starting with a letter")
    argv = ["agent", "add", name, "--non-interactive"]
    argv.append("--start" if managed else "--no-enable")
    secrets: dict[str, str] = {}
    matrix = bool(args.get("homeserver"))
    if matrix:
        argv += ["--transport", "matrix", "--homeserver", str(args["homeserver"])]
        argv += ["--matrix-user-id", str(args.get("matrix_user_id") or "")]
        for user in _list(args.get("allowed_users")):
            argv += ["--matrix-allowed-user", user]
        for room in _list(args.get("allowed_rooms")):
            argv += ["--matrix-room", room]
        if args.get("password"):
            secrets[MATRIX_PASSWORD_ENV] = str(args["password"]).strip()
    else:
        for user in _list(args.get("users")):
            argv += ["--user-id", user]
        if args.get("token"):
            secrets[TOKEN_ENV] = str(args["token"]).strip()
    for option in ("provider", "model", "timezone", "description"):
        if args.get(option):
            argv += [f"--{option}", str(args[option])]
    output = _ductor(argv, env, secrets) or f"Agent {name!r} created."
    log.info("agent %s created from a chat", name)
    if not managed:
        output += f"\nNo service manager runs here: start it with `ductor-agent --name {name}`."
    return output


def remove(args: Mapping[str, Any], env: Mapping[str, str], own_name: str) -> str:
    name = str(args.get("name") or "").strip().lower()
    if not _NAME.fullmatch(name):
        raise AdminError("name: the agent to remove (see list_agents.py)")
    if name == own_name:
        raise AdminError(f"{name!r} is this agent itself; remove it with `ductor agent remove`")
    output = _ductor(["agent", "remove", name], env, {})
    log.info("agent %s removed from a chat", name)
    return output or f"Agent {name!r} removed."

#!/usr/bin/env python3
"""This agent's webhooks (ductor's tool script; stdlib only).

This one file is shipped as every script in tools/webhook_tools/ (webhook_add.py,
webhook_list.py, webhook_show.py, webhook_edit.py, webhook_remove.py,
webhook_rotate_token.py, webhook_test.py): what it does follows from the name it runs
under. It wraps `ductor webhook VERB AGENT ...`, which takes the chat, topic and
transport of this conversation (DUCTOR_CHAT_ID, DUCTOR_TOPIC_ID, DUCTOR_TRANSPORT) for a
new hook, so its calls are answered here. Run one without arguments for help.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

_OPTIONS = """\
  --title TEXT, --description TEXT
  --auth bearer|hmac       bearer (default): "Authorization: Bearer <token>";
                           hmac: a signature of the body in a header (GitHub and others)
  --hmac-secret TEXT       the secret the caller signs with (default: a new random one)
  --hmac-header NAME       default X-Hub-Signature-256 (GitHub)
  --hmac-algorithm sha256|sha1|sha512, --hmac-encoding hex|base64
  --hmac-prefix TEXT       what precedes the signature in the header (default sha256=)
  --task-folder NAME       cron_task: the folder under cron_tasks/ (default: the id)
  --provider NAME, --model NAME, --effort LEVEL   cron_task: overrides for its runs
  --quiet START-END        cron_task: hours (0-23) in which a call is skipped, e.g. 22-7
  --dependency KEY         cron_task: runs (and cron jobs) with the same key never overlap"""

TUTORIALS = {
    "add": f"""\
webhook_add.py: create an HTTP endpoint that outside systems (GitHub, CI, monitoring, a
form) call to wake you in this chat or to run a task.

Usage: webhook_add.py ID --prompt TEMPLATE [--mode wake|cron_task] [options]

  ID                  lower-case letters, digits, '-' or '_', e.g. ci-failed
  --prompt TEMPLATE   what you are told on each call; {{{{field}}}} and {{{{a.b}}}} are filled
                      from the caller's JSON ({{{{?a.b}}}} when it is missing)
  --mode wake         (default) the prompt arrives in this chat's conversation
  --mode cron_task    a fresh run in cron_tasks/ID/ (like a cron job); its answer is
                      posted here
{_OPTIONS}

Example (GitHub push events):
  webhook_add.py gh-push --auth hmac --title "GitHub push" \\
      --prompt "{{{{pusher.name}}}} pushed to {{{{ref}}}}: {{{{head_commit.message}}}}"

Prints the hook as JSON with its URL and its token or secret: give them to the caller
(GitHub: Payload URL, content type application/json, Secret). The endpoint listens on
this machine; the user exposes it (a tunnel or reverse proxy) and must have
[webhooks] enabled = true.""",
    "list": """\
webhook_list.py: your webhooks as JSON: id, mode, auth, URL and their last call.

Usage: webhook_list.py""",
    "show": """\
webhook_show.py: one webhook as JSON, with its URL and last call; --secret adds its
token or HMAC secret.

Usage: webhook_show.py ID [--secret]""",
    "edit": f"""\
webhook_edit.py: change one of your webhooks; options not given stay as they are.

Usage: webhook_edit.py ID [--prompt TEMPLATE] [--mode wake|cron_task] [--enable|--disable]
                       [options]
{_OPTIONS}

Prints the changed hook as JSON.""",
    "remove": """\
webhook_remove.py: delete one of your webhooks; its URL stops working at once.

Usage: webhook_remove.py ID""",
    "rotate_token": """\
webhook_rotate_token.py: give a webhook a new token (bearer) or secret (hmac); the old
one stops working at once. Prints the new one: give it to the caller.

Usage: webhook_rotate_token.py ID""",
    "test": """\
webhook_test.py: send a signed sample call to one of your webhooks, as its caller would.

Usage: webhook_test.py ID [--payload JSON]

Example:
  webhook_test.py ci-failed --payload '{"status": "failed", "repo": {"name": "app"}}'""",
}
NEEDS_ARGUMENTS = {"add", "show", "edit", "remove", "rotate_token", "test"}


def fail(message: str, code: int = 1) -> int:
    print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    return code


def main(argv: list[str]) -> int:
    verb = Path(argv[0]).stem.removeprefix("webhook_")
    if verb not in TUTORIALS:
        return fail(f"run this as one of the webhook_*.py scripts, not as {argv[0]}")
    args = argv[1:]
    if (verb in NEEDS_ARGUMENTS and not args) or args[:1] in (["-h"], ["--help"]):
        print(TUTORIALS[verb])
        return 0
    ductor = shutil.which("ductor")
    if ductor is None:
        return fail("the `ductor` command was not found on PATH")
    agent = os.environ.get("DUCTOR_AGENT_NAME", "")
    if not agent:
        return fail("DUCTOR_AGENT_NAME is not set: run this from the agent's workspace")
    command = [ductor, "webhook", verb.replace("_", "-"), agent, *args, "--json"]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail(f"ductor webhook {verb} failed: {exc}")
    if done.returncode != 0 and not (verb == "test" and done.stdout.strip()):
        error = done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}"
        return fail(error.removeprefix("ductor: "), done.returncode)
    print(done.stdout.strip())
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))

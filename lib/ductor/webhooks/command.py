"""``ductor-webhook``: the webhook endpoint and the runner of ``cron_task`` hooks.

- ``ductor-webhook serve NAME`` (``ductor-webhook@NAME.service``): HTTP on the socket
  systemd passes, or on ``[webhooks] listen`` in the foreground; exits after
  ``--idle-exit`` seconds without requests (0: never).
- ``ductor-webhook run NAME`` (``ductor-webhook-run@NAME.service``): runs the queued
  ``cron_task`` calls.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from ductor import program
from ductor.paths import Paths, validate_agent_name

log = logging.getLogger("ductor.webhook")


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = program.parser("ductor-webhook", __doc__.split("\n")[0])
    serve = sub.add_parser("serve", help="answer HTTP requests for an agent's webhooks")
    serve.add_argument("name")
    serve.add_argument(
        "--idle-exit", type=float, default=0.0, metavar="SECONDS", help="exit when idle"
    )
    run = sub.add_parser("run", help="run the queued cron_task calls of an agent")
    run.add_argument("name")
    args = parser.parse_args(argv)

    def command(paths: Paths) -> int:
        name = validate_agent_name(args.name)
        if args.command == "serve":
            from ductor.webhooks.server import serve as serve_http

            return serve_http(name, paths, idle_exit=args.idle_exit, env=os.environ)
        from ductor.webhooks.runner import run_queue

        run_queue(name, paths)
        return 0

    return program.run(args, command, log)


if __name__ == "__main__":
    sys.exit(main())

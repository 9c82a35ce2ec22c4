"""``ductor-matrix --name NAME``: load the agent's config and password, then sync."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from ductor import config, service
from ductor.config.secrets import load_secret
from ductor.errors import ConfigError
from ductor.paths import Paths

log = logging.getLogger("ductor.matrix")


async def serve(name: str, paths: Paths, agent_config: config.AgentConfig) -> int:
    from ductor.transports.matrix.app import MatrixTransport

    transport = MatrixTransport(
        name,
        paths,
        agent_config,
        password=load_secret(paths, name, config.MATRIX_PASSWORD),
        access_token=load_secret(paths, name, config.MATRIX_ACCESS_TOKEN),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        try:
            new = config.load_agent_config(paths, name)
        except ConfigError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            return
        log.info("config reloaded")
        task = loop.create_task(transport.reload(new))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    runner = asyncio.create_task(transport.run(stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        stopper.cancel()
        runner.result()
        return 0
    transport.notifier.stopping("stopping")
    runner.cancel()
    await asyncio.wait_for(asyncio.gather(runner, return_exceptions=True), 10)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = service.parser("ductor-matrix", "The Matrix transport of one ductor agent.")
    args = parser.parse_args(argv)

    def body(svc: service.Service) -> int:
        # Request lines carry the access token as a query parameter (matrix-nio).
        for noisy in ("aiohttp", "nio", "peewee"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return asyncio.run(serve(svc.name, svc.paths, svc.config))

    return service.run(args, body, log=log, what="transport")


if __name__ == "__main__":
    sys.exit(main())

"""``ductor-telegram --name NAME``: load the agent's config and token, then poll."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import sys
from collections.abc import Sequence

from ductor import config, service
from ductor.config.secrets import load_secret
from ductor.errors import ConfigError
from ductor.paths import Paths

log = logging.getLogger("ductor.telegram")


def skip_unused_modules() -> None:
    """Make imports this program never needs fail at once (a None entry in sys.modules).

    h2 is installed for matrix-nio, and httpcore imports it at once although the Bot API
    is spoken over HTTP/1.1 (~1.5 MB and ~25 ms at start). httpcore also imports sniffio
    on every request: where it is not installed, each attempt searches sys.path again.
    """
    sys.modules.setdefault("h2", None)  # type: ignore[arg-type]
    if importlib.util.find_spec("sniffio") is None:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


def read_token(paths: Paths, name: str) -> str:
    token = load_secret(paths, name, config.TELEGRAM_TOKEN)
    if not token:
        raise ConfigError(
            "no Telegram bot token: store it with `ductor init` (or write it alone into"
            f" {paths.agent_credentials(name) / config.TELEGRAM_TOKEN}, mode 0600)"
        )
    return token


async def serve(name: str, paths: Paths, agent_config: config.AgentConfig, token: str) -> int:
    from ductor.transports.telegram.app import TelegramTransport

    transport = TelegramTransport(name, paths, agent_config, token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    audits: set[asyncio.Task[None]] = set()

    def reload() -> None:
        try:
            new = config.load_agent_config(paths, name)
        except ConfigError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            return
        transport.config = new
        log.info("config reloaded")
        audits.add(loop.create_task(transport.audit_groups()))

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    runner = asyncio.create_task(transport.run(stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        stopper.cancel()
        runner.result()  # raises what stopped it
        return 0
    transport.notifier.stopping("stopping")
    runner.cancel()
    with_timeout = asyncio.wait_for(asyncio.gather(runner, return_exceptions=True), 10)
    await with_timeout
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = service.parser("ductor-telegram", "The Telegram transport of one ductor agent.")
    args = parser.parse_args(argv)

    def body(svc: service.Service) -> int:
        skip_unused_modules()
        # httpx logs every request line at INFO, and Telegram's URLs carry the token.
        for noisy in ("httpx", "httpcore", "telegram"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        token = read_token(svc.paths, svc.name)
        return asyncio.run(serve(svc.name, svc.paths, svc.config, token))

    return service.run(args, body, log=log, what="transport")


if __name__ == "__main__":
    sys.exit(main())

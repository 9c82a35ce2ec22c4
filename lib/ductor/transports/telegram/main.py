"""``ductor-telegram --name NAME``: load the agent's config and token, then poll."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from ductor import __version__, config
from ductor import log as ductor_log
from ductor.errors import ConfigError, DuctorError, ExitCode, exit_code_for
from ductor.paths import Mode, Paths, resolve, validate_agent_name

log = logging.getLogger("ductor.telegram")


def read_token(paths: Paths, name: str) -> str:
    token = config.read_secret(paths, name, config.TELEGRAM_TOKEN)
    if not token:
        raise ConfigError(
            "no Telegram bot token: store it with `ductor init` (or write it alone into"
            f" {paths.agent_credentials(name) / config.TELEGRAM_TOKEN}, mode 0600)"
        )
    ductor_log.register_secret(token)
    return token.strip()


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
    parser = argparse.ArgumentParser(
        prog="ductor-telegram", description="The Telegram transport of one ductor agent."
    )
    parser.add_argument("--name", required=True, help="the agent's name, e.g. main")
    parser.add_argument("--system", dest="mode", action="store_const", const="system")
    parser.add_argument("--log-level", help="override the config's log_level")
    parser.add_argument("--version", action="version", version=f"ductor-telegram {__version__}")
    args = parser.parse_args(argv)
    ductor_log.setup(args.log_level or "INFO")
    # httpx logs every request line at INFO, and Telegram's URLs carry the token.
    for noisy in ("httpx", "httpcore", "telegram"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        name = validate_agent_name(args.name)
        paths = resolve(Mode(args.mode) if args.mode else None)
        agent_config = config.load_agent_config(paths, name)
        if not args.log_level:
            logging.getLogger().setLevel(agent_config.log_level)
        token = read_token(paths, name)
        return asyncio.run(serve(name, paths, agent_config, token))
    except ConfigError as exc:
        log.error("%s", exc)
        return int(ExitCode.CONFIG)
    except DuctorError as exc:
        log.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.OK)
    except Exception as exc:
        log.critical("transport crashed: %s: %s", exc.__class__.__name__, exc, exc_info=True)
        return int(exit_code_for(exc))


if __name__ == "__main__":
    sys.exit(main())

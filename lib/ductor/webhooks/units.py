"""Where ``ductor-webhook@NAME.socket`` listens: the drop-in ``ductor agent sync`` writes
from ``[webhooks] listen`` (or ``host``/``port``)."""

from __future__ import annotations

from pathlib import Path

from ductor import config
from ductor.units import Manager, remove_dropin, unit_name, write_dropin

SOCKET_TEMPLATE = "ductor-webhook@.socket"
RUN_PATH_TEMPLATE = "ductor-webhook-run@.path"


def listen_address(webhooks: config.WebhooksConfig) -> str:
    """``HOST:PORT`` or an absolute Unix socket path."""
    return webhooks.listen or f"{webhooks.host}:{webhooks.port}"


def socket_dropin(webhooks: config.WebhooksConfig) -> str:
    """The ``[Socket]`` lines that put the listening socket where the config says (the
    empty ``ListenStream=`` drops the template's default)."""
    listen = listen_address(webhooks)
    lines = ["[Socket]", "ListenStream=", f"ListenStream={listen}"]
    if not listen.startswith("/"):
        # Bind a host name's address even before the network is up (a proxy may be later).
        lines.append("FreeBind=yes")
    return "\n".join(lines) + "\n"


def sync_socket(
    directory: Path, name: str, agent_config: config.AgentConfig, *, command: str
) -> bool:
    """Write (or, with webhooks off, remove) the socket's drop-in; whether it changed."""
    socket = unit_name(SOCKET_TEMPLATE, name)
    if not agent_config.webhooks.enabled:
        return remove_dropin(directory, socket)
    return write_dropin(directory, socket, socket_dropin(agent_config.webhooks), command=command)


def restart_socket(manager: Manager, name: str) -> None:
    """A running socket takes a new address only when restarted (its service with it)."""
    socket = unit_name(SOCKET_TEMPLATE, name)
    manager.systemctl("try-restart", socket, check=False)

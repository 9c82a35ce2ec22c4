"""A transport's listen connection never keeps the agent up or starts it again by itself:
under socket activation a connection starts the agent, and the agent exits when idle."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ductor.agent import daemon
from ductor.protocol import Event, Events, Request, RequestType
from ductor.transports import agentlink, listen


class FakeAgentSocket:
    """A Unix socket that answers every request with ``accepted`` and counts the listen
    connections; ``drop()`` closes them as an agent that exits does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listens = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        request = json.loads(line)
        if request["type"] == RequestType.LISTEN:
            self.listens += 1
            self.writers.append(writer)
            return
        writer.write(Events.accepted(request["id"], "t1", request["session"]).encode())
        await writer.drain()
        writer.close()

    def drop(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()


async def _show(event: Event, stream: Any) -> None:
    return None


def test_the_listener_waits_for_the_agent_to_answer_before_connecting_and_after_a_drop(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[int]:
        agent = FakeAgentSocket(tmp_path / "agent.sock")
        await agent.start()
        stop = asyncio.Event()
        task = asyncio.create_task(listen.listen(agent.path, "tg", stop, _show, tasks=set()))
        seen = []
        await asyncio.sleep(1.5)
        seen.append(agent.listens)  # nothing handed over yet: no connection, no start
        request = Request(type=RequestType.MESSAGE, id="r1", session="tg:1", text="hi")
        handed = await agentlink.hand_over(agent.path, request, stop, agent="main")
        assert handed is not None
        await handed[0].close()
        await asyncio.sleep(1.5)
        seen.append(agent.listens)  # the agent answered: it runs, so listen
        agent.drop()  # the agent exited when idle
        await asyncio.sleep(3.5)
        seen.append(agent.listens)  # not reconnected: that would start the agent again
        handed = await agentlink.hand_over(agent.path, request, stop, agent="main")
        assert handed is not None
        await handed[0].close()
        await asyncio.sleep(2.5)
        seen.append(agent.listens)
        stop.set()
        task.cancel()  # as the transport does at shutdown
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()
        return seen

    assert asyncio.run(scenario()) == [0, 1, 1, 2]


def test_an_idle_agent_exits_although_a_transport_listens() -> None:
    listener = object()
    agent = SimpleNamespace(lanes={}, acks={}, listeners={"tg": listener})
    server = SimpleNamespace(connections={listener})

    async def scenario() -> float:
        stop = asyncio.Event()
        started = time.monotonic()
        await asyncio.wait_for(
            daemon.exit_when_idle(agent, server, stop, 0.2),  # type: ignore[arg-type]
            timeout=5,
        )
        assert stop.is_set()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2


def test_a_client_that_is_not_the_listener_keeps_the_agent_up() -> None:
    agent = SimpleNamespace(lanes={}, acks={}, listeners={})
    server = SimpleNamespace(connections={object()})

    async def scenario() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(
            daemon.exit_when_idle(agent, server, stop, 0.2)  # type: ignore[arg-type]
        )
        await asyncio.sleep(1)
        stopped = stop.is_set()
        task.cancel()
        return stopped

    assert asyncio.run(scenario()) is False

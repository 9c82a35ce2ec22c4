"""The agent daemon under load, as a real process with the fake CLIs: every request is
answered at once whatever the turns are doing, a client that floods the socket without
reading is dropped, and a stop word with nothing to stop is a message."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.process.agent_proc import BASE_CONFIG, AgentProcess, final, texts
from tests.process.test_agent_daemon import message_request, wait_for, write_env

from ductor import protocol
from ductor.protocol import Event, EventType, Request, RequestType, new_request_id
from ductor.protocol.client import Exchange, connect

ONE_SECOND = 1.0


def started_runs(agent: AgentProcess) -> list[dict[str, object]]:
    file = agent.root / "runs.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def prompt_of(run: dict[str, object]) -> str:
    """The user's words in a recorded CLI run: on stdin, else the last argument."""
    stdin = run.get("stdin")
    argv = run["argv"]
    assert isinstance(argv, list)
    text = stdin if isinstance(stdin, str) and stdin else str(argv[-1])
    return text.split("\n\n")[0]


def stalled_agent(root: Path, *, slots: int) -> AgentProcess:
    """An agent whose CLI turns run until a signal ends them (the interrupt scenario)."""
    process = AgentProcess(
        root, config=BASE_CONFIG + f"\n[limits]\nmax_parallel_sessions = {slots}\n"
    )
    process.write_config()
    write_env(
        process,
        FAKECLI_SCENARIO="claude-interrupt",
        FAKECLI_STALL_S="60",
        FAKECLI_RECORD=str(root / "runs.jsonl"),
    )
    return process.start()


@contextlib.contextmanager
def busy_chats(agent: AgentProcess, count: int) -> Iterator[list[Exchange]]:
    """``count`` chats each with a running turn; stopped and closed afterwards."""
    exchanges = []
    try:
        for chat in range(1, count + 1):
            exchange = connect(
                agent.socket, message_request(f"busy {chat}", f"tg:{chat}"), timeout=10
            )
            exchanges.append(exchange)
            first = exchange.next_event()
            assert first is not None and first.type is EventType.ACCEPTED
        wait_for(lambda: len(started_runs(agent)) == count)
        yield exchanges
    finally:
        stop_all = Request(
            type=RequestType.ABORT, id=new_request_id(), mode=protocol.AbortMode.STOP_ALL
        )
        with contextlib.suppress(Exception):
            agent.call(stop_all, timeout=10)
        for exchange in exchanges:
            exchange.close()


def abort(session: str, mode: protocol.AbortMode, text: str = "") -> Request:
    return Request(
        type=RequestType.ABORT, id=new_request_id(), session=session, mode=mode, text=text
    )


def timed_call(agent: AgentProcess, request: Request) -> tuple[list[Event], float]:
    started = time.monotonic()
    events = agent.call(request, timeout=5)
    return events, time.monotonic() - started


# -- every slot busy ------------------------------------------------------------------------


def test_with_every_slot_busy_a_fifth_chat_hears_at_once_and_stop_acts_within_a_second(
    tmp_path: Path,
) -> None:
    agent = stalled_agent(tmp_path, slots=4)
    try:
        with busy_chats(agent, 4) as running:
            started = time.monotonic()
            with connect(agent.socket, message_request("hello?", "tg:5"), timeout=5) as fifth:
                first = fifth.next_event()
                waited = time.monotonic() - started
                assert first is not None and first.type is EventType.QUEUED, first
                assert waited < ONE_SECOND, f"the fifth chat heard nothing for {waited:.1f} s"
                assert first.get_str("reason") == "no_free_slot"
                assert first.get_int("position") == 1
                assert "free slot" in first.text

                status, took = timed_call(
                    agent,
                    Request(
                        type=RequestType.COMMAND,
                        id=new_request_id(),
                        session="tg:5",
                        text="/status",
                    ),
                )
                assert final(status).get_bool("command")
                assert took < ONE_SECOND, f"/status took {took:.1f} s"

                stopped, took = timed_call(agent, abort("tg:1", protocol.AbortMode.STOP))
                assert "Stopped 1 process" in final(stopped).text
                assert took < ONE_SECOND, f"/stop took {took:.1f} s"
                ended = list(running[0].events())
                assert final(ended).get_str("stopped") == "stop"
                assert time.monotonic() - started < 5 * ONE_SECOND
                [cli] = [r for r in started_runs(agent) if prompt_of(r) == "busy 1"]
                assert not Path(f"/proc/{cli['pid']}").exists(), "the stopped CLI still runs"

                accepted = fifth.next_event()
                assert accepted is not None and accepted.type is EventType.ACCEPTED
                wait_for(lambda: "hello?" in [prompt_of(run) for run in started_runs(agent)])
    finally:
        agent.stop()


def test_stop_in_a_chat_waiting_for_a_slot_discards_its_message(tmp_path: Path) -> None:
    agent = stalled_agent(tmp_path, slots=1)
    try:
        with (
            busy_chats(agent, 1),
            connect(agent.socket, message_request("later", "tg:2"), timeout=5) as waiting,
        ):
            first = waiting.next_event()
            assert first is not None and first.type is EventType.QUEUED
            assert first.get_str("reason") == "no_free_slot"

            answer = final(agent.call(abort("tg:2", protocol.AbortMode.STOP), timeout=5))
            assert "1 queued message(s) discarded" in answer.text
            end = waiting.next_event()
            assert end is not None and end.get_str("kind") == "discarded"
        time.sleep(0.5)  # the slot is free now: a message still waiting would start
    finally:
        agent.stop()
    assert [prompt_of(run) for run in started_runs(agent)] == ["busy 1"]


def test_a_second_message_of_a_busy_chat_says_it_waits_behind_the_first(
    tmp_path: Path,
) -> None:
    agent = stalled_agent(tmp_path, slots=4)
    try:
        with (
            busy_chats(agent, 1),
            connect(agent.socket, message_request("next", "tg:1"), timeout=5) as second,
        ):
            first = second.next_event()
            assert first is not None and first.type is EventType.QUEUED
            assert first.get_str("reason") == "session_busy"
            assert first.get_int("position") == 1
            assert "previous message" in first.text
    finally:
        agent.stop()


# -- a client that never reads --------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_is_dropped_and_other_clients_stay_fast(
    tmp_path: Path,
) -> None:
    agent = AgentProcess(tmp_path).start()
    assert agent.proc is not None
    try:
        before = rss_kib(agent.proc.pid)
        line = Request(type=RequestType.HEALTH, id="flood").encode()
        outcome: dict[str, object] = {}

        def flood() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(agent.socket))
                try:
                    for _ in range(300):
                        sock.sendall(line * 1000)  # 300k requests, never a read
                except OSError as exc:
                    outcome["dropped"] = exc
                outcome["rss_kib"] = rss_kib(agent.proc.pid)  # type: ignore[union-attr]

        flooder = threading.Thread(target=flood)
        flooder.start()
        slowest = 0.0
        while flooder.is_alive():
            _, took = timed_call(agent, Request(type=RequestType.HEALTH, id=new_request_id()))
            slowest = max(slowest, took)
            time.sleep(0.05)
        flooder.join()
        assert isinstance(outcome.get("dropped"), OSError), "the flooding client was never dropped"
        grown_mib = (int(str(outcome["rss_kib"])) - before) / 1024
        assert grown_mib < 40, f"the agent grew by {grown_mib:.0f} MiB"
        assert slowest < 0.5, f"another client waited {slowest:.2f} s for its answer"
        events = agent.message("still there?", session="tg:7")
        assert final(events).text == "ECHO: hello"
    finally:
        agent.stop()
    log = agent.log()
    assert log.count("dropped client") == 1
    assert "Traceback" not in log


# -- a stop word with nothing to stop ----------------------------------------------------------


@pytest.fixture
def idle_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path)
    process.write_config()
    write_env(process, FAKECLI_RECORD=str(tmp_path / "runs.jsonl"))
    process.start()
    yield process
    process.stop()


def test_a_stop_word_in_an_idle_chat_is_a_message_the_cli_answers(
    idle_agent: AgentProcess,
) -> None:
    request = Request(
        type=RequestType.ABORT,
        id=new_request_id(),
        session="tg:100",
        mode=protocol.AbortMode.STOP,
        text="wait",
        want_ack=True,
    )
    events = idle_agent.call(request)
    assert events[0].type is EventType.ACCEPTED
    end = final(events)
    assert end.text == "ECHO: hello"
    assert texts(events) == "ECHO: hello"
    assert end.get_str("turn")
    assert [prompt_of(run) for run in started_runs(idle_agent)] == ["wait"]


def test_a_skip_word_in_an_idle_chat_is_a_message_too(idle_agent: AgentProcess) -> None:
    events = idle_agent.call(abort("tg:100", protocol.AbortMode.INTERRUPT, text="Skip"))
    assert final(events).text == "ECHO: hello"
    assert [prompt_of(run) for run in started_runs(idle_agent)] == ["Skip"]


def test_a_stop_command_in_an_idle_chat_only_says_nothing_runs(idle_agent: AgentProcess) -> None:
    for request in (
        abort("tg:100", protocol.AbortMode.STOP, text="/stop"),
        abort("tg:100", protocol.AbortMode.STOP),  # an older client: no text
    ):
        assert final(idle_agent.call(request)).text == "Nothing running right now."
    assert started_runs(idle_agent) == []


def test_a_stop_word_while_a_turn_runs_still_stops_it(tmp_path: Path) -> None:
    agent = stalled_agent(tmp_path, slots=4)
    try:
        with busy_chats(agent, 1) as running:
            answer = final(agent.call(abort("tg:1", protocol.AbortMode.STOP, text="wait")))
            assert "Stopped 1 process" in answer.text
            assert final(list(running[0].events())).get_str("stopped") == "stop"
    finally:
        agent.stop()
    assert len(started_runs(agent)) == 1


def test_one_connection_may_keep_64_requests_open_and_hears_busy_beyond(
    tmp_path: Path,
) -> None:
    agent = stalled_agent(tmp_path, slots=4)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(agent.socket))
            sock.settimeout(10)
            for n in range(70):
                sock.sendall(message_request(f"m{n}", "tg:1").encode())
            reader = sock.makefile("rb")
            firsts: dict[str, Event] = {}
            while len(firsts) < 70:
                event = protocol.decode_event(reader.readline())
                firsts.setdefault(event.request_id, event)
            busy = [e for e in firsts.values() if e.get_str("kind") == "busy"]
            assert len(busy) == 6
            assert all(e.type is EventType.ERROR for e in busy)
            stopped = final(agent.call(abort("tg:1", protocol.AbortMode.STOP), timeout=10))
            assert "63 queued message(s) discarded" in stopped.text
    finally:
        agent.stop()

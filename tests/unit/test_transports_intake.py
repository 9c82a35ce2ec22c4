"""The intake every transport shares: chats side by side, in order within one, a commit
point that never passes an update not yet handed over, no update that stops the rest;
and one typing loop per chat."""

from __future__ import annotations

import asyncio

import pytest

from ductor.transports.intake import Intake
from ductor.transports.typingloop import Typing


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_chat_that_waits_holds_up_no_other_chat_and_the_commit_point_stops_at_it() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        handled: list[str] = []

        async def handle(item: str) -> bool:
            if item == "slow":
                await release.wait()
            handled.append(item)
            return True

        intake: Intake[str] = Intake(handle)
        intake.submit("chat-a", 10, "slow")
        intake.submit("chat-a", 12, "after slow")
        intake.submit("chat-b", 11, "other chat")
        intake.submit("chat-a!", 13, "stop")
        await settle()
        assert handled == ["other chat", "stop"]
        assert intake.commit_point(0) == 10 and intake.busy
        release.set()
        await settle()
        assert handled == ["other chat", "stop", "slow", "after slow"]
        assert intake.commit_point(0) == 14 and not intake.busy

    asyncio.run(scenario())


def test_an_update_that_fails_is_reported_counted_done_and_the_next_one_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        handled: list[str] = []
        reported: list[tuple[str, str]] = []

        async def handle(item: str) -> bool:
            if item == "poison":
                raise ValueError("a message with no text and no files")
            handled.append(item)
            return True

        async def on_failure(item: str, error: Exception) -> None:
            reported.append((item, str(error)))

        intake: Intake[str] = Intake(
            handle, on_failure=on_failure, describe=lambda item: f"update {item}"
        )
        intake.submit("chat", 1, "poison")
        intake.submit("chat", 2, "hello")
        await settle()
        assert handled == ["hello"]
        assert reported == [("poison", "a message with no text and no files")]
        assert intake.commit_point(0) == 3

    asyncio.run(scenario())
    assert "update poison failed" in caplog.text


def test_a_failing_failure_report_still_lets_the_loop_go_on() -> None:
    async def scenario() -> None:
        async def handle(item: str) -> bool:
            raise RuntimeError("bug")

        async def on_failure(item: str, error: Exception) -> None:
            raise OSError("Telegram is unreachable")

        intake: Intake[str] = Intake(handle, on_failure=on_failure)
        intake.submit("chat", 5, "x")
        await settle()
        assert intake.commit_point(0) == 6

    asyncio.run(scenario())


def test_an_update_sent_again_after_it_was_done_is_not_handled_twice() -> None:
    async def scenario() -> None:
        handled: list[int] = []
        release = asyncio.Event()

        async def handle(item: int) -> bool:
            if item == 1:
                await release.wait()
            handled.append(item)
            return True

        intake: Intake[int] = Intake(handle)
        intake.submit("a", 1, 1)
        intake.submit("b", 2, 2)
        await settle()
        # Asked from 1 (still open), the messenger sends 1 and 2 again: both are known.
        intake.forget_below(intake.commit_point(0))
        assert intake.seen(1) and intake.seen(2)
        release.set()
        await settle()
        assert intake.seen(2)  # the messenger was not yet asked past it
        intake.forget_below(intake.commit_point(0))
        assert intake.commit_point(0) == 3 and not intake.seen(2)
        assert handled == [2, 1]

    asyncio.run(scenario())


def test_an_update_not_handed_over_because_of_a_stop_keeps_the_commit_point() -> None:
    async def scenario() -> None:
        async def handle(item: int) -> bool:
            return item != 7  # 7: the transport was stopping

        intake: Intake[int] = Intake(handle)
        intake.submit("a", 7, 7)
        intake.submit("b", 8, 8)
        await settle()
        assert intake.commit_point(0) == 7

    asyncio.run(scenario())


def test_every_done_update_is_recorded_at_once() -> None:
    async def scenario() -> None:
        points: list[int] = []

        async def handle(item: int) -> bool:
            return True

        intake: Intake[int] = Intake(handle, on_done=lambda: points.append(intake.commit_point(0)))
        intake.submit("a", 1, 1)
        intake.submit("a", 2, 2)
        await settle()
        assert points == [2, 3]

    asyncio.run(scenario())


def test_many_holders_of_one_chat_share_one_typing_loop() -> None:
    async def scenario() -> None:
        sent: list[str] = []

        async def send(chat: str) -> None:
            sent.append(chat)

        typing: Typing[str] = Typing(send, every=0.05)
        for _ in range(200):
            typing.hold("chat")
        typing.hold("other")
        await asyncio.sleep(0.12)
        assert sent.count("chat") <= 3 and sent.count("other") <= 3
        for _ in range(199):
            typing.release("chat")
        assert typing.holders("chat") == 1
        typing.release("chat")
        before = sent.count("chat")
        await asyncio.sleep(0.12)
        assert sent.count("chat") == before
        typing.close()

    asyncio.run(scenario())


def test_a_typing_call_that_fails_does_not_end_the_loop() -> None:
    async def scenario() -> None:
        calls = 0

        async def send(chat: str) -> None:
            nonlocal calls
            calls += 1
            raise OSError("no network")

        typing: Typing[str] = Typing(send, every=0.02)
        typing.hold("chat")
        await asyncio.sleep(0.07)
        typing.close()
        assert calls >= 2

    asyncio.run(scenario())

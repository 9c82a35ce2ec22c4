"""Pieces of the Telegram transport's app that need no Bot API: the daily group audit
and the summary shown above a long answer sent as a document."""

from __future__ import annotations

import asyncio

import pytest

from ductor.transports.telegram import app
from ductor.transports.telegram.app import TelegramTransport, summarise


class AuditCounter:
    def __init__(self) -> None:
        self.audits = 0

    async def audit_groups(self) -> None:
        self.audits += 1
        if self.audits == 2:
            raise OSError("disk full")  # one failed audit does not end the daily task


def test_the_groups_are_audited_every_period_until_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "AUDIT_EVERY", 0.05)

    async def scenario() -> int:
        counter = AuditCounter()
        stop = asyncio.Event()
        task = asyncio.create_task(TelegramTransport.audit_daily(counter, stop))  # type: ignore[arg-type]
        while counter.audits < 3:  # the second one fails; the third still comes
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1)  # ends promptly on stop, without an exception
        return counter.audits

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) >= 3


def test_the_daily_audit_waits_a_whole_period_before_the_first_audit() -> None:
    async def scenario() -> int:
        counter = AuditCounter()
        stop = asyncio.Event()
        task = asyncio.create_task(TelegramTransport.audit_daily(counter, stop))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 1)
        return counter.audits

    assert asyncio.run(scenario()) == 0  # the audit at start is run()'s, not this task's


def test_the_summary_is_the_first_paragraph_and_the_size_of_the_whole() -> None:
    text = "Short answer: yes.\n\nThe long story " + "x " * 5000
    assert summarise(text) == (
        f"Short answer: yes.\n\n_Full answer attached ({len(text)} characters)._"
    )


def test_a_long_first_paragraph_is_cut_at_a_word_near_300_characters() -> None:
    text = " ".join(f"w{i}" for i in range(2000))
    first = summarise(text).split("\n\n")[0]
    assert 150 < len(first) <= 302 and first.endswith(" …")
    assert text.startswith(first.removesuffix(" …"))

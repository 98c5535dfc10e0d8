"""bot.intake.ping: the appservice ping at start-up, sent again until Synapse answers one.

Synapse backs off up to 512 s before retrying a transaction modbot missed while down; an
answered ping makes it retry at once, so one lost ping must not leave events waiting."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.intake.ping import Pinger


class Refused(Exception):
    pass


class Homeserver:
    """Answers the ping only from its `answers_from`-th call on (1-based); `hang` calls never return."""

    def __init__(self, answers_from: int = 1, hang: frozenset[int] = frozenset()) -> None:
        self.answers_from = answers_from
        self.hang = hang
        self.calls = 0

    async def ping(self) -> None:
        self.calls += 1
        if self.calls in self.hang:
            await asyncio.sleep(3600)
        if self.calls < self.answers_from:
            raise Refused("Synapse could not reach the appservice")


def pinger(hs: Homeserver, retries: int = 6) -> Pinger:
    return Pinger(hs.ping, (Refused,), timeout=0.05, interval=0.01, retries=retries)


async def settle(p: Pinger) -> None:
    for _ in range(200):
        if p._task is None or p._task.done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the retries did not finish")


async def test_an_answered_ping_at_start_up_is_the_only_one() -> None:
    hs = Homeserver()
    p = pinger(hs)
    assert await p.start() is True
    await asyncio.sleep(0.05)
    assert hs.calls == 1


async def test_an_unanswered_ping_is_sent_again_until_one_is_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modbot")
    hs = Homeserver(answers_from=3)
    p = pinger(hs)
    assert await p.start() is False  # start-up goes on at once
    await settle(p)
    assert hs.calls == 3
    assert "appservice ping answered" in caplog.text
    await asyncio.sleep(0.05)
    assert hs.calls == 3  # none after the answer


async def test_a_ping_that_hangs_counts_as_unanswered_and_is_sent_again() -> None:
    hs = Homeserver(hang=frozenset({1}))
    p = pinger(hs)
    assert await p.start() is False  # after the timeout, not an hour
    await settle(p)
    assert hs.calls == 2


async def test_the_retries_are_bounded() -> None:
    hs = Homeserver(answers_from=100)
    p = pinger(hs, retries=4)
    await p.start()
    await settle(p)
    assert hs.calls == 1 + 4


async def test_stopping_cancels_the_retries() -> None:
    hs = Homeserver(answers_from=100)
    p = Pinger(hs.ping, (Refused,), timeout=0.05, interval=3600)
    await p.start()
    await p.stop()
    assert hs.calls == 1
    await p.stop()  # twice is harmless

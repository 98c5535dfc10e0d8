"""Retries, the circuit breaker, the rate limit and the guard that combines them, on a fake clock."""

from __future__ import annotations

import asyncio
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from bot.classify.resilience import (
    AuthFailed,
    BadResponse,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    RateLimiter,
    Rejected,
    RetryPolicy,
    ServerFailed,
    ServiceGuard,
    Unreachable,
    parse_retry_after,
)
from classifier_kit import FakeTime


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("0", 0.0), (None, None), ("", None), ("soon", None), ("-5", None)],
)
def test_retry_after_in_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=0) == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    later = format_datetime(datetime(2026, 1, 1, 12, 1, 30, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(datetime(2026, 1, 1, 11, 0, 0, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0


def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(retries=5, backoff=1, max_backoff=5)
    assert [policy.delay(n, None, lambda: 1.0) for n in range(6)] == [1, 2, 4, 5, 5, None]
    assert [policy.delay(n, None, lambda: 0.0) for n in range(3)] == [0.5, 1, 2]


def test_retry_after_is_a_floor_and_too_long_a_wait_is_not_waited() -> None:
    policy = RetryPolicy(retries=3, backoff=1, max_backoff=30)
    assert policy.delay(0, 12, lambda: 0.0) == 12
    assert policy.delay(0, 0.1, lambda: 1.0) == 1
    assert policy.delay(0, 31, lambda: 1.0) is None
    assert RetryPolicy(retries=0).delay(0, None, lambda: 1.0) is None


async def test_the_breaker_opens_after_its_threshold_and_probes_after_reset() -> None:
    time = FakeTime()
    breaker = CircuitBreaker("svc", failures=3, reset_after=30, clock=time.clock)
    for _ in range(2):
        await breaker.admit()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    await breaker.admit()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="next probe in 30 s"):
        await breaker.admit()
    time.advance(30)
    assert breaker.state is BreakerState.HALF_OPEN
    await breaker.admit()  # the probe
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


async def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    breaker = CircuitBreaker("svc", failures=2, clock=FakeTime().clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


async def test_calls_during_a_probe_wait_for_its_outcome() -> None:
    time = FakeTime()
    breaker = CircuitBreaker("svc", failures=1, reset_after=10, clock=time.clock)
    breaker.record_failure()
    time.advance(10)
    await breaker.admit()  # this call is the probe
    waiting = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0)
    assert not waiting.done()
    breaker.record_success()
    await waiting  # let through once the probe succeeded

    breaker.record_failure()
    time.advance(10)
    await breaker.admit()
    waiting = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0)
    breaker.record_failure()  # the probe failed: the waiter is refused
    with pytest.raises(CircuitOpen):
        await waiting


async def test_a_long_retry_after_holds_the_breaker_open_that_long() -> None:
    time = FakeTime()
    breaker = CircuitBreaker("svc", failures=5, reset_after=10, clock=time.clock)
    breaker.record_failure(hold_for=600)
    time.advance(599)
    assert breaker.state is BreakerState.OPEN
    time.advance(1)
    assert breaker.state is BreakerState.HALF_OPEN


async def test_the_rate_limiter_allows_a_burst_then_spaces_calls() -> None:
    time = FakeTime()
    limiter = RateLimiter(4, burst=2, clock=time.clock, sleep=time.sleep)
    for _ in range(2):
        await limiter.acquire()
    assert time.sleeps == []
    for _ in range(3):
        await limiter.acquire()
    assert time.sleeps == [pytest.approx(0.25)] * 3


def guard(time: FakeTime, **kwargs: object) -> ServiceGuard:
    return ServiceGuard("svc", clock=time.clock, sleep=time.sleep, rand=lambda: 1.0, **kwargs)  # type: ignore[arg-type]


async def test_the_guard_retries_retryable_errors_only() -> None:
    time = FakeTime()
    g = guard(time, retry=RetryPolicy(retries=3, backoff=1, max_backoff=10))
    outcomes: list[Exception | str] = [ServerFailed("500"), Unreachable("reset"), "ok"]

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await g.call(attempt) == "ok"
    assert time.sleeps == [1, 2]

    for error in (AuthFailed("401"), BadResponse("junk"), Rejected("415")):
        calls = 0

        async def failing() -> str:
            nonlocal calls
            calls += 1
            raise error

        with pytest.raises(type(error)):
            await g.call(failing)
        assert calls == 1


async def test_a_rejected_request_does_not_count_against_the_service() -> None:
    g = guard(FakeTime(), failures=1, retry=RetryPolicy(retries=0))

    async def rejected() -> None:
        raise Rejected("unsupported media type")

    for _ in range(3):
        with pytest.raises(Rejected):
            await g.call(rejected)
    assert g.breaker.state is BreakerState.CLOSED


async def test_when_the_breaker_opens_during_retries_the_real_error_is_raised() -> None:
    g = guard(FakeTime(), failures=2, retry=RetryPolicy(retries=5))
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ServerFailed("HTTP 503: maintenance")

    with pytest.raises(ServerFailed, match="maintenance"):
        await g.call(down)
    assert calls == 2
    assert g.breaker.state is BreakerState.OPEN


async def test_an_attempt_over_the_timeout_is_unreachable() -> None:
    g = guard(FakeTime(), timeout=0.05, retry=RetryPolicy(retries=0))

    async def hang() -> None:
        await asyncio.sleep(10)

    with pytest.raises(Unreachable, match="no answer within 0.05 s"):
        await g.call(hang)


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    time = FakeTime()
    g = guard(time, failures=1, reset_after=5, retry=RetryPolicy(retries=0))

    async def down() -> None:
        raise ServerFailed("500")

    with pytest.raises(ServerFailed):
        await g.call(down)
    time.advance(5)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(10)

    probe = asyncio.create_task(g.call(hang))
    await started.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    async def ok() -> str:
        return "ok"

    assert await g.call(ok) == "ok"
    assert g.breaker.state is BreakerState.CLOSED

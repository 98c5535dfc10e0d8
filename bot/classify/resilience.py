"""Calling a service that may be slow, overloaded or down: errors, retries, a circuit
breaker, a rate limit and a concurrency limit, combined per classifier in a ServiceGuard.

Nothing here knows HTTP: a call is any coroutine that raises a ServiceError saying whether
trying again could help (`retryable`) and whether the failure says the service itself is
unwell (`unhealthy`, which is what the breaker counts). The clock, the sleep and the
random source are parameters, so that tests drive them without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import TypeVar

log = logging.getLogger("modbot.classify")

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class ServiceError(Exception):
    """A call to a service failed. Subclasses say what kind of failure it was."""

    retryable = False  # another attempt may succeed
    unhealthy = True  # evidence that the service (not this one request) is failing

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, from a Retry-After header


class Unreachable(ServiceError):
    """No answer: connection refused or reset, DNS, or the timeout passed."""

    retryable = True


class Overloaded(ServiceError):
    """429: the service asks us to slow down."""

    retryable = True


class ServerFailed(ServiceError):
    """5xx: the service failed to answer."""

    retryable = True


class AuthFailed(ServiceError):
    """401/403: the credentials are wrong or lack a right; retrying cannot help."""


class BadResponse(ServiceError):
    """An answer that is not what the service's API documents (not JSON, wrong shape, huge)."""


class Rejected(ServiceError):
    """A 4xx about this request (unsupported media, bad hash): the service itself is fine."""

    unhealthy = False


class CircuitOpen(ServiceError):
    """The breaker is open: the service is not called until it is probed again."""

    unhealthy = False


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of retryable errors with exponential backoff and jitter.

    Attempt n (0-based) waits between half and all of min(max_backoff, backoff * 2**n), so
    that clients that failed together do not come back together; a Retry-After from the
    service is a floor. A Retry-After longer than max_backoff is not waited for inline: the
    call fails and the breaker keeps the service alone for that long.
    """

    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float | None:
        """Seconds to wait before retrying after failed attempt `attempt`, or None: give up."""
        if attempt >= self.retries:
            return None
        if retry_after is not None and retry_after > self.max_backoff:
            return None
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        jittered = ceiling / 2 + rand() * ceiling / 2
        return max(jittered, retry_after or 0.0)


class BreakerState(str, Enum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls fail at once
    HALF_OPEN = "half_open"  # one probe goes through; its outcome closes or reopens


class CircuitBreaker:
    """Stops calling a service after `failures` unhealthy failures in a row, then lets one
    probe through every `reset_after` seconds until one succeeds. Calls made while a probe
    is under way wait for its outcome rather than failing (or probing) alongside it."""

    def __init__(self, name: str, *, failures: int = 5, reset_after: float = 60.0, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.threshold = failures
        self.reset_after = reset_after
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self._probe_done = asyncio.Event()

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    async def admit(self) -> None:
        """Return when a call may go through; raise CircuitOpen if none may now."""
        while True:
            state = self.state
            if state is BreakerState.CLOSED:
                return
            if self._probing:
                await self._probe_done.wait()
                continue
            if state is BreakerState.HALF_OPEN:
                self._state = BreakerState.HALF_OPEN
                self._probing = True
                self._probe_done = asyncio.Event()
                log.info("%s: probing the service after the circuit was open", self.name)
                return
            wait = max(0.0, self._open_until - self._clock())
            raise CircuitOpen(f"circuit open after repeated failures, service not called (next probe in {wait:.0f} s)")

    def _end_probe(self) -> None:
        if self._probing:
            self._probing = False
            self._probe_done.set()

    def record_success(self) -> None:
        if self._state is not BreakerState.CLOSED:
            log.warning("%s: the service answers again; circuit closed", self.name)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._end_probe()

    def record_failure(self, hold_for: float | None = None) -> None:
        """An unhealthy failure; `hold_for` (a long Retry-After) opens the circuit that long."""
        self._failures += 1
        probe_failed = self._probing
        if probe_failed or self._failures >= self.threshold or hold_for is not None:
            wait = max(self.reset_after, hold_for or 0.0)
            if self._state is BreakerState.CLOSED:
                log.warning("%s: %d failures in a row; circuit open for %.0f s", self.name, self._failures, wait)
            self._state = BreakerState.OPEN
            self._open_until = self._clock() + wait
        self._end_probe()

    def release_probe(self) -> None:
        """The probe ended without saying anything about the service (e.g. cancelled)."""
        if self._probing:
            self._state = BreakerState.OPEN  # still due: the next call probes again
        self._end_probe()


class RateLimiter:
    """A token bucket: `rate` calls a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # waiters are served in order
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # float rounding must not leave a token a hair short
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                await self._sleep((1 - self._tokens) / self.rate)


class ServiceGuard:
    """Everything that stands between a classifier and its service, per classifier.

    `call(attempt)` runs `attempt` under the breaker, a concurrency limit, a rate limit and
    a timeout per attempt, retrying retryable failures. Waiting for a slot or a token does
    not count against the timeout.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        failures: int = 5,
        reset_after: float = 60.0,
        concurrency: int | None = None,
        rate_limit: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.retry = retry
        self.breaker = CircuitBreaker(name, failures=failures, reset_after=reset_after, clock=clock)
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._rate = RateLimiter(rate_limit, clock=clock, sleep=sleep) if rate_limit else None
        self._sleep = sleep
        self._rand = rand

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        last: ServiceError | None = None
        number = 0
        while True:
            try:
                await self.breaker.admit()
            except CircuitOpen:
                # The breaker opened while we were retrying: the real error says more.
                if last is not None:
                    raise last from None
                raise
            try:
                result = await self._attempt(attempt)
            except ServiceError as e:
                if e.unhealthy:
                    long_wait = e.retry_after is not None and e.retry_after > self.retry.max_backoff
                    self.breaker.record_failure(e.retry_after if long_wait else None)
                else:
                    self.breaker.record_success()  # it answered: alive, this request was the problem
                delay = self.retry.delay(number, e.retry_after, self._rand) if e.retryable else None
                if delay is None:
                    raise
                last = e
                number += 1
                await self._sleep(delay)
                continue
            except BaseException:
                self.breaker.release_probe()
                raise
            self.breaker.record_success()
            return result

    async def _attempt(self, attempt: Callable[[], Awaitable[T]]) -> T:
        if self._slots is not None:
            async with self._slots:
                return await self._limited(attempt)
        return await self._limited(attempt)

    async def _limited(self, attempt: Callable[[], Awaitable[T]]) -> T:
        if self._rate is not None:
            await self._rate.acquire()
        try:
            async with asyncio.timeout(self.timeout):
                return await attempt()
        except TimeoutError:
            raise Unreachable(f"no answer within {self.timeout:g} s") from None

"""What the appservice endpoint answered the homeserver, remembered for /health.

Synapse retries a refused or failed transaction for ever and sends nothing after it, so the
one sign that the bot has gone blind is on this side: transactions keep being refused and
none is accepted. The monitor records each answer (with a monotonic clock, so a wall-clock
jump neither hides nor invents a stall) and hands a frozen snapshot to bot/health.py.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# Error answers remembered; enough to show what went wrong, bounded under a flood.
MAX_REMEMBERED = 50


@dataclass(frozen=True)
class IntakeError:
    at: float  # monotonic
    status: int
    reason: str
    txn_id: str


@dataclass(frozen=True)
class IntakeState:
    """The endpoint's answers as of one moment (monotonic seconds)."""

    last_accepted_at: float | None
    accepted: int
    # The first refusal or failure after the last accepted transaction (None: none since),
    # and the latest one.
    refused_since: float | None
    last_refused_at: float | None
    # Errors answered to requests that carried the right token (Synapse's own).
    errors: tuple[IntakeError, ...]
    # Requests refused for a missing or wrong token: Synapse with a stale registration,
    # or anyone else who can reach the port.
    unauthorized: int


class IntakeMonitor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_accepted_at: float | None = None
        self._accepted = 0
        self._refused_since: float | None = None
        self._last_refused_at: float | None = None
        self._errors: deque[IntakeError] = deque(maxlen=MAX_REMEMBERED)
        self._unauthorized = 0

    def accepted(self) -> None:
        self._last_accepted_at = self._clock()
        self._accepted += 1
        self._refused_since = None

    def refused(self, status: int, reason: str, txn_id: str, *, authenticated: bool) -> None:
        now = self._clock()
        if self._refused_since is None:
            self._refused_since = now
        self._last_refused_at = now
        if authenticated:
            self._errors.append(IntakeError(now, status, reason, txn_id))
        else:
            self._unauthorized += 1

    def state(self) -> IntakeState:
        return IntakeState(
            last_accepted_at=self._last_accepted_at,
            accepted=self._accepted,
            refused_since=self._refused_since,
            last_refused_at=self._last_refused_at,
            errors=tuple(self._errors),
            unauthorized=self._unauthorized,
        )

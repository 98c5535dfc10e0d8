"""Whether modbot is doing its job, judged from a snapshot: what /health answers.

A bot that answers "ok" while blind is worse than one that is down. /health fails (503)
when the homeserver's transactions keep being refused or failing with none accepted (the
bot sees nothing: Synapse retries the refused one for ever), when an error was answered to
Synapse recently, when the oldest pending event has waited too long (work has stalled),
and when the hashing sandbox has had to kill workers too often (a flood of hostile media,
or limits too tight for real media). Pure: the snapshot is gathered by the caller.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import HealthConfig
from .intake.monitor import IntakeState


@dataclass(frozen=True)
class HealthSnapshot:
    now: float  # monotonic, the clock of `intake`
    intake: IntakeState
    oldest_pending_age: float | None  # seconds; None: nothing pending or unknown
    sandbox_restarts: int  # within the configured window


@dataclass(frozen=True)
class HealthReport:
    problems: tuple[str, ...]
    checks: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems


def evaluate(snapshot: HealthSnapshot, limits: HealthConfig) -> HealthReport:
    """What is wrong, if anything, and the figures behind each check."""
    problems: list[str] = []
    intake = snapshot.intake
    now = snapshot.now

    refusing_for = None if intake.refused_since is None else now - intake.refused_since
    if refusing_for is not None and refusing_for > limits.stall_after:
        problems.append(
            f"no transaction accepted for {refusing_for:.0f} s while the homeserver's keep being "
            "refused or failing: modbot is blind"
        )
    recent = [e for e in intake.errors if now - e.at <= limits.error_window]
    if recent:
        last = recent[-1]
        problems.append(
            f"{len(recent)} transaction(s) answered with an error in the last {limits.error_window:.0f} s "
            f"(latest: {last.status} {last.reason})"
        )
    age = snapshot.oldest_pending_age
    if age is not None and age > limits.max_pending_age:
        problems.append(f"the oldest pending event has waited {age:.0f} s (limit {limits.max_pending_age:.0f} s)")
    if snapshot.sandbox_restarts > limits.max_sandbox_restarts:
        problems.append(
            f"hashing sandbox restarted {snapshot.sandbox_restarts} times in {limits.sandbox_restart_window:.0f} s "
            f"(limit {limits.max_sandbox_restarts})"
        )
    checks = {
        "intake": {
            "accepted": intake.accepted,
            "last_accepted_s_ago": None if intake.last_accepted_at is None else round(now - intake.last_accepted_at, 1),
            "refusing_for_s": None if refusing_for is None else round(refusing_for, 1),
            "recent_errors": [
                {"s_ago": round(now - e.at, 1), "status": e.status, "reason": e.reason, "txn_id": e.txn_id}
                for e in recent[-5:]
            ],
            "unauthorized": intake.unauthorized,
        },
        "oldest_pending_s": None if age is None else round(age, 1),
        "sandbox_restarts": snapshot.sandbox_restarts,
    }
    return HealthReport(tuple(problems), checks)


class RestartWindow:
    """Restarts counted by a probe (a running total) that fall within the last `window` seconds.

    The probe is sampled at each call and a sample kept when the total changed; the total
    as of the window's start (the newest sample no younger, or the first one, taken at
    start) is subtracted from the current one.
    """

    def __init__(self, probe: Callable[[], int], window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque([(clock(), probe())])

    def recent(self) -> int:
        now, count = self._clock(), self._probe()
        # Keep one sample at or before the window's start as the baseline; drop older ones.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()
        baseline = self._samples[0][1]
        if count != self._samples[-1][1]:
            self._samples.append((now, count))
        return max(0, count - baseline)

"""Retention: which rows are old enough to go, and whether the clock can be trusted to say so.

Pure: the caller reads the clocks and passes them in. Each run compares how far the wall
clock moved since the previous run with how far the monotonic clock moved. Rows carry wall
clock times, so cutoffs must be computed on the wall clock; but a wall clock set a year
ahead (a bad NTP answer, a dead RTC battery, an operator's typo) would purge a year of
evidence at once. When the two clocks disagree by more than `max_clock_jump`, forward or
back, the run is skipped (the caller audits it) and the next run compares with this one:
a clock that stays where it jumped is trusted from then on, as it must be eventually.

A machine that was suspended shows the same disagreement (the monotonic clock stops while
it sleeps): one run is skipped. A clock already wrong when modbot starts is not detected;
keeping it right is NTP's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import Config

DAY = 86400.0

# What retention deletes, in the order of a run. "verdict_cache" has no age: its entries go
# when they expire (each classifier's cache_ttl).
TARGETS = ("events", "verdicts", "audit", "matched_verdicts", "evidence_audit", "incidents", "verdict_cache")

# Audit categories that only describe routine work. Every other category, including any
# added later, is evidence (kept as long as evidence_days says), so a new kind of row is
# never purged early by mistake.
ROUTINE_AUDIT = ("scan", "intake", "lists", "retro")


@dataclass(frozen=True)
class ClockReading:
    wall: float  # seconds since the epoch (time.time)
    mono: float  # a monotonic clock (the event loop's time)


@dataclass(frozen=True)
class RetentionRules:
    days: Mapping[str, int | None]  # per target but the verdict cache; None keeps for ever
    max_clock_jump: float

    @classmethod
    def from_config(cls, config: Config) -> RetentionRules:
        r = config.retention
        return cls(
            days={
                "events": r.events_days,
                "verdicts": r.verdicts_days,
                "audit": r.audit_days,
                "matched_verdicts": r.evidence_days,
                "evidence_audit": r.evidence_days,
                "incidents": config.incidents.retention_days,
            },
            max_clock_jump=r.max_clock_jump,
        )


@dataclass(frozen=True)
class RetentionPlan:
    """What one run deletes: per target, rows older than this wall time (the cache: expired by then)."""

    cutoffs: Mapping[str, float] = field(default_factory=dict)
    skipped: str | None = None  # why nothing is deleted this time

    @property
    def run(self) -> bool:
        return self.skipped is None


def plan_retention(rules: RetentionRules, previous: ClockReading, now: ClockReading) -> RetentionPlan:
    """The cutoffs of this run, or why the run is skipped (the clocks disagree)."""
    wall, mono = now.wall - previous.wall, now.mono - previous.mono
    if wall < 0:
        return RetentionPlan(skipped=f"clock jump: the wall clock went back {-wall:.0f} s while {mono:.0f} s passed")
    if abs(wall - mono) > rules.max_clock_jump:
        direction = "ahead" if wall > mono else "back"
        return RetentionPlan(
            skipped=f"clock jump: the wall clock moved {wall:.0f} s while {mono:.0f} s passed "
            f"({abs(wall - mono):.0f} s {direction}, more than {rules.max_clock_jump:.0f} s)"
        )
    cutoffs = {target: now.wall - days * DAY for target, days in rules.days.items() if days is not None}
    return RetentionPlan(cutoffs={target: cutoffs[target] for target in TARGETS if target in cutoffs} | {"verdict_cache": now.wall})

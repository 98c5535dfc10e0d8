"""Retention's decision (bot/retention.py): the cutoffs of a run, and when the clock cannot be trusted."""

from __future__ import annotations

import pytest

from bot.config import Config
from bot.retention import DAY, TARGETS, ClockReading, RetentionRules, plan_retention

HOUR = 3600.0
YEAR = 365 * DAY
T0 = 1_800_000_000.0  # wall time of the previous run
M0 = 5_000.0  # monotonic time of the previous run

RULES = RetentionRules(
    days={"events": 90, "verdicts": 30, "audit": 90, "matched_verdicts": None, "evidence_audit": None, "incidents": 365},
    max_clock_jump=300,
)


def reading(wall_since: float, mono_since: float) -> ClockReading:
    return ClockReading(wall=T0 + wall_since, mono=M0 + mono_since)


# (what happened since the previous run, wall clock moved, monotonic clock moved, runs?)
CASES = [
    ("an hour passed, clocks agree", HOUR, HOUR, True),
    ("NTP slewed the clock a few seconds", HOUR + 4, HOUR, True),
    ("NTP stepped the clock back a little", HOUR - 30, HOUR, True),
    ("a drift of exactly the allowed jump", HOUR + 300, HOUR, True),
    ("one second more than the allowed jump", HOUR + 301, HOUR, False),
    ("the clock was set a year ahead", HOUR + YEAR, HOUR, False),
    ("the clock was set a day ahead between two runs a minute apart", 60 + DAY, 60, False),
    ("the clock went back a day", HOUR - DAY, HOUR, False),
    ("the clock went back before the previous run", -10, HOUR, False),
    ("the machine slept two hours (monotonic time stopped)", 3 * HOUR, HOUR, False),
    ("no time passed at all", 0, 0, True),
]


@pytest.mark.parametrize(("case", "wall", "mono", "runs"), CASES, ids=[c[0] for c in CASES])
def test_a_run_goes_ahead_only_when_the_clocks_agree(case: str, wall: float, mono: float, runs: bool) -> None:
    plan = plan_retention(RULES, reading(0, 0), reading(wall, mono))
    assert plan.run is runs, case
    if runs:
        assert plan.skipped is None and plan.cutoffs
    else:
        assert plan.cutoffs == {} and plan.skipped is not None and plan.skipped.startswith("clock jump")


def test_a_skipped_run_says_how_far_the_clock_jumped() -> None:
    plan = plan_retention(RULES, reading(0, 0), reading(HOUR + YEAR, HOUR))
    assert plan.skipped == (
        f"clock jump: the wall clock moved {HOUR + YEAR:.0f} s while {HOUR:.0f} s passed "
        f"({YEAR:.0f} s ahead, more than 300 s)"
    )
    back = plan_retention(RULES, reading(0, 0), reading(-50, HOUR))
    assert back.skipped == f"clock jump: the wall clock went back 50 s while {HOUR:.0f} s passed"


def test_cutoffs_are_each_kinds_days_before_now_on_the_wall_clock() -> None:
    now = reading(HOUR, HOUR)
    plan = plan_retention(RULES, reading(0, 0), now)
    assert plan.cutoffs == {
        "events": now.wall - 90 * DAY,
        "verdicts": now.wall - 30 * DAY,
        "audit": now.wall - 90 * DAY,
        "incidents": now.wall - 365 * DAY,
        "verdict_cache": now.wall,  # expired entries, whatever their age
    }
    # Kept for ever (None): evidence is not in the plan at all.
    assert "matched_verdicts" not in plan.cutoffs and "evidence_audit" not in plan.cutoffs
    assert list(plan.cutoffs) == [t for t in TARGETS if t in plan.cutoffs]  # the order of a run


def test_the_next_run_after_a_jump_trusts_the_new_clock() -> None:
    # The runner compares each run with the one before, skipped or not.
    first = reading(0, 0)
    jumped = reading(HOUR + YEAR, HOUR)
    later = reading(2 * HOUR + YEAR, 2 * HOUR)
    assert not plan_retention(RULES, first, jumped).run
    resumed = plan_retention(RULES, jumped, later)
    assert resumed.run and resumed.cutoffs["events"] == later.wall - 90 * DAY


def test_rules_from_the_default_config_keep_evidence_and_incidents() -> None:
    config = Config.model_validate(
        {"homeserver": {"url": "http://127.0.0.1:8008", "domain": "example.org"}, "appservice": {"as_token": "a", "hs_token": "b"}}
    )
    rules = RetentionRules.from_config(config)
    assert dict(rules.days) == {
        "events": 90, "verdicts": 90, "audit": 90,
        "matched_verdicts": None, "evidence_audit": None, "incidents": None,
    }
    assert rules.max_clock_jump == 300
    assert config.retention.interval == 3600 and config.retention.max_rows_per_run == 10_000

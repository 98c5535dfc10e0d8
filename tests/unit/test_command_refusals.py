"""How often a refused user is told so: at most once per user per interval (the bot is
exempt from rate limits, so answering every attempt would let anyone make it talk)."""

from __future__ import annotations

from bot.commands.refusals import RefusalThrottle


def test_a_user_is_answered_once_per_interval() -> None:
    throttle = RefusalThrottle(300)
    assert throttle.should_answer("@a:x", now=1000.0)
    assert not throttle.should_answer("@a:x", now=1000.1)
    assert not throttle.should_answer("@a:x", now=1299.9)
    assert throttle.should_answer("@a:x", now=1300.0)
    assert not throttle.should_answer("@a:x", now=1300.5)


def test_the_interval_runs_from_the_last_answer_not_the_last_attempt() -> None:
    throttle = RefusalThrottle(300)
    assert throttle.should_answer("@a:x", now=0.0)
    for t in range(10, 300, 10):  # trying again and again does not push the next answer back
        assert not throttle.should_answer("@a:x", now=float(t))
    assert throttle.should_answer("@a:x", now=300.0)


def test_users_are_counted_apart() -> None:
    throttle = RefusalThrottle(300)
    assert throttle.should_answer("@a:x", now=0.0)
    assert throttle.should_answer("@b:x", now=1.0)
    assert not throttle.should_answer("@a:x", now=2.0)


def test_zero_answers_every_attempt() -> None:
    throttle = RefusalThrottle(0)
    assert all(throttle.should_answer("@a:x", now=5.0) for _ in range(3))


def test_a_flood_of_refused_users_holds_only_those_answered_within_the_interval() -> None:
    """10,000 accounts trying once each, a second apart: memory holds the last interval's."""
    throttle = RefusalThrottle(300)
    for i in range(10_000):
        assert throttle.should_answer(f"@spam{i}:x", now=float(i))
    assert len(throttle) == 300
    assert not throttle.should_answer("@spam9999:x", now=10_000.0)
    assert throttle.should_answer("@spam0:x", now=10_000.0)

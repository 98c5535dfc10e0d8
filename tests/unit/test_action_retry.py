"""Actions the homeserver could not take: pending and retried durably (also after a restart)
until done, refusals final at once with the homeserver's reason in the notice, and two
processes on one database carrying out the same decision act once.

The homeserver is a fake that records calls (tests/unit/test_executor.py's); the store is
real (SQLite, migrated); the clock is a test clock, so "an hour later" takes no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.act.executor import Executor
from bot.act.homeserver import HomeserverError
from bot.act.retry import ActionRetrier
from bot.metrics import Metrics
from bot.model import ActionKind, Decision, Outcome
from bot.record.db import create_engine, migrate
from bot.record.store import Store
from action_kit import ALL, MANAGEMENT, ROOM, SPAMMER, FakeHomeserver, ctx, decision, media, outcomes

BAD_GATEWAY = HomeserverError("HTTP 502: Bad Gateway", status=502)
UNREACHABLE = HomeserverError("homeserver unreachable: Cannot connect to host 127.0.0.1:8008")
CREATOR = HomeserverError(
    "HTTP 403 M_FORBIDDEN: You don't have permission to ban this user", status=403, errcode="M_FORBIDDEN"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Bot:
    """One modbot process: its own engine, Store (claims) and Executor, on a shared database."""

    def __init__(self, url: str, hs: FakeHomeserver, clock: Clock) -> None:
        self.url, self.clock = url, clock
        self.engine = create_engine(url)
        self.store = Store(self.engine, clock, action_lease=60)
        self.executor = Executor(
            hs,  # type: ignore[arg-type]
            self.store,
            Metrics(),
            protected_rooms=lambda: [ROOM],
            management_room=lambda: MANAGEMENT,
            retry_delay=30,
            retry_max_delay=120,
            clock=clock,
        )
        self.retrier = ActionRetrier(self.executor, self.store)


def restart(bots: list[Bot], hs: FakeHomeserver) -> Bot:
    """Another process (or the same one, restarted) on the first one's database."""
    bot = Bot(bots[0].url, hs, bots[0].clock)
    bots.append(bot)
    return bot


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}"


@pytest.fixture
async def bots(url: str, clock: Clock) -> AsyncIterator[list[Bot]]:
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    made = [Bot(url, FakeHomeserver(), clock)]
    try:
        yield made
    finally:
        for bot in made:
            await bot.engine.dispose()


@pytest.fixture
def bot(bots: list[Bot]) -> Bot:
    return bots[0]


def hs_of(bot: Bot) -> FakeHomeserver:
    return bot.executor.hs  # type: ignore[return-value]


async def test_an_outage_leaves_every_action_pending_with_its_next_attempt_and_the_reason(bot: Bot, clock: Clock) -> None:
    hs = hs_of(bot)
    hs.fail = {kind: UNREACHABLE for kind in ("quarantine", "redact", "ban", "notify")}
    results = await bot.executor.carry_out(decision(*ALL), ctx(), [media()])

    assert [r.outcome for r in results] == [Outcome.PENDING] * 4
    for action in await bot.store.actions():
        assert action.status == "pending" and action.attempts == 1 and action.operation
        assert action.next_attempt_at == clock.now + 30 and action.owner is None
        assert "homeserver unreachable" in (action.detail or "")
    assert [d.key for d in await bot.store.action_repo.due()] == []  # not yet due
    pending = [e for e in await bot.store.audit_log(category="action") if e.outcome == "pending"]
    assert len(pending) == 4 and all("next attempt in 30 s" in e.message for e in pending)


async def test_pending_actions_are_retried_with_backoff_until_the_homeserver_is_back(bot: Bot, clock: Clock) -> None:
    hs = hs_of(bot)
    hs.fail = {kind: BAD_GATEWAY for kind in ("quarantine", "redact", "ban", "notify")}
    await bot.executor.carry_out(decision(*ALL), ctx(), [media()])

    # Still down at the first two retries: each pushes the next attempt further out.
    for waited, next_delay in ((30, 60), (60, 120)):
        clock.now += waited
        results = await bot.retrier.run_once()
        assert [r.outcome for r in results] == [Outcome.PENDING] * 4
        assert {a.next_attempt_at for a in await bot.store.actions()} == {clock.now + next_delay}
    assert await bot.retrier.run_once() == []  # nothing due in between

    hs.fail.clear()
    hs.calls.clear()
    clock.now += 120
    results = await bot.retrier.run_once()
    assert sorted(outcomes(results)) == sorted([("quarantine", Outcome.OK), ("redact", Outcome.OK), ("ban", Outcome.OK), ("notify", Outcome.OK)])
    statuses = {a.kind: (a.status, a.attempts, a.next_attempt_at) for a in await bot.store.actions() if not a.key.startswith("followup:")}
    assert statuses == {kind: ("ok", 4, None) for kind in ("quarantine", "redact", "ban", "notify")}
    # The original notice (saying "pending") went out, then a follow-up with what was done.
    [original, follow_up] = hs.notices()
    assert "pending (HTTP 502: Bad Gateway; retrying)" in original
    assert follow_up.startswith("modbot: actions retried after a homeserver failure")
    assert f"ban {SPAMMER}: ok" in follow_up and "redact $event1:example.org: ok" in follow_up
    assert await bot.retrier.run_once() == []  # done: nothing left, no second follow-up


async def test_retries_survive_a_restart(bots: list[Bot], clock: Clock) -> None:
    first = bots[0]
    hs_of(first).fail = {"redact": UNREACHABLE}
    await first.executor.carry_out(decision(ActionKind.REDACT), ctx(), [media()])
    await first.engine.dispose()  # the process stops

    hs = FakeHomeserver()
    second = restart(bots, hs)
    clock.now += 30
    assert outcomes(await second.retrier.run_once()) == [("redact", Outcome.OK)]
    assert ("redact", ROOM, "$event1:example.org") == hs.calls[0][:3]
    [redact] = [a for a in await second.store.actions() if a.kind == "redact"]
    assert (redact.status, redact.attempts) == ("ok", 2)


async def test_a_refusal_is_final_at_once_and_the_notice_says_why(bot: Bot, clock: Clock) -> None:
    hs = hs_of(bot)
    hs.fail = {"ban": CREATOR}
    results = await bot.executor.carry_out(decision(*ALL), ctx(), [media()])

    assert outcomes(results)[2] == ("ban", Outcome.FAILED)
    [notice] = hs.notices()
    assert f"ban {SPAMMER}: failed (HTTP 403 M_FORBIDDEN: You don't have permission to ban this user)" in notice
    [ban] = [a for a in await bot.store.actions() if a.kind == "ban"]
    assert ban.status == "failed" and ban.next_attempt_at is None
    assert "refused by the homeserver, not retried" in (ban.detail or "")
    clock.now += 10_000
    assert await bot.retrier.run_once() == []


async def test_a_call_that_never_answers_ends_before_the_lease_and_is_retried(bot: Bot, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    hs = hs_of(bot)
    hang = asyncio.Event()

    async def quarantine(server: str, media_id: str) -> None:
        await hang.wait()

    monkeypatch.setattr(hs, "quarantine", quarantine)
    monkeypatch.setattr(bot.store.action_repo, "lease", 0.2)  # the call gets half of it
    [result] = await bot.executor.carry_out(decision(ActionKind.QUARANTINE), ctx(), [media()])
    assert result.outcome is Outcome.PENDING and result.error == "no answer within 0 s"
    [action] = await bot.store.actions()
    assert action.status == "pending" and action.owner is None


async def test_two_processes_carrying_out_the_same_decision_ban_and_notify_once(bots: list[Bot]) -> None:
    hs = FakeHomeserver()
    one, two = restart(bots, hs), restart(bots, hs)
    results = await asyncio.gather(*(b.executor.carry_out(decision(*ALL), ctx(), [media()]) for b in (one, two, one, two)))

    assert sorted(hs.kinds()) == ["ban", "notify", "quarantine", "redact"]  # each once
    everything = [r for rs in results for r in rs]
    assert sum(r.outcome is Outcome.OK for r in everything) == 4
    others = [r for r in everything if r.outcome is not Outcome.OK]
    assert others and all(r.outcome is Outcome.SKIPPED for r in others)
    assert all("already done" in r.detail or "being carried out by" in r.detail for r in others)


async def test_a_given_up_action_is_not_retried_nor_taken_again(bot: Bot, clock: Clock) -> None:
    hs = hs_of(bot)
    hs.fail = {"ban": BAD_GATEWAY}
    await bot.executor.carry_out(decision(ActionKind.BAN), ctx(), [media()])
    [ban] = await bot.store.actions()
    assert await bot.store.action_repo.give_up(ban.id, "@mod:example.org", "the user left for good")
    hs.fail.clear()
    clock.now += 1000
    assert await bot.retrier.run_once() == []
    [again] = await bot.executor.carry_out(decision(ActionKind.BAN), ctx(1), [media()])
    assert again.outcome is Outcome.SKIPPED and "given up by @mod:example.org" in again.detail
    assert hs.kinds() == ["ban"]  # only the first attempt


async def test_a_dry_run_is_never_pending(bot: Bot) -> None:
    hs_of(bot).fail = {"notify": BAD_GATEWAY}
    results = await bot.executor.carry_out(Decision("r", decision(*ALL).actions, dry_run=True), ctx(), [media()])
    assert outcomes(results) == [
        ("quarantine", Outcome.DRY_RUN), ("redact", Outcome.DRY_RUN), ("ban", Outcome.DRY_RUN), ("notify", Outcome.PENDING)
    ]
    dry = [a for a in await bot.store.actions() if a.key.startswith("dryrun:")]
    assert len(dry) == 3 and all(a.operation is None and a.status == "dry_run" for a in dry)

"""Retention's deletes (bot/record/retention.py) on SQLite and PostgreSQL, and its runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.record.retention as retention_module
from bot.record.db import create_engine, migrate, session_factory
from bot.record.moderation import ModerationStore
from bot.record.retention import RetentionRepo, RetentionRunner
from bot.record.store import Store
from bot.record.tables import AuditRow, EventMediaRow, EventRow, IncidentRow, ScanHoldRow, VerdictCacheRow, VerdictRow
from bot.retention import DAY, RetentionRules

NOW = 1_800_000_000.0
OLD = NOW - 100 * DAY  # beyond a 90-day retention
RECENT = NOW - 10 * DAY
CUTOFF = NOW - 90 * DAY


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def repo_for(engine: AsyncEngine) -> RetentionRepo:
    return RetentionRepo(engine, ModerationStore(engine).purge_incidents_before)


async def add(engine: AsyncEngine, *rows: object) -> None:
    async with session_factory(engine).begin() as session:
        for row in rows:  # one by one: the links need their event first
            session.add(row)
            await session.flush()


async def ids(engine: AsyncEngine, column: object) -> set[object]:
    async with session_factory(engine)() as session:
        return set((await session.execute(select(column))).scalars())  # type: ignore[call-overload]


def an_event(event_id: str, status: str, received: float, processed: float | None = None) -> EventRow:
    return EventRow(
        event_id=event_id, room_id="!room:example.org", sender="@user:example.org", type="m.room.message",
        event_json="{}", txn_id=None, status=status, attempts=1, received_at=received,
        processed_at=processed, error=None,
    )


def a_verdict(n: int, kind: str, created: float) -> VerdictRow:
    return VerdictRow(
        event_id=f"$e{n}", mxc=f"mxc://example.org/m{n}", classifier="hashlist", kind=kind,
        list_name="" if kind == "no_match" else "known", label="" if kind == "no_match" else "csam", created_at=created,
    )


def an_audit(category: str, outcome: str, ts: float) -> AuditRow:
    return AuditRow(ts=ts, category=category, outcome=outcome, message=f"{category} {outcome}")


async def test_only_old_finished_events_go_with_their_media_links(engine: AsyncEngine) -> None:
    await add(
        engine,
        an_event("$done-old", "done", OLD, OLD + 5),
        an_event("$failed-old", "failed", OLD, OLD + 5),
        an_event("$pending-old", "pending", OLD),  # never finished: still to be processed
        an_event("$held-old", "held", OLD, OLD + 5),  # waiting for a re-scan
        an_event("$failed-held", "failed", OLD, OLD + 5),  # a scan hold may put it back in the queue
        an_event("$done-recent", "done", RECENT, RECENT + 5),
        an_event("$done-late", "done", OLD, RECENT),  # received long ago, finished recently
        EventMediaRow(event_id="$done-old", mxc="mxc://example.org/a", source="url"),
        EventMediaRow(event_id="$pending-old", mxc="mxc://example.org/b", source="url"),
        ScanHoldRow(event_id="$failed-held", room_id="!room:example.org", mxcs_json="[]", reason="timeout",
                    attempts=3, held_at=OLD, due_at=NOW),
    )
    assert await repo_for(engine).purge("events", CUTOFF, 100) == 2
    assert await ids(engine, EventRow.event_id) == {"$pending-old", "$held-old", "$failed-held", "$done-recent", "$done-late"}
    assert await ids(engine, EventMediaRow.event_id) == {"$pending-old"}


async def test_no_match_verdicts_go_and_matches_stay_unless_evidence_retention_says(engine: AsyncEngine) -> None:
    await add(engine, a_verdict(1, "no_match", OLD), a_verdict(2, "exact", OLD), a_verdict(3, "near", OLD),
              a_verdict(4, "no_match", RECENT))
    repo = repo_for(engine)
    assert await repo.purge("verdicts", CUTOFF, 100) == 1
    assert await ids(engine, VerdictRow.event_id) == {"$e2", "$e3", "$e4"}
    assert await repo.purge("matched_verdicts", CUTOFF, 100) == 2
    assert await ids(engine, VerdictRow.event_id) == {"$e4"}


async def test_routine_audit_rows_go_and_evidence_stays_unless_evidence_retention_says(engine: AsyncEngine) -> None:
    routine = [("scan", "not_scanned"), ("verdict", "no_match"), ("intake", "rejected"), ("lists", "reloaded"), ("retro", "finished")]
    evidence = [("verdict", "match"), ("decision", "acted"), ("action", "ok"), ("command", "denied"),
                ("review", "approved"), ("incident", "purged"), ("policy", "reloaded"), ("rooms", "protected"),
                ("retention", "clock_jump"), ("some-future-category", "x")]
    await add(engine, *(an_audit(c, o, OLD) for c, o in routine + evidence), an_audit("scan", "not_scanned", RECENT))
    repo = repo_for(engine)
    assert await repo.purge("audit", CUTOFF, 100) == len(routine)
    async with session_factory(engine)() as session:
        left = {(r.category, r.outcome, r.ts) for r in (await session.execute(select(AuditRow))).scalars()}
    assert left == {(c, o, OLD) for c, o in evidence} | {("scan", "not_scanned", RECENT)}
    assert await repo.purge("evidence_audit", CUTOFF, 100) == len(evidence)


async def test_expired_verdict_cache_entries_go(engine: AsyncEngine) -> None:
    def entry(sha: str, expires: float) -> VerdictCacheRow:
        return VerdictCacheRow(classifier="arachnid", sha256=sha, fingerprint="f", verdicts_json="[]",
                               created_at=expires - DAY, expires_at=expires)

    await add(engine, entry("a" * 64, NOW - 1), entry("b" * 64, NOW - DAY), entry("c" * 64, NOW + 60))
    assert await repo_for(engine).purge("verdict_cache", NOW, 100) == 2
    assert await ids(engine, VerdictCacheRow.sha256) == {"c" * 64}


async def test_a_run_deletes_at_most_the_cap_oldest_first_in_batches(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention_module, "BATCH", 4)  # 10 rows: batches of 4, 4 and 2
    await add(engine, *(an_audit("scan", "retry", OLD + n) for n in range(25)))
    repo = repo_for(engine)
    assert await repo.purge("audit", CUTOFF, 10) == 10
    assert sorted(await ids(engine, AuditRow.ts)) == [OLD + n for n in range(10, 25)]
    assert await repo.purge("audit", CUTOFF, 10) == 10
    assert await repo.purge("audit", CUTOFF, 10) == 5
    assert await repo.purge("audit", CUTOFF, 10) == 0


async def test_incidents_purge_is_capped_and_the_chain_stays_verifiable(engine: AsyncEngine) -> None:
    times = iter([OLD + n for n in range(6)] + [RECENT])
    moderation = ModerationStore(engine, clock=lambda: next(times, NOW))  # then NOW for the purge
    moderation.use_chain_key(bytes(range(32)))  # incidents are keyed (bot/record/evidence.py)
    for n in range(7):
        await moderation.append_incident(f"$incident{n}", {"n": n})
    repo = RetentionRepo(engine, moderation.purge_incidents_before)
    assert await repo.purge("incidents", CUTOFF, 4) == 4
    assert await ids(engine, IncidentRow.event_id) == {"$incident4", "$incident5", "$incident6"}
    assert (await moderation.verify_chain()).ok
    assert await repo.purge("incidents", CUTOFF, 4) == 2
    assert await ids(engine, IncidentRow.event_id) == {"$incident6"}
    assert (await moderation.verify_chain()).ok


# --- the runner: schedule, clock jumps, audit ----------------------------------------------------


class Clocks:
    """A wall clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = NOW, 1000.0

    def advance(self, seconds: float, *, wall_jump: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + wall_jump


RULES = RetentionRules(
    days={"events": 90, "verdicts": 90, "audit": 90, "matched_verdicts": None, "evidence_audit": None, "incidents": None},
    max_clock_jump=300,
)


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def runner_for(engine: AsyncEngine, clocks: Clocks, *, max_rows: int = 100) -> tuple[RetentionRunner, Store]:
    store = Store(engine, clock=lambda: clocks.wall)
    runner = RetentionRunner(
        repo_for(engine), store.audit, RULES, interval=3600, max_rows=max_rows,
        wall=lambda: clocks.wall, mono=lambda: clocks.mono,
    )
    return runner, store


async def retention_audit(store: Store) -> list[tuple[str, str]]:
    return [(e.outcome, e.message) for e in reversed(await store.audit_log(category="retention"))]


async def test_a_run_purges_and_audits_what_it_removed(sqlite_engine: AsyncEngine) -> None:
    clocks = Clocks()
    runner, store = runner_for(sqlite_engine, clocks)
    await add(sqlite_engine, an_event("$old", "done", OLD, OLD), an_audit("scan", "retry", OLD), an_audit("action", "ok", OLD))
    runner.mark()
    clocks.advance(3600)
    run = await runner.run_once()
    assert run.deleted == {"events": 1, "audit": 1} and run.skipped is None
    assert await retention_audit(store) == [("purged", "removed events 1 (older than 90 days), audit 1 (older than 90 days)")]
    assert {r.category for r in await store.audit_log()} == {"action", "retention"}  # evidence stays


async def test_a_clock_jump_skips_the_run_audits_it_and_the_next_run_resumes(sqlite_engine: AsyncEngine) -> None:
    clocks = Clocks()
    runner, store = runner_for(sqlite_engine, clocks)
    # Ten days old: safe under 90 days' retention, unless the clock is wrongly a year ahead.
    await add(sqlite_engine, an_event("$recent", "done", RECENT, RECENT), an_audit("scan", "retry", RECENT))
    runner.mark()
    clocks.advance(3600, wall_jump=365 * DAY)
    jumped = await runner.run_once()
    assert jumped.skipped is not None and jumped.deleted == {}
    assert await ids(sqlite_engine, EventRow.event_id) == {"$recent"}
    [(outcome, message)] = await retention_audit(store)
    assert outcome == "clock_jump" and message.startswith("clock jump: the wall clock moved")
    assert "nothing purged this run" in message

    # The clock stayed where it jumped: the next run, an hour later, trusts it.
    clocks.advance(3600)
    resumed = await runner.run_once()
    assert resumed.skipped is None and resumed.deleted == {"events": 1, "audit": 1}


async def test_hitting_the_cap_is_audited_and_the_rest_goes_next_run(sqlite_engine: AsyncEngine) -> None:
    clocks = Clocks()
    runner, store = runner_for(sqlite_engine, clocks, max_rows=3)
    await add(sqlite_engine, *(an_audit("scan", "retry", OLD + n) for n in range(5)))
    runner.mark()
    clocks.advance(3600)
    assert (await runner.run_once()).capped == ("audit",)
    outcomes = [o for o, _ in await retention_audit(store)]
    assert outcomes == ["purged", "capped"]
    capped = next(m for o, m in await retention_audit(store) if o == "capped")
    assert capped == "audit: 3 rows removed, the most one run may (retention.max_rows_per_run); the rest at the next run"
    clocks.advance(3600)
    second = await runner.run_once()
    assert second.deleted == {"audit": 2} and second.capped == ()


async def test_the_runner_runs_on_the_event_loops_clock(sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention_module, "FIRST_RUN_DELAY", 0.05)
    store = Store(sqlite_engine)
    runner = RetentionRunner(repo_for(sqlite_engine), store.audit, RULES, interval=0.1, max_rows=100)
    await add(sqlite_engine, *(an_audit("scan", "retry", 1_000_000 + n) for n in range(3)))  # 1970: old
    runner.start()
    try:
        for _ in range(200):  # the first run comes FIRST_RUN_DELAY after start
            if await retention_audit(store):
                break
            await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert [o for o, _ in await retention_audit(store)][:1] == ["purged"]
    assert not {r.category for r in await store.audit_log()} - {"retention"}  # the three old rows went

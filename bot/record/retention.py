"""Retention at run time: the capped deletes of each kind of row, and the schedule that runs them.

What goes (bot/retention.py decides the cutoffs): finished events (done, failed, ignored;
never pending or held ones, nor one a scan hold may still put back in the queue) with
their media links; "no match" verdicts; routine audit rows; expired verdict cache entries;
and, only when configured, evidence (matched verdicts, the other audit rows) and incidents.
Media rows (hashes of each mxc, no content) are kept: they let a re-post be matched again.

Each kind loses at most `max_rows` rows per run, in batches of `BATCH` rows per database
transaction, so that a first run over a year of history neither holds the database's write
lock for minutes nor stalls the intake; what is left goes at the next run. The schedule is
the event loop's monotonic clock, never the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, not_, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from ..config import Config
from ..retention import ROUTINE_AUDIT, ClockReading, RetentionRules, plan_retention
from .db import session_factory
from .tables import AuditRow, EventMediaRow, EventRow, IncidentRow, ScanHoldRow, VerdictCacheRow, VerdictRow

log = logging.getLogger("modbot.retention")

BATCH = 1000  # rows per delete transaction
FINISHED = ("done", "failed", "ignored")  # event statuses retention may remove
FIRST_RUN_DELAY = 60.0  # seconds after start; later runs every `interval`

Audit = Callable[[str, str, str], Awaitable[None]]  # (category, outcome, message), as Store.audit


def _routine_audit() -> ColumnElement[bool]:
    return or_(AuditRow.category.in_(ROUTINE_AUDIT), and_(AuditRow.category == "verdict", AuditRow.outcome == "no_match"))


class RetentionRepo:
    def __init__(self, engine: AsyncEngine, purge_incidents: Callable[[float], Awaitable[int]]) -> None:
        """`purge_incidents(cutoff)`: the incident log's own purge, which keeps its chain verifiable."""
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._postgres = engine.dialect.name == "postgresql"
        self._purge_incidents = purge_incidents

    async def purge(self, target: str, cutoff: float, max_rows: int) -> int:
        """Delete up to `max_rows` rows of `target` older than `cutoff`; returns how many went."""
        if target == "incidents":
            return await self._incidents(cutoff, max_rows)
        deleted = 0
        while deleted < max_rows:
            size = min(BATCH, max_rows - deleted)
            async with self.sessions.begin() as session:
                batch = await self._batch(session, target, cutoff, size)
            deleted += batch
            if batch < size:
                break
        return deleted

    async def _batch(self, session: AsyncSession, target: str, cutoff: float, size: int) -> int:
        if target == "events":
            return await self._events(session, cutoff, size)
        stmt: Any
        if target in ("verdicts", "matched_verdicts"):
            kind = VerdictRow.kind == "no_match"
            oldest = select(VerdictRow.id).where(
                VerdictRow.created_at < cutoff, kind if target == "verdicts" else not_(kind)
            ).order_by(VerdictRow.created_at).limit(size)
            stmt = delete(VerdictRow).where(VerdictRow.id.in_(oldest))
        elif target in ("audit", "evidence_audit"):
            routine = _routine_audit()
            oldest = select(AuditRow.id).where(
                AuditRow.ts < cutoff, routine if target == "audit" else not_(routine)
            ).order_by(AuditRow.ts).limit(size)
            stmt = delete(AuditRow).where(AuditRow.id.in_(oldest))
        elif target == "verdict_cache":
            key = tuple_(VerdictCacheRow.classifier, VerdictCacheRow.sha256)
            expired = select(VerdictCacheRow.classifier, VerdictCacheRow.sha256).where(
                VerdictCacheRow.expires_at <= cutoff
            ).order_by(VerdictCacheRow.expires_at).limit(size)
            stmt = delete(VerdictCacheRow).where(key.in_(expired))
        else:
            raise ValueError(f"unknown retention target {target!r}")
        return int((await session.execute(stmt)).rowcount or 0)

    async def _events(self, session: AsyncSession, cutoff: float, size: int) -> int:
        # Finished before the cutoff, and no scan hold that may put it back in the queue.
        # The condition is repeated in each delete: an event re-queued between the select
        # and the deletes is left alone, links and all.
        old = and_(
            EventRow.status.in_(FINISHED),
            EventRow.received_at < cutoff,
            or_(EventRow.processed_at.is_(None), EventRow.processed_at < cutoff),
            EventRow.event_id.not_in(select(ScanHoldRow.event_id)),
        )
        query = select(EventRow.event_id).where(old).order_by(EventRow.received_at).limit(size)
        if self._postgres:
            query = query.with_for_update(skip_locked=True)  # a worker busy with one keeps it
        ids = list((await session.execute(query)).scalars())
        if not ids:
            return 0
        still_old = select(EventRow.event_id).where(EventRow.event_id.in_(ids), old)
        await session.execute(delete(EventMediaRow).where(EventMediaRow.event_id.in_(still_old)))
        return int((await session.execute(delete(EventRow).where(EventRow.event_id.in_(ids), old))).rowcount or 0)

    async def _incidents(self, cutoff: float, max_rows: int) -> int:
        # The incident log's purge takes everything older than a cutoff at once; to cap it,
        # the cutoff moves back to the time of the first incident beyond the cap.
        async with self.sessions() as session:
            beyond = (
                await session.execute(
                    select(IncidentRow.created_at).order_by(IncidentRow.id).offset(max_rows).limit(1)
                )
            ).scalar()
        return await self._purge_incidents(cutoff if beyond is None else min(cutoff, beyond))


@dataclass(frozen=True)
class RetentionRun:
    """What one run did: rows deleted per target, the targets that hit the cap, or why it was skipped."""

    deleted: dict[str, int] = field(default_factory=dict)
    capped: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: str | None = None


class RetentionRunner:
    """Runs retention every `interval` seconds of monotonic time, skipping runs the clock cannot justify."""

    def __init__(
        self,
        repo: RetentionRepo,
        audit: Audit,
        rules: RetentionRules,
        *,
        interval: float,
        max_rows: int,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] | None = None,
    ) -> None:
        self.repo = repo
        self.rules = rules
        self.interval = interval
        self.max_rows = max_rows
        self._audit = audit
        self._wall = wall
        self._mono = mono
        self._previous: ClockReading | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_config(
        cls, config: Config, engine: AsyncEngine, purge_incidents: Callable[[float], Awaitable[int]], audit: Audit
    ) -> RetentionRunner:
        return cls(
            RetentionRepo(engine, purge_incidents), audit, RetentionRules.from_config(config),
            interval=config.retention.interval, max_rows=config.retention.max_rows_per_run,
        )

    def _read(self) -> ClockReading:
        mono = self._mono() if self._mono is not None else asyncio.get_running_loop().time()
        return ClockReading(wall=self._wall(), mono=mono)

    def mark(self) -> None:
        """Read the clocks now: the next run compares with this reading."""
        self._previous = self._read()

    def start(self) -> None:
        """The first run after FIRST_RUN_DELAY (or `interval`, if shorter), then every `interval`."""
        self.mark()
        self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + min(FIRST_RUN_DELAY, self.interval)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.run_once()
            except Exception:
                log.exception("retention run failed")
            due = max(due + self.interval, loop.time())

    async def run_once(self) -> RetentionRun:
        now = self._read()
        previous, self._previous = self._previous or now, now
        plan = plan_retention(self.rules, previous, now)
        if not plan.run:
            assert plan.skipped is not None
            log.warning("retention skipped: %s", plan.skipped)
            await self._audit("retention", "clock_jump", f"{plan.skipped}: nothing purged this run; the next run, in {self.interval:.0f} s, compares with now")
            return RetentionRun(skipped=plan.skipped)
        deleted: dict[str, int] = {}
        capped: list[str] = []
        failed: list[str] = []
        for target, cutoff in plan.cutoffs.items():
            try:
                deleted[target] = n = await self.repo.purge(target, cutoff, self.max_rows)
            except Exception:  # one kind failing must not keep the others from going
                log.exception("retention of %s failed", target)
                failed.append(target)
                continue
            if n >= self.max_rows:
                capped.append(target)
        run = RetentionRun(deleted={t: n for t, n in deleted.items() if n}, capped=tuple(capped), failed=tuple(failed))
        await self._report(run)
        return run

    async def _report(self, run: RetentionRun) -> None:
        if run.deleted:
            removed = ", ".join(
                f"{t.replace('_', ' ')} {n}" + (f" (older than {self.rules.days[t]} days)" if t in self.rules.days else " (expired)")
                for t, n in run.deleted.items()
            )
            await self._audit("retention", "purged", f"removed {removed}")
        if run.deleted.get("incidents"):
            days = self.rules.days["incidents"]
            await self._audit("incident", "purged", f"retention: {run.deleted['incidents']} incidents older than {days} days removed")
        for target in run.capped:
            await self._audit(
                "retention", "capped",
                f"{target.replace('_', ' ')}: {run.deleted.get(target, 0)} rows removed, the most one run may "
                "(retention.max_rows_per_run); the rest at the next run",
            )
        for target in run.failed:
            await self._audit("retention", "failed", f"{target.replace('_', ' ')}: the purge failed (see the log); tried again at the next run")

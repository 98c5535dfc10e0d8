"""Repositories for classifier state: the verdict cache and the holds of failed scans."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import session_factory
from .tables import EventRow, ScanHoldRow, VerdictCacheRow


@dataclass(frozen=True)
class CachedVerdicts:
    classifier: str
    sha256: str
    fingerprint: str
    verdicts_json: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class ScanHold:
    event_id: str
    room_id: str
    mxcs: tuple[str, ...]
    reason: str
    attempts: int
    held_at: float
    due_at: float


class _Repo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


class VerdictCacheRepo(_Repo):
    async def get(self, classifier: str, sha256: str) -> CachedVerdicts | None:
        """The entry for (classifier, sha256), expired or not; the caller judges freshness."""
        async with self.sessions() as session:
            row = await session.get(VerdictCacheRow, (classifier, sha256))
            if row is None:
                return None
            return CachedVerdicts(
                row.classifier, row.sha256, row.fingerprint, row.verdicts_json, row.created_at, row.expires_at
            )

    async def put(self, classifier: str, sha256: str, fingerprint: str, verdicts_json: str, ttl: float) -> None:
        now = self._clock()
        values = {"fingerprint": fingerprint, "verdicts_json": verdicts_json, "created_at": now, "expires_at": now + ttl}
        stmt = self._insert(VerdictCacheRow).values(classifier=classifier, sha256=sha256, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["classifier", "sha256"], set_=values)
        async with self.sessions.begin() as session:
            await session.execute(stmt)

    async def flush(self, *, classifier: str | None = None, sha256: str | None = None, expired_only: bool = False) -> int:
        """Delete entries (all, or one classifier's, or one file's); returns how many."""
        stmt = delete(VerdictCacheRow)
        if classifier is not None:
            stmt = stmt.where(VerdictCacheRow.classifier == classifier)
        if sha256 is not None:
            stmt = stmt.where(VerdictCacheRow.sha256 == sha256.lower())
        if expired_only:
            stmt = stmt.where(VerdictCacheRow.expires_at <= self._clock())
        async with self.sessions.begin() as session:
            result = await session.execute(stmt)
            return int(result.rowcount or 0)


class HoldRepo(_Repo):
    async def hold(self, event_id: str, room_id: str, mxcs: Sequence[str], reason: str, delay: Callable[[int], float]) -> ScanHold:
        """Record a failed scan of a held event; the next re-scan is due after `delay(attempts)`."""
        now = self._clock()
        async with self.sessions.begin() as session:
            row = await session.get(ScanHoldRow, event_id, with_for_update=True)
            if row is None:
                row = ScanHoldRow(
                    event_id=event_id, room_id=room_id, mxcs_json="[]", reason=reason, attempts=0, held_at=now, due_at=now
                )
                session.add(row)
            held = list(dict.fromkeys([*json.loads(row.mxcs_json), *mxcs]))
            row.mxcs_json = json.dumps(held)
            row.reason = reason
            row.attempts += 1
            row.due_at = now + delay(row.attempts)
            return _hold(row)

    async def get(self, event_id: str) -> ScanHold | None:
        async with self.sessions() as session:
            row = await session.get(ScanHoldRow, event_id)
            return _hold(row) if row else None

    async def due(self, limit: int = 100) -> list[ScanHold]:
        async with self.sessions() as session:
            result = await session.execute(
                select(ScanHoldRow).where(ScanHoldRow.due_at <= self._clock()).order_by(ScanHoldRow.due_at).limit(limit)
            )
            return [_hold(row) for row in result.scalars()]

    async def all(self) -> list[ScanHold]:
        async with self.sessions() as session:
            result = await session.execute(select(ScanHoldRow).order_by(ScanHoldRow.held_at))
            return [_hold(row) for row in result.scalars()]

    async def release(self, event_id: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(delete(ScanHoldRow).where(ScanHoldRow.event_id == event_id))

    async def requeue(self, event_id: str) -> bool:
        """Put a held event back in the work queue's pending state; False if it is gone."""
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(EventRow)
                # "failed": the queue gave up on a re-scan's transient errors; the hold goes on.
                .where(EventRow.event_id == event_id, EventRow.status.in_(("held", "failed")))
                .values(status="pending", attempts=0, error=None)
            )
            return bool(result.rowcount)

    async def postpone(self, event_id: str, delay: float) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(ScanHoldRow).where(ScanHoldRow.event_id == event_id).values(due_at=self._clock() + delay)
            )


def _hold(row: ScanHoldRow) -> ScanHold:
    return ScanHold(
        row.event_id, row.room_id, tuple(json.loads(row.mxcs_json)), row.reason, row.attempts, row.held_at, row.due_at
    )

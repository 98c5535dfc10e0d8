"""The retroactive matching repository: each list's entries already matched against the
media history (table hash_list_seen), and the runs that matched them (table retro_runs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import dialect_insert, session_factory
from .tables import HashListSeenRow, RetroRunRow


@dataclass(frozen=True)
class RetroRun:
    id: int
    list_name: str
    started_at: float
    finished_at: float | None
    status: str
    new_entries: int
    media_checked: int
    media_matched: int
    events_acted: int
    detail: str | None


class RetroRepo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = dialect_insert(engine)

    async def seen_digests(self, list_name: str) -> list[str] | None:
        """The digest chunks recorded for a list, in order; None if it was never recorded."""
        query = select(HashListSeenRow.digests).where(HashListSeenRow.list_name == list_name).order_by(HashListSeenRow.chunk)
        async with self.sessions() as session:
            chunks = list((await session.execute(query)).scalars())
        return chunks or None

    async def replace_digests(self, list_name: str, chunks: Sequence[tuple[str, int]]) -> None:
        """Record a list's digest chunks ((hex, entries) each), replacing the previous ones.

        An empty list is recorded as one empty chunk, so that it reads back as seen.
        """
        now = self._clock()
        rows = [
            {"list_name": list_name, "chunk": i, "digests": digests, "entries": entries, "updated_at": now}
            for i, (digests, entries) in enumerate(chunks or [("", 0)])
        ]
        async with self.sessions.begin() as session:
            await session.execute(HashListSeenRow.__table__.delete().where(HashListSeenRow.list_name == list_name))
            await session.execute(self._insert(HashListSeenRow).values(rows))

    async def seen_lists(self) -> list[str]:
        """The names of the lists with entries recorded."""
        query = select(HashListSeenRow.list_name).distinct().order_by(HashListSeenRow.list_name)
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())

    async def forget_digests(self, list_name: str) -> bool:
        """Forget a list's recorded entries (all of them are new again); whether any were."""
        async with self.sessions.begin() as session:
            deleted = await session.execute(HashListSeenRow.__table__.delete().where(HashListSeenRow.list_name == list_name))
        return bool(deleted.rowcount)

    async def start_run(self, list_name: str, new_entries: int) -> int:
        async with self.sessions.begin() as session:
            row = RetroRunRow(
                list_name=list_name, started_at=self._clock(), status="running", new_entries=new_entries,
                media_checked=0, media_matched=0, events_acted=0,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def finish_run(
        self, run_id: int, *, status: str, media_checked: int, media_matched: int, events_acted: int, detail: str | None = None
    ) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(RetroRunRow)
                .where(RetroRunRow.id == run_id)
                .values(
                    status=status, finished_at=self._clock(), media_checked=media_checked,
                    media_matched=media_matched, events_acted=events_acted, detail=detail,
                )
            )

    async def runs(self, limit: int = 20) -> list[RetroRun]:
        """The latest runs first."""
        query = select(RetroRunRow).order_by(RetroRunRow.id.desc()).limit(limit)
        async with self.sessions() as session:
            return [
                RetroRun(
                    r.id, r.list_name, r.started_at, r.finished_at, r.status, r.new_entries,
                    r.media_checked, r.media_matched, r.events_acted, r.detail,
                )
                for r in (await session.execute(query)).scalars()
            ]

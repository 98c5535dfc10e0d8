"""The hash list state repository: what each list last loaded and what operators accepted."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..lists.guard import ListRecord
from .db import session_factory
from .tables import HashListStateRow


class ListStateRepo:
    """One row per list. The bot writes the loaded columns, `accept` the accepted ones:
    each writer sets only its own, so the two never undo each other."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def records(self) -> dict[str, ListRecord]:
        async with self.sessions() as session:
            rows = (await session.execute(select(HashListStateRow))).scalars()
            return {
                r.list_name: ListRecord(r.list_name, r.entries, r.digest, r.accepted_digest, r.accepted_by) for r in rows
            }

    async def record_loaded(self, name: str, entries: int, digest: str | None) -> None:
        await self._upsert(name, {"entries": entries, "digest": digest, "loaded_at": self._clock()})

    async def accept(self, name: str, digest: str, by: str) -> None:
        await self._upsert(name, {"accepted_digest": digest, "accepted_by": by, "accepted_at": self._clock()})

    async def _upsert(self, name: str, values: dict[str, object]) -> None:
        stmt = self._insert(HashListStateRow).values(list_name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["list_name"], set_=values)
        async with self.sessions.begin() as session:
            await session.execute(stmt)

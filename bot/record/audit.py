"""The audit repository: the append-only log of what modbot found and did, and why."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import session_factory
from .direct import AsyncRunner, TransactionRunner
from .journal import audit_row
from .rawsql import Hot
from .tables import AuditRow


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: float
    category: str
    outcome: str
    message: str
    event_id: str | None
    room_id: str | None
    sender: str | None
    mxc: str | None


class AuditRepo:
    """Writes and reads the audit table.

    `source` names who writes (retroactive matching says "retroactive"): each message it
    writes starts with it, unless the message names it already.
    """

    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float] = time.time, *, source: str | None = None,
        runner: TransactionRunner | None = None,
    ) -> None:
        self.engine = engine
        self._runner = runner or AsyncRunner(engine)  # every action writes here (direct.py)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self.source = source
        self._insert = Hot(insert(AuditRow.__table__))  # SQLite's own cursor where it can (rawsql.py)

    async def write(
        self,
        category: str,
        outcome: str,
        message: str,
        *,
        event_id: str | None = None,
        room_id: str | None = None,
        sender: str | None = None,
        mxc: str | None = None,
    ) -> None:
        row = self.row(category, outcome, message, event_id=event_id, room_id=room_id, sender=sender, mxc=mxc)
        await self._runner.run(lambda conn: self._insert.execute(conn, row))

    def row(
        self,
        category: str,
        outcome: str,
        message: str,
        *,
        event_id: str | None = None,
        room_id: str | None = None,
        sender: str | None = None,
        mxc: str | None = None,
    ) -> dict[str, Any]:
        """The row `write` would insert, stamped now, for a transaction of another repository."""
        if self.source and self.source not in message:
            message = f"{self.source}: {message}"
        return audit_row(self._clock(), category, outcome, message, event_id, room_id, sender, mxc)

    async def log(self, *, event_id: str | None = None, category: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """The latest entries first, of one event or one category if given."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if event_id is not None:
            query = query.where(AuditRow.event_id == event_id)
        if category is not None:
            query = query.where(AuditRow.category == category)
        async with self.sessions() as session:
            return [
                AuditEntry(r.id, r.ts, r.category, r.outcome, r.message, r.event_id, r.room_id, r.sender, r.mxc)
                for r in (await session.execute(query)).scalars()
            ]

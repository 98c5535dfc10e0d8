"""Users' reports read from Synapse: which were seen (so each is carded once, across
restarts), their cards, and how moderators resolved them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import session_factory
from .tables import UserReportRow

NEW, OPEN, ACTED, RESOLVED, DISMISSED = "new", "open", "acted", "resolved", "dismissed"


@dataclass(frozen=True)
class UserReport:
    id: int  # modbot's number, the one commands take
    kind: str  # event | user
    report_id: str  # Synapse's
    received_ts: int | None
    detail: dict[str, Any]
    status: str
    card_event_id: str | None
    seen_at: float
    resolved_by: str | None = None


class ReportRepo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def seen(self, kind: str, report_ids: Sequence[str]) -> set[str]:
        if not report_ids:
            return set()
        query = select(UserReportRow.report_id).where(UserReportRow.kind == kind, UserReportRow.report_id.in_(list(report_ids)))
        async with self.sessions() as session:
            return set((await session.execute(query)).scalars())

    async def add(self, kind: str, report_id: str, received_ts: int | None, detail: dict[str, Any]) -> bool:
        """Remember a report (status new); False if it was seen before."""
        statement = self._insert(UserReportRow).values(
            kind=kind, report_id=report_id, received_ts=received_ts, detail_json=json.dumps(detail, sort_keys=True),
            status=NEW, seen_at=self._clock(),
        ).on_conflict_do_nothing(index_elements=["kind", "report_id"])
        async with self.sessions.begin() as session:
            return bool((await session.execute(statement)).rowcount)

    async def unfinished(self) -> list[UserReport]:
        """Reports remembered but not carded yet (a crash in between): oldest first."""
        query = select(UserReportRow).where(UserReportRow.status == NEW).order_by(UserReportRow.id)
        async with self.sessions() as session:
            return [_report(r) for r in (await session.execute(query)).scalars()]

    async def by_synapse_id(self, kind: str, report_id: str) -> UserReport | None:
        query = select(UserReportRow).where(UserReportRow.kind == kind, UserReportRow.report_id == report_id)
        async with self.sessions() as session:
            row = (await session.execute(query)).scalar_one_or_none()
            return _report(row) if row else None

    async def by_card(self, card_event_id: str) -> UserReport | None:
        query = select(UserReportRow).where(UserReportRow.card_event_id == card_event_id)
        async with self.sessions() as session:
            row = (await session.execute(query)).scalars().first()
            return _report(row) if row else None

    async def get(self, id_: int) -> UserReport | None:
        async with self.sessions() as session:
            row = await session.get(UserReportRow, id_)
            return _report(row) if row else None

    async def carded(self, id_: int, *, status: str, card_event_id: str | None, detail: dict[str, Any]) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(UserReportRow).where(UserReportRow.id == id_).values(
                    status=status, card_event_id=card_event_id, detail_json=json.dumps(detail, sort_keys=True)
                )
            )

    async def resolve(self, id_: int, status: str, by: str) -> bool:
        """Close an open report; False when it is not open (resolved already, or unknown)."""
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(UserReportRow).where(UserReportRow.id == id_, UserReportRow.status == OPEN).values(
                    status=status, resolved_by=by, resolved_at=self._clock()
                )
            )
            return bool(result.rowcount)

    async def count_cards(self) -> dict[str, int]:
        async with self.sessions() as session:
            rows = (await session.execute(select(UserReportRow.status))).scalars()
            counts: dict[str, int] = {}
            for status in rows:
                counts[status] = counts.get(status, 0) + 1
            return counts


def _report(row: UserReportRow) -> UserReport:
    return UserReport(
        id=row.id, kind=row.kind, report_id=row.report_id, received_ts=row.received_ts, detail=json.loads(row.detail_json),
        status=row.status, card_event_id=row.card_event_id, seen_at=row.seen_at, resolved_by=row.resolved_by,
    )

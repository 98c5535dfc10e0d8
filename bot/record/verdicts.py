"""The verdict repository: what each classifier said of each piece of media in each event."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..model import Verdict
from .db import dialect_insert, session_factory
from .journal import verdict_rows
from .tables import VerdictRow


@dataclass(frozen=True)
class VerdictRecord:
    event_id: str
    mxc: str
    classifier: str
    kind: str
    list_name: str
    label: str
    hash_type: str | None
    distance: int | None


def verdict_insert(engine: AsyncEngine) -> Any:
    """The insert of verdict rows; a row recorded before (a replayed event) is left as it is."""
    return dialect_insert(engine)(VerdictRow.__table__).on_conflict_do_nothing()


class VerdictRepo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = verdict_insert(engine)

    async def record(self, event_id: str, mxc: str, classifier: str, verdicts: Sequence[Verdict]) -> None:
        """Record what a classifier found; an empty `verdicts` is recorded as "no match"."""
        async with self.engine.begin() as conn:
            await conn.execute(self._insert, verdict_rows(event_id, mxc, classifier, verdicts, self._clock()))

    async def list(self, *, event_id: str | None = None, mxc: str | None = None) -> list[VerdictRecord]:
        query = select(VerdictRow).order_by(VerdictRow.id)
        if event_id is not None:
            query = query.where(VerdictRow.event_id == event_id)
        if mxc is not None:
            query = query.where(VerdictRow.mxc == mxc)
        async with self.sessions() as session:
            return [
                VerdictRecord(r.event_id, r.mxc, r.classifier, r.kind, r.list_name, r.label, r.hash_type, r.distance)
                for r in (await session.execute(query)).scalars()
            ]

    async def matched(self, event_ids: Sequence[str]) -> set[tuple[str, str, str, str, str]]:
        """(event_id, mxc, classifier, list_name, label) of the matches recorded for these events."""
        found: set[tuple[str, str, str, str, str]] = set()
        async with self.sessions() as session:
            for start in range(0, len(event_ids), 500):
                query = select(
                    VerdictRow.event_id, VerdictRow.mxc, VerdictRow.classifier, VerdictRow.list_name, VerdictRow.label
                ).where(VerdictRow.event_id.in_(event_ids[start : start + 500]), VerdictRow.kind != "no_match")
                found.update(tuple(r) for r in (await session.execute(query)).all())
        return found

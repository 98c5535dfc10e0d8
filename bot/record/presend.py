"""What the pre-send endpoint has answered, per outcome: a count and when it was last seen.

`modbot check` reads it to say whether Synapse calls the endpoint (last ping, last check);
`status` shows the counts. The endpoint counts in memory and flushes here every few
seconds, so that a check never waits for the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import dialect_insert
from .tables import PresendStatRow


@dataclass(frozen=True)
class PresendStat:
    outcome: str
    count: int
    last_at: float


class PresendStatsRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = dialect_insert(engine)

    async def add(self, deltas: Mapping[str, tuple[int, float]]) -> None:
        """Add `count` to each outcome's total and move its `last_at` forward."""
        if not deltas:
            return
        table = PresendStatRow.__table__
        async with self.engine.begin() as conn:
            for outcome, (count, last_at) in sorted(deltas.items()):
                statement = self._insert(table).values(outcome=outcome, count=count, last_at=last_at)
                statement = statement.on_conflict_do_update(
                    index_elements=["outcome"],
                    set_={"count": table.c.count + count, "last_at": statement.excluded.last_at},
                )
                await conn.execute(statement)

    async def all(self) -> dict[str, PresendStat]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(PresendStatRow.__table__))).all()
        return {row.outcome: PresendStat(row.outcome, int(row.count), float(row.last_at)) for row in rows}

"""The suspended-uploads repository: which users modbot suspended, and how far their uploads were checked.

A row is started when modbot sees that it suspended a user (the `suspend` actions it carried
out), advanced as their uploads are quarantined, and stopped when the user is unsuspended; a
later suspension starts it again from then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import desc, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .actions import OK
from .db import dialect_insert, session_factory
from .tables import ActionRow, SuspendedUploadRow

SUSPEND, UNSUSPEND = "suspend", "unsuspend"


@dataclass(frozen=True)
class SuspensionChange:
    """The latest suspend or unsuspend modbot carried out for a user."""

    user_id: str
    suspended: bool
    at: float


@dataclass(frozen=True)
class WatchedUser:
    user_id: str
    suspended_at: float
    watermark_ms: int
    quarantined: int
    stopped_at: float | None

    @property
    def active(self) -> bool:
        return self.stopped_at is None


class SuspendedUploadRepo:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = dialect_insert(engine)

    async def latest_changes(self, limit: int) -> list[SuspensionChange]:
        """Per user, the latest suspension or unsuspension modbot made (policy or command), from
        the `limit` most recent ones. A policy's `suspend` operation may also lift one."""
        query = (
            select(ActionRow.kind, ActionRow.target, ActionRow.updated_at, ActionRow.operation)
            .where(ActionRow.kind.in_((SUSPEND, UNSUSPEND)), ActionRow.status == OK)
            .order_by(desc(ActionRow.updated_at)).limit(limit)
        )
        async with self.sessions() as s:
            rows = (await s.execute(query)).all()
        latest: dict[str, SuspensionChange] = {}
        for kind, target, at, operation in rows:
            if target in latest:
                continue
            lifted = kind == UNSUSPEND or _lifts(operation)
            latest[target] = SuspensionChange(target, not lifted, at)
        return list(latest.values())

    async def watched(self) -> list[WatchedUser]:
        async with self.sessions() as s:
            rows = (await s.execute(select(SuspendedUploadRow).order_by(SuspendedUploadRow.user_id))).scalars()
            return [_user(r) for r in rows]

    async def start(self, user_id: str, suspended_at: float, watermark_ms: int) -> None:
        """Watch `user_id`'s uploads created after `watermark_ms` (again, after a stop)."""
        values = {"suspended_at": suspended_at, "watermark_ms": watermark_ms, "quarantined": 0, "stopped_at": None}
        stmt = self._insert(SuspendedUploadRow).values(user_id=user_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_=values)
        async with self.sessions.begin() as s:
            await s.execute(stmt)

    async def advance(self, user_id: str, watermark_ms: int, quarantined: int) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(SuspendedUploadRow).where(SuspendedUploadRow.user_id == user_id).values(
                    watermark_ms=watermark_ms, quarantined=SuspendedUploadRow.quarantined + quarantined,
                )
            )

    async def stop(self, user_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(SuspendedUploadRow).where(SuspendedUploadRow.user_id == user_id).values(stopped_at=self._clock())
            )


def _lifts(operation: str | None) -> bool:
    """Whether a stored `suspend` operation (bot/act/operations.py) unsuspends."""
    try:
        data = json.loads(operation) if operation else {}
    except ValueError:
        return False
    args = data.get("args") if isinstance(data, dict) else None
    return isinstance(args, dict) and args.get("suspend") == "false"


def _user(r: SuspendedUploadRow) -> WatchedUser:
    return WatchedUser(r.user_id, r.suspended_at, r.watermark_ms, r.quarantined, r.stopped_at)

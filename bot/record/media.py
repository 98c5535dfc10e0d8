"""The media repository: what modbot knows of each piece of media (its hashes, never its
bytes) and which events carried it, as scans and retroactive matching read it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..model import Hashes
from .db import dialect_insert, session_factory
from .direct import AsyncRunner, TransactionRunner
from .journal import hashes_from_columns, media_hash_columns
from .tables import EventMediaRow, EventRow, MediaRow


@dataclass(frozen=True)
class StoredMedia:
    mxc: str
    status: str
    hashes: Hashes | None
    mimetype: str | None
    error: str | None


@dataclass(frozen=True)
class MediaEvent:
    """An event that carried a piece of media, as retroactive matching needs it."""

    mxc: str
    source: str  # where in the event: "content.url", "content.info.thumbnail_url"...
    event_id: str
    room_id: str
    sender: str
    origin_server_ts: int | None
    status: str  # the event's processing status


@dataclass(frozen=True)
class MediaWrites:
    """The media table's upserts (without hashes, and with: a row keeps hashes it has) and
    the insert of event-media links, built once per dialect."""

    unhashed: Any
    hashed: Any
    link: Any

    @classmethod
    def build(cls, engine: AsyncEngine) -> MediaWrites:
        upsert = dialect_insert(engine)(MediaRow.__table__)
        status_columns = ("status", "mimetype", "error", "last_scanned")
        hash_columns = tuple(media_hash_columns(Hashes(sha256="", md5=None, size=0)))
        return cls(
            unhashed=upsert.on_conflict_do_update(
                index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns}
            ),
            hashed=upsert.on_conflict_do_update(
                index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns + hash_columns}
            ),
            link=dialect_insert(engine)(EventMediaRow.__table__).on_conflict_do_nothing(),
        )


class MediaRepo:
    """Reads the media table and the event-media links; EventJournal writes them."""

    def __init__(self, engine: AsyncEngine, runner: TransactionRunner | None = None) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._runner = runner or AsyncRunner(engine)  # get() is on every event's path (direct.py)
        media = MediaRow.__table__
        self._by_mxc = select(media).where(media.c.mxc == bindparam("b_mxc"))

    async def get(self, mxc: str) -> StoredMedia | None:
        def read(conn: Connection) -> StoredMedia | None:
            row = conn.execute(self._by_mxc, {"b_mxc": mxc}).first()
            return stored_media(row) if row else None

        return await self._runner.run(read)

    async def of_event(self, event_id: str) -> list[str]:
        """The mxcs an event carried."""
        async with self.sessions() as session:
            result = await session.execute(select(EventMediaRow.mxc).where(EventMediaRow.event_id == event_id))
            return list(result.scalars())

    async def count_hashed(self) -> int:
        async with self.sessions() as session:
            query = select(func.count()).select_from(MediaRow).where(MediaRow.sha256.is_not(None))
            return int((await session.execute(query)).scalar_one())

    async def hashed_page(self, after: str | None, limit: int) -> list[StoredMedia]:
        """Media with hashes, in mxc order, after the mxc `after`: the history, page by page."""
        query = select(MediaRow).where(MediaRow.sha256.is_not(None)).order_by(MediaRow.mxc).limit(limit)
        if after is not None:
            query = query.where(MediaRow.mxc > after)
        async with self.sessions() as session:
            return [stored_media(r) for r in (await session.execute(query)).scalars()]

    async def with_hashes(self, hash_type: str, values: Sequence[str]) -> list[StoredMedia]:
        """Media whose `hash_type` (sha256, md5 or sha1) is one of `values` (lower-case hex)."""
        column = {"sha256": MediaRow.sha256, "md5": MediaRow.md5, "sha1": MediaRow.sha1}[hash_type]
        found: list[StoredMedia] = []
        async with self.sessions() as session:
            for start in range(0, len(values), 500):
                query = select(MediaRow).where(column.in_(values[start : start + 500]))
                found.extend(stored_media(r) for r in (await session.execute(query)).scalars())
        return found

    async def events_with(self, mxcs: Sequence[str]) -> list[MediaEvent]:
        """The events that carried any of `mxcs`, oldest first."""
        found: list[MediaEvent] = []
        async with self.sessions() as session:
            for start in range(0, len(mxcs), 500):
                query = (
                    select(EventMediaRow.mxc, EventMediaRow.source, EventRow)
                    .join(EventRow, EventRow.event_id == EventMediaRow.event_id)
                    .where(EventMediaRow.mxc.in_(mxcs[start : start + 500]))
                    .order_by(EventRow.received_at)
                )
                for mxc, source, row in (await session.execute(query)).all():
                    ts = json.loads(row.event_json).get("origin_server_ts")
                    found.append(
                        MediaEvent(mxc, source, row.event_id, row.room_id, row.sender, ts if isinstance(ts, int) else None, row.status)
                    )
        return found


def stored_media(row: Any) -> StoredMedia:  # a MediaRow, or a Core row of the media table
    hashes = hashes_from_columns(lambda column: getattr(row, column))
    return StoredMedia(row.mxc, row.status, hashes, row.mimetype, row.error)

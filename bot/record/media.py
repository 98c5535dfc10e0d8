"""The media repository: what modbot knows of each piece of media (its hashes, never its
bytes) and which events carried it, as scans and retroactive matching read it."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..model import Hashes
from .db import dialect_insert, session_factory
from .direct import AsyncRunner, TransactionRunner
from .journal import MediaSeen, hashes_from_columns, media_hash_columns
from .rawsql import Hot, driver
from .tables import EventMediaRow, EventRow, MediaRow


@dataclass(frozen=True)
class StoredMedia:
    mxc: str
    status: str
    hashes: Hashes | None
    mimetype: str | None
    error: str | None


class RecentHashes:
    """The latest media hashed by this process, by mxc (an mxc's content never changes), and
    how many it has forgotten to stay within `size`.

    Media this process hashed after a MediaSeen was read is here unless forgotten since, so
    while `forgotten` has not moved, that MediaSeen and this cache together say what a
    lookup of the media table would (what other processes wrote since is only hashed again).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.forgotten = 0
        self._hashes: OrderedDict[str, Hashes] = OrderedDict()

    def get(self, mxc: str) -> Hashes | None:
        return self._hashes.get(mxc)

    def lookup(self, mxc: str, seen: MediaSeen | None) -> tuple[bool, Hashes | None]:
        """(True, hashes) from this cache, else from `seen` while nothing was forgotten since
        it was read (hashes None: media not hashed yet); (False, None): ask the database."""
        hashes = self._hashes.get(mxc)
        if hashes is not None:
            return True, hashes
        if seen is not None and seen.forgotten == self.forgotten and mxc in seen.hashes:
            return True, seen.hashes[mxc]
        return False, None

    def put(self, mxc: str, hashes: Hashes) -> None:
        self._hashes[mxc] = hashes
        while len(self._hashes) > self.size:
            self._hashes.popitem(last=False)
            self.forgotten += 1

    def __len__(self) -> int:
        return len(self._hashes)


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

    unhashed: Hot
    hashed: Hot
    link: Hot

    @classmethod
    def build(cls, engine: AsyncEngine) -> MediaWrites:
        upsert = dialect_insert(engine)(MediaRow.__table__)
        status_columns = ("status", "mimetype", "error", "last_scanned")
        hash_columns = tuple(media_hash_columns(Hashes(sha256="", md5=None, size=0)))
        return cls(
            unhashed=Hot(upsert.on_conflict_do_update(
                index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns}
            )),
            hashed=Hot(upsert.on_conflict_do_update(
                index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns + hash_columns}
            )),
            link=Hot(dialect_insert(engine)(EventMediaRow.__table__).on_conflict_do_nothing()),
        )


def media_hashes(conn: Connection, mxcs: Sequence[str]) -> dict[str, Hashes | None]:
    """The media table's hashes of `mxcs` (None: no row, or no hashes), within the caller's transaction."""
    found: dict[str, Hashes | None] = dict.fromkeys(mxcs)
    unique = list(found)
    if driver(conn) is not None:
        # SQLite's own cursor, one mxc at a time: a statement there costs microseconds,
        # and one form of it compiles once (an IN list has a form per length).
        for mxc in unique:
            for row in _BY_MXC.rows(conn, {"b_mxc": mxc}):
                found[mxc] = hashes_from_columns(row.get)
        return found
    for start in range(0, len(unique), 500):  # within any database's limit on parameters
        for row in conn.execute(_BY_MXCS, {"b_mxcs": unique[start : start + 500]}):
            found[row.mxc] = stored_media(row).hashes
    return found


# Built once (every transaction of the intake reads it): SQLAlchemy then only binds the list.
_BY_MXCS = select(MediaRow.__table__).where(MediaRow.__table__.c.mxc.in_(bindparam("b_mxcs", expanding=True)))
_BY_MXC = Hot(select(MediaRow.__table__).where(MediaRow.__table__.c.mxc == bindparam("b_mxc")))


class MediaRepo:
    """Reads the media table and the event-media links; EventJournal writes them."""

    def __init__(self, engine: AsyncEngine, runner: TransactionRunner | None = None) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._runner = runner or AsyncRunner(engine)  # get() is on every event's path (direct.py)

    async def get(self, mxc: str) -> StoredMedia | None:
        def read(conn: Connection) -> StoredMedia | None:
            rows = _BY_MXC.rows(conn, {"b_mxc": mxc})
            return stored_media(SimpleNamespace(**rows[0])) if rows else None

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

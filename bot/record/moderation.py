"""Repositories for what moderators change: protected rooms, settings, the allowlist, the review
queue and the incident log (append-only, hash-chained with a key: bot/record/chain.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .chain import (
    GENESIS,
    KEYED,
    ChainReport,
    Link,
    RetentionMark,
    canonical_record,
    keyed_hash,
    legacy_hash,
    mark_mac,
    verify_links,
)
from .db import session_factory
from .direct import TransactionRunner, transaction_runner
from .rawsql import Hot
from .tables import AllowRow, AuditRow, IncidentRow, ProtectedRoomRow, ReviewRow, SettingRow

# The retention mark (prev_hash of the oldest row kept after a purge, keyed); the setting's
# name predates the anchors kept outside the database (bot/record/evidence.py).
ANCHOR_KEY = "incidents.anchor"
incident_hash = legacy_hash  # the plain SHA-256 link of rows from before the key
_INCIDENTS = IncidentRow.__table__
_INCIDENT_INSERT = Hot(_INCIDENTS.insert())
_SETTINGS = SettingRow.__table__
_AUDIT_INSERT = Hot(AuditRow.__table__.insert())


@dataclass(frozen=True)
class AllowEntry:
    id: int
    hash_type: str
    hash: str
    reason: str
    added_by: str
    added_at: float


@dataclass(frozen=True)
class ReviewItem:
    id: int
    event_id: str
    room_id: str
    sender: str
    rule: str
    detail: dict[str, Any]
    held: bool
    status: str
    created_at: float
    resolved_by: str | None
    resolved_at: float | None
    card_event_id: str | None


@dataclass(frozen=True)
class Incident:
    id: int
    event_id: str
    record: dict[str, Any]
    created_at: float
    prev_hash: str
    row_hash: str


class ChainHead(NamedTuple):
    """The chain's head: rows held, the newest row's id and hash; an empty chain is (0, 0,
    the retention mark's hash or GENESIS)."""

    count: int
    head_id: int
    head_hash: str


# What to call after each new incident row (the anchor file, publishing), with the head the
# row made, read in the row's own transaction.
OnIncident = Callable[[Incident, ChainHead], Awaitable[None]]


class ModerationStore:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float] = time.time, runner: TransactionRunner | None = None
    ) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # Appending an incident (with the head it made) and reading the chain's head: one trip each (direct.py).
        self._runner = runner or transaction_runner(engine)
        # On an SQLite file these run on the driver's own cursor (rawsql.py).
        self._incident_of_event = Hot(select(_INCIDENTS).where(_INCIDENTS.c.event_id == bindparam("b_event_id")))
        self._last_incident = Hot(
            select(_INCIDENTS.c.id, _INCIDENTS.c.row_hash).order_by(_INCIDENTS.c.id.desc()).limit(1)
        )
        self._count_incidents = Hot(select(func.count().label("n")).select_from(_INCIDENTS))
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # One writer of the incident chain at a time: each row needs the previous row's hash.
        self._chain_lock = asyncio.Lock()
        self._chain_key: bytes | None = None
        self._on_incident: OnIncident | None = None

    # --- protected rooms and settings --------------------------------------------------------

    async def set_protected(self, room_id: str, protected: bool, by: str) -> None:
        values = {"protected": protected, "changed_by": by, "changed_at": self._clock()}
        async with self.sessions.begin() as s:
            await s.execute(
                self._insert(ProtectedRoomRow)
                .values(room_id=room_id, **values)
                .on_conflict_do_update(index_elements=["room_id"], set_=values)
            )

    async def protection_overrides(self) -> dict[str, bool]:
        async with self.sessions() as s:
            rows = (await s.execute(select(ProtectedRoomRow))).scalars()
            return {r.room_id: r.protected for r in rows}

    async def set_setting(self, key: str, value: Any, by: str) -> None:
        values = {"value": json.dumps(value), "changed_by": by, "changed_at": self._clock()}
        async with self.sessions.begin() as s:
            await s.execute(
                self._insert(SettingRow).values(key=key, **values).on_conflict_do_update(index_elements=["key"], set_=values)
            )

    async def delete_setting(self, key: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(delete(SettingRow).where(SettingRow.key == key))

    async def settings(self, prefix: str = "") -> dict[str, Any]:
        async with self.sessions() as s:
            rows = (await s.execute(select(SettingRow).where(SettingRow.key.startswith(prefix, autoescape=True)))).scalars()
            return {r.key: json.loads(r.value) for r in rows}

    # --- allowlist -------------------------------------------------------------------------------

    async def allow(self, hash_type: str, hash_: str, reason: str, by: str) -> AllowEntry:
        async with self.sessions.begin() as s:
            await s.execute(
                self._insert(AllowRow)
                .values(hash_type=hash_type, hash=hash_.lower(), reason=reason, added_by=by, added_at=self._clock())
                .on_conflict_do_nothing(index_elements=["hash_type", "hash"])
            )
            row = (
                await s.execute(select(AllowRow).where(AllowRow.hash_type == hash_type, AllowRow.hash == hash_.lower()))
            ).scalar_one()
            return _allow(row)

    async def allowlist(self) -> list[AllowEntry]:
        async with self.sessions() as s:
            return [_allow(r) for r in (await s.execute(select(AllowRow).order_by(AllowRow.id))).scalars()]

    async def remove_allowed(self, key: str) -> int:
        """Remove by id or by hash; returns how many entries were removed."""
        # An id fits an INTEGER column; 64 hex digits (even if all decimal) are a hash.
        is_id = key.isascii() and key.isdigit() and len(key) <= 9
        cond = AllowRow.id == int(key) if is_id else AllowRow.hash == key.lower()
        async with self.sessions.begin() as s:
            return (await s.execute(delete(AllowRow).where(cond))).rowcount or 0

    # --- review queue ------------------------------------------------------------------------------

    async def open_review(
        self, *, event_id: str, room_id: str, sender: str, rule: str, detail: dict[str, Any], held: bool
    ) -> ReviewItem:
        """Open a review item for an event; an event already under review keeps its item."""
        async with self.sessions.begin() as s:
            await s.execute(
                self._insert(ReviewRow)
                .values(
                    event_id=event_id, room_id=room_id, sender=sender, rule=rule, detail_json=json.dumps(detail),
                    held=held, status="open", created_at=self._clock(),
                )
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            row = (await s.execute(select(ReviewRow).where(ReviewRow.event_id == event_id))).scalar_one()
            return _review(row)

    async def review(self, review_id: int) -> ReviewItem | None:
        async with self.sessions() as s:
            row = await s.get(ReviewRow, review_id)
            return _review(row) if row else None

    async def reviews(self, status: str | None = "open", limit: int = 50) -> list[ReviewItem]:
        query = select(ReviewRow).order_by(ReviewRow.id).limit(limit)
        if status:
            query = query.where(ReviewRow.status == status)
        async with self.sessions() as s:
            return [_review(r) for r in (await s.execute(query)).scalars()]

    async def resolve_review(self, review_id: int, status: str, by: str) -> bool:
        """Close an open item; False when it was not open (resolved twice, or unknown)."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(ReviewRow)
                .where(ReviewRow.id == review_id, ReviewRow.status == "open")
                .values(status=status, resolved_by=by, resolved_at=self._clock())
            )
            return (result.rowcount or 0) == 1

    async def set_review_card(self, review_id: int, card_event_id: str) -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(ReviewRow).where(ReviewRow.id == review_id).values(card_event_id=card_event_id))

    # --- incidents -----------------------------------------------------------------------------------

    def use_chain_key(self, key: bytes, on_incident: OnIncident | None = None) -> None:
        """The key new incident rows are keyed with (bot/record/evidence.py loads it), and what to
        call after each new row (the anchor file)."""
        self._chain_key = key
        self._on_incident = on_incident

    async def append_incident(
        self, event_id: str, record: dict[str, Any], audit: Callable[[Incident], dict[str, Any]] | None = None
    ) -> Incident:
        """Append an incident (once per event) to the keyed hash chain, in one transaction,
        with the audit row `audit` makes of it (Store.audit_row), if given."""
        if self._chain_key is None:
            raise RuntimeError("no chain key: incidents are keyed (bot/record/evidence.py open_chain_key)")
        key = self._chain_key
        record_json = canonical_record(record)

        def append(conn: Connection) -> tuple[Incident, ChainHead | None]:
            # SQLAlchemy Core in one trip (direct.py): every known post records one, and the
            # ORM session took some twenty trips to aiosqlite's thread for these statements.
            # The head the callback anchors is read here too: a trip of its own was one of
            # the dozen a known post costs.
            existing = self._incident_of_event.first(conn, {"b_event_id": event_id})
            incident = _incident(existing) if existing is not None else new_row(conn)
            if audit is not None:
                _AUDIT_INSERT.execute(conn, audit(incident))
            return incident, self._head(conn) if self._on_incident is not None else None

        def new_row(conn: Connection) -> Incident:
            last = self._last_incident.first(conn, {})
            if last is not None:
                prev_hash, new_id = last.row_hash, last.id + 1
            else:
                mark = _retention_mark_of(conn)
                prev_hash, new_id = (mark.prev_hash, mark.next_id) if mark else (GENESIS, 1)
            now = self._clock()
            row_hash = keyed_hash(key, prev_hash, new_id, event_id, now, record_json)
            _INCIDENT_INSERT.execute(
                conn,
                {
                    "id": new_id, "event_id": event_id, "record_json": record_json, "created_at": now,
                    "prev_hash": prev_hash, "row_hash": row_hash, "chain_scheme": KEYED,
                },
            )
            return Incident(new_id, event_id, json.loads(record_json), now, prev_hash, row_hash)

        async with self._chain_lock:
            incident, head = await self._runner.run(append)
            if self._on_incident is not None and head is not None:
                await self._on_incident(incident, head)
            return incident

    async def incident(self, incident_id: int) -> Incident | None:
        async with self.sessions() as s:
            row = await s.get(IncidentRow, incident_id)
            return _incident(row) if row else None

    async def incidents(self, *, since: float | None = None, limit: int | None = None) -> list[Incident]:
        query = select(IncidentRow).order_by(IncidentRow.id)
        if since is not None:
            query = query.where(IncidentRow.created_at >= since)
        if limit is not None:
            query = query.limit(limit)
        async with self.sessions() as s:
            return [_incident(r) for r in (await s.execute(query)).scalars()]

    async def chain(self) -> tuple[list[Link], RetentionMark | None]:
        """Every row as a chain link, in id order, and the retention mark."""
        async with self.sessions() as s:
            mark = await self._retention_mark(s)
            rows = (await s.execute(select(IncidentRow).order_by(IncidentRow.id))).scalars()
            return [_link(r) for r in rows], mark

    async def chain_head(self) -> ChainHead:
        """The chain's head now, in one trip (direct.py)."""
        return await self._runner.run(self._head)

    def _head(self, conn: Connection) -> ChainHead:
        count = self._count_incidents.first(conn, {}).n
        last = self._last_incident.first(conn, {})
        if last is not None:
            return ChainHead(count, last.id, last.row_hash)
        mark = _retention_mark_of(conn)
        return ChainHead(0, 0, mark.prev_hash if mark else GENESIS)

    async def keyed_evidence(self) -> Link | RetentionMark | None:
        """The newest keyed row, else a keyed retention mark: proof the chain has been keyed."""
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(IncidentRow).where(IncidentRow.chain_scheme == KEYED).order_by(IncidentRow.id.desc()).limit(1)
                )
            ).scalar_one_or_none()
            if row is not None:
                return _link(row)
            mark = await self._retention_mark(s)
            return mark if mark is not None and mark.mac is not None else None

    async def verify_chain(self, key: bytes | None = None) -> ChainReport:
        links, mark = await self.chain()
        return verify_links(links, key if key is not None else self._chain_key, mark)

    async def purge_incidents_before(self, cutoff: float) -> int:
        """Retention: drop the oldest incidents; the chain stays verifiable from its new start.

        The new start is a retention mark authenticated with the key, so that anchors of
        purged rows are accepted, and nobody without the key can pass a deletion off as one.
        """
        if self._chain_key is None:
            raise RuntimeError("no chain key: the retention mark is keyed")
        async with self._chain_lock, self.sessions.begin() as s:
            old = (
                await s.execute(select(IncidentRow).where(IncidentRow.created_at < cutoff).order_by(IncidentRow.id))
            ).scalars().all()
            if not old:
                return 0
            last = old[-1]
            mark = {
                "prev_hash": last.row_hash,
                "next_id": last.id + 1,
                "mac": mark_mac(self._chain_key, last.row_hash, last.id + 1),
            }
            values = {"value": json.dumps(mark), "changed_by": "retention", "changed_at": self._clock()}
            await s.execute(
                self._insert(SettingRow).values(key=ANCHOR_KEY, **values).on_conflict_do_update(index_elements=["key"], set_=values)
            )
            await s.execute(delete(IncidentRow).where(IncidentRow.id <= last.id))
            return len(old)

    @staticmethod
    async def _retention_mark(s: AsyncSession) -> RetentionMark | None:
        row = await s.get(SettingRow, ANCHOR_KEY)
        if row is None:
            return None
        data = json.loads(row.value)
        return RetentionMark(data["prev_hash"], data["next_id"], data.get("mac"))


def _retention_mark_of(conn: Connection) -> RetentionMark | None:
    value = conn.execute(select(_SETTINGS.c.value).where(_SETTINGS.c.key == ANCHOR_KEY)).scalar_one_or_none()
    if value is None:
        return None
    data = json.loads(value)
    return RetentionMark(data["prev_hash"], data["next_id"], data.get("mac"))


def _allow(r: AllowRow) -> AllowEntry:
    return AllowEntry(r.id, r.hash_type, r.hash, r.reason, r.added_by, r.added_at)


def _review(r: ReviewRow) -> ReviewItem:
    return ReviewItem(
        r.id, r.event_id, r.room_id, r.sender, r.rule, json.loads(r.detail_json), r.held, r.status,
        r.created_at, r.resolved_by, r.resolved_at, r.card_event_id,
    )


def _incident(r: Any) -> Incident:  # an IncidentRow, or a Core row of the incidents table
    return Incident(r.id, r.event_id, json.loads(r.record_json), r.created_at, r.prev_hash, r.row_hash)


def _link(r: IncidentRow) -> Link:
    return Link(r.id, r.event_id, r.created_at, r.record_json, r.prev_hash, r.row_hash, r.chain_scheme)

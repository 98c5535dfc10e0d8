"""Repositories for what moderators change: protected rooms, settings, the allowlist, the review
queue and the incident log (append-only, hash-chained)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import session_factory
from .tables import AllowRow, IncidentRow, ProtectedRoomRow, ReviewRow, SettingRow

GENESIS = "0" * 64
ANCHOR_KEY = "incidents.anchor"  # prev_hash of the oldest row kept after a retention purge


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


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_id: int | None
    message: str


def incident_hash(prev_hash: str, id_: int, event_id: str, created_at: float, record_json: str) -> str:
    canonical = json.dumps(
        {"id": id_, "event_id": event_id, "created_at": repr(created_at), "record": record_json},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev_hash + "\n" + canonical).encode()).hexdigest()


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ModerationStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # One writer of the incident chain at a time: each row needs the previous row's hash.
        self._chain_lock = asyncio.Lock()

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

    async def append_incident(self, event_id: str, record: dict[str, Any]) -> Incident:
        """Append an incident (once per event) to the hash chain."""
        record_json = _canonical(record)
        async with self._chain_lock, self.sessions.begin() as s:
            existing = (await s.execute(select(IncidentRow).where(IncidentRow.event_id == event_id))).scalar_one_or_none()
            if existing is not None:
                return _incident(existing)
            last = (await s.execute(select(IncidentRow).order_by(IncidentRow.id.desc()).limit(1))).scalar_one_or_none()
            if last is not None:
                prev_hash, new_id = last.row_hash, last.id + 1
            else:
                anchor = await s.get(SettingRow, ANCHOR_KEY)
                prev_hash = json.loads(anchor.value)["prev_hash"] if anchor else GENESIS
                new_id = json.loads(anchor.value)["next_id"] if anchor else 1
            now = self._clock()
            row = IncidentRow(
                id=new_id,
                event_id=event_id,
                record_json=record_json,
                created_at=now,
                prev_hash=prev_hash,
                row_hash=incident_hash(prev_hash, new_id, event_id, now, record_json),
            )
            s.add(row)
            await s.flush()
            return _incident(row)

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

    async def verify_chain(self) -> ChainReport:
        async with self.sessions() as s:
            anchor = await s.get(SettingRow, ANCHOR_KEY)
            expected_prev = json.loads(anchor.value)["prev_hash"] if anchor else GENESIS
            checked = 0
            rows = (await s.execute(select(IncidentRow).order_by(IncidentRow.id))).scalars()
            for row in rows:
                if row.prev_hash != expected_prev:
                    return ChainReport(False, checked, row.id, f"incident {row.id}: chain broken (a row before it was removed or altered)")
                if incident_hash(row.prev_hash, row.id, row.event_id, row.created_at, row.record_json) != row.row_hash:
                    return ChainReport(False, checked, row.id, f"incident {row.id}: contents do not match its hash (edited)")
                expected_prev = row.row_hash
                checked += 1
        return ChainReport(True, checked, None, f"{checked} incidents, chain intact")

    async def purge_incidents_before(self, cutoff: float) -> int:
        """Retention: drop the oldest incidents; the chain stays verifiable from its new start."""
        async with self._chain_lock, self.sessions.begin() as s:
            old = (
                await s.execute(select(IncidentRow).where(IncidentRow.created_at < cutoff).order_by(IncidentRow.id))
            ).scalars().all()
            if not old:
                return 0
            last = old[-1]
            anchor = {"prev_hash": last.row_hash, "next_id": last.id + 1}
            values = {"value": json.dumps(anchor), "changed_by": "retention", "changed_at": self._clock()}
            await s.execute(
                self._insert(SettingRow).values(key=ANCHOR_KEY, **values).on_conflict_do_update(index_elements=["key"], set_=values)
            )
            await s.execute(delete(IncidentRow).where(IncidentRow.id <= last.id))
            return len(old)


def _allow(r: AllowRow) -> AllowEntry:
    return AllowEntry(r.id, r.hash_type, r.hash, r.reason, r.added_by, r.added_at)


def _review(r: ReviewRow) -> ReviewItem:
    return ReviewItem(
        r.id, r.event_id, r.room_id, r.sender, r.rule, json.loads(r.detail_json), r.held, r.status,
        r.created_at, r.resolved_by, r.resolved_at, r.card_event_id,
    )


def _incident(r: IncidentRow) -> Incident:
    return Incident(r.id, r.event_id, json.loads(r.record_json), r.created_at, r.prev_hash, r.row_hash)

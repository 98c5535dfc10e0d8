"""The event repository: the durable intake queue, and the one transaction in which all that
processing an event writes is committed with its new status (see journal.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import dialect_insert, session_factory
from .direct import TransactionRunner, transaction_runner
from .journal import EventJournal, MediaSeen, audit_row
from .media import MediaWrites, media_hashes
from .rawsql import Hot
from .tables import AuditRow, EventRow, TransactionRow
from .verdicts import verdict_insert


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    room_id: str
    sender: str
    type: str
    event: dict[str, Any]
    status: str
    attempts: int
    received_at: float
    # Handed over by the intake of this process, not read back from the database: it has
    # never been processed, so it cannot be held for a re-scan.
    from_intake: bool = False
    presend: str | None = None  # "blocked": rejected before delivery by the pre-send check
    media_seen: MediaSeen | None = None  # its media as the intake found it in the database


@dataclass(frozen=True)
class TransactionResult:
    new: bool  # False when the transaction id had been seen before (its new events are stored all the same)
    queued: tuple[StoredEvent, ...]  # events newly stored for processing, in arrival order
    duplicates: int  # events already seen in an earlier transaction
    rejected: tuple[str, ...]  # why malformed events were not stored

    @property
    def queued_ids(self) -> tuple[str, ...]:
        return tuple(e.event_id for e in self.queued)


class EventRepo:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float] = time.time, runner: TransactionRunner | None = None
    ) -> None:
        self.engine = engine
        # The hot path's transactions (intake, an event's commit), one trip each (direct.py).
        self._runner = runner or transaction_runner(engine)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        self._insert = dialect_insert(engine)
        # The hot path's statements, built once so that SQLAlchemy compiles each once and
        # then only binds parameters (the ORM compiled them again on every call).
        # On an SQLite file they run on the driver's own cursor (rawsql.py).
        new_transaction = self._insert(TransactionRow.__table__).on_conflict_do_nothing(index_elements=["txn_id"])
        self._new_transaction = Hot(new_transaction.returning(TransactionRow.__table__.c.txn_id), new_transaction)
        self._audit = Hot(insert(AuditRow.__table__))
        new_events = self._insert(EventRow.__table__).on_conflict_do_nothing(index_elements=["event_id"])
        self._new_events = Hot(new_events.returning(EventRow.__table__.c.event_id), new_events)
        self._media = MediaWrites.build(engine)
        self._verdicts = Hot(verdict_insert(engine))
        events = EventRow.__table__
        self._finish = Hot(
            update(events)
            .where(events.c.event_id == bindparam("b_event_id"))
            .values(status=bindparam("b_status"), processed_at=bindparam("b_at"), error=bindparam("b_error"))
        )

    async def store_transaction(
        self, txn_id: str, events: Sequence[Any], wanted: Callable[[dict[str, Any]], bool],
        media_of: Callable[[dict[str, Any]], Sequence[str]] | None = None, forgotten: int = 0,
    ) -> TransactionResult:
        """Store a transaction's events in one database transaction, before it is acknowledged.

        `wanted` says which events need processing; the rest are only counted, so that the
        database does not fill up with the text of every message on the server. With
        `media_of` (an event's mxcs), the same transaction reads what the media table holds
        of each new event's media (its `media_seen`, with `forgotten`: media.RecentHashes).
        """
        now = self._clock()
        rejected: list[str] = []
        rows: dict[str, dict[str, Any]] = {}
        raws: dict[str, dict[str, Any]] = {}
        for raw in events:
            problem = _malformed(raw)
            if problem:
                rejected.append(problem)
                continue
            if raw["event_id"] in rows or not wanted(raw):
                continue
            raws[raw["event_id"]] = raw
            rows[raw["event_id"]] = {
                "event_id": raw["event_id"],
                "room_id": raw["room_id"],
                "sender": raw["sender"],
                "type": raw["type"],
                "event_json": json.dumps(raw, separators=(",", ":")),
                "txn_id": txn_id,
                "status": "pending",
                "attempts": 0,
                # Distinct per event (a microsecond apart), so that the queue keeps the
                # order within a transaction: ties on received_at come back in any order.
                "received_at": now + len(rows) * 1e-6,
            }

        def store(conn: Connection) -> tuple[bool, set[str], dict[str, MediaSeen]]:
            # The transaction id is recorded, never trusted to say "seen": Synapse on SQLite
            # numbers transactions from 1 again after a restart (and any Synapse after a
            # database restore), so a known id can bring new events. Event ids decide.
            new_txn = bool(self._new_transaction.inserted(
                conn, [{"txn_id": txn_id, "received_at": now, "event_count": len(events)}], "txn_id"
            ))
            # Which events are new: RETURNING, or each row's count on SQLite's driver.
            stored = self._new_events.inserted(conn, list(rows.values()), "event_id")
            if rejected:
                self._audit.execute(conn, [audit_row(now, "intake", "rejected", reason) for reason in rejected])
            if media_of is None or not stored:
                return new_txn, stored, {}
            # The lookups the events' processing would make, in this trip (direct.py).
            mxcs = {e: media_of(raws[e]) for e in stored}
            found = media_hashes(conn, [m for ms in mxcs.values() for m in ms])
            return new_txn, stored, {e: MediaSeen({m: found[m] for m in ms}, forgotten) for e, ms in mxcs.items()}

        new_txn, stored, seen = await self._runner.run(store)
        queued = tuple(
            StoredEvent(
                event_id=row["event_id"], room_id=row["room_id"], sender=row["sender"], type=row["type"],
                event=raws[event_id], status="pending", attempts=0, received_at=row["received_at"],
                from_intake=True, media_seen=seen.get(event_id),
            )
            for event_id, row in rows.items()
            if event_id in stored
        )
        return TransactionResult(new_txn, queued, len(rows) - len(queued), tuple(rejected))

    async def commit(self, journal: EventJournal, *, finish: str | None = None, error: str | None = None) -> None:
        """Write what `journal` holds in one transaction and empty it; with `finish`, set
        the event's status too, in the same transaction."""
        if not journal and finish is None:
            return
        finished = None
        if finish is not None:
            if journal.event_id is None:
                raise ValueError("only an event's journal has a status to set")
            finished = {"b_event_id": journal.event_id, "b_status": finish, "b_at": self._clock(), "b_error": error}
        await self._runner.run(lambda conn: self._write(conn, journal, finished))
        journal.clear()

    def _write(self, conn: Connection, journal: EventJournal, finished: dict[str, Any] | None) -> None:
        hashed = [row for row in journal.media.values() if "sha256" in row]
        unhashed = [row for row in journal.media.values() if "sha256" not in row]
        for statement, rows in (
            (self._media.link, journal.links),
            (self._media.hashed, hashed),
            (self._media.unhashed, unhashed),
            (self._verdicts, journal.verdicts),
            (self._audit, journal.audits),
        ):
            if rows:
                statement.execute(conn, rows)
        if finished is not None:
            self._finish.execute(conn, finished)

    async def pending_ids(self) -> list[str]:
        """The events waiting for processing, oldest first."""
        async with self.sessions() as session:
            result = await session.execute(
                select(EventRow.event_id).where(EventRow.status == "pending").order_by(EventRow.received_at)
            )
            return list(result.scalars())

    async def load(self, event_id: str) -> StoredEvent | None:
        async with self.sessions() as session:
            row = await session.get(EventRow, event_id)
            if row is None:
                return None
            return StoredEvent(
                event_id=row.event_id,
                room_id=row.room_id,
                sender=row.sender,
                type=row.type,
                event=json.loads(row.event_json),
                status=row.status,
                attempts=row.attempts,
                received_at=row.received_at,
                presend=row.presend,
            )

    async def store_blocked(self, raw: dict[str, Any]) -> StoredEvent | None:
        """Store an event the pre-send check rejects, as Synapse offered it, before the answer
        goes back; None if it was stored before (Synapse offered it twice)."""
        problem = _malformed(raw)
        if problem:
            raise ValueError(problem)
        now = self._clock()
        row = {
            "event_id": raw["event_id"], "room_id": raw["room_id"], "sender": raw["sender"], "type": raw["type"],
            "event_json": json.dumps(raw, separators=(",", ":")), "txn_id": None, "status": "pending",
            "attempts": 0, "received_at": now, "presend": "blocked",
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(
                self._insert(EventRow).values(row).on_conflict_do_nothing(index_elements=["event_id"])
                .returning(EventRow.event_id)
            )
            if result.scalar_one_or_none() is None:
                return None
        return StoredEvent(
            event_id=row["event_id"], room_id=row["room_id"], sender=row["sender"], type=row["type"], event=raw,
            status="pending", attempts=0, received_at=now, from_intake=True, presend="blocked",
        )

    async def count_attempt(self, event_id: str, error: str | None) -> int:
        """Count a processing attempt; returns the number of attempts so far."""
        async with self.sessions.begin() as session:
            row = await session.get(EventRow, event_id, with_for_update=True)
            if row is None:
                return 0
            row.attempts += 1
            row.error = error
            return row.attempts

    async def oldest_pending_received_at(self) -> float | None:
        """When the oldest event still waiting for processing arrived (wall clock), if any."""
        return await self._runner.run(self._oldest)

    async def by_status(self) -> dict[str, int]:
        """How many events are in each processing status."""
        return await self._runner.run(self._counts)

    async def queue_state(self) -> tuple[dict[str, int], float | None]:
        """by_status and oldest_pending_received_at in one trip (/health asks for both, often)."""
        return await self._runner.run(lambda conn: (self._counts(conn), self._oldest(conn)))

    def _counts(self, conn: Connection) -> dict[str, int]:
        return {row["status"]: row["n"] for row in _BY_STATUS.rows(conn, {})}

    def _oldest(self, conn: Connection) -> float | None:
        rows = _OLDEST_PENDING.rows(conn, {})
        return rows[0]["oldest"] if rows else None


_BY_STATUS = Hot(select(EventRow.status, func.count().label("n")).group_by(EventRow.status))
_OLDEST_PENDING = Hot(select(func.min(EventRow.received_at).label("oldest")).where(EventRow.status == bindparam("b_pending", "pending")))


def _malformed(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return f"event is not an object ({type(raw).__name__})"
    for key in ("event_id", "room_id", "sender", "type"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            ident = raw.get("event_id") if isinstance(raw.get("event_id"), str) else "<no event_id>"
            return f"event {ident}: missing or invalid {key!r}"
    return None

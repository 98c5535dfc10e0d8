"""Small repositories over the schema; they hand plain dataclasses back, never ORM rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..model import Hashes, MediaRef, Verdict
from .actions import ActionRecord, ActionRepo
from .db import session_factory
from .journal import EventJournal, audit_row, hashes_from_columns, media_hash_columns, verdict_rows
from .tables import (
    AuditRow,
    EventMediaRow,
    EventRow,
    HashListSeenRow,
    MediaRow,
    RetroRunRow,
    TransactionRow,
    VerdictRow,
)


@dataclass(frozen=True)
class TransactionResult:
    new: bool  # False when the transaction id had been seen before (its new events are stored all the same)
    queued: tuple[StoredEvent, ...]  # events newly stored for processing, in arrival order
    duplicates: int  # events already seen in an earlier transaction
    rejected: tuple[str, ...]  # why malformed events were not stored

    @property
    def queued_ids(self) -> tuple[str, ...]:
        return tuple(e.event_id for e in self.queued)


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


@dataclass(frozen=True)
class StoredMedia:
    mxc: str
    status: str
    hashes: Hashes | None
    mimetype: str | None
    error: str | None


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
class RetroRun:
    id: int
    list_name: str
    started_at: float
    finished_at: float | None
    status: str
    new_entries: int
    media_checked: int
    media_matched: int
    events_acted: int
    detail: str | None


class Store:
    """All reads and writes of modbot's state go through here."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time, *, action_lease: float = 300.0) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        # Claims on actions are this Store's: two Stores (two processes) never share one.
        self.action_repo = ActionRepo(engine, clock, lease=action_lease)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._sql = _Statements(self._insert)

    # --- intake -------------------------------------------------------------------------

    async def store_transaction(
        self, txn_id: str, events: Sequence[Any], wanted: Callable[[dict[str, Any]], bool]
    ) -> TransactionResult:
        """Store a transaction's events in one database transaction, before it is acknowledged.

        `wanted` says which events need processing; the rest are only counted, so that the
        database does not fill up with the text of every message on the server.
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
        async with self.engine.begin() as conn:
            # The transaction id is recorded, never trusted to say "seen": Synapse on SQLite
            # numbers transactions from 1 again after a restart (and any Synapse after a
            # database restore), so a known id can bring new events. Event ids decide.
            inserted_txn = await conn.execute(
                self._sql.new_transaction, {"txn_id": txn_id, "received_at": now, "event_count": len(events)}
            )
            new_txn = inserted_txn.scalar_one_or_none() is not None
            stored: set[str] = set()
            if rows:
                # One statement, so that RETURNING says which events are new.
                result = await conn.execute(
                    self._insert(EventRow).values(list(rows.values()))
                    .on_conflict_do_nothing(index_elements=["event_id"])
                    .returning(EventRow.event_id)
                )
                stored = set(result.scalars())
            if rejected:
                await conn.execute(self._sql.audit, [
                    audit_row(now, "intake", "rejected", reason) for reason in rejected
                ])
        queued = tuple(
            StoredEvent(
                event_id=row["event_id"], room_id=row["room_id"], sender=row["sender"], type=row["type"],
                event=raws[event_id], status="pending", attempts=0, received_at=row["received_at"],
                from_intake=True,
            )
            for event_id, row in rows.items()
            if event_id in stored
        )
        return TransactionResult(new_txn, queued, len(rows) - len(queued), tuple(rejected))

    # --- an event's writes, together -----------------------------------------------------

    def journal(self, event: StoredEvent | None = None) -> EventJournal:
        """A journal for what processing `event` writes; `commit` writes it."""
        if event is None:
            return EventJournal(clock=self._clock)
        return EventJournal(event.event_id, event.room_id, event.sender, clock=self._clock)

    async def commit(
        self, journal: EventJournal, *, finish: str | None = None, error: str | None = None
    ) -> None:
        """Write what `journal` holds in one transaction and empty it; with `finish`, set
        the event's status too, in the same transaction."""
        if not journal and finish is None:
            return
        finished = None
        if finish is not None:
            if journal.event_id is None:
                raise ValueError("only an event's journal has a status to set")
            finished = {"b_event_id": journal.event_id, "b_status": finish, "b_at": self._clock(), "b_error": error}
        async with self.engine.begin() as conn:
            # One greenlet for all the statements, not one per statement.
            await conn.run_sync(self._write, journal, finished)
        journal.clear()

    def _write(self, conn: Connection, journal: EventJournal, finished: dict[str, Any] | None) -> None:
        hashed = [row for row in journal.media.values() if "sha256" in row]
        unhashed = [row for row in journal.media.values() if "sha256" not in row]
        for statement, rows in (
            (self._sql.link, journal.links),
            (self._sql.media_hashed, hashed),
            (self._sql.media_unhashed, unhashed),
            (self._sql.verdicts, journal.verdicts),
            (self._sql.audit, journal.audits),
        ):
            if rows:
                conn.execute(statement, rows)
        if finished is not None:
            conn.execute(self._sql.finish_event, finished)

    async def pending_event_ids(self) -> list[str]:
        async with self.sessions() as session:
            result = await session.execute(
                select(EventRow.event_id)
                .where(EventRow.status == "pending")
                .order_by(EventRow.received_at)
            )
            return list(result.scalars())

    async def load_event(self, event_id: str) -> StoredEvent | None:
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
            )

    async def finish_event(self, event_id: str, status: str, error: str | None = None) -> None:
        await self.commit(EventJournal(event_id, clock=self._clock), finish=status, error=error)

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
        async with self.sessions() as session:
            return (await session.execute(select(func.min(EventRow.received_at)).where(EventRow.status == "pending"))).scalar_one()

    async def events_by_status(self) -> dict[str, int]:
        async with self.sessions() as session:
            result = await session.execute(
                select(EventRow.status, func.count()).group_by(EventRow.status)
            )
            return {status: count for status, count in result.all()}

    # --- media and verdicts ------------------------------------------------------------

    async def get_media(self, mxc: str) -> StoredMedia | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(self._sql.media_by_mxc, {"b_mxc": mxc})).first()
            return _media(row) if row else None

    async def record_media(
        self,
        ref: MediaRef,
        *,
        status: str,
        hashes: Hashes | None = None,
        mimetype: str | None = None,
        error: str | None = None,
    ) -> None:
        journal = self.journal()
        journal.record_media(ref, status=status, hashes=hashes, mimetype=mimetype, error=error)
        await self.commit(journal)

    async def link_event_media(self, event_id: str, refs: Iterable[MediaRef]) -> None:
        journal = EventJournal(event_id, clock=self._clock)
        journal.link(refs)
        await self.commit(journal)

    async def media_of_event(self, event_id: str) -> list[str]:
        async with self.sessions() as session:
            result = await session.execute(select(EventMediaRow.mxc).where(EventMediaRow.event_id == event_id))
            return list(result.scalars())

    async def record_verdicts(
        self, event_id: str, mxc: str, classifier: str, verdicts: Sequence[Verdict]
    ) -> None:
        """Record what a classifier found; an empty `verdicts` is recorded as "no match"."""
        async with self.engine.begin() as conn:
            await conn.execute(self._sql.verdicts, verdict_rows(event_id, mxc, classifier, verdicts, self._clock()))

    async def verdicts_for(self, *, event_id: str | None = None, mxc: str | None = None) -> list[VerdictRecord]:
        query = select(VerdictRow).order_by(VerdictRow.id)
        if event_id is not None:
            query = query.where(VerdictRow.event_id == event_id)
        if mxc is not None:
            query = query.where(VerdictRow.mxc == mxc)
        async with self.sessions() as session:
            return [
                VerdictRecord(
                    r.event_id, r.mxc, r.classifier, r.kind, r.list_name, r.label, r.hash_type, r.distance
                )
                for r in (await session.execute(query)).scalars()
            ]

    # --- media history, for retroactive matching ----------------------------------------

    async def count_hashed_media(self) -> int:
        async with self.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(MediaRow).where(MediaRow.sha256.is_not(None)))).scalar_one())

    async def hashed_media_page(self, after: str | None, limit: int) -> list[StoredMedia]:
        """Media with hashes, in mxc order, after the mxc `after`: the history, page by page."""
        query = select(MediaRow).where(MediaRow.sha256.is_not(None)).order_by(MediaRow.mxc).limit(limit)
        if after is not None:
            query = query.where(MediaRow.mxc > after)
        async with self.sessions() as session:
            return [_media(r) for r in (await session.execute(query)).scalars()]

    async def media_with_hashes(self, hash_type: str, values: Sequence[str]) -> list[StoredMedia]:
        """Media whose `hash_type` (sha256, md5 or sha1) is one of `values` (lower-case hex)."""
        column = {"sha256": MediaRow.sha256, "md5": MediaRow.md5, "sha1": MediaRow.sha1}[hash_type]
        found: list[StoredMedia] = []
        async with self.sessions() as session:
            for start in range(0, len(values), 500):
                query = select(MediaRow).where(column.in_(values[start : start + 500]))
                found.extend(_media(r) for r in (await session.execute(query)).scalars())
        return found

    async def events_with_media(self, mxcs: Sequence[str]) -> list[MediaEvent]:
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

    async def matched_verdicts(self, event_ids: Sequence[str]) -> set[tuple[str, str, str, str, str]]:
        """(event_id, mxc, classifier, list_name, label) of the matches recorded for these events."""
        found: set[tuple[str, str, str, str, str]] = set()
        async with self.sessions() as session:
            for start in range(0, len(event_ids), 500):
                query = select(
                    VerdictRow.event_id, VerdictRow.mxc, VerdictRow.classifier, VerdictRow.list_name, VerdictRow.label
                ).where(VerdictRow.event_id.in_(event_ids[start : start + 500]), VerdictRow.kind != "no_match")
                found.update(tuple(r) for r in (await session.execute(query)).all())
        return found

    # --- hash list history ------------------------------------------------------------------

    async def seen_list_digests(self, list_name: str) -> list[str] | None:
        """The digest chunks recorded for a list, in order; None if it was never recorded."""
        query = select(HashListSeenRow.digests).where(HashListSeenRow.list_name == list_name).order_by(HashListSeenRow.chunk)
        async with self.sessions() as session:
            chunks = list((await session.execute(query)).scalars())
        return chunks or None

    async def replace_list_digests(self, list_name: str, chunks: Sequence[tuple[str, int]]) -> None:
        """Record a list's digest chunks ((hex, entries) each), replacing the previous ones.

        An empty list is recorded as one empty chunk, so that it reads back as seen.
        """
        now = self._clock()
        rows = [
            {"list_name": list_name, "chunk": i, "digests": digests, "entries": entries, "updated_at": now}
            for i, (digests, entries) in enumerate(chunks or [("", 0)])
        ]
        async with self.sessions.begin() as session:
            await session.execute(HashListSeenRow.__table__.delete().where(HashListSeenRow.list_name == list_name))
            await session.execute(self._insert(HashListSeenRow).values(rows))

    async def start_retro_run(self, list_name: str, new_entries: int) -> int:
        async with self.sessions.begin() as session:
            row = RetroRunRow(
                list_name=list_name, started_at=self._clock(), status="running", new_entries=new_entries,
                media_checked=0, media_matched=0, events_acted=0,
            )
            session.add(row)
            await session.flush()
            return row.id

    async def finish_retro_run(
        self, run_id: int, *, status: str, media_checked: int, media_matched: int, events_acted: int, detail: str | None = None
    ) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(RetroRunRow)
                .where(RetroRunRow.id == run_id)
                .values(
                    status=status, finished_at=self._clock(), media_checked=media_checked,
                    media_matched=media_matched, events_acted=events_acted, detail=detail,
                )
            )

    async def retro_runs(self, limit: int = 20) -> list[RetroRun]:
        query = select(RetroRunRow).order_by(RetroRunRow.id.desc()).limit(limit)
        async with self.sessions() as session:
            return [
                RetroRun(
                    r.id, r.list_name, r.started_at, r.finished_at, r.status, r.new_entries,
                    r.media_checked, r.media_matched, r.events_acted, r.detail,
                )
                for r in (await session.execute(query)).scalars()
            ]

    # --- actions (bot/record/actions.py) -----------------------------------------------

    @property
    def action_lease(self) -> float:
        return self.action_repo.lease

    async def claim_action(
        self,
        key: str,
        *,
        kind: str,
        target: str,
        event_id: str | None,
        room_id: str | None,
        decided_by: str | None,
        operation: str | None = None,
        due_only: bool = False,
    ) -> ActionRecord:
        """Create the action's row if it is new and claim it if nobody holds it.

        The caller carries the action out only when the record's `claimed` is true: the
        unique key makes a replayed event harmless, the claim a second process.
        """
        return await self.action_repo.claim(
            key, kind=kind, target=target, event_id=event_id, room_id=room_id, decided_by=decided_by,
            operation=operation, due_only=due_only,
        )

    async def finish_action(
        self, key: str, status: str, attempts: int, detail: str | None, *, next_attempt_at: float | None = None
    ) -> bool:
        return await self.action_repo.finish(key, status, attempts, detail, next_attempt_at=next_attempt_at)

    async def actions(
        self, *, event_id: str | None = None, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRecord]:
        return await self.action_repo.list(event_id=event_id, statuses=statuses, limit=limit)

    # --- audit -----------------------------------------------------------------------------

    async def audit(
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
        async with self.engine.begin() as conn:
            await conn.execute(
                self._sql.audit,
                audit_row(self._clock(), category, outcome, message, event_id, room_id, sender, mxc),
            )

    async def audit_log(
        self, *, event_id: str | None = None, category: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if event_id is not None:
            query = query.where(AuditRow.event_id == event_id)
        if category is not None:
            query = query.where(AuditRow.category == category)
        async with self.sessions() as session:
            return [
                AuditEntry(
                    r.id, r.ts, r.category, r.outcome, r.message, r.event_id, r.room_id, r.sender, r.mxc
                )
                for r in (await session.execute(query)).scalars()
            ]


class _Statements:
    """The hot path's statements, built once per dialect so that SQLAlchemy compiles each
    once and then only binds parameters (the ORM compiled them again on every call)."""

    def __init__(self, dialect_insert: Any) -> None:
        media = MediaRow.__table__
        events = EventRow.__table__
        self.new_transaction = (
            dialect_insert(TransactionRow.__table__)
            .on_conflict_do_nothing(index_elements=["txn_id"])
            .returning(TransactionRow.__table__.c.txn_id)
        )
        self.link = dialect_insert(EventMediaRow.__table__).on_conflict_do_nothing()
        self.verdicts = dialect_insert(VerdictRow.__table__).on_conflict_do_nothing()
        self.audit = insert(AuditRow.__table__)
        status_columns = ("status", "mimetype", "error", "last_scanned")
        hash_columns = tuple(media_hash_columns(Hashes(sha256="", md5=None, size=0)))
        upsert = dialect_insert(media)
        self.media_unhashed = upsert.on_conflict_do_update(
            index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns}
        )
        self.media_hashed = upsert.on_conflict_do_update(
            index_elements=["mxc"], set_={c: upsert.excluded[c] for c in status_columns + hash_columns}
        )
        self.media_by_mxc = select(media).where(media.c.mxc == bindparam("b_mxc"))
        self.finish_event = (
            update(events)
            .where(events.c.event_id == bindparam("b_event_id"))
            .values(status=bindparam("b_status"), processed_at=bindparam("b_at"), error=bindparam("b_error"))
        )


def _malformed(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return f"event is not an object ({type(raw).__name__})"
    for key in ("event_id", "room_id", "sender", "type"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            ident = raw.get("event_id") if isinstance(raw.get("event_id"), str) else "<no event_id>"
            return f"event {ident}: missing or invalid {key!r}"
    return None


def _media(row: Any) -> StoredMedia:  # a MediaRow, or a Core row of the media table
    hashes = hashes_from_columns(lambda column: getattr(row, column))
    return StoredMedia(row.mxc, row.status, hashes, row.mimetype, row.error)

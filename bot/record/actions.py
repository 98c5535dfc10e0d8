"""The actions table: claims that one process at a time can hold, and durable retries.

Every action has a unique key (`ban:!room:@user`, `redact:$event`...). Whoever carries it
out first *claims* the row: one conditional UPDATE (or the INSERT that creates the row)
sets `owner` and `lease_until`, and only a row that nobody holds can be claimed. The
database decides between two claimers, whether they are two tasks or two processes on one
database: on PostgreSQL the second UPDATE waits for the first to commit and then finds its
condition false; SQLite runs one writer at a time. A claimer that crashes holds its row
until its lease expires; then another may take it over (audited as `taken_over`), and the
retry loop does so by itself: a claim sets the next attempt to the lease's end.

A transient failure leaves the row `pending` with `next_attempt_at`; a retry loop
(bot/act/retry.py) claims due rows again, so a retry survives restarts. `failed` is a
refusal from the homeserver, `given_up` a moderator's decision; `ok` and `dry_run` are done.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import session_factory
from .direct import AsyncRunner, TransactionRunner
from .journal import audit_row
from .rawsql import Hot
from .tables import ActionRow, AuditRow

_ACTIONS = ActionRow.__table__
_AUDIT_INSERT = Hot(AuditRow.__table__.insert())

# Statuses. A fresh decision may claim `pending` (when nobody holds it) and `failed` (a new
# reason to try: a later match by the same user, or a moderator's retry); the retry loop
# claims only due `pending` rows. Nothing claims `ok`, `dry_run` or `given_up`.
PENDING, OK, FAILED, GIVEN_UP, DRY_RUN = "pending", "ok", "failed", "given_up", "dry_run"
DONE = (OK, DRY_RUN)
OPEN = (PENDING, FAILED)  # what the `actions` command lists


@dataclass(frozen=True)
class ActionRecord:
    key: str
    kind: str
    target: str
    status: str
    attempts: int
    event_id: str | None
    room_id: str | None
    decided_by: str | None
    detail: str | None
    updated_at: float
    id: int = 0
    owner: str | None = None  # the process holding the claim, while it holds it
    lease_until: float | None = None
    next_attempt_at: float | None = None  # a pending action's next retry
    operation: str | None = None  # JSON (bot/act/operations.py): how to do it again
    claimed: bool = False  # whether the claim_action call that returned this record won it


def process_owner() -> str:
    """An id for this Store: host, pid and a random part (two Stores in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ActionRepo:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float] = time.time, *, lease: float = 300.0, owner: str | None = None,
        runner: TransactionRunner | None = None,
    ) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # Claims and outcomes are on every action's path: one trip per transaction (direct.py).
        self._runner = runner or AsyncRunner(engine)
        self._clock = clock
        self._insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self.lease = lease
        self.owner = owner or process_owner()
        # Built once: SQLAlchemy then only binds the values (a statement built per call is
        # walked again for its cache key each time).
        # On an SQLite file they run on the driver's own cursor (rawsql.py).
        self._new_claim = Hot(
            self._insert(_ACTIONS).on_conflict_do_nothing(index_elements=["key"]).returning(*_ACTIONS.c)
        )
        c = _ACTIONS.c
        self._finish = Hot(
            update(_ACTIONS)
            .where(c.key == bindparam("b_key"), c.owner == bindparam("b_owner"))
            .values(
                status=bindparam("b_status"), attempts=c.attempts + bindparam("b_attempts"), detail=bindparam("b_detail"),
                updated_at=bindparam("b_at"), owner=None, lease_until=None, next_attempt_at=bindparam("b_next"),
            )
        )

    async def claim(
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
        """Create the action's row if it is new, claim it if nobody holds it; return the row.

        The caller carries the action out only when `claimed` is true. `due_only` (the retry
        loop) claims only a pending row whose next attempt is due; a fresh decision also
        claims a pending row not yet due (a new reason to try now) and a failed one.
        """
        now = self._clock()
        lease_until = now + self.lease

        def claim(conn: Connection) -> ActionRecord:  # within the runner's transaction
            return self._claim(conn, key, kind, target, event_id, room_id, decided_by, operation, due_only,
                               now, lease_until)

        return await self._runner.run(claim)

    def _claim(
        self, conn: Connection, key: str, kind: str, target: str, event_id: str | None, room_id: str | None,
        decided_by: str | None, operation: str | None, due_only: bool, now: float, lease_until: float,
    ) -> ActionRecord:
        # SQLAlchemy Core on the table, not the ORM: every action's path, and the ORM's
        # session and identity map were half of a claim's CPU (bench/README.md, issue 16).
        # A statement that wins the claim returns the row (RETURNING); only a lost claim reads it.
        if not due_only:
            won = self._new_claim.first(
                conn,
                {
                    "key": key, "kind": kind, "target": target, "event_id": event_id, "room_id": room_id,
                    "decided_by": decided_by, "status": PENDING, "attempts": 0, "created_at": now, "updated_at": now,
                    "owner": self.owner, "lease_until": lease_until, "operation": operation,
                    # Should this claimer die mid-attempt, the retry loop takes over here.
                    "next_attempt_at": lease_until,
                },
            )
            if won is not None:
                return _record(won, claimed=True)
        # Read only to name a previous holder in the audit; the UPDATE decides.
        before = conn.execute(select(_ACTIONS.c.owner, _ACTIONS.c.status).where(_ACTIONS.c.key == key)).first()
        if before is None and due_only:  # due_only on a key that does not exist
            return ActionRecord(key, kind, target, "missing", 0, event_id, room_id, decided_by, None, now)
        c = _ACTIONS.c
        free = or_(c.owner.is_(None), c.lease_until < now)
        if due_only:
            claimable = and_(c.status == PENDING, free, c.next_attempt_at <= now)
        else:
            claimable = or_(and_(c.status == PENDING, free), c.status == FAILED)
        values: dict[str, Any] = {
            "owner": self.owner, "lease_until": lease_until, "status": PENDING, "next_attempt_at": lease_until,
        }
        if operation is not None:
            values["operation"] = operation
        won = conn.execute(update(_ACTIONS).where(c.key == key, claimable).values(**values).returning(*c)).first()
        if won is None:
            row = conn.execute(select(_ACTIONS).where(c.key == key)).first()
            if row is None:
                return ActionRecord(key, kind, target, "missing", 0, event_id, room_id, decided_by, None, now)
            return _record(row)
        if before is not None and before.owner not in (None, self.owner) and before.status == PENDING:
            # Whoever held it stopped renewing: crashed, or stuck past its lease.
            _AUDIT_INSERT.execute(
                conn,
                audit_row(
                    now, "action", "taken_over",
                    f"{kind} {target}: the claim of {before.owner} expired; taken over by {self.owner}",
                    event_id, room_id,
                ),
            )
        return _record(won, claimed=True)

    async def finish(
        self,
        key: str,
        status: str,
        attempts: int,
        detail: str | None,
        *,
        next_attempt_at: float | None = None,
        audit: dict[str, Any] | None = None,
    ) -> bool:
        """Record an attempt's outcome and let go of the claim. False if this Store does not
        hold the claim (its lease expired and someone else took the action over, or finished
        it): nothing is written then but `audit`, an audit row (journal.audit_row) written in
        the same transaction whatever the claim, which saves each action a trip."""
        values = {
            "b_key": key, "b_owner": self.owner, "b_status": status, "b_attempts": attempts, "b_detail": detail,
            "b_at": self._clock(), "b_next": next_attempt_at,
        }

        def finish(conn: Connection) -> bool:
            held = self._finish.execute(conn, values) > 0
            if audit is not None:
                _AUDIT_INSERT.execute(conn, audit)
            return held

        return await self._runner.run(finish)

    async def due(self, limit: int = 100) -> list[ActionRecord]:
        """Pending actions whose next attempt is due, that nobody holds and that can be redone."""
        now = self._clock()
        query = (
            select(ActionRow)
            .where(
                ActionRow.status == PENDING,
                ActionRow.next_attempt_at <= now,
                ActionRow.operation.is_not(None),
                or_(ActionRow.owner.is_(None), ActionRow.lease_until < now),
            )
            .order_by(ActionRow.next_attempt_at)
            .limit(limit)
        )
        async with self.sessions() as session:
            return [_record(r) for r in (await session.execute(query)).scalars()]

    async def list(
        self, *, event_id: str | None = None, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRecord]:
        query = select(ActionRow).order_by(ActionRow.id.desc()).limit(limit)
        if event_id is not None:
            query = query.where(ActionRow.event_id == event_id)
        if statuses is not None:
            query = query.where(ActionRow.status.in_(list(statuses)))
        async with self.sessions() as session:
            return [_record(r) for r in (await session.execute(query)).scalars()]

    async def count(self, *, kind: str, target: str, since: float) -> int:
        """Actions of a kind on a target created since a time (remote incidents per server)."""
        query = select(func.count()).select_from(ActionRow).where(
            ActionRow.kind == kind, ActionRow.target == target, ActionRow.created_at >= since
        )
        async with self.sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def get(self, action_id: int) -> ActionRecord | None:
        async with self.sessions() as session:
            row = (await session.execute(select(ActionRow).where(ActionRow.id == action_id))).scalar_one_or_none()
            return _record(row) if row else None

    async def give_up(self, action_id: int, by: str, reason: str) -> ActionRecord | None:
        """A moderator stops the retries of a pending or failed action nobody holds right now.

        Returns the updated record, or None when the action is done, given up already, or
        being attempted at this moment (the caller says which, from `get`).
        """
        now = self._clock()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(ActionRow)
                .where(
                    ActionRow.id == action_id,
                    ActionRow.status.in_(OPEN),
                    or_(ActionRow.owner.is_(None), ActionRow.lease_until < now),
                )
                .values(status=GIVEN_UP, next_attempt_at=None, owner=None, lease_until=None, updated_at=now,
                        detail=f"given up by {by}: {reason}")
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:
                return None
        return await self.get(action_id)

    async def retry(self, action_id: int) -> ActionRecord | None:
        """Put a failed or given-up action back in the retry queue, due now (after its cause
        was fixed). None when it is not failed or given up, or cannot be redone."""
        now = self._clock()
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(ActionRow)
                .where(
                    ActionRow.id == action_id,
                    ActionRow.status.in_((FAILED, GIVEN_UP)),
                    ActionRow.operation.is_not(None),
                )
                .values(status=PENDING, next_attempt_at=now, owner=None, lease_until=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if not result.rowcount:
                return None
        return await self.get(action_id)


def _record(row: Any, *, claimed: bool = False) -> ActionRecord:
    """An ActionRow, or a Core row of the actions table, as a record."""
    return ActionRecord(
        key=row.key,
        kind=row.kind,
        target=row.target,
        status=row.status,
        attempts=row.attempts,
        event_id=row.event_id,
        room_id=row.room_id,
        decided_by=row.decided_by,
        detail=row.detail,
        updated_at=row.updated_at,
        id=row.id,
        owner=row.owner,
        lease_until=row.lease_until,
        next_attempt_at=row.next_attempt_at,
        operation=row.operation,
        claimed=claimed,
    )

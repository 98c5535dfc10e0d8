"""The Store: one object that hands out modbot's repositories and keeps their old entry points.

Each kind of data has a repository of its own (events.py, media.py, verdicts.py, actions.py,
audit.py, retro.py; moderation.py, scanning.py and liststate.py are built on their own), and
each hands back plain frozen dataclasses, never ORM rows. The Store builds one of each on
one engine and clock, and forwards the calls the pipeline, the executor and the commands
make, so that a caller needs one object; a caller may also take a repository by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..model import Hashes, MediaRef, Verdict
from .actions import ActionRecord, ActionRepo
from .audit import AuditEntry, AuditRepo
from .db import session_factory
from .direct import TransactionRunner, transaction_runner
from .events import EventRepo, StoredEvent, TransactionResult
from .journal import EventJournal
from .media import MediaEvent, MediaRepo, StoredMedia
from .retro import RetroRepo, RetroRun
from .verdicts import VerdictRecord, VerdictRepo


class Store:
    """All reads and writes of modbot's state go through here or its repositories.

    `audit_source` names who writes through this Store: every audit message it writes
    starts with it (retroactive matching acts through a Store whose rows say "retroactive").
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
        *,
        action_lease: float = 300.0,
        audit_source: str | None = None,
        runner: TransactionRunner | None = None,
    ) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._clock = clock
        # The hot path's transactions, one trip each; the ModerationStore of the same
        # database takes it too (incidents), and so may another Store (`runner`), so that
        # one connection and thread serve them all and one drain at stop finishes them all.
        self.runner = runner = runner or transaction_runner(engine)
        self.event_repo = EventRepo(engine, clock, runner)
        self.media_repo = MediaRepo(engine, runner)
        self.verdict_repo = VerdictRepo(engine, clock)
        # Claims on actions are this Store's: two Stores (two processes) never share one.
        self.action_repo = ActionRepo(engine, clock, lease=action_lease, runner=runner)
        self.audit_repo = AuditRepo(engine, clock, source=audit_source, runner=runner)
        # The audit row `audit` would write now, for another repository's transaction to
        # write with its own (an action's outcome: finish_action).
        self.audit_row = self.audit_repo.row
        self.retro_repo = RetroRepo(engine, clock)

    # --- intake and an event's writes (events.py) ----------------------------------------

    async def store_transaction(
        self, txn_id: str, events: Sequence[Any], wanted: Callable[[dict[str, Any]], bool],
        media_of: Callable[[dict[str, Any]], Sequence[str]] | None = None, forgotten: int = 0,
    ) -> TransactionResult:
        return await self.event_repo.store_transaction(txn_id, events, wanted, media_of, forgotten)

    async def store_blocked_event(self, raw: dict[str, Any]) -> StoredEvent | None:
        return await self.event_repo.store_blocked(raw)

    def journal(self, event: StoredEvent | None = None) -> EventJournal:
        """A journal for what processing `event` writes; `commit` writes it."""
        if event is None:
            return EventJournal(clock=self._clock)
        return EventJournal(event.event_id, event.room_id, event.sender, clock=self._clock, seen=event.media_seen)

    async def commit(self, journal: EventJournal, *, finish: str | None = None, error: str | None = None) -> None:
        await self.event_repo.commit(journal, finish=finish, error=error)

    async def pending_event_ids(self) -> list[str]:
        return await self.event_repo.pending_ids()

    async def load_event(self, event_id: str) -> StoredEvent | None:
        return await self.event_repo.load(event_id)

    async def finish_event(self, event_id: str, status: str, error: str | None = None) -> None:
        await self.commit(EventJournal(event_id, clock=self._clock), finish=status, error=error)

    async def count_attempt(self, event_id: str, error: str | None) -> int:
        return await self.event_repo.count_attempt(event_id, error)

    async def oldest_pending_received_at(self) -> float | None:
        return await self.event_repo.oldest_pending_received_at()

    async def queue_state(self) -> tuple[dict[str, int], float | None]:
        """events_by_status and oldest_pending_received_at, read together in one trip."""
        return await self.event_repo.queue_state()

    async def events_by_status(self) -> dict[str, int]:
        return await self.event_repo.by_status()

    # --- media and verdicts (media.py, verdicts.py) ------------------------------------------

    async def get_media(self, mxc: str) -> StoredMedia | None:
        return await self.media_repo.get(mxc)

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
        return await self.media_repo.of_event(event_id)

    async def record_verdicts(self, event_id: str, mxc: str, classifier: str, verdicts: Sequence[Verdict]) -> None:
        await self.verdict_repo.record(event_id, mxc, classifier, verdicts)

    async def verdicts_for(self, *, event_id: str | None = None, mxc: str | None = None) -> list[VerdictRecord]:
        return await self.verdict_repo.list(event_id=event_id, mxc=mxc)

    async def count_hashed_media(self) -> int:
        return await self.media_repo.count_hashed()

    async def hashed_media_page(self, after: str | None, limit: int) -> list[StoredMedia]:
        return await self.media_repo.hashed_page(after, limit)

    async def media_with_hashes(self, hash_type: str, values: Sequence[str]) -> list[StoredMedia]:
        return await self.media_repo.with_hashes(hash_type, values)

    async def events_with_media(self, mxcs: Sequence[str]) -> list[MediaEvent]:
        return await self.media_repo.events_with(mxcs)

    async def matched_verdicts(self, event_ids: Sequence[str]) -> set[tuple[str, str, str, str, str]]:
        return await self.verdict_repo.matched(event_ids)

    # --- hash list history and retroactive runs (retro.py) ----------------------------------

    async def seen_list_digests(self, list_name: str) -> list[str] | None:
        return await self.retro_repo.seen_digests(list_name)

    async def replace_list_digests(self, list_name: str, chunks: Sequence[tuple[str, int]]) -> None:
        await self.retro_repo.replace_digests(list_name, chunks)

    async def seen_lists(self) -> list[str]:
        return await self.retro_repo.seen_lists()

    async def forget_list_digests(self, list_name: str) -> bool:
        return await self.retro_repo.forget_digests(list_name)

    async def start_retro_run(self, list_name: str, new_entries: int) -> int:
        return await self.retro_repo.start_run(list_name, new_entries)

    async def finish_retro_run(
        self, run_id: int, *, status: str, media_checked: int, media_matched: int, events_acted: int, detail: str | None = None
    ) -> None:
        await self.retro_repo.finish_run(
            run_id, status=status, media_checked=media_checked, media_matched=media_matched,
            events_acted=events_acted, detail=detail,
        )

    async def retro_runs(self, limit: int = 20) -> list[RetroRun]:
        return await self.retro_repo.runs(limit)

    # --- actions (actions.py) -----------------------------------------------------------------

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
        self, key: str, status: str, attempts: int, detail: str | None, *, next_attempt_at: float | None = None,
        audit: dict[str, Any] | None = None,
    ) -> bool:
        """Record an attempt's outcome; `audit` (a row from `audit_row`) goes in the same
        transaction, written whether or not this Store still held the claim."""
        return await self.action_repo.finish(key, status, attempts, detail, next_attempt_at=next_attempt_at, audit=audit)

    async def actions(
        self, *, event_id: str | None = None, statuses: Sequence[str] | None = None, limit: int = 100
    ) -> list[ActionRecord]:
        return await self.action_repo.list(event_id=event_id, statuses=statuses, limit=limit)

    async def count_actions(self, *, kind: str, target: str, since: float) -> int:
        return await self.action_repo.count(kind=kind, target=target, since=since)

    # --- audit (audit.py) ----------------------------------------------------------------------

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
        await self.audit_repo.write(category, outcome, message, event_id=event_id, room_id=room_id, sender=sender, mxc=mxc)

    async def audit_log(
        self, *, event_id: str | None = None, category: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        return await self.audit_repo.log(event_id=event_id, category=category, limit=limit)


__all__ = [
    "AuditEntry", "MediaEvent", "RetroRun", "Store", "StoredEvent", "StoredMedia", "TransactionResult", "VerdictRecord",
]

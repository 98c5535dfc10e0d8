"""The pre-send check: whether Synapse may accept an event, decided before anyone receives it.

Synapse asks before it accepts an event (check_event_for_spam, forwarded over HTTP by
synapse-http-antispam to bot/intake/antispam.py). For an event in a protected room that
references media, the media is fetched, hashed in the sandbox and classified through the
pipeline's own scan (so the hashes are recorded, and the appservice path does not hash the
same media again), and the policy decides. A match the policy would remove is rejected
with a neutral message; the event, as Synapse offered it, is stored before the answer goes
back and then handled by the queue like any event, marked "blocked before delivery":
quarantine, ban, incident and notice follow durably, a redaction is moot. Dry run allows.

What cannot be decided within `presend.deadline`, or fails, is allowed (the appservice path
sees the event and acts as it always did) and audited, unless the policy (or the room's)
says `presend: fail_closed`. Media not uploaded yet (MSC2246) is never waited for:
`presend.pending_upload` rejects the event, or allows it for the appservice path to fetch
again until the upload comes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .act.notices import MatchedMedia, describe_verdict
from .act.powers import PowerCache
from .extract import extract_media_refs
from .model import ActionKind, Decision, EventContext, MediaRef
from .pipeline import Pipeline, ScanResult
from .policy import Policy, decide, describe as describe_decision
from .record.journal import EventJournal
from .record.presend import PresendStatsRepo
from .record.store import StoredEvent, Store
from .senders import server_of

log = logging.getLogger("modbot.presend")

# What the sender reads: it says neither why nor what matched.
REFUSED = "This message could not be sent."
NOT_UPLOADED = "This message refers to media that has not finished uploading; send it again once the upload is complete."
# Outcomes counted for `status` and `modbot check` (bot/record/presend.py).
ALLOWED, BLOCKED, TIMED_OUT, FAILED = "allowed", "blocked", "timed_out", "failed"


@dataclass(frozen=True)
class PresendAnswer:
    allow: bool
    outcome: str  # allowed | blocked | dry_run | pending_upload | timed_out | failed | unchecked
    message: str = ""  # to the sender, when rejected


class PresendCounts:
    """What the endpoint answered since start, flushed to the database every few seconds."""

    def __init__(self, repo: PresendStatsRepo | None, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.since_start: Counter[str] = Counter()
        self._unflushed: dict[str, tuple[int, float]] = {}
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def note(self, outcome: str) -> None:
        self.since_start[outcome] += 1
        count, _ = self._unflushed.get(outcome, (0, 0.0))
        self._unflushed[outcome] = (count + 1, self._clock())

    async def flush(self) -> None:
        deltas, self._unflushed = self._unflushed, {}
        if self.repo is not None and deltas:
            try:
                await self.repo.add(deltas)
            except Exception:
                log.exception("could not record the pre-send counts; they are kept for the next flush")
                for outcome, (count, at) in deltas.items():
                    old, _ = self._unflushed.get(outcome, (0, 0.0))
                    self._unflushed[outcome] = (old + count, at)

    def start(self, interval: float = 2.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await self.flush()

        self._task = asyncio.create_task(loop(), name="presend-counts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()


def removes_media(decision: Decision) -> bool:
    """Whether the decision takes the media down (quarantine, redaction, a held review)."""
    kinds = {ActionKind.QUARANTINE, ActionKind.REDACT}
    return any(a.kind in kinds or (a.kind is ActionKind.REVIEW and a.scope == "hold") for a in decision.actions)


def presend_mode(policy: Policy, room_id: str) -> str:
    """`presend` of the room's overrides, else of the policy: fail_open or fail_closed."""
    room = policy.rooms.get(room_id)
    return policy.presend if room is None or room.presend is None else room.presend


class PresendChecker:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        store: Store,
        powers: PowerCache,
        policy: Callable[[], Policy],
        is_protected: Callable[[str], bool],
        bot_user_id: str,
        deadline: float,
        pending_upload: str,
        submit: Callable[[Sequence[StoredEvent]], None],
        counts: PresendCounts,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.powers = powers
        self._policy = policy
        self._is_protected = is_protected
        self.bot_user_id = bot_user_id
        self.deadline = deadline
        self.pending_upload = pending_upload
        self._submit = submit
        self.counts = counts
        # Scans that outlive the deadline finish in the background, so that their hashes
        # are recorded for the appservice path; references kept so they are not collected.
        self._scans: set[asyncio.Task[Any]] = set()

    async def check(self, event: dict[str, Any]) -> PresendAnswer:
        """The answer for one event Synapse offers (client format, with its event_id)."""
        answer = await self._check(event)
        self.counts.note(answer.outcome)
        return answer

    async def _check(self, event: dict[str, Any]) -> PresendAnswer:
        room_id, sender = event["room_id"], event["sender"]
        if sender == self.bot_user_id or not self._is_protected(room_id):
            return PresendAnswer(True, "unchecked")
        refs = [r for r in extract_media_refs(event, max_refs=self.pipeline.budget.max_refs).refs if not r.encrypted]
        if not refs:
            return PresendAnswer(True, "unchecked")
        scan = asyncio.create_task(self._scan(event, refs), name=f"presend {event['event_id']}")
        self._track(scan)
        try:
            scans, power = await asyncio.wait_for(asyncio.shield(scan), self.deadline)
            return await self._answer(event, scans, power)
        except asyncio.TimeoutError:
            why = f"no answer within presend.deadline ({self.deadline:g} s): allowed; the appservice path scans it again"
            return await self._undecided(event, TIMED_OUT, why)
        except Exception as e:  # any failure of ours must not decide for Synapse
            log.exception("pre-send check of %s failed", event["event_id"])
            return await self._undecided(event, FAILED, f"pre-send check failed ({type(e).__name__}: {e})")

    async def _commit(self, journal: EventJournal) -> None:
        try:
            await self.store.commit(journal)
        except Exception:
            log.exception("could not record the pre-send scan of %s; the appservice path scans again", journal.event_id)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._scans.add(task)
        task.add_done_callback(self._scan_done)

    def _scan_done(self, task: asyncio.Task[Any]) -> None:
        self._scans.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pre-send scan ended with %r", task.exception())

    async def _scan(self, event: dict[str, Any], refs: Sequence[MediaRef]) -> tuple[list[ScanResult], int]:
        journal = EventJournal(event["event_id"], event["room_id"], event["sender"])
        try:
            scans = await self.pipeline.scan_offered(journal, refs)
        finally:
            # Recorded beside the answer, not before it: the answer needs none of it, and
            # a write waiting on the database would hold up the sender.
            self._track(asyncio.create_task(self._commit(journal), name=f"presend record {event['event_id']}"))
        power = (await self.powers.get(event["room_id"])).of(event["sender"])
        return scans, power

    async def _answer(self, event: dict[str, Any], scans: Sequence[ScanResult], power: int) -> PresendAnswer:
        ctx = EventContext(
            event_id=event["event_id"], room_id=event["room_id"], sender=event["sender"], sender_power=power,
            origin_server_ts=event.get("origin_server_ts"),
        )
        matched = [MatchedMedia(s.ref, s.verdicts, s.hashes) for s in scans if s.verdicts]
        # As the pipeline decides: a remote sender's account actions are replaced (bot/senders.py).
        decision = decide([v for m in matched for v in m.verdicts], ctx, self._policy(), home_server=server_of(self.bot_user_id))
        if decision.verdicts and removes_media(decision):
            what = "; ".join(describe_verdict(v) for v in decision.verdicts)
            if decision.dry_run:
                await self._audit(event, "dry_run", f"dry run: would have blocked before delivery ({what}); allowed")
                return PresendAnswer(True, "dry_run")
            stored = await self.store.store_blocked_event(event)  # before the answer: never lost
            await self._audit(event, BLOCKED, f"blocked before delivery: {describe_decision(decision)} ({what})")
            if stored is not None:
                self._submit([stored])
            return PresendAnswer(False, BLOCKED, REFUSED)
        if any(s.awaiting_upload for s in scans):
            if self.pending_upload == "reject":
                await self._audit(event, "pending_upload", "media not uploaded yet (MSC2246): rejected (presend.pending_upload)")
                return PresendAnswer(False, "pending_upload", NOT_UPLOADED)
            await self._audit(
                event, "pending_upload",
                "media not uploaded yet (MSC2246): allowed (presend.pending_upload); the appservice path fetches it again",
            )
            return PresendAnswer(True, "pending_upload")
        unscanned = [s for s in scans if s.failures or s.retryable]
        if unscanned:
            why = "; ".join(f"{s.ref.mxc}: {s.error or ', '.join(f'{f.classifier}: {f.error}' for f in s.failures)}" for s in unscanned)
            return await self._undecided(event, FAILED, f"not scanned: {why}")
        return PresendAnswer(True, ALLOWED)

    async def _undecided(self, event: dict[str, Any], outcome: str, why: str) -> PresendAnswer:
        """No decision: allowed, unless the policy says `presend: fail_closed` for the room."""
        closed = presend_mode(self._policy(), event["room_id"]) == "fail_closed"
        await self._audit(event, outcome, f"{why}{'; rejected (presend: fail_closed)' if closed else ''}")
        return PresendAnswer(not closed, outcome, REFUSED if closed else "")

    async def _audit(self, event: dict[str, Any], outcome: str, message: str) -> None:
        try:
            await self.store.audit(
                "presend", outcome, message, event_id=event["event_id"], room_id=event["room_id"], sender=event["sender"]
            )
        except Exception:
            log.exception("could not audit the pre-send check of %s (%s: %s)", event["event_id"], outcome, message)

    async def stop(self) -> None:
        for task in list(self._scans):
            task.cancel()
        await asyncio.gather(*list(self._scans), return_exceptions=True)
        await asyncio.gather(*list(self._scans), return_exceptions=True)  # the records those scans left

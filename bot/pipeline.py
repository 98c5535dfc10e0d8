"""Per-event orchestration: extract -> fetch -> hash -> classify -> decide -> act -> record.

The pure stages (extraction, hashing, policy) know nothing of I/O; this module orders the
I/O around them and writes every step to the audit log.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .act.executor import media_acted_on, txn_id_for
from .act.homeserver import HomeserverError
from .act.notices import MatchedMedia, describe_verdict, notice_text
from .allowlist import Allowlist
from .classify.base import Classifier, MediaInput
from .classify.runner import ClassifierRunner
from .act.enforcer import Enforcer
from .eventbudget import EventBudget, Finished, run_within
from .extract import extract_media_refs
from .fetch import Lease, MediaFetcher
from .hashing.pool import HashSandbox
from .hashing.repeats import RepeatedContent
from .mediafailures import DeadReference, MediaFailureMemory, RememberingFetcher
from .metrics import Metrics
from .model import Classification, Decision, EventContext, FailureMode, Hashes, MediaRef, Verdict
from .policy import Policy, decide
from .policy import describe as describe_decision, outcome as decision_outcome
from .act.powers import PowerCache
from .record.journal import EventJournal
from .record.media import RecentHashes
from .record.store import StoredEvent, Store
from .intake.rescan import Rescanner

log = logging.getLogger("modbot.pipeline")
RECENT_HASHES = 1024  # media hashes kept in memory (bytes: a few hundred each)


class RetryLater(Exception):
    """Processing hit a transient failure; the event stays queued and is tried again."""


@dataclass(frozen=True)
class ScanResult:
    ref: MediaRef
    hashes: Hashes | None
    verdicts: tuple[Verdict, ...]
    error: str | None = None
    retryable: bool = False
    failures: tuple[Classification, ...] = ()  # classifiers whose scan failed
    awaiting_upload: bool = False  # MSC2246 media not uploaded yet: re-scanned later whatever the policy


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        fetcher: MediaFetcher,
        classifiers: Sequence[Classifier] | ClassifierRunner,
        enforcer: Enforcer,
        powers: PowerCache,
        metrics: Metrics,
        policy: Callable[[], Policy],
        allowlist: Callable[[], Allowlist],
        is_protected: Callable[[str], bool],
        bot_user_id: str,
        max_image_pixels: int,
        rescanner: Rescanner | None = None,
        sandbox: HashSandbox,
        budget: EventBudget = EventBudget(),
        failures: MediaFailureMemory | None = None,
    ) -> None:
        self.store = store
        # Dead references (timed out, never uploaded) are remembered, so they cost one timeout.
        memory = failures if failures is not None else MediaFailureMemory(expiry=300.0)  # empty is falsy
        self.fetcher = RememberingFetcher(fetcher, memory)
        # The runner feeds the classifiers (bytes only to those that need them), answers
        # from the verdict cache and contains their failures.
        self.runner = classifiers if isinstance(classifiers, ClassifierRunner) else ClassifierRunner(classifiers)
        self.classifiers = self.runner.classifiers
        self.rescanner = rescanner
        self.enforcer = enforcer
        self.powers = powers
        self.metrics = metrics
        self._policy = policy
        self._allowlist = allowlist
        self._is_protected = is_protected
        self.bot_user_id = bot_user_id
        self.max_image_pixels = max_image_pixels
        self.sandbox = RepeatedContent(sandbox, on_repeat=metrics.media_repeats.inc)  # the same bytes, another mxc
        self.budget = budget
        # The latest media hashed, by mxc (an mxc's content never changes); shared with the
        # pre-send twin (with_fetcher), so that an event it let through is not hashed again
        # even before its record reaches the database.
        self.recent = RecentHashes(RECENT_HASHES)
        self.urgent = False  # the pre-send twin's hashes go before other jobs waiting for a worker

    async def process(self, event: StoredEvent) -> None:
        """Handle one stored event. Raises RetryLater when it should be tried again.

        What the scan finds is written to the database together with the event's new status
        (one transaction, see bot/record/journal.py), or before acting, so that the audit log
        lists the finding before what was done about it.
        """
        journal = self.store.journal(event)
        if event.sender == self.bot_user_id or not self._is_protected(event.room_id):
            await self.store.commit(journal, finish="ignored")
            return
        extracted = extract_media_refs(event.event, max_refs=self.budget.max_refs)
        for problem in extracted.problems:
            journal.audit("scan", "not_scanned", f"malformed event content: {problem}")
        for overflow in self.budget.overflow(extracted):
            journal.audit("scan", "not_scanned", overflow)
        journal.link(extracted.refs)

        hold = None
        if self.rescanner is not None and not event.from_intake:
            hold = await self.rescanner.held(event.event_id)
        scans = await self._scan_all(journal, extracted.refs, held=hold is not None)
        transient = [s for s in scans if s.retryable]
        if transient:
            await self.store.commit(journal)  # the audit says what failed; the event stays pending
            raise RetryLater("; ".join(s.error or "" for s in transient))

        matched = [MatchedMedia(s.ref, s.verdicts, s.hashes) for s in scans if s.verdicts]
        failed = [s for s in scans if s.failures]
        decision = None
        if matched or failed:
            decision = await self._act(event, journal, matched, failed)
        # A dry run only says it would hold: nothing is quarantined, so nothing is re-scanned.
        holding = decision is not None and decision.holds and not decision.dry_run
        # Media not uploaded yet (MSC2246) may be uploaded later, whatever on_failure let
        # through meanwhile: the event is re-scanned like a hold until the upload comes.
        awaiting = [s.ref.mxc for s in scans if s.awaiting_upload]
        if (holding or awaiting) and self.rescanner is not None:
            reason = "; ".join(f"{f.classifier}: {f.error}" for f in decision.failures) if decision else "not uploaded yet"
            mxcs = [s.ref.mxc for s in failed] if holding else awaiting
            again = await self.rescanner.hold(event.event_id, event.room_id, mxcs, reason)
            journal.audit(
                "scan", "held",
                f"held until a scan succeeds (attempt {again.attempts}; next in {again.due_at - time.time():.0f} s): {reason}",
            )
            await self.store.commit(journal, finish="held")
            return
        if hold is not None:
            await self.store.commit(journal)
            await self._end_hold(event, hold.mxcs, released=decision is None or not decision.verdicts)
        await self.store.commit(journal, finish="done")
        if event.event.get("origin_server_ts"):
            self.metrics.end_to_end_seconds.observe(
                max(0.0, time.time() - event.event["origin_server_ts"] / 1000)
            )

    async def _act(
        self, event: StoredEvent, journal: EventJournal, matched: list[MatchedMedia], failed: Sequence[ScanResult]
    ) -> Decision:
        try:
            power = (await self.powers.get(event.room_id)).of(event.sender)
        except HomeserverError as e:
            await self.store.commit(journal)  # what the scan found stays on record
            # Without power levels the exemption rules can't be applied; acting anyway could
            # punish a moderator, so the event is retried rather than guessed at.
            raise RetryLater(f"could not read power levels of {event.room_id}: {e}") from e
        ctx = EventContext(
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            sender_power=power,
            origin_server_ts=event.event.get("origin_server_ts"),
            blocked_before_delivery=event.presend == "blocked",
        )
        verdicts = [v for m in matched for v in m.verdicts]
        failures = [f for s in failed for f in s.failures]
        decision = decide(verdicts, ctx, self._policy(), failures, home_server=self.enforcer.homeserver_name)
        journal.audit("decision", decision_outcome(decision), describe_decision(decision))
        await self.store.commit(journal)  # what was found and decided, in one trip, before acting on it
        acting_on = media_acted_on(decision, matched, [MatchedMedia(s.ref, (), s.hashes) for s in failed])
        if decision.verdicts or decision.on_failure is FailureMode.REVIEW:
            await self.enforcer.enforce(decision, ctx, acting_on)
        elif decision.acts:
            # A hold for a failed scan: no match was found, so no incident is recorded.
            await self.enforcer.executor.carry_out(decision, ctx, acting_on)
        return decision

    async def _end_hold(self, event: StoredEvent, mxcs: Sequence[str], *, released: bool) -> None:
        """A held event's scan succeeded. Without a match its media is released; with one, the
        rule that fired has acted and the media stays quarantined."""
        assert self.rescanner is not None
        actions = await self.store.actions(event_id=event.event_id)
        if released and not any(a.kind == "quarantine" and a.status == "ok" for a in actions):
            # Only waited for (an upload that had not come): nothing was held back, so
            # there is nothing to release and nobody to tell.
            message = "re-scanned: nothing matched (or the media is gone) and nothing was held back"
            await self._audit(event, "scan", "hold_ended", message)
        elif released:
            refs = {r.mxc: r for r in extract_media_refs(event.event, max_refs=self.budget.max_refs).refs}
            for mxc in mxcs:
                # Media another event matched stays quarantined whatever this scan says.
                if any(v.kind != "no_match" for v in await self.store.verdicts_for(mxc=mxc)):
                    await self._audit(event, "scan", "kept", "scan succeeded, but this media matched elsewhere: kept quarantined")
                    continue
                if mxc in refs:
                    await self.enforcer.executor.unquarantine(
                        refs[mxc], by="modbot (a re-scan found no match)", reason_event_id=event.event_id
                    )
            message = (
                "scan succeeded with no match: media unquarantined. The event's redaction cannot be undone;"
                " the sender may post it again."
            )
            await self._audit(event, "scan", "released", message)
            await self._notify_release(event, message)
        else:
            await self._audit(event, "scan", "hold_ended", "scan succeeded and matched: the policy's rule acted")
        await self.rescanner.release(event.event_id)

    async def _notify_release(self, event: StoredEvent, message: str) -> None:
        executor = self.enforcer.executor
        room = executor.management_room
        if room is None:
            return
        lines = [f"Room: {event.room_id}", f"Event: {event.event_id}", f"Sender: {event.sender}", message]
        body, formatted = notice_text("modbot: held media released", lines)
        key = f"release:{event.event_id}"

        async def send() -> str:
            notice = await executor.hs.send_notice(room, body, formatted, txn_id_for(key))
            return f"notice {notice} in {room}"

        await executor.manual("notify", room, room, by="modbot", command_event_id=key, do=send)

    async def _scan_all(self, journal: EventJournal, refs: Sequence[MediaRef], *, held: bool) -> list[ScanResult]:
        """Every reference scanned, a few at a time, within the event's deadline. One not done
        by then is a failed scan of every classifier: the policy's `on_failure` decides (a
        hold re-scans it later); retrying the event would only run into the deadline again."""

        async def scan(ref: MediaRef) -> ScanResult:
            async with self.fetcher.slots.lease() as lease:  # its bytes count until its scan ends
                return await self._scan(journal, ref, held=held, lease=lease)

        budget = self.budget
        outcomes = await run_within(refs, scan, concurrency=budget.fetch_concurrency, deadline=budget.deadline)
        for late in (o.item for o in outcomes if not isinstance(o, Finished)):
            journal.audit("scan", "not_scanned", budget.late, mxc=late.mxc)
            self.metrics.media_scanned.labels("error").inc()
        return [o.result if isinstance(o, Finished) else self._unscanned(o.item, budget.late) for o in outcomes]

    def with_fetcher(self, fetcher: MediaFetcher) -> Pipeline:
        """This pipeline downloading through `fetcher`, remembering no dead references, hashing
        before other jobs: the pre-send check's, which must not wait for uploads nor behind
        the appservice path, nor make others wait."""
        twin = copy.copy(self)
        twin.fetcher = RememberingFetcher(fetcher, MediaFailureMemory(expiry=0))
        twin.urgent = True  # and a sender waits on its hashes: they go first in the sandbox
        return twin

    async def scan_offered(self, journal: EventJournal, refs: Sequence[MediaRef]) -> list[ScanResult]:
        """Scan the media of an event not stored yet (the pre-send check, bot/presend.py).

        The caller commits `journal`: the hashes and verdicts it holds let the appservice
        path, when the same event arrives, skip downloading and hashing again."""
        return await self._scan_all(journal, refs, held=False)

    def _unscanned(self, ref: MediaRef, reason: str, *, awaiting_upload: bool = False) -> ScanResult:
        """Media no classifier could look at: a failed scan for each, for the policy's on_failure."""
        failures = tuple(Classification(classifier=c.name, error=reason) for c in self.classifiers)
        return ScanResult(ref, None, (), error=reason, failures=failures, awaiting_upload=awaiting_upload)

    async def _scan(
        self, journal: EventJournal, ref: MediaRef, *, held: bool = False, lease: Lease | None = None
    ) -> ScanResult:
        started = time.monotonic()
        if ref.encrypted:
            journal.record_media(ref, status="encrypted", mimetype=ref.mimetype)
            journal.audit("scan", "not_scanned", "encrypted attachment, not scanned", mxc=ref.mxc)
            self.metrics.media_scanned.labels("encrypted").inc()
            return ScanResult(ref, None, (), error="encrypted")

        hashes, data, error, retryable = await self._media(ref, journal, held=held, lease=lease)
        if hashes is None:
            self.metrics.media_scanned.labels("error").inc()
            if isinstance(error, DeadReference):  # the policy's on_failure decides
                return self._unscanned(ref, error, awaiting_upload=error.pending_upload)
            return ScanResult(ref, None, (), error=error, retryable=retryable)

        verdicts: list[Verdict] = []
        failures: list[Classification] = []
        results = await self.runner.run(MediaInput(hashes=hashes, data=data, mimetype=ref.mimetype))
        del data  # the bytes went to the classifiers that needed them, and go no further
        for run in results:
            result = run.classification
            scan_outcome = "error" if result.error else "skipped" if result.skipped else "cached" if run.cached else (
                "match" if result.verdicts else "no_match"
            )
            self.metrics.classifier_scans.labels(result.classifier, scan_outcome).inc()
            if result.error:
                failures.append(result)
                journal.audit("scan", "classifier_error", f"{result.classifier}: {result.error}", mxc=ref.mxc)
            elif result.skipped:
                journal.audit("scan", "skipped", f"{result.classifier}: {result.skipped}", mxc=ref.mxc)
            else:
                journal.record_verdicts(ref.mxc, result.classifier, result.verdicts)
                if result.note:
                    journal.audit("scan", "sent", f"{result.classifier}: {result.note}", mxc=ref.mxc)
                if run.cached:
                    journal.audit("scan", "cached", f"{result.classifier}: answered from the verdict cache", mxc=ref.mxc)
            verdicts.extend(result.verdicts)
        allowed = self._allowlist().reason(hashes) if verdicts else None
        if allowed:
            journal.audit(
                "verdict", "allowlisted",
                f"{'; '.join(describe_verdict(v) for v in verdicts)} ignored: {allowed}", mxc=ref.mxc,
            )
            self.metrics.media_scanned.labels("allowlisted").inc()
            return ScanResult(ref, hashes, ())
        for v in verdicts:
            self.metrics.matches.labels(v.list_name or v.classifier, v.label, v.kind.value).inc()
        outcome = "match" if verdicts else "no_match"
        journal.audit(
            "verdict", outcome,
            "; ".join(describe_verdict(v) for v in verdicts) if verdicts else f"no match (sha256 {hashes.sha256})",
            mxc=ref.mxc,
        )
        self.metrics.media_scanned.labels(outcome).inc()
        self.metrics.scan_seconds.observe(time.monotonic() - started)
        return ScanResult(ref, hashes, tuple(verdicts), failures=tuple(failures))

    async def classify_hashes(self, hashes: Hashes) -> tuple[list[Verdict], list[str]]:
        """What the hash-only classifiers say of some hashes, recording nothing (for `scan`)."""
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for run in await self.runner.run(MediaInput(hashes=hashes), hash_only=True):
            verdicts.extend(run.classification.verdicts)
            if run.classification.error:
                errors.append(f"{run.classification.classifier}: {run.classification.error}")
        return verdicts, errors

    async def hashes_for(self, ref: MediaRef) -> tuple[Hashes | None, str | None, bool]:
        """Hashes of the media: remembered ones for an mxc seen before, else download and hash.

        An mxc's content never changes, so its hashes are reused; this also lets a re-post of
        media that is already quarantined (and so undownloadable) be matched again.
        """
        journal = self.store.journal()
        try:
            hashes, _data, error, retryable = await self._media(ref, journal, keep_data=False)
        finally:
            await self.store.commit(journal)
        return hashes, error, retryable

    async def _media(
        self, ref: MediaRef, journal: EventJournal, *, keep_data: bool = True, held: bool = False,
        lease: Lease | None = None,
    ) -> tuple[Hashes | None, bytes | None, str | None, bool]:
        """Hashes, and the bytes when a classifier that needs them has no cached answer.

        The bytes are held in memory only, for the classifiers that declared `needs_data`;
        the caller drops them once those have run. Media the bot quarantined itself while a
        scan was failing is read with the admin's quarantine bypass, to be scanned again.
        """
        known_hashes = journal.pending_hashes(ref.mxc)
        if known_hashes is None:
            # Hashed lately, or read with the event at intake; else the database says.
            answered, known_hashes = self.recent.lookup(ref.mxc, journal.seen)
            if not answered:
                known = await self.store.get_media(ref.mxc)
                known_hashes = known.hashes if known is not None else None
        if known_hashes is not None:
            if not keep_data or not await self.runner.wants_data(known_hashes.sha256):
                return known_hashes, None, None, False
            fetched = await self.fetcher.fetch(ref, bypass_quarantine=held, lease=lease)
            if fetched.data is None and fetched.retryable:
                reason = fetched.error or "download failed"
                journal.audit("scan", "retry", f"not scanned yet: {reason}", mxc=ref.mxc)
                return None, None, reason, True
            # Without the bytes, the classifiers that need them report a failed scan.
            return known_hashes, fetched.data, None, False
        fetched = await self.fetcher.fetch(ref, bypass_quarantine=held, lease=lease)
        if fetched.data is None:
            reason = fetched.error or "download failed"
            if fetched.retryable:
                journal.audit("scan", "retry", f"not scanned yet: {reason}", mxc=ref.mxc)
                return None, None, reason, True
            if fetched.dead:
                journal.audit("scan", "not_scanned", f"not scanned: {reason}", mxc=ref.mxc)
                return None, None, DeadReference(reason, pending_upload=fetched.pending_upload), False
            if fetched.status == 404:
                recorded = await self._homeserver_record(journal, ref)
                if recorded is not None:
                    return recorded, None, None, False
            journal.record_media(ref, status="not_scanned", mimetype=fetched.mimetype, error=reason)
            journal.audit("scan", "not_scanned", reason, mxc=ref.mxc)
            return None, None, reason, False
        data = fetched.data
        del fetched
        # Decoding runs in the sandbox's worker processes, under memory and CPU limits: a
        # worker that goes over answers "not scanned: resource limit" with the exact hashes.
        hashes = await self.sandbox.hash(data, urgent=self.urgent)
        if not keep_data or not await self.runner.wants_data(hashes.sha256):
            data = None  # no classifier needs the bytes: they go no further than this line
            if lease is not None:
                lease.release()
        journal.record_media(ref, status="hashed", hashes=hashes, mimetype=ref.mimetype, error=hashes.perceptual_error)
        self.recent.put(ref.mxc, hashes)
        if hashes.perceptual_error:
            journal.audit(
                "scan", "partial", f"exact hashes only, no perceptual scan: {hashes.perceptual_error}", mxc=ref.mxc
            )
        elif hashes.sampling_limit:
            journal.audit("scan", "partial", f"video scanned in part: {hashes.sampling_limit}", mxc=ref.mxc)
        return hashes, data, None, False

    async def _homeserver_record(self, journal: EventJournal, ref: MediaRef) -> Hashes | None:
        """The SHA-256 Synapse keeps of a file it no longer serves.

        Since Synapse 1.128, quarantining a file also quarantines every later upload with
        the same content, so a re-upload of known media answers 404 before modbot can read
        it; Synapse's own record of its SHA-256 still lets modbot match it and act on the
        event and its sender.
        """
        try:
            info = await self.powers.homeserver.media_info(ref.server, ref.media_id)
        except HomeserverError:
            return None
        if not info or not info.get("quarantined_by") or not info.get("sha256"):
            return None
        hashes = Hashes(sha256=str(info["sha256"]), md5=None, size=int(info.get("media_length") or 0))
        journal.record_media(ref, status="hashed", hashes=hashes, mimetype=info.get("media_type"))
        journal.audit(
            "scan", "partial", "already quarantined on the homeserver: matched by the SHA-256 Synapse recorded",
            mxc=ref.mxc,
        )
        return hashes

    async def _audit(
        self, event: StoredEvent | None, category: str, outcome: str, message: str, ref: MediaRef | None = None
    ) -> None:
        await self.store.audit(
            category, outcome, message,
            event_id=event.event_id if event else None,
            room_id=event.room_id if event else None,
            sender=event.sender if event else None,
            mxc=ref.mxc if ref else None,
        )

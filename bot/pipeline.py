"""Per-event orchestration: extract -> fetch -> hash -> classify -> decide -> act -> record.

The pure stages (extraction, hashing, policy) know nothing of I/O; this module orders the
I/O around them and writes every step to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .act.executor import MatchedMedia, describe_verdict
from .act.homeserver import Homeserver, HomeserverError, RoomPower
from .allowlist import Allowlist
from .classify.base import Classifier, MediaInput
from .enforce import Enforcer
from .extract import extract_media_refs
from .fetch import MediaFetcher
from .hashing import compute_hashes
from .metrics import Metrics
from .model import Decision, EventContext, Hashes, MediaRef, Verdict
from .policy import Policy, decide
from .record.store import StoredEvent, Store

log = logging.getLogger("modbot.pipeline")


class RetryLater(Exception):
    """Processing hit a transient failure; the event stays queued and is tried again."""


@dataclass(frozen=True)
class ScanResult:
    ref: MediaRef
    hashes: Hashes | None
    verdicts: tuple[Verdict, ...]
    error: str | None = None
    retryable: bool = False


class PowerCache:
    """Room power levels, fetched on demand and dropped when the room's levels change."""

    def __init__(self, homeserver: Homeserver, ttl: float = 60.0) -> None:
        self.homeserver = homeserver
        self._ttl = ttl
        self._cache: dict[str, tuple[float, RoomPower]] = {}

    async def get(self, room_id: str) -> RoomPower:
        hit = self._cache.get(room_id)
        if hit and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        power = await self.homeserver.room_power(room_id)
        self._cache[room_id] = (time.monotonic(), power)
        return power

    def invalidate(self, room_id: str) -> None:
        self._cache.pop(room_id, None)


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
        fetcher: MediaFetcher,
        classifiers: Sequence[Classifier],
        enforcer: Enforcer,
        powers: PowerCache,
        metrics: Metrics,
        policy: Callable[[], Policy],
        allowlist: Callable[[], Allowlist],
        is_protected: Callable[[str], bool],
        bot_user_id: str,
        max_image_pixels: int,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.classifiers = list(classifiers)
        self.enforcer = enforcer
        self.powers = powers
        self.metrics = metrics
        self._policy = policy
        self._allowlist = allowlist
        self._is_protected = is_protected
        self.bot_user_id = bot_user_id
        self.max_image_pixels = max_image_pixels

    async def process(self, event: StoredEvent) -> None:
        """Handle one stored event. Raises RetryLater when it should be tried again."""
        if event.sender == self.bot_user_id or not self._is_protected(event.room_id):
            await self.store.finish_event(event.event_id, "ignored")
            return
        extracted = extract_media_refs(event.event)
        for problem in extracted.problems:
            await self._audit(event, "scan", "not_scanned", f"malformed event content: {problem}")
        await self.store.link_event_media(event.event_id, extracted.refs)

        scans = [await self._scan(event, ref) for ref in extracted.refs]
        transient = [s for s in scans if s.retryable]
        if transient:
            raise RetryLater("; ".join(s.error or "" for s in transient))

        matched = [MatchedMedia(s.ref, s.verdicts, s.hashes) for s in scans if s.verdicts]
        if matched:
            await self._act(event, matched)
        await self.store.finish_event(event.event_id, "done")
        if event.event.get("origin_server_ts"):
            self.metrics.end_to_end_seconds.observe(
                max(0.0, time.time() - event.event["origin_server_ts"] / 1000)
            )

    async def _act(self, event: StoredEvent, matched: list[MatchedMedia]) -> None:
        try:
            power = (await self.powers.get(event.room_id)).of(event.sender)
        except HomeserverError as e:
            # Without power levels the exemption rules can't be applied; acting anyway could
            # punish a moderator, so the event is retried rather than guessed at.
            raise RetryLater(f"could not read power levels of {event.room_id}: {e}") from e
        ctx = EventContext(
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            sender_power=power,
            origin_server_ts=event.event.get("origin_server_ts"),
        )
        verdicts = [v for m in matched for v in m.verdicts]
        decision = decide(verdicts, ctx, self._policy())
        await self._audit(event, "decision", _decision_outcome(decision), _describe_decision(decision))
        # Only media that the firing rule's verdicts point at is acted on.
        fired = set(decision.verdicts)
        acting_on = [m for m in matched if fired.intersection(m.verdicts)]
        await self.enforcer.enforce(decision, ctx, acting_on)

    async def _scan(self, event: StoredEvent, ref: MediaRef) -> ScanResult:
        started = time.monotonic()
        if ref.encrypted:
            await self.store.record_media(ref, status="encrypted", mimetype=ref.mimetype)
            await self._audit(event, "scan", "not_scanned", "encrypted attachment, not scanned", ref)
            self.metrics.media_scanned.labels("encrypted").inc()
            return ScanResult(ref, None, (), error="encrypted")

        hashes, error, retryable = await self.hashes_for(ref, event)
        if hashes is None:
            self.metrics.media_scanned.labels("error").inc()
            return ScanResult(ref, None, (), error=error, retryable=retryable)

        verdicts: list[Verdict] = []
        media = MediaInput(hashes=hashes, mimetype=ref.mimetype)
        for classifier in self.classifiers:
            result = await classifier.classify(media)
            if result.error:
                await self._audit(event, "scan", "classifier_error", f"{classifier.name}: {result.error}", ref)
            else:
                await self.store.record_verdicts(event.event_id, ref.mxc, classifier.name, result.verdicts)
            verdicts.extend(result.verdicts)
        allowed = self._allowlist().reason(hashes) if verdicts else None
        if allowed:
            await self._audit(
                event, "verdict", "allowlisted",
                f"{'; '.join(describe_verdict(v) for v in verdicts)} ignored: {allowed}", ref,
            )
            self.metrics.media_scanned.labels("allowlisted").inc()
            return ScanResult(ref, hashes, ())
        for v in verdicts:
            self.metrics.matches.labels(v.list_name or v.classifier, v.label, v.kind.value).inc()
        outcome = "match" if verdicts else "no_match"
        await self._audit(
            event, "verdict", outcome,
            "; ".join(describe_verdict(v) for v in verdicts) if verdicts else f"no match (sha256 {hashes.sha256})",
            ref,
        )
        self.metrics.media_scanned.labels(outcome).inc()
        self.metrics.scan_seconds.observe(time.monotonic() - started)
        return ScanResult(ref, hashes, tuple(verdicts))

    async def classify_hashes(self, hashes: Hashes) -> tuple[list[Verdict], list[str]]:
        """What the hash-only classifiers say of some hashes, recording nothing (for `scan`)."""
        verdicts: list[Verdict] = []
        errors: list[str] = []
        for classifier in self.classifiers:
            if classifier.needs_data:
                continue
            result = await classifier.classify(MediaInput(hashes=hashes))
            verdicts.extend(result.verdicts)
            if result.error:
                errors.append(f"{classifier.name}: {result.error}")
        return verdicts, errors

    async def hashes_for(
        self, ref: MediaRef, event: StoredEvent | None = None
    ) -> tuple[Hashes | None, str | None, bool]:
        """Hashes of the media: remembered ones for an mxc seen before, else download and hash.

        An mxc's content never changes, so its hashes are reused; this also lets a re-post of
        media that is already quarantined (and so undownloadable) be matched again.
        """
        known = await self.store.get_media(ref.mxc)
        if known is not None and known.hashes is not None:
            return known.hashes, None, False
        fetched = await self.fetcher.fetch(ref)
        if fetched.data is None:
            reason = fetched.error or "download failed"
            if fetched.retryable:
                await self._audit(event, "scan", "retry", f"not scanned yet: {reason}", ref)
                return None, reason, True
            if fetched.status == 404:
                recorded = await self._homeserver_record(event, ref)
                if recorded is not None:
                    return recorded, None, False
            await self.store.record_media(ref, status="not_scanned", mimetype=fetched.mimetype, error=reason)
            await self._audit(event, "scan", "not_scanned", reason, ref)
            return None, reason, False
        data = fetched.data
        del fetched
        # Hashing is CPU-bound; a thread keeps the intake answering meanwhile.
        hashes = await asyncio.to_thread(compute_hashes, data, max_pixels=self.max_image_pixels)
        del data  # the bytes go no further than this line
        mimetype = ref.mimetype
        await self.store.record_media(
            ref, status="hashed", hashes=hashes, mimetype=mimetype, error=hashes.perceptual_error
        )
        if hashes.perceptual_error:
            await self._audit(
                event, "scan", "partial",
                f"exact hashes only, no perceptual scan: {hashes.perceptual_error}", ref,
            )
        return hashes, None, False

    async def _homeserver_record(self, event: StoredEvent | None, ref: MediaRef) -> Hashes | None:
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
        await self.store.record_media(ref, status="hashed", hashes=hashes, mimetype=info.get("media_type"))
        await self._audit(
            event, "scan", "partial",
            "already quarantined on the homeserver: matched by the SHA-256 Synapse recorded", ref,
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


def _decision_outcome(d: Decision) -> str:
    if d.rule is None:
        return "no_rule"
    if d.exempt_reason:
        return "exempt"
    return "dry_run" if d.dry_run else "act"


def _describe_decision(d: Decision) -> str:
    if d.rule is None:
        return "matches found but no policy rule applies"
    if d.exempt_reason:
        return f"rule {d.rule} matched but the sender is exempt: {d.exempt_reason}"
    actions = ", ".join(a.kind.value + (f" ({a.scope})" if a.kind.value == "ban" else "") for a in d.actions)
    return f"rule {d.rule}{' [dry run]' if d.dry_run else ''}: {actions}"

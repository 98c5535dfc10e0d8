"""From a Decision to its consequences: act now, or hold for review; record confirmed matches
as incidents. Moderators resolve reviews here too, so both paths share one executor."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .executor import Executor
from .homeserver import HomeserverError
from ..extract import parse_mxc
from .incidents import build_record
from .notices import ActionResult, MatchedMedia, media_lines, notice_text
from ..model import ActionKind, Decision, EventContext, Hashes, MatchKind, MediaRef, Outcome, PlannedAction, Verdict, hashes_summary, verdict_json
from ..record.moderation import Incident, ModerationStore, ReviewItem
from ..record.store import Store

log = logging.getLogger("modbot.enforce")

HOLD = (PlannedAction(ActionKind.QUARANTINE), PlannedAction(ActionKind.REDACT))


class Enforcer:
    def __init__(
        self,
        executor: Executor,
        store: Store,
        moderation: ModerationStore,
        *,
        homeserver_name: str,
        management_room: Callable[[], str | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.executor = executor
        self.store = store
        self.moderation = moderation
        self.homeserver_name = homeserver_name
        self._management_room = management_room
        self._clock = clock

    async def enforce(
        self, decision: Decision, ctx: EventContext, matched: Sequence[MatchedMedia], *, retroactive: bool = False
    ) -> list[ActionResult]:
        detected_at = self._clock()
        review = next((a for a in decision.actions if a.kind is ActionKind.REVIEW), None)
        if decision.acts and review is not None and not decision.dry_run:
            await self.open_review(decision, ctx, matched, hold=review.scope == "hold")
            return []
        if decision.acts and review is not None:
            # Dry run: say what would be held, do nothing else.
            planned = [a for a in decision.actions if a.kind is not ActionKind.REVIEW]
            return await self.executor.carry_out(decision, ctx, matched, actions=planned)
        results = await self.executor.carry_out(decision, ctx, matched)
        if decision.acts and not decision.dry_run:
            await self.record_incident(
                ctx, matched, decision.rule, f"policy rule {decision.rule}", results, detected_at, retroactive=retroactive
            )
        return results

    # --- incidents -----------------------------------------------------------------------------

    async def record_incident(
        self,
        ctx: EventContext,
        matched: Sequence[MatchedMedia],
        rule: str | None,
        decided_by: str,
        results: Sequence[ActionResult],
        detected_at: float,
        *,
        retroactive: bool = False,
    ) -> Incident:
        media = []
        for m in matched:
            entry: dict[str, Any] = {"mxc": m.ref.mxc, "source": m.ref.source, "mimetype": m.ref.mimetype}
            if m.hashes is not None:
                entry.update(sha256=m.hashes.sha256, md5=m.hashes.md5, pdq=m.hashes.pdq, size=m.hashes.size)
            media.append(entry)
        matches = [verdict_json(v) for m in matched for v in m.verdicts]
        record = build_record(
            event_id=ctx.event_id,
            room_id=ctx.room_id,
            sender=ctx.sender,
            homeserver=self.homeserver_name,
            sent_ts_ms=ctx.origin_server_ts,
            detected_at=detected_at,
            actioned_at=self._clock(),
            media=media,
            matches=matches,
            rule=rule,
            decided_by=decided_by,
            actions=[{"kind": r.kind, "target": r.target, "room": r.room_id, "outcome": r.outcome.value, "detail": r.detail} for r in results],
            retroactive=retroactive,
        )
        if ctx.blocked_before_delivery:
            # Never on the homeserver: the event as Synapse offered it is the evidence.
            offered = await self.store.load_event(ctx.event_id)
            record.update(delivery="blocked before delivery", event=offered.event if offered else None)

        def audit(incident: Incident) -> dict[str, Any]:  # written in the incident's transaction
            return self.store.audit_row(
                "incident", "recorded",
                f"incident #{incident.id}: {record['incident_type']}" + (" (retroactive)" if retroactive else ""),
                event_id=ctx.event_id, room_id=ctx.room_id, sender=ctx.sender,
            )

        return await self.moderation.append_incident(ctx.event_id, record, audit)

    # --- review queue ----------------------------------------------------------------------------

    async def open_review(
        self, decision: Decision, ctx: EventContext, matched: Sequence[MatchedMedia], *, hold: bool
    ) -> ReviewItem:
        deferred = [a for a in decision.actions if a.kind is not ActionKind.REVIEW]
        detail = {
            "ctx": asdict(ctx),
            "matched": [_matched_json(m) for m in matched],
            "deferred": [{"kind": a.kind.value, "scope": a.scope} for a in deferred],
            # A review opened because a scan failed (on_failure: review) says which and why.
            "failures": [f"{c.classifier}: {c.error}" for c in decision.failures if c.error],
            "detected_at": self._clock(),
        }
        item = await self.moderation.open_review(
            event_id=ctx.event_id, room_id=ctx.room_id, sender=ctx.sender, rule=decision.rule or "", detail=detail, held=hold
        )
        hold_results: list[ActionResult] = []
        if hold:
            hold_results = await self.executor.carry_out(decision, ctx, matched, actions=HOLD)
        await self.store.audit(
            "review", "opened", f"review #{item.id} ({'held' if hold else 'flagged'}) for rule {decision.rule}",
            event_id=ctx.event_id, room_id=ctx.room_id, sender=ctx.sender,
        )
        if item.card_event_id is None:
            card = await self._post_card(item, ctx, matched, hold, hold_results)
            if card:
                await self.moderation.set_review_card(item.id, card)
        return item

    async def _post_card(
        self, item: ReviewItem, ctx: EventContext, matched: Sequence[MatchedMedia], hold: bool, results: Sequence[ActionResult]
    ) -> str | None:
        room = self._management_room()
        if room is None:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((ctx.origin_server_ts or 0) / 1000))
        lines = [
            f"Sender: {ctx.sender}",
            f"Room: {ctx.room_id}",
            f"Event: {ctx.event_id} (sent {when})",
            f"Rule: {item.rule}",
            *media_lines(matched),
            *(f"Scan failed: {failure}" for failure in item.detail.get("failures", [])),
        ]
        if hold:
            lines.append("Held: " + "; ".join(f"{r.kind} {r.outcome.value}" for r in results))
        else:
            lines.append("Flagged only: nothing was done yet")
        deferred = ", ".join(d["kind"] for d in item.detail["deferred"]) or "nothing more"
        lines.append(f"Approve to {deferred}: `review approve {item.id}`; reject (false match): `review reject {item.id}`")
        body, formatted = notice_text(f"modbot review #{item.id}: a match needs a moderator", lines)
        try:
            return await self.executor.hs.send_notice(room, body, formatted, f"modbot.review.{item.id}")
        except HomeserverError as e:
            log.warning("could not post review card #%d: %s", item.id, e)
            return None

    async def approve(self, review_id: int, *, by: str, command_event_id: str) -> tuple[ReviewItem | None, list[ActionResult], Incident | None]:
        item = await self.moderation.review(review_id)
        if item is None or not await self.moderation.resolve_review(review_id, "approved", by):
            return item, [], None
        ctx, matched, deferred = _restore(item)
        decision = Decision(rule=item.rule, actions=tuple(deferred), verdicts=tuple(v for m in matched for v in m.verdicts))
        results = await self.executor.carry_out(decision, ctx, matched) if deferred else []
        await self.store.audit("review", "approved", f"review #{review_id} approved by {by}", event_id=item.event_id, room_id=item.room_id, sender=item.sender)
        incident = await self.record_incident(
            ctx, matched, item.rule, f"{by} (review #{review_id}, rule {item.rule})", results, item.detail.get("detected_at", item.created_at)
        )
        return await self.moderation.review(review_id), results, incident

    async def reject(
        self, review_id: int, *, by: str, command_event_id: str, tell_room: bool
    ) -> tuple[ReviewItem | None, list[ActionResult]]:
        item = await self.moderation.review(review_id)
        if item is None or not await self.moderation.resolve_review(review_id, "rejected", by):
            return item, []
        ctx, matched, _ = _restore(item)
        results: list[ActionResult] = []
        for m in matched:
            if item.held:
                results.append(await self.executor.unquarantine(m.ref, by=by, reason_event_id=command_event_id))
            if m.hashes is not None:
                reason = f"false match rejected in review #{review_id}"
                await self.moderation.allow("sha256", m.hashes.sha256, reason, by)
                if m.hashes.pdq:
                    await self.moderation.allow("pdq", m.hashes.pdq, reason, by)
        if tell_room:
            text = "A message here was removed by mistake by the media scanner; moderators have restored what they could."
            room = item.room_id

            async def do() -> str:
                event = await self.executor.hs.send_notice(room, text, html.escape(text), f"modbot.reject.{review_id}")
                return f"told {room} ({event})"

            results.append(await self.executor.manual("tell_room", room, room, by=by, command_event_id=command_event_id, do=do))
        await self.store.audit(
            "review", "rejected", f"review #{review_id} rejected by {by}: hashes allowlisted"
            + ("; the event stays redacted (a redaction cannot be undone)" if item.held else ""),
            event_id=item.event_id, room_id=item.room_id, sender=item.sender,
        )
        return await self.moderation.review(review_id), results


def _matched_json(m: MatchedMedia) -> dict[str, Any]:
    return {
        "ref": asdict(m.ref),
        "verdicts": [verdict_json(v) for v in m.verdicts],
        "hashes": None if m.hashes is None else hashes_summary(m.hashes),
    }


def _restore(item: ReviewItem) -> tuple[EventContext, list[MatchedMedia], list[PlannedAction]]:
    ctx = EventContext(**item.detail["ctx"])
    matched = []
    for m in item.detail["matched"]:
        ref = MediaRef(**m["ref"])
        verdicts = tuple(
            Verdict(
                classifier=v["classifier"], label=v["label"], kind=MatchKind(v["kind"]), list_name=v["list"],
                hash_type=v["hash_type"], distance=v["distance"], matched_hash=v["matched_hash"],
            )
            for v in m["verdicts"]
        )
        hashes = Hashes(**m["hashes"]) if m["hashes"] else None
        matched.append(MatchedMedia(ref, verdicts, hashes))
    deferred = [PlannedAction(ActionKind(d["kind"]), d["scope"]) for d in item.detail["deferred"]]
    return ctx, matched, deferred


def media_ref(mxc: str, source: str = "command") -> MediaRef | None:
    parsed = parse_mxc(mxc)
    if parsed is None:
        return None
    return MediaRef(mxc=mxc, server=parsed[0], media_id=parsed[1], source=source)


__all__ = ["Enforcer", "media_ref", "Outcome"]

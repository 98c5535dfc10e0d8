"""Carries out a Decision: each action once, dry-run aware, every outcome audited."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..metrics import Metrics
from ..model import ActionKind, Decision, EventContext, Hashes, MatchKind, MediaRef, Outcome, PlannedAction, Verdict
from ..record.store import Store
from .homeserver import Homeserver, HomeserverError

log = logging.getLogger("modbot.act")


@dataclass(frozen=True)
class MatchedMedia:
    ref: MediaRef
    verdicts: tuple[Verdict, ...]
    hashes: Hashes | None = None


@dataclass(frozen=True)
class ActionResult:
    kind: str
    target: str
    room_id: str | None
    outcome: Outcome
    detail: str


def txn_id_for(key: str) -> str:
    """A transaction id derived from the action key, so a retried request is a no-op server-side."""
    return "modbot." + hashlib.sha256(key.encode()).hexdigest()[:32]


class Executor:
    def __init__(
        self,
        homeserver: Homeserver,
        store: Store,
        metrics: Metrics,
        *,
        protected_rooms: Callable[[], Sequence[str]],
        management_room: Callable[[], str | None],
    ) -> None:
        self.hs = homeserver
        self.store = store
        self.metrics = metrics
        self._protected_rooms = protected_rooms
        self._management_room = management_room
        # Two events processed at once may plan the same action (two posts, one ban):
        # the database row says whether it was done, the lock makes the check-then-act atomic.
        self._locks: dict[str, asyncio.Lock] = {}
        # How many callers hold or wait for each lock: it is dropped only when none do.
        self._lock_users: dict[str, int] = {}

    @property
    def management_room(self) -> str | None:
        return self._management_room()

    async def carry_out(
        self,
        decision: Decision,
        ctx: EventContext,
        matched: Sequence[MatchedMedia],
        *,
        actions: Sequence[PlannedAction] | None = None,
    ) -> list[ActionResult]:
        """Carry out the decision's actions (or the given subset of them, for reviews)."""
        if not decision.acts:
            return []
        planned = decision.actions if actions is None else tuple(actions)
        results: list[ActionResult] = []
        kinds = [a.kind for a in planned]
        # Notify goes last whatever its place in the rule, so the notice can say what was done.
        for action in planned:
            if action.kind is ActionKind.QUARANTINE:
                for m in matched:
                    results.append(await self._quarantine(m.ref, ctx, decision))
            elif action.kind is ActionKind.REDACT:
                results.append(await self._redact(ctx, decision))
            elif action.kind is ActionKind.BAN:
                rooms = [ctx.room_id] if action.scope == "room" else _unique([ctx.room_id, *self._protected_rooms()])
                for room_id in rooms:
                    results.append(await self._ban(room_id, ctx, decision))
        if ActionKind.NOTIFY in kinds:
            results.append(await self._notify(ctx, decision, matched, results))
        return results

    async def _quarantine(self, ref: MediaRef, ctx: EventContext, decision: Decision) -> ActionResult:
        async def do() -> str:
            await self.hs.quarantine(ref.server, ref.media_id)
            return f"quarantined {ref.mxc}"

        return await self._once(f"quarantine:{ref.mxc}", "quarantine", ref.mxc, ctx.room_id, ctx, decision, do)

    async def _redact(self, ctx: EventContext, decision: Decision) -> ActionResult:
        key = f"redact:{ctx.event_id}"

        async def do() -> str:
            redaction = await self.hs.redact(
                ctx.room_id, ctx.event_id, f"modbot: {decision.rule}", txn_id_for(key)
            )
            return f"redacted {ctx.event_id} ({redaction})"

        return await self._once(key, "redact", ctx.event_id, ctx.room_id, ctx, decision, do)

    async def _ban(self, room_id: str, ctx: EventContext, decision: Decision) -> ActionResult:
        if ctx.sender == self.hs.bot_user_id:
            return await self._skip("ban", ctx.sender, room_id, ctx, "the bot never bans itself")

        async def do() -> str:
            await self.hs.ban(room_id, ctx.sender, f"modbot: {decision.rule}")
            return f"banned {ctx.sender} from {room_id}"

        return await self._once(f"ban:{room_id}:{ctx.sender}", "ban", ctx.sender, room_id, ctx, decision, do)

    async def _notify(
        self,
        ctx: EventContext,
        decision: Decision,
        matched: Sequence[MatchedMedia],
        results: Sequence[ActionResult],
    ) -> ActionResult:
        room = self._management_room()
        if room is None:
            return await self._skip("notify", "-", None, ctx, "no management room configured")
        # A hold for a failed scan has its own notice: the one for a later match must still go.
        key = f"notify:{ctx.event_id}" if decision.verdicts or not decision.failures else f"notify-hold:{ctx.event_id}"
        body, formatted = compose_notice(ctx, decision, matched, results)

        async def do() -> str:
            notice = await self.hs.send_notice(room, body, formatted, txn_id_for(key))
            return f"notice {notice} in {room}"

        # A notice is sent in dry-run mode too: telling the moderators is what dry run is for.
        return await self._once(key, "notify", room, room, ctx, decision, do, dry_run=False)

    async def manual(
        self,
        kind: str,
        target: str,
        room_id: str | None,
        *,
        by: str,
        command_event_id: str,
        do: Callable[[], Awaitable[str]],
    ) -> ActionResult:
        """An action a moderator asked for: audited like the bot's own, once per command."""
        ctx = EventContext(event_id=command_event_id, room_id=room_id or "", sender=by, sender_power=0)
        decision = Decision(rule=f"command by {by}")
        key = f"cmd:{command_event_id}:{kind}:{room_id or '-'}:{target}"
        return await self._once(key, kind, target, room_id, ctx, decision, do, dry_run=False)

    async def unquarantine(self, ref: MediaRef, *, by: str, reason_event_id: str) -> ActionResult:
        async def do() -> str:
            await self.hs.unquarantine(ref.server, ref.media_id)
            return f"unquarantined {ref.mxc}"

        return await self.manual("unquarantine", ref.mxc, None, by=by, command_event_id=reason_event_id, do=do)

    async def _once(
        self,
        key: str,
        kind: str,
        target: str,
        room_id: str | None,
        ctx: EventContext,
        decision: Decision,
        do: Callable[[], Awaitable[str]],
        dry_run: bool | None = None,
    ) -> ActionResult:
        dry = decision.dry_run if dry_run is None else dry_run
        if dry:
            key = f"dryrun:{key}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                return await self._once_locked(key, kind, target, room_id, ctx, decision, do, dry)
        finally:
            # Not lock.locked(): a released lock whose waiter has not woken yet is unlocked,
            # and dropping it then would let a newcomer run beside that waiter.
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key]
                del self._locks[key]

    async def _once_locked(
        self,
        key: str,
        kind: str,
        target: str,
        room_id: str | None,
        ctx: EventContext,
        decision: Decision,
        do: Callable[[], Awaitable[str]],
        dry: bool,
    ) -> ActionResult:
        record = await self.store.claim_action(
            key, kind=kind, target=target, event_id=ctx.event_id, room_id=room_id, decided_by=decision.rule
        )
        if record.status in ("ok", "dry_run"):
            return await self._finish(
                key, kind, target, room_id, ctx, Outcome.SKIPPED, f"already done: {record.detail}", attempts=0, update=False
            )
        if dry:
            return await self._finish(key, kind, target, room_id, ctx, Outcome.DRY_RUN, f"dry run: would {kind} {target}")
        try:
            detail = await do()
            outcome = Outcome.OK
        except HomeserverError as e:
            detail = f"{kind} {target} failed: {e}"
            outcome = Outcome.FAILED
            log.warning("%s (event %s)", detail, ctx.event_id)
        return await self._finish(key, kind, target, room_id, ctx, outcome, detail)

    async def _skip(self, kind: str, target: str, room_id: str | None, ctx: EventContext, why: str) -> ActionResult:
        await self.store.audit("action", Outcome.SKIPPED.value, f"{kind} {target}: {why}", event_id=ctx.event_id, room_id=room_id, sender=ctx.sender)
        self.metrics.actions.labels(kind, Outcome.SKIPPED.value).inc()
        return ActionResult(kind, target, room_id, Outcome.SKIPPED, why)

    async def _finish(
        self,
        key: str,
        kind: str,
        target: str,
        room_id: str | None,
        ctx: EventContext,
        outcome: Outcome,
        detail: str,
        attempts: int = 1,
        update: bool = True,
    ) -> ActionResult:
        if update:
            status = outcome.value
            await self.store.finish_action(key, status, attempts, detail)
        await self.store.audit(
            "action", outcome.value, detail, event_id=ctx.event_id, room_id=room_id, sender=ctx.sender,
            mxc=target if target.startswith("mxc://") else None,
        )
        self.metrics.actions.labels(kind, outcome.value).inc()
        return ActionResult(kind, target, room_id, outcome, detail)


def describe_verdict(v: Verdict) -> str:
    where = f"list {v.list_name}" if v.list_name else v.classifier
    if v.kind is MatchKind.EXACT:
        how = f"exact {v.hash_type}" if v.hash_type else "exact"
    else:
        how = f"near, {v.hash_type or 'hash'} distance {v.distance}"
    return f"{where}, label {v.label} ({how})"


def compose_notice(
    ctx: EventContext,
    decision: Decision,
    matched: Sequence[MatchedMedia],
    results: Sequence[ActionResult],
) -> tuple[str, str]:
    """The management-room notice: who, where, what matched and what was done. Never the media."""
    what = "known media detected" if decision.verdicts or not decision.failures else "media held: a scan failed"
    title = f"modbot [DRY RUN]: {what}" if decision.dry_run else f"modbot: {what}"
    lines = [
        f"Room: {ctx.room_id}",
        f"Event: {ctx.event_id}",
        f"Sender: {ctx.sender}",
        f"Rule: {decision.rule}",
        *media_lines([m for m in matched if m.verdicts]),
    ]
    if decision.failures:
        # Classifier errors are credential-free by contract (see bot.classify.base).
        failed = "; ".join(f"{f.classifier}: {f.error}" for f in decision.failures)
        mode = decision.on_failure.value if decision.on_failure else "fail_open"
        lines.append(f"Scan failed ({mode}): {failed}")
        if decision.holds:
            lines.append("Held until a scan succeeds: the media is quarantined and the event redacted.")
    if results:
        lines.append("Actions: " + "; ".join(f"{r.kind} {r.target}: {r.outcome.value}" for r in results))
    else:
        lines.append("Actions: none")
    return notice_text(title, lines)


def media_lines(matched: Sequence[MatchedMedia]) -> list[str]:
    """One line per matched media: its mxc (as text, never the media) and what it matched."""
    return [f"Media {m.ref.mxc} ({m.ref.source}): " + "; ".join(describe_verdict(v) for v in m.verdicts) for m in matched]


def notice_text(title: str, lines: Sequence[str]) -> tuple[str, str]:
    """A notice's plain body and its HTML: the title in bold, one line each."""
    body = title + "\n" + "\n".join(lines)
    formatted = f"<b>{html.escape(title)}</b><br>" + "<br>".join(html.escape(line) for line in lines)
    return body, formatted


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))

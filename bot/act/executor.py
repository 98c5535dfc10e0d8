"""Carries out a Decision: each action once, dry-run aware, every outcome audited.

An action the homeserver could not take now (no answer, 429, 5xx) stays pending with its
next attempt stored, and bot/act/retry.py tries it again until it is done or a moderator
gives it up. A refusal (403, 404, 400...) is final at once: the homeserver has considered
the request and will answer the same until a person changes something (the bot's power,
its admin rights, a creator who cannot be banned); the notice says why, and `actions
retry` takes it up again once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ..metrics import Metrics
from ..model import ActionKind, Decision, EventContext, FailureMode, MediaRef, Outcome, PlannedAction
from ..record.actions import DONE, GIVEN_UP, ActionRecord
from ..record.store import Store
from ..senders import server_of
from .admin import ADMIN_KINDS, admin_steps, ordered
from .homeserver import Homeserver, HomeserverError
from .notices import ActionResult, MatchedMedia, compose_notice, notice_text
from .operations import Operation, perform

log = logging.getLogger("modbot.act")


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
        retry_delay: float = 30.0,
        retry_max_delay: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hs = homeserver
        self.store = store
        self.metrics = metrics
        self._protected_rooms = protected_rooms
        self._management_room = management_room
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self._clock = clock
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
        for action in ordered(planned):
            if action.kind in ADMIN_KINDS:
                results += await self._admin(action, ctx, decision)
            elif action.kind is ActionKind.QUARANTINE:
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

    async def _admin(self, action: PlannedAction, ctx: EventContext, decision: Decision) -> list[ActionResult]:
        """A server-admin action (bot/act/admin.py): its steps, each durable and audited."""
        if action.kind is ActionKind.SERVER_ACL and not decision.dry_run:
            waiting = await self._count_remote_incident(ctx, decision)
            if waiting is not None:
                return [waiting]
        steps = admin_steps(
            action, ctx, decision, protected_rooms=self._protected_rooms(),
            management_room=self._management_room(), bot_user_id=self.hs.bot_user_id,
        )
        results = []
        for step in steps:
            if step.skip is not None or step.operation is None:
                results.append(await self._skip(step.kind, step.target, step.room_id, ctx, step.skip or "nothing to do"))
            else:
                results.append(await self._durable(step.key, step.kind, step.target, step.room_id, ctx, decision, step.operation))
        return results

    async def _count_remote_incident(self, ctx: EventContext, decision: Decision) -> ActionResult | None:
        """Note this incident against the sender's server; a result saying why the server is
        not denied yet, or None once it has had `after` incidents within `within` seconds."""
        server = server_of(ctx.sender)
        after, within = decision.server_acl_after or (1, 0.0)

        async def note() -> str:
            return f"incident from {server} noted for its server ACL threshold"

        await self._once(f"remote_incident:{ctx.event_id}", "remote_incident", server, None, ctx, decision, do=note, dry_run=False)
        count = await self.store.count_actions(kind="remote_incident", target=server, since=self._clock() - within)
        if count >= after:
            return None
        why = f"{count} of {after} incidents from {server} within {within:.0f} s: not denied yet"
        return await self._skip("server_acl", server, None, ctx, why)

    def delay_for(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` failed ones: doubling, capped."""
        return min(self.retry_max_delay, self.retry_delay * 2 ** max(0, attempts - 1))

    async def _quarantine(self, ref: MediaRef, ctx: EventContext, decision: Decision) -> ActionResult:
        op = Operation("quarantine", {"server": ref.server, "media_id": ref.media_id}, ctx.sender)
        return await self._durable(f"quarantine:{ref.mxc}", "quarantine", ref.mxc, ctx.room_id, ctx, decision, op)

    async def _redact(self, ctx: EventContext, decision: Decision) -> ActionResult:
        if ctx.blocked_before_delivery:
            return await self._skip("redact", ctx.event_id, ctx.room_id, ctx, "blocked before delivery: never sent")
        key = f"redact:{ctx.event_id}"
        args = {"room_id": ctx.room_id, "event_id": ctx.event_id, "reason": f"modbot: {decision.rule}", "txn_id": txn_id_for(key)}
        return await self._durable(key, "redact", ctx.event_id, ctx.room_id, ctx, decision, Operation("redact", args, ctx.sender))

    async def _ban(self, room_id: str, ctx: EventContext, decision: Decision) -> ActionResult:
        if ctx.sender == self.hs.bot_user_id:
            return await self._skip("ban", ctx.sender, room_id, ctx, "the bot never bans itself")
        op = Operation("ban", {"room_id": room_id, "user_id": ctx.sender, "reason": f"modbot: {decision.rule}"}, ctx.sender)
        return await self._durable(f"ban:{room_id}:{ctx.sender}", "ban", ctx.sender, room_id, ctx, decision, op)

    async def notice(self, key: str, title: str, lines: Sequence[str], ctx: EventContext, decided_by: str) -> ActionResult:
        """A notice of its own in the management room (once per key, retried like the rest)."""
        room = self._management_room()
        if room is None:
            return await self._skip("notify", "-", None, ctx, "no management room configured")
        body, formatted = notice_text(title, lines)
        op = Operation("notice", {"room_id": room, "body": body, "html": formatted, "txn_id": txn_id_for(key)}, ctx.sender)
        return await self._durable(key, "notify", room, room, ctx, Decision(rule=decided_by), op, dry_run=False)

    async def perform(
        self, key: str, operation: Operation, *, target: str, room_id: str | None, ctx: EventContext, decision: Decision
    ) -> ActionResult:
        """Any stored operation (policy lists: ban, unban, state, server_acl), once per key,
        retried and audited like the pipeline's own actions."""
        return await self._durable(key, operation.op, target, room_id, ctx, decision, operation)

    async def retry(self, record: ActionRecord) -> ActionResult | None:
        """Try a due pending action again (the retry loop); None if another claimer has it."""
        if record.operation is None:
            return None
        op = Operation.from_json(record.operation)
        ctx = EventContext(event_id=record.event_id or "", room_id=record.room_id or "", sender=op.sender or "", sender_power=0)
        decision = Decision(rule=record.decided_by)
        return await self._once(
            record.key, record.kind, record.target, record.room_id, ctx, decision,
            operation=op, dry_run=False, due_only=True,
        )

    async def _durable(
        self,
        key: str,
        kind: str,
        target: str,
        room_id: str | None,
        ctx: EventContext,
        decision: Decision,
        operation: Operation,
        dry_run: bool | None = None,
    ) -> ActionResult:
        result = await self._once(key, kind, target, room_id, ctx, decision, operation=operation, dry_run=dry_run)
        assert result is not None  # only a retry (due_only) may find nothing to do
        return result

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
        op = Operation("notice", {"room_id": room, "body": body, "html": formatted, "txn_id": txn_id_for(key)}, ctx.sender)
        # A notice is sent in dry-run mode too: telling the moderators is what dry run is for.
        return await self._durable(key, "notify", room, room, ctx, decision, op, dry_run=False)

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
        result = await self._once(key, kind, target, room_id, ctx, decision, do=do, dry_run=False)
        assert result is not None
        return result

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
        *,
        do: Callable[[], Awaitable[str]] | None = None,
        operation: Operation | None = None,
        dry_run: bool | None = None,
        due_only: bool = False,
    ) -> ActionResult | None:
        """Claim the action and carry it out; `do` (a command's) or `operation` (stored, so
        that it can be retried) says how. None only for `due_only` (a retry) not claimed."""
        dry = decision.dry_run if dry_run is None else dry_run
        if dry:
            key = f"dryrun:{key}"
        # The lock orders the tasks of this process (a waiter then sees the row as the first
        # left it); the claim in the database is what keeps other processes out.
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                return await self._once_locked(key, kind, target, room_id, ctx, decision, do, operation, dry, due_only)
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
        do: Callable[[], Awaitable[str]] | None,
        operation: Operation | None,
        dry: bool,
        due_only: bool,
    ) -> ActionResult | None:
        record = await self.store.claim_action(
            key, kind=kind, target=target, event_id=ctx.event_id, room_id=room_id, decided_by=decision.rule,
            operation=operation.to_json() if operation is not None and not dry else None, due_only=due_only,
        )
        if not record.claimed:
            if due_only:
                return None
            if record.status in DONE:
                why = f"already done: {record.detail}"
            elif record.status == GIVEN_UP:
                why = f"not retried: {record.detail}"
            else:  # pending and held by another claimer (another process, most likely)
                why = f"being carried out by {record.owner}"
            return await self._finish(key, kind, target, room_id, ctx, Outcome.SKIPPED, why, attempts=0, update=False)
        if dry:
            return await self._finish(key, kind, target, room_id, ctx, Outcome.DRY_RUN, f"dry run: would {kind} {target}")
        # A stored operation (one homeserver call) never runs past the claim's lease: after
        # it, the retry loop of another process may take the action over. A command (`do`)
        # may legitimately run longer (redacting a user's history); nothing retries it.
        timeout = self.store.action_lease / 2
        try:
            if do is not None:
                detail = await do()
            else:
                assert operation is not None
                detail = await asyncio.wait_for(perform(self.hs, operation), timeout)
            return await self._finish(key, kind, target, room_id, ctx, Outcome.OK, detail)
        except (HomeserverError, TimeoutError) as e:
            error = str(e) if isinstance(e, HomeserverError) else f"no answer within {timeout:.0f} s"
            transient = not isinstance(e, HomeserverError) or e.transient
        if transient and operation is not None:
            attempt = record.attempts + 1
            delay = self.delay_for(attempt)
            detail = f"{kind} {target} not done yet (attempt {attempt}): {error}; next attempt in {delay:.0f} s"
            log.warning("%s (event %s)", detail, ctx.event_id)
            return await self._finish(
                key, kind, target, room_id, ctx, Outcome.PENDING, detail, error=error, next_attempt_at=self._clock() + delay
            )
        refused = "refused by the homeserver, not retried" if not transient else "not retried (a command: run it again)"
        detail = f"{kind} {target} failed: {error} ({refused})"
        log.warning("%s (event %s)", detail, ctx.event_id)
        return await self._finish(key, kind, target, room_id, ctx, Outcome.FAILED, detail, error=error)

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
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> ActionResult:
        who = {"event_id": ctx.event_id or None, "room_id": room_id, "sender": ctx.sender or None,
               "mxc": target if target.startswith("mxc://") else None}
        if not update:
            await self.store.audit("action", outcome.value, detail, **who)
        elif not await self.store.finish_action(
            # The audit row goes in the outcome's transaction: one trip for both.
            key, outcome.value, attempts, detail, next_attempt_at=next_attempt_at,
            audit=self.store.audit_row("action", outcome.value, detail, **who),
        ):
            # Our lease expired meanwhile and another process took the action over.
            log.warning("action %s: the claim was taken over before this attempt ended (%s)", key, outcome.value)
        self.metrics.actions.labels(kind, outcome.value).inc()
        return ActionResult(kind, target, room_id, outcome, detail, error)


def media_acted_on(
    decision: Decision, matched: Sequence[MatchedMedia], unscanned: Sequence[MatchedMedia] = ()
) -> list[MatchedMedia]:
    """The media a decision acts on: what the firing rule's verdicts point at, and media whose
    scan failed (`unscanned`) when the failure holds it or hands it to a moderator."""
    fired = set(decision.verdicts)
    acting_on = [m for m in matched if fired.intersection(m.verdicts)]
    if decision.on_failure in (FailureMode.FAIL_CLOSED, FailureMode.REVIEW):
        acting_on += [m for m in unscanned if m.ref not in {a.ref for a in acting_on}]
    return acting_on


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))

"""The `actions` commands: what the bot has not managed to do, and a moderator's say on it.

An action the homeserver could not take stays pending and is retried (bot/act/retry.py);
one it refused is failed. Moderators list them, give one up (the retries stop, audited),
or put a failed one back in the queue once its cause is fixed (say, the bot's power).
"""

from __future__ import annotations

import time

from ..record.actions import FAILED, GIVEN_UP, OPEN, PENDING, ActionRecord
from .framework import Arg, CommandSet
from .context import CommandContext, CommandError, Reply

_SHOW = {"open": OPEN, "pending": (PENDING,), "failed": (FAILED,), "given_up": (GIVEN_UP,)}
LIST_LIMIT = 30


def register_action_commands(commands: CommandSet) -> None:
    c = commands.command

    @c(
        "actions",
        "actions not done: pending (retried) and failed (refused); `actions given_up` for those given up",
        Arg("which", "word", optional=True),
        section="actions",
    )
    async def actions(ctx: CommandContext, which: str | None) -> Reply:
        which = (which or "open").lower()
        if which not in _SHOW:
            raise CommandError(f"`actions {which}`: say open (the default), pending, failed or given_up")
        records = await ctx.services.store.actions(statuses=_SHOW[which], limit=LIST_LIMIT)
        if not records:
            return Reply([f"No {which} actions."])
        at_most = f", at most {LIST_LIMIT}" if len(records) == LIST_LIMIT else ""
        lines = [f"{len(records)} {which} actions (newest first{at_most}):"]
        lines += [describe(r, time.time()) for r in records]
        lines.append(
            "`actions giveup <id> [reason]` stops the retries of one; `actions retry <id>` tries a failed one again."
        )
        return Reply(lines)

    @c(
        "actions giveup",
        "stop retrying a pending or failed action (audited)",
        Arg("id", "int"),
        Arg("reason", "text", optional=True),
        section="actions",
    )
    async def give_up(ctx: CommandContext, id: int, reason: str | None) -> Reply:  # noqa: A002
        repo = ctx.services.store.action_repo
        record = await repo.give_up(id, ctx.sender, reason or "no reason given")
        if record is None:
            raise CommandError(_why_not(await repo.get(id), id, "give up"))
        why = reason or "no reason given"
        await ctx.services.store.audit(
            "action", "given_up", f"{ctx.sender} gave up {record.kind} {record.target} (action #{id}): {why}",
            event_id=record.event_id, room_id=record.room_id, sender=ctx.sender,
        )
        return Reply([f"Gave up action #{id}: {record.kind} {record.target}. It will not be retried."])

    @c("actions retry", "try a failed or given-up action again, now", Arg("id", "int"), section="actions")
    async def retry(ctx: CommandContext, id: int) -> Reply:  # noqa: A002
        repo = ctx.services.store.action_repo
        record = await repo.retry(id)
        if record is None:
            raise CommandError(_why_not(await repo.get(id), id, "retry"))
        await ctx.services.store.audit(
            "action", "requeued", f"{ctx.sender} asked to retry {record.kind} {record.target} (action #{id})",
            event_id=record.event_id, room_id=record.room_id, sender=ctx.sender,
        )
        return Reply([
            f"Action #{id} ({record.kind} {record.target}) will be tried again within seconds; "
            "`actions` shows how it went."
        ])


def describe(r: ActionRecord, now: float) -> str:
    where = f" in {r.room_id}" if r.room_id and r.kind != "notify" else ""
    line = f"#{r.id} {r.kind} `{r.target}`{where} ({r.status}, {r.attempts} attempts"
    if r.status == PENDING and r.next_attempt_at is not None:
        line += f", next in {max(0, round(r.next_attempt_at - now))} s"
    line += ")"
    if r.event_id:
        line += f" for {r.event_id}"
    return line + (f": {r.detail}" if r.detail else "")


def _why_not(record: ActionRecord | None, action_id: int, what: str) -> str:
    if record is None:
        return f"No action #{action_id}."
    if record.status in ("ok", "dry_run"):
        return f"Action #{action_id} is done already ({record.detail})."
    if what == "give up" and record.status == GIVEN_UP:
        return f"Action #{action_id} was given up already: {record.detail}"
    if what == "give up":
        return f"Action #{action_id} is being attempted right now; ask again in a moment."
    if record.status == PENDING:
        return f"Action #{action_id} is pending already: it is retried by itself."
    return f"Action #{action_id} cannot be retried: it was a command's (run the command again)."

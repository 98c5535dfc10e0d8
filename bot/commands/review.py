"""The `review` commands: the matches held or flagged for a moderator, approved or rejected.
Approving runs the rule's remaining actions; rejecting releases the media and allowlists it
(bot/act/enforcer.py)."""

from __future__ import annotations

from .context import CommandContext, CommandError, Reply
from .framework import Arg, CommandSet


def register_review_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("review list", "open review items", section="review")
    async def review_list(ctx: CommandContext) -> Reply:
        items = await ctx.services.moderation.reviews("open")
        return Reply(
            [f"#{i.id}: {i.sender} in `{i.room_id}`, rule {i.rule}, {'held' if i.held else 'flagged'}" for i in items]
            or ["No open review items."]
        )

    @c("review approve", "confirm a match: the rule's remaining actions run", Arg("id", "int"), section="review")
    async def review_approve(ctx: CommandContext, id: int) -> Reply:  # noqa: A002
        enforcer = ctx.services.enforcer
        item, results, incident = await enforcer.approve(id, by=ctx.sender, command_event_id=ctx.event_id)
        if item is None:
            raise CommandError(f"no review item #{id}")
        if incident is None:
            raise CommandError(f"review #{id} is already {item.status}")
        lines = [f"Review #{id} approved; incident #{incident.id} recorded."]
        lines += [f"{r.kind} {r.target}: {r.outcome.value}" for r in results]
        return Reply(lines)

    @c("review reject", "a false match: release the media, allowlist its hashes", Arg("id", "int"), Arg("tell", "flag"),
       section="review")
    async def review_reject(ctx: CommandContext, id: int, tell: bool) -> Reply:  # noqa: A002
        enforcer = ctx.services.enforcer
        item, results = await enforcer.reject(id, by=ctx.sender, command_event_id=ctx.event_id, tell_room=tell)
        if item is None:
            raise CommandError(f"no review item #{id}")
        if item.resolved_by != ctx.sender or item.status != "rejected" or (not results and item.held):
            if item.status != "rejected" or item.resolved_by != ctx.sender:
                raise CommandError(f"review #{id} is already {item.status}")
        await ctx.services.controls.refresh_allowlist()
        lines = [f"Review #{id} rejected: its hashes are allowlisted."]
        lines += [f"{r.kind} {r.target}: {r.outcome.value}" for r in results]
        if item.held:
            lines.append("The event stays redacted: a redaction cannot be undone.")
        return Reply(lines)

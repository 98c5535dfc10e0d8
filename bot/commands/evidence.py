"""The `audit` commands: the last actions, an incident's record for a report, and
`audit anchor`, which posts the incident chain's head (id, hash, row count) to the
management room and the anchor file now, rather than waiting for the daily anchor
(bot/record/evidence.py)."""

from __future__ import annotations

import time

from ..act.incidents import summary
from .context import CommandContext, CommandError, Reply
from .framework import Arg, CommandSet
from .parse import Target


def register_evidence_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("audit", "the last N actions with outcomes, optionally for a user or room", Arg("n", "int", optional=True),
       Arg("target", "target", optional=True), section="audit")
    async def audit(ctx: CommandContext, n: int | None, target: Target | None) -> Reply:
        n = min(n or 10, 100)
        entries = await ctx.services.store.audit_log(category="action", limit=2000)
        if target is not None:
            entries = [e for e in entries if target.value in (e.sender, e.room_id, e.mxc) or target.value in e.message]
        entries = entries[:n]
        lines = [
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.ts))} {e.outcome}: {e.message}"
            for e in entries
        ]
        return Reply(lines or ["No actions recorded."])

    @c("report", "the incident record (no media) for a report", Arg("incident", "int"), section="audit")
    async def report(ctx: CommandContext, incident: int) -> Reply:
        found = await ctx.services.moderation.incident(incident)
        if found is None:
            raise CommandError(f"no incident #{incident}")
        return Reply([*summary(found.id, found.record), f"Record hash: `{found.row_hash}`"])

    @c(
        "audit anchor",
        "post the incident log's head hash and row count to the management room and the anchor file",
        section="audit",
    )
    async def audit_anchor(ctx: CommandContext) -> Reply:
        result = await ctx.services.anchors.anchor("command", by=ctx.sender)
        a = result.anchor
        lines = [f"Anchored: {a.count} incidents held, head #{a.head_id}, hash `{a.head_hash}`."]
        lines += [f"Not done: {p}" for p in result.problems]
        return Reply(lines, ok=not result.problems)

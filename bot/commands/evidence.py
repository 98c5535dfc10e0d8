"""`audit anchor`: post the incident chain's head (id, hash, row count) to the management room
and the anchor file now, rather than waiting for the daily anchor (bot/record/evidence.py)."""

from __future__ import annotations

from .framework import CommandSet
from .runner import CommandContext, Reply


def add_evidence_commands(commands: CommandSet) -> None:
    @commands.command(
        "audit anchor",
        "post the incident log's head hash and row count to the management room and the anchor file",
        section="audit",
    )
    async def audit_anchor(ctx: CommandContext) -> Reply:
        result = await ctx.bot.anchors.anchor("command", by=ctx.sender)
        a = result.anchor
        lines = [f"Anchored: {a.count} incidents held, head #{a.head_id}, hash `{a.head_hash}`."]
        lines += [f"Not done: {p}" for p in result.problems]
        return Reply(lines, ok=not result.problems)

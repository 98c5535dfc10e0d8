"""The `policy` commands: show the policy in force, reload it from the config, switch dry run."""

from __future__ import annotations

import yaml

from .context import CommandContext, Reply
from .framework import Arg, CommandSet


def register_policy_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("policy show", "the policy in force", section="policy")
    async def policy_show(ctx: CommandContext) -> Reply:
        text = yaml.safe_dump(ctx.services.controls.policy.model_dump(mode="json"), sort_keys=False)
        return Reply(["Policy in force:", *text.splitlines()])

    @c("policy reload", "reload the policy from the config; an invalid one is refused", section="policy")
    async def policy_reload(ctx: CommandContext) -> Reply:
        ok, message = await ctx.services.controls.reload_policy(by=ctx.sender)
        return Reply([message], ok=ok)

    @c("dryrun", "dry run on or off, everywhere or in one room", Arg("state", "onoff"),
       Arg("room", "room", optional=True), section="policy")
    async def dryrun(ctx: CommandContext, state: str, room: str | None) -> Reply:
        room_id = await ctx.services.homeserver.resolve_room(room) if room else None
        await ctx.services.controls.set_dry_run(state == "on", room_id, by=ctx.sender)
        return Reply([f"Dry run {state} {'in ' + room_id if room_id else 'everywhere'}."])

"""The `policylist` commands: which Matrix policy rooms modbot follows (MSC2313)."""

from __future__ import annotations

from ..act.homeserver import HomeserverError
from ..policylists.service import PolicyLists
from .context import CommandContext, CommandError, Reply
from .framework import Arg, CommandSet


def register_policylist_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("policylist watch", "follow a policy room: its m.ban user rules ban in every protected room",
       Arg("room", "room"), long_running=True, section="policylists")
    async def watch(ctx: CommandContext, room: str) -> Reply:
        lists = _lists(ctx)
        try:
            room_id, rules = await lists.watch(room, by=ctx.sender)
        except HomeserverError as e:
            raise CommandError(f"cannot join {room} (invite {ctx.services.bot_user_id} first): {e}") from e
        return Reply([f"Watching `{room_id}`: {rules} rules."])

    @c("policylist unwatch", "stop following a policy room (bans its rules made stay)", Arg("room", "room"),
       section="policylists")
    async def unwatch(ctx: CommandContext, room: str) -> Reply:
        try:
            room_id = await _lists(ctx).unwatch(room, by=ctx.sender)
        except KeyError:
            raise CommandError(f"{room} is not a watched policy room") from None
        return Reply([f"No longer watching `{room_id}`; the bans its rules made stay (`unban` to lift them)."])

    @c("policylist list", "the policy rooms followed, their sizes and last update", section="policylists")
    async def list_(ctx: CommandContext) -> Reply:
        watched = await _lists(ctx).status()
        return Reply([f"{len(watched)} policy rooms watched" + (":" if watched else "."), *(w.describe() for w in watched)])

    @c("policylist check", "ban the members of the protected rooms whom a rule names (also done at each start)",
       long_running=True, section="policylists")
    async def check(ctx: CommandContext) -> Reply:
        rooms = sorted(ctx.services.controls.protected)
        checks = await _lists(ctx).check_members(rooms)
        if not checks:
            return Reply([f"No user rule bans anyone: nothing to check in {len(rooms)} protected rooms."])
        return Reply([f"Checked the members of {len(checks)} protected rooms:", *(c.describe() for c in checks)])


def _lists(ctx: CommandContext) -> PolicyLists:
    if ctx.services.policylists is None:
        raise CommandError("policy lists are not available")
    return ctx.services.policylists

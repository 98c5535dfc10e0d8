"""The `rooms` commands: which rooms modbot protects, and its power in each."""

from __future__ import annotations

from ..act.homeserver import HomeserverError
from .context import CommandContext, CommandError, CommandServices, Reply
from .framework import Arg, CommandSet


def register_room_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("rooms list", "the protected rooms and the bot's power in each", section="rooms")
    async def rooms_list(ctx: CommandContext) -> Reply:
        protected = ctx.services.controls.protected
        lines = [f"{len(protected)} protected rooms:"]
        for room in sorted(protected):
            lines.append(f"`{room}`: {await power_note(ctx.services, room)}")
        return Reply(lines)

    @c("rooms protect", "protect a room (invite the bot first); its members are checked against the policy lists",
       Arg("room", "room"), long_running=True, section="rooms")
    async def rooms_protect(ctx: CommandContext, room: str) -> Reply:
        try:
            room_id = await ctx.services.controls.protect_room(room, by=ctx.sender)
        except HomeserverError as e:
            raise CommandError(f"cannot join {room} (invite {ctx.services.bot_user_id} first): {e}") from e
        lines = [f"Protecting `{room_id}`: {await power_note(ctx.services, room_id)}"]
        if ctx.services.policylists is not None:  # its members joined before: the lists' rules apply to them now
            lines += [check.describe() for check in await ctx.services.policylists.check_members([room_id])]
        return Reply(lines)

    @c("rooms unprotect", "stop protecting a room", Arg("room", "room"), section="rooms")
    async def rooms_unprotect(ctx: CommandContext, room: str) -> Reply:
        room_id = await ctx.services.controls.unprotect_room(room, by=ctx.sender)
        return Reply([f"No longer protecting `{room_id}`."])


async def power_note(services: CommandServices, room_id: str) -> str:
    """The bot's power in the room, and whether it is enough to ban and redact."""
    try:
        power = await services.powers.get(room_id)
    except HomeserverError as e:
        return f"cannot read power levels ({e})"
    mine = power.of(services.bot_user_id)
    need = max(power.ban, power.redact)
    if mine < need:
        return f"bot power {mine}, needs {need} to ban and redact"
    return f"bot power {mine} (ban {power.ban}, redact {power.redact})"

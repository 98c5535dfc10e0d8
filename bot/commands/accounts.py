"""The `accounts` commands: what a server admin does to an account or a room (suspend,
unsuspend, deactivate, takedown, unblock, quarantine user/room), through Synapse's admin API
and the executor, for the safety team only.

What cannot be undone — a deactivation, a purge — asks for a confirmation first: the
command again with `--yes`, or `confirm` sent as a reply to modbot's answer by the same
moderator within CONFIRM_WINDOW seconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..senders import server_of
from .context import CommandContext, CommandError, Reply
from .framework import Arg, CommandSet
from .members import refuse_untouchable

CONFIRM_WINDOW = 600
# The words that mark an answer as a question, and let `confirm` find the command it asks about.
ASK = "needs confirmation: it cannot be undone."
# The commands `confirm` may complete, and the flag that confirms them.
CONFIRMABLE = ("deactivate", "takedown")


def register_account_commands(commands: CommandSet) -> None:
    c = commands.command

    @c("suspend", "suspend a local user: they can read but not send or join (unsuspend undoes it)",
       Arg("user", "user", from_reply=True), section="accounts")
    async def suspend(ctx: CommandContext, user: str | None) -> Reply:
        who = await _local_user(ctx, user)
        return await _run(ctx, "suspend", who, None, lambda: _suspend(ctx, who, True))

    @c("unsuspend", "lift a suspension", Arg("user", "user"), section="accounts")
    async def unsuspend(ctx: CommandContext, user: str) -> Reply:
        who = await _local_user(ctx, user, check_untouchable=False)
        return await _run(ctx, "unsuspend", who, None, lambda: _suspend(ctx, who, False))

    @c("deactivate", "deactivate a local user for good (--erase: also erase their messages for new joiners)",
       Arg("user", "user", from_reply=True), Arg("erase", "flag"), Arg("yes", "flag"), section="accounts")
    async def deactivate(ctx: CommandContext, user: str | None, erase: bool, yes: bool) -> Reply:
        return await deactivate_user(ctx, await _local_user(ctx, user), erase=erase, yes=yes)

    @c("takedown", "block a room (no one here may join; unblock undoes it); --purge deletes it and its history",
       Arg("room", "room"), Arg("purge", "flag"), Arg("yes", "flag"), section="accounts")
    async def takedown(ctx: CommandContext, room: str, purge: bool, yes: bool) -> Reply:
        return await takedown_room(ctx, room, purge=purge, yes=yes)

    @c("unblock", "unblock a room taken down without purging", Arg("room", "room"), section="accounts")
    async def unblock(ctx: CommandContext, room: str) -> Reply:
        room_id = await ctx.services.homeserver.resolve_room(room)

        async def do() -> str:
            await ctx.services.homeserver.block_room(room_id, False)
            return f"unblocked {room_id}"

        return await _run(ctx, "unblock_room", room_id, room_id, do)

    @c("quarantine user", "quarantine every file a user uploaded", Arg("user", "user", from_reply=True), section="accounts")
    async def quarantine_user(ctx: CommandContext, user: str | None) -> Reply:
        who = await ctx.user_or_reply(user)
        await refuse_untouchable(ctx, who)
        hs = ctx.services.homeserver

        async def do() -> str:
            return f"quarantined {await hs.quarantine_user_media(who)} media of {who}"

        return await _run(ctx, "quarantine_user_media", who, None, do)

    @c("quarantine room", "quarantine every file posted in a room", Arg("room", "room"), section="accounts")
    async def quarantine_room(ctx: CommandContext, room: str) -> Reply:
        hs = ctx.services.homeserver
        room_id = await hs.resolve_room(room)

        async def do() -> str:
            return f"quarantined {await hs.quarantine_room_media(room_id)} media in {room_id}"

        return await _run(ctx, "quarantine_room_media", room_id, room_id, do)

    @c("confirm", "confirm a deactivation or purge: reply to modbot's question", section="accounts")
    async def confirm(ctx: CommandContext) -> Reply:
        return await confirm_question(ctx)


async def deactivate_user(ctx: CommandContext, user: str, *, erase: bool, yes: bool) -> Reply:
    if not yes:
        return _ask(f"deactivate {user}" + (" --erase" if erase else ""))

    async def do() -> str:
        await ctx.services.homeserver.deactivate(user, erase)
        return f"deactivated {user}" + (" and erased their messages" if erase else "")

    return await _run(ctx, "deactivate", user, None, do)


async def takedown_room(ctx: CommandContext, room: str, *, purge: bool, yes: bool) -> Reply:
    hs = ctx.services.homeserver
    room_id = await hs.resolve_room(room)
    if room_id == ctx.services.management_room:
        raise CommandError("modbot does not take down its management room.")
    if not purge:
        async def block() -> str:
            await hs.block_room(room_id, True)
            return f"blocked {room_id}: nobody on this server may join it (`unblock` undoes it)"

        return await _run(ctx, "block_room", room_id, room_id, block)
    if not yes:
        return _ask(f"takedown {room_id} --purge")

    async def purge_room() -> str:
        job = await hs.delete_room(room_id, block=True, purge=True, message=f"taken down by {ctx.sender}")
        return f"taking {room_id} down: blocked, members removed, history purged (job {job})"

    return await _run(ctx, "purge_room", room_id, room_id, purge_room)


async def confirm_question(ctx: CommandContext) -> Reply:
    """Complete the command modbot's replied-to answer asked about, if the same moderator
    sent it within the window."""
    answer = await ctx.replied_event()
    body = str(answer.get("content", {}).get("body", ""))
    if answer.get("sender") != ctx.services.bot_user_id or ASK not in body:
        raise CommandError("reply `confirm` to modbot's question about a deactivation or purge")
    age = time.time() - int(answer.get("origin_server_ts") or 0) / 1000
    if age > CONFIRM_WINDOW:
        raise CommandError(f"that question is older than {CONFIRM_WINDOW // 60} minutes: run the command again")
    relates = answer.get("content", {}).get("m.relates_to") or {}
    asked_by = (relates.get("m.in_reply_to") or {}).get("event_id")
    original = await ctx.services.homeserver.get_event(ctx.room_id, asked_by) if asked_by else {}
    if original.get("sender") != ctx.sender:
        raise CommandError("only the moderator who asked may confirm")
    words = str(original.get("content", {}).get("body", "")).split()
    start = next((i for i, w in enumerate(words) if w.lower() in CONFIRMABLE), None)
    if start is None or len(words) < start + 2:
        raise CommandError("the question names no command to confirm")
    name, target, flags = words[start].lower(), words[start + 1], set(words[start + 2:])
    if name == "deactivate":
        return await deactivate_user(ctx, await _local_user(ctx, target), erase="--erase" in flags, yes=True)
    return await takedown_room(ctx, target, purge="--purge" in flags, yes=True)


def _ask(command: str) -> Reply:
    return Reply(
        [f"`{command}` {ASK}", f"Send it again with `--yes`, or reply `confirm` to this message within {CONFIRM_WINDOW // 60} minutes."],
        ok=False,
    )


async def _local_user(ctx: CommandContext, user: str | None, *, check_untouchable: bool = True) -> str:
    who = await ctx.user_or_reply(user)
    if server_of(who) != server_of(ctx.services.bot_user_id):
        raise CommandError(f"{who} is not a user of this server: only local accounts can be suspended or deactivated (`ban {who} all` instead)")
    if check_untouchable:
        await refuse_untouchable(ctx, who)
    return who


async def _suspend(ctx: CommandContext, user: str, on: bool) -> str:
    await ctx.services.homeserver.suspend(user, on)
    return f"{'suspended' if on else 'unsuspended'} {user}"


async def _run(ctx: CommandContext, kind: str, target: str, room: str | None, do: Callable[[], Awaitable[str]]) -> Reply:
    result = await ctx.services.executor.manual(kind, target, room, by=ctx.sender, command_event_id=ctx.event_id, do=do)
    return Reply([result.detail], ok=result.outcome.value == "ok")

"""The `members` commands (ban, unban, kick, redact): who may be acted against in which
room, and the per-room actions through the executor.

Who may act against whom is decided per room by `authority.refusal`; a room where the
caller may not act is skipped, audited and named in the reply, and a command left with no
room at all is refused. Nothing is ever sent with an empty room set: Synapse's admin
redact API reads an empty `rooms` as "every room".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..act.homeserver import HomeserverError
from .authority import MemberAction, refusal
from .context import CommandContext, CommandError, Reply
from .framework import ROOM, Arg, CommandSet


def register_member_commands(commands: CommandSet) -> None:
    c = commands.command

    # Who may be acted against where: bot/commands/authority.py, per room (below).
    @c("ban", "ban a user here, in a room, or in all protected rooms", Arg("user", "user", from_reply=True),
       Arg("scope", "scope", optional=True), Arg("reason", "text", optional=True), scope=ROOM, section="members")
    async def ban(ctx: CommandContext, user: str | None, scope: str | None, reason: str | None) -> Reply:
        who = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(scope)
        hs = ctx.services.homeserver
        why = reason or f"banned by {ctx.sender}"
        return await act_in_rooms(ctx, "ban", who, rooms, lambda room: hs.ban(room, who, why))

    @c("unban", "unban a user here, in a room, or in all protected rooms", Arg("user", "user"),
       Arg("scope", "scope", optional=True), scope=ROOM, section="members")
    async def unban(ctx: CommandContext, user: str, scope: str | None) -> Reply:
        rooms = await ctx.rooms_for(scope)
        hs = ctx.services.homeserver
        why = f"unbanned by {ctx.sender}"
        return await act_in_rooms(ctx, "unban", user, rooms, lambda room: hs.unban(room, user, why))

    @c("kick", "kick a user from this room or a room", Arg("user", "user", from_reply=True),
       Arg("room", "room", optional=True), Arg("reason", "text", optional=True), scope=ROOM, section="members")
    async def kick(ctx: CommandContext, user: str | None, room: str | None, reason: str | None) -> Reply:
        who = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(room)
        hs = ctx.services.homeserver
        why = reason or f"kicked by {ctx.sender}"
        return await act_in_rooms(ctx, "kick", who, rooms, lambda room: hs.kick(room, who, why))

    @c("redact", "redact a user's recent messages here, in a room, or in all protected rooms",
       Arg("user", "user", from_reply=True), Arg("limit", "int", keyword="limit", optional=True),
       Arg("scope", "scope", optional=True), scope=ROOM, long_running=True, section="members")
    async def redact(ctx: CommandContext, user: str | None, limit: int | None, scope: str | None) -> Reply:
        who = await ctx.user_or_reply(user)
        rooms = await ctx.rooms_for(scope)
        return await redact_user(ctx, who, rooms, limit)


async def refuse_untouchable(ctx: CommandContext, user: str) -> None:
    """Never act against the bot itself or the safety team (the management room's members)."""
    services = ctx.services
    if user == services.bot_user_id:
        raise CommandError("modbot does not act against itself.")
    if services.management_room and user in await services.homeserver.joined_members(services.management_room):
        raise CommandError(f"{user} is a member of the management room; modbot does not act against the safety team.")


async def refuse_anywhere_protected(ctx: CommandContext, user: str) -> None:
    """For actions on a user across the server (quarantining all their media): refused when
    the bot may not act against them in any one protected room."""
    await refuse_untouchable(ctx, user)
    for room in sorted(ctx.services.controls.protected):
        why = refusal(
            await ctx.services.powers.get(room), action="ban", caller=ctx.sender, target=user,
            bot_user_id=ctx.services.bot_user_id, safety_team=True,
        )
        if why is not None:
            raise CommandError(f"{why} (in `{room}`).")


async def permitted_rooms(
    ctx: CommandContext, action: MemberAction, user: str, rooms: list[str]
) -> tuple[list[str], list[str]]:
    """The rooms where the caller may have the bot `action` the user, and a reply line for
    each room refused (each also audited). Raises CommandError when no room is left."""
    if not rooms:
        raise CommandError("no room to act in: modbot protects no rooms yet (`rooms protect <room>`)")
    await refuse_untouchable(ctx, user)
    allowed: list[str] = []
    refused: list[str] = []
    for room in rooms:
        why = refusal(
            await ctx.services.powers.get(room),
            action=action,
            caller=ctx.sender,
            target=user,
            bot_user_id=ctx.services.bot_user_id,
            safety_team=ctx.scope == "management",
        )
        if why is None:
            allowed.append(room)
            continue
        refused.append(f"{action} {user} in `{room}`: refused: {why}")
        await ctx.services.store.audit(
            "command", "refused", f"{ctx.sender}: {action} {user} in {room}: {why}",
            event_id=ctx.event_id, room_id=room, sender=ctx.sender,
        )
    if not allowed:
        raise CommandError(refused[0] if len(refused) == 1 else f"Refused in every room: {'; '.join(refused)}")
    return allowed, refused


async def act_in_rooms(
    ctx: CommandContext, action: MemberAction, user: str, rooms: list[str], call: Callable[[str], Awaitable[object]]
) -> Reply:
    """`call(room)` in each room the caller may act in, through the executor; refusals listed."""
    allowed, refused = await permitted_rooms(ctx, action, user, rooms)
    executor = ctx.services.executor
    reply = Reply()
    for room in allowed:
        async def do(room: str = room) -> str:
            await call(room)
            return f"{action} {user} in {room}"

        result = await executor.manual(action, user, room, by=ctx.sender, command_event_id=ctx.event_id, do=do)
        detail = "" if result.outcome.value == "ok" else f" ({result.detail})"
        reply.add(f"{action} {user} in `{room}`: {result.outcome.value}{detail}")
        reply.ok = reply.ok and result.outcome.value in ("ok", "skipped")
    for line in refused:
        reply.add(line)
    reply.ok = reply.ok and not refused
    return reply


async def redact_user(ctx: CommandContext, user: str, rooms: list[str], limit: int | None) -> Reply:
    """Redact a user's recent events in the rooms the caller may act in: Synapse's admin
    redact-user API where the bot is admin, the client API otherwise."""
    allowed, refused = await permitted_rooms(ctx, "redact", user, rooms)
    hs = ctx.services.homeserver

    async def admin_api() -> str:
        job = await hs.redact_user_events(user, allowed, f"redacted by {ctx.sender}", limit)
        for _ in range(600):
            status = await hs.redact_status(job)
            if status.get("status") in ("complete", "completed", "failed"):
                failed = status.get("failed_redactions") or {}
                failures = f", {len(failed)} failed" if failed else ""
                return f"redacted {user}'s events in {len(allowed)} room(s){failures}"
            await asyncio.sleep(0.5)
        return f"redaction of {user}'s events still running (job {job})"

    async def client_api() -> str:
        count = 0
        for room in allowed:
            token = None
            for _ in range(20):  # at most 2000 events back
                page = await hs.messages(room, limit=100, from_token=token)
                for ev in page.get("chunk", []):
                    if ev.get("sender") == user and ev.get("content") and ev.get("type") != "m.room.member":
                        if limit is not None and count >= limit:
                            break
                        txn_id = f"modbot.cmd.{ctx.event_id}.{ev['event_id']}"
                        await hs.redact(room, ev["event_id"], f"redacted by {ctx.sender}", txn_id)
                        count += 1
                token = page.get("end")
                if not token or not page.get("chunk"):
                    break
        return f"redacted {count} events of {user} through the client API"

    use_admin = await hs.is_server_admin()

    async def do() -> str:
        if use_admin:
            try:
                return await admin_api()
            except HomeserverError:
                pass  # older Synapse without the API: fall back
        return await client_api()

    result = await ctx.services.executor.manual(
        "redact_user", user, ",".join(allowed), by=ctx.sender, command_event_id=ctx.event_id, do=do
    )
    return Reply([result.detail, *refused], ok=result.outcome.value == "ok" and not refused)

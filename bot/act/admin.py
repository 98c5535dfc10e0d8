"""Server-admin policy actions as durable steps, PURE: which homeserver call a suspension,
a deactivation, a user's media quarantine, a user's redaction, a room takedown or a server
ACL makes, under which action key, and when one must not be made at all.

Each step is one row of the `actions` table (its key), carried out by the executor with
its stored Operation, so it is retried after a transient failure and never done twice.
Keys name the event for what may be wanted again after being undone (a suspension lifted,
a room unblocked, a user's later uploads), and the target alone for what is done once for
good (a deactivation, a purge, a server denied in a room's ACL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..model import ActionKind, Decision, EventContext, PlannedAction
from ..senders import host_of, server_of
from .operations import Operation

# The order admin actions run in: what needs the account or the room first (its media, its
# events), then the bans, and what ends the account or the room last. Notify is after all.
ORDER: dict[ActionKind, int] = {
    ActionKind.QUARANTINE: 0, ActionKind.REDACT: 1, ActionKind.QUARANTINE_USER_MEDIA: 2, ActionKind.REDACT_USER: 3,
    ActionKind.BAN: 4, ActionKind.SERVER_ACL: 5, ActionKind.TAKEDOWN_ROOM: 6, ActionKind.SUSPEND: 7, ActionKind.DEACTIVATE: 8,
}
ADMIN_KINDS: frozenset[ActionKind] = frozenset(
    {ActionKind.SUSPEND, ActionKind.DEACTIVATE, ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER,
     ActionKind.TAKEDOWN_ROOM, ActionKind.SERVER_ACL}
)


@dataclass(frozen=True)
class AdminStep:
    """One action to claim and carry out, or (`skip`) one that must not be made, and why."""

    key: str
    kind: str
    target: str
    room_id: str | None
    operation: Operation | None = None
    skip: str | None = None


def ordered(actions: Sequence[PlannedAction]) -> list[PlannedAction]:
    """The actions in the order they are carried out (stable for kinds of equal rank)."""
    return sorted(actions, key=lambda a: ORDER.get(a.kind, 9))


def admin_steps(
    action: PlannedAction,
    ctx: EventContext,
    decision: Decision,
    *,
    protected_rooms: Sequence[str],
    management_room: str | None,
    bot_user_id: str,
) -> list[AdminStep]:
    """The steps of one admin action of the policy about the event `ctx`."""
    sender, kind, reason = ctx.sender, action.kind, f"modbot: {decision.rule}"
    if kind in (ActionKind.SUSPEND, ActionKind.DEACTIVATE, ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER):
        if sender == bot_user_id:
            return [AdminStep(f"{kind.value}:{sender}", kind.value, sender, None, skip="never against the bot itself")]
    if kind is ActionKind.SUSPEND:
        op = Operation("suspend", {"user_id": sender, "suspend": "true"}, sender)
        return [AdminStep(f"suspend:{sender}:{ctx.event_id}", "suspend", sender, None, op)]
    if kind is ActionKind.DEACTIVATE:
        erase = "true" if action.scope == "erase" else "false"
        op = Operation("deactivate", {"user_id": sender, "erase": erase}, sender)
        return [AdminStep(f"deactivate:{sender}", "deactivate", sender, None, op)]
    if kind is ActionKind.QUARANTINE_USER_MEDIA:
        op = Operation("quarantine_user_media", {"user_id": sender}, sender)
        return [AdminStep(f"quarantine_user_media:{sender}:{ctx.event_id}", "quarantine_user_media", sender, None, op)]
    if kind is ActionKind.REDACT_USER:
        return [_redact_user(action.scope, ctx, reason, protected_rooms)]
    if kind is ActionKind.TAKEDOWN_ROOM:
        room = ctx.room_id
        if room == management_room:
            return [AdminStep(f"takedown:{room}", "takedown_room", room, room, skip="never the management room")]
        if action.scope == "purge":
            op = Operation("purge_room", {"room_id": room, "message": reason}, sender)
            return [AdminStep(f"purge_room:{room}", "purge_room", room, room, op)]
        op = Operation("block_room", {"room_id": room, "block": "true"}, sender)
        return [AdminStep(f"block_room:{room}:{ctx.event_id}", "block_room", room, room, op)]
    if kind is ActionKind.SERVER_ACL:
        # An ACL entry matches a host whatever the port: the entry is the sender's host, and
        # a server on the bot's own host (another port) would deny the bot's server too.
        host = host_of(server_of(sender))
        if host == host_of(server_of(bot_user_id)):
            return [AdminStep(f"server_acl:{host}", "server_acl", host, None, skip="never denies the bot's own server")]
        return [
            AdminStep(f"server_acl:{room}:{host}", "server_acl", host, room, Operation("server_acl", {"room_id": room, "change": "deny", "entry": host}, sender))
            for room in dict.fromkeys(protected_rooms)
        ]
    raise ValueError(f"not an admin action: {kind.value}")


def _redact_user(scope: str, ctx: EventContext, reason: str, protected_rooms: Sequence[str]) -> AdminStep:
    key = f"redact_user:{ctx.sender}:{ctx.event_id}:{scope}"
    rooms = [ctx.room_id] if scope == "this" else list(dict.fromkeys(protected_rooms)) if scope == "protected" else []
    if scope != "all" and not rooms:
        # Synapse reads an empty room list as every room: never send one by accident.
        return AdminStep(key, "redact_user", ctx.sender, None, skip="no protected room to redact in")
    args = {"user_id": ctx.sender, "scope": scope, "rooms": "\n".join(rooms), "reason": reason}
    return AdminStep(key, "redact_user", ctx.sender, ctx.room_id if scope == "this" else None, Operation("redact_user", args, ctx.sender))

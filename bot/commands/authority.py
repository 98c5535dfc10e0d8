"""Whether a moderator may have the bot act against a user in a room (PURE).

The bot acts with its own power, which is usually more than the moderator asking: left
unchecked, a room moderator (power 50) could have it kick or ban a room admin (power 75)
whom Synapse would never let them touch themselves. So every kick, ban, unban and redact
asked for in a command is checked here, per room, with power as Synapse computes it
(`RoomPower.of`: in room version 12 a creator's power is unbounded).

Two kinds of callers, as in Mjolnir and Draupnir, whose management room is the authority
behind every command:

- the safety team (members of the management room with `commands.management_power`) act
  with the bot's authority, in every protected room: they may act against anyone below
  the bot there, whatever their own power in that room;
- a room moderator (the room's `ban` level, commands in their own room only) acts with
  their own rank: they need the action's level in the room and must outrank the target
  (more power, as Synapse requires for kicks and bans).

For everyone: never the bot itself, never a room creator of room version 12 (unbounded
power; Synapse refuses to ban them), never anyone at or above the bot's own power.
"""

from __future__ import annotations

from typing import Literal

from ..act.homeserver import RoomPower

MemberAction = Literal["kick", "ban", "unban", "redact"]


def refusal(
    power: RoomPower,
    *,
    action: MemberAction,
    caller: str,
    target: str,
    bot_user_id: str,
    safety_team: bool,
) -> str | None:
    """None when `caller` may have the bot do `action` to `target` in this room; else why not."""
    if target == bot_user_id:
        return "modbot does not act against itself"
    if target in power.creators:
        return f"{target} created this room; a room creator outranks everyone and cannot be removed"
    target_power = power.of(target)
    bot_power = power.of(bot_user_id)
    if target_power >= bot_power:
        return (
            f"{target} has power {target_power} here, not less than the bot's ({bot_power}); "
            "modbot does not act against them"
        )
    if safety_team:
        return None
    caller_power = power.of(caller)
    needed = {"kick": power.kick, "ban": power.ban, "unban": power.ban, "redact": power.redact}[action]
    if caller_power < needed:
        return f"{action} needs power {needed} here; you have {caller_power}"
    if target_power >= caller_power:
        return f"{target} has power {target_power} here, not less than yours ({caller_power}); you cannot {action} them"
    return None

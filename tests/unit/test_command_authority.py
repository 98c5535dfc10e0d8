"""Who may have the bot act against whom (PURE): per room, with power as Synapse computes it.

The room: the bot at 100; an admin at 75; moderators at 50; everyone else 0; kick, ban and
redact at 50. Power levels and the create event are parsed by the same `room_power` the bot
uses on the real state events.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.act.homeserver import RoomPower, room_power
from bot.commands.authority import MemberAction, refusal

BOT = "@modbot:example.org"
ADMIN = "@admin:example.org"  # 75
MOD = "@mod:example.org"  # 50
MOD2 = "@mod2:example.org"  # 50
USER = "@user:example.org"  # 0
CREATOR = "@creator:example.org"
COCREATOR = "@cocreator:example.org"
TEAM = "@safety:example.org"  # the safety team: no power in this room at all


def levels(**overrides: Any) -> dict[str, Any]:
    return {
        "users": {BOT: 100, ADMIN: 75, MOD: 50, MOD2: 50},
        "users_default": 0,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        **overrides,
    }


def room(version: str = "10", **overrides: Any) -> RoomPower:
    create = {"room_version": version, "additional_creators": [COCREATOR]}
    return room_power(levels(**overrides), create, creator=CREATOR)


def may(power: RoomPower, action: MemberAction, caller: str, target: str, *, safety_team: bool = False) -> bool:
    return refusal(power, action=action, caller=caller, target=target, bot_user_id=BOT, safety_team=safety_team) is None


ACTIONS: list[MemberAction] = ["kick", "ban", "unban", "redact"]


@pytest.mark.parametrize("action", ACTIONS)
def test_a_room_moderator_acts_against_those_below_them(action: MemberAction) -> None:
    assert may(room(), action, MOD, USER)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("target", [ADMIN, MOD2])
def test_a_room_moderator_cannot_act_against_someone_as_high_or_higher(action: MemberAction, target: str) -> None:
    """The finding: a power-50 moderator had the bot kick and ban a power-75 user."""
    why = refusal(room(), action=action, caller=MOD, target=target, bot_user_id=BOT, safety_team=False)
    assert why is not None and "not less than yours (50)" in why and target in why


@pytest.mark.parametrize("action", ACTIONS)
def test_a_room_admin_acts_against_moderators(action: MemberAction) -> None:
    assert may(room(), action, ADMIN, MOD)


@pytest.mark.parametrize(
    ("action", "level_key"), [("kick", "kick"), ("ban", "ban"), ("unban", "ban"), ("redact", "redact")]
)
def test_a_room_moderator_needs_the_rooms_level_for_the_action(action: MemberAction, level_key: str) -> None:
    power = room(**{level_key: 60})
    why = refusal(power, action=action, caller=MOD, target=USER, bot_user_id=BOT, safety_team=False)
    assert why == f"{action} needs power 60 here; you have 50"
    assert may(power, action, ADMIN, USER)


def test_users_default_counts_for_the_caller_and_the_target() -> None:
    power = room(users_default=20)
    assert may(power, "ban", MOD, USER)  # 50 > 20
    assert not may(room(users_default=50), "ban", MOD, USER)  # 50 = 50


@pytest.mark.parametrize("action", ACTIONS)
def test_the_safety_team_acts_with_the_bots_authority(action: MemberAction) -> None:
    """As in Mjolnir and Draupnir: the management room is the authority, the limit is the bot's power."""
    assert may(room(), action, TEAM, ADMIN, safety_team=True)
    assert may(room(), action, TEAM, USER, safety_team=True)


@pytest.mark.parametrize("safety_team", [True, False])
def test_nobody_acts_against_someone_at_or_above_the_bot(safety_team: bool) -> None:
    power = room(users={BOT: 75, ADMIN: 75, MOD: 50})
    caller = TEAM if safety_team else ADMIN
    why = refusal(power, action="ban", caller=caller, target=ADMIN, bot_user_id=BOT, safety_team=safety_team)
    assert why == f"{ADMIN} has power 75 here, not less than the bot's (75); modbot does not act against them"


@pytest.mark.parametrize("safety_team", [True, False])
def test_never_the_bot_itself(safety_team: bool) -> None:
    why = refusal(room(), action="kick", caller=ADMIN, target=BOT, bot_user_id=BOT, safety_team=safety_team)
    assert why == "modbot does not act against itself"


@pytest.mark.parametrize("target", [CREATOR, COCREATOR])
@pytest.mark.parametrize("caller", [TEAM, ADMIN, CREATOR, COCREATOR])
def test_room_v12_creators_are_never_acted_against(target: str, caller: str) -> None:
    """Room version 12: creators' power is unbounded and Synapse refuses to ban them."""
    why = refusal(room("12"), action="ban", caller=caller, target=target, bot_user_id=BOT, safety_team=caller == TEAM)
    assert why is not None and "created this room" in why


def test_a_room_v12_creator_outranks_everyone_as_a_caller() -> None:
    assert may(room("12"), "ban", CREATOR, ADMIN)
    assert may(room("12"), "kick", COCREATOR, MOD)


def test_before_room_v12_a_creator_is_ranked_by_their_power_level() -> None:
    power = room("10", users={BOT: 100, CREATOR: 50, MOD: 50, ADMIN: 75})
    assert may(power, "ban", MOD, USER)
    assert not may(power, "ban", MOD, CREATOR)  # 50 = 50
    assert may(power, "ban", ADMIN, CREATOR)


def test_power_levels_written_as_strings_count_as_numbers() -> None:
    # Rooms before version 10 may hold levels as strings; Synapse reads them as integers.
    power = room(users={BOT: "100", MOD: "50", ADMIN: "75"}, ban="50")
    assert may(power, "ban", ADMIN, MOD)
    assert not may(power, "ban", MOD, ADMIN)

"""Refusal at join and room rules, against a real Synapse that loads synapse-http-antispam.

A curator keeps a policy room the way Draupnir does; modbot watches it (`policy_lists.watch`)
with the pre-send check enabled (which also forwards `user_may_join_room`) and
`policy_lists.room_rules: block`. A user a glob rule names is refused at join into a
protected room by modbot's answer (its own neutral message, audited), another joins; with
modbot down joins fail open, and the appservice path bans the joiner once modbot is back.
A room rule blocks a room on the server (admin API), never a protected room, and its
removal unblocks the room.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from bot.demo.matrix import MatrixRequestError, MatrixUser
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from bot.joincheck import REFUSED_JOIN
from botproc import BotProcess, StoreReader, bot_running, staged

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    curator: MatrixUser
    policy_room: str

    @property
    def room(self) -> str:
        return self.stage.room


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with staged(tmp_path_factory.mktemp("joincheck"), presend={"deadline": 5.0}) as stage:
        curator = await stage.new_user("curator")
        policy_room = await curator.create_room("ban list", preset="public_chat")
        stage.write_config(policy_lists={"watch": [policy_room], "room_rules": "block"})
        async with bot_running(stage) as (bot, db):
            async def watching() -> bool:
                return any(e.outcome == "watched" for e in await db.store.audit_log(category="policylist"))

            await wait_for(watching, timeout=60, description="modbot watches the policy room")
            yield World(stage, bot, db, curator, policy_room)


async def rule(w: World, state_key: str, content: dict[str, Any], type: str = "m.policy.rule.user") -> None:
    await w.curator.send_state(w.policy_room, type, state_key, content)


async def audited(w: World, category: str, outcome: str, needle: str, timeout: float = 60) -> str:
    async def find() -> str | None:
        for e in await w.db.store.audit_log(category=category):
            if e.outcome == outcome and needle in e.message:
                return e.message
        return None

    return await wait_for(find, timeout=timeout, description=f"audit {category}/{outcome} about {needle}")


async def invited(w: World, prefix: str) -> MatrixUser:
    user = await w.stage.new_user(prefix)
    await w.stage.moderator.invite(w.room, user.user_id)
    return user


async def test_a_user_a_watched_rule_names_is_refused_at_join_and_another_joins(world: World) -> None:
    await rule(world, "glob", {"entity": "@joinspam*:localhost", "recommendation": "m.ban", "reason": "spam"})
    await audited(world, "policylist", "rule_added", "@joinspam*:localhost")
    spammer = await invited(world, "joinspam")
    with pytest.raises(MatrixRequestError) as refused:
        await spammer.join(world.room)
    # Refused by modbot's answer (Synapse relays our errcode and message), not by a ban.
    assert (refused.value.status, refused.value.errcode, refused.value.message) == (403, "M_FORBIDDEN", REFUSED_JOIN)
    assert await world.stage.moderator.get_membership(world.room, spammer.user_id) == "invite"
    await audited(world, "presend", "join_refused", spammer.user_id)
    guest = await invited(world, "guest")
    await guest.join(world.room)
    assert await world.stage.moderator.get_membership(world.room, guest.user_id) == "join"


async def test_with_modbot_down_joins_fail_open_and_the_joiner_is_banned_once_it_is_back(world: World) -> None:
    await rule(world, "glob2", {"entity": "@downspam*:localhost", "recommendation": "m.ban", "reason": "spam"})
    await audited(world, "policylist", "rule_added", "@downspam*:localhost")
    spammer = await invited(world, "downspam")
    await world.bot.stop()
    try:
        await spammer.join(world.room)  # the module's fail_open for user_may_join_room
        assert await world.stage.moderator.get_membership(world.room, spammer.user_id) == "join"
    finally:
        await world.bot.start()

    async def banned() -> bool:
        return await world.stage.moderator.get_membership(world.room, spammer.user_id) == "ban"

    await wait_for(banned, timeout=60, description="the joiner banned by the appservice path")


async def blocked(w: World, room: str) -> bool:
    answer = await w.stage.admin.request("GET", f"/_synapse/admin/v1/rooms/{room}/block")
    return bool(answer.get("block"))


async def test_a_room_rule_blocks_the_room_and_its_removal_unblocks_it_never_a_protected_room(world: World) -> None:
    owner = await world.stage.new_user("roomowner")
    bad_room = await owner.create_room("bad room", preset="public_chat")
    visitor = await world.stage.new_user("visitor")
    await rule(world, "badroom", {"entity": bad_room, "recommendation": "m.ban", "reason": "spam"}, "m.policy.rule.room")
    await wait_for(lambda: blocked(world, bad_room), timeout=60, description="the room blocked on the server")
    with pytest.raises(MatrixRequestError) as refused:
        await visitor.join(bad_room)
    assert refused.value.status == 403
    # A rule naming a protected room is refused, audited, and the room stays open.
    await rule(world, "ours", {"entity": world.room, "recommendation": "m.ban", "reason": "spam"}, "m.policy.rule.room")
    await audited(world, "policylist", "refused", "never blocked")
    assert not await blocked(world, world.room)
    newcomer = await invited(world, "newcomer")
    await newcomer.join(world.room)
    # Removing the rule undoes what it did.
    await rule(world, "badroom", {}, "m.policy.rule.room")

    async def unblocked() -> bool:
        return not await blocked(world, bad_room)

    await wait_for(unblocked, timeout=60, description="the room unblocked")
    await visitor.join(bad_room)
    assert await owner.get_membership(bad_room, visitor.user_id) == "join"

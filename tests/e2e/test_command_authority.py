"""Who may make the bot act, and when it speaks, against a real Synapse (issue 10, findings
4 and 12).

The stage: a management room (the safety team: the moderator), one protected room where a
room moderator has power 50 and a senior member 75, the bot 100. Before the fix, the room
moderator had the bot kick and ban the senior member (Synapse itself refuses them that
ban), `redact <user> all` with no protected room redacted the user everywhere, and any
message starting "modbot " got an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.record.store import AuditEntry
from bot.demo.stage import Stage
from botproc import BotProcess, StoreReader, bot_running, staged

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class Room:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    roommod: MatrixUser  # power 50 in the protected room
    senior: MatrixUser  # power 75 there

    @property
    def mod(self) -> MatrixUser:
        return self.stage.moderator

    @property
    def room(self) -> str:
        return self.stage.room

    @property
    def mgmt(self) -> str:
        return self.stage.management_room


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ranks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Room]:
    async with staged(tmp_path_factory.mktemp("ranks")) as stage:
        roommod = await stage.new_user("roommod", join=stage.room)
        senior = await stage.new_user("senior", join=stage.room)
        await stage.moderator.set_power_level(stage.room, roommod.user_id, 50)
        await stage.moderator.set_power_level(stage.room, senior.user_id, 75)
        async with bot_running(stage) as (bot, db):
            yield Room(stage, bot, db, roommod, senior)


async def send(user: MatrixUser, room: str, body: str, **extra: Any) -> str:
    return await user.send_message(room, {"msgtype": "m.text", "body": body, **extra})


async def replies(r: Room, room: str, event_id: str) -> list[str]:
    return [
        m["content"]["body"]
        for m in await r.mod.messages(room, limit=100)
        if m.get("sender") == r.stage.bot_user_id
        and m.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id
    ]


async def answer(r: Room, room: str, event_id: str) -> str:
    async def first() -> str | None:
        found = await replies(r, room, event_id)
        return found[0] if found else None

    return await wait_for(first, timeout=30, description=f"the bot's reply to {event_id}")


async def ask(r: Room, user: MatrixUser, room: str, body: str, **extra: Any) -> str:
    return await answer(r, room, await send(user, room, body, **extra))


async def audited(r: Room, event_id: str) -> list[AuditEntry]:
    return await wait_for(
        lambda: _nonempty(r.db.store.audit_log(event_id=event_id, category="command")),
        timeout=30,
        description=f"the audit of {event_id}",
    )


async def _nonempty(rows: Any) -> Any:
    return (await rows) or None


async def membership(r: Room, user: MatrixUser) -> str | None:
    return await r.mod.get_membership(r.room, user.user_id)


async def redacted(r: Room, event_id: str) -> bool:
    return "redacted_because" in (await r.mod.get_event(r.room, event_id)).get("unsigned", {})


# --- rank ----------------------------------------------------------------------------------------


async def test_a_room_moderator_cannot_have_the_bot_kick_or_ban_someone_who_outranks_them(ranks: Room) -> None:
    for verb in ("kick", "ban"):
        reply = await ask(ranks, ranks.roommod, ranks.room, f"!mod {verb} {ranks.senior.user_id} overruled")
        assert "refused" in reply and "power 75 here, not less than yours (50)" in reply, reply
        assert await membership(ranks, ranks.senior) == "join"
    # By replying to their message, too; and their messages are not redacted either.
    message = await ranks.senior.send_text(ranks.room, "I outrank you")
    reply = await ask(ranks, ranks.roommod, ranks.room, "!mod redact", **_reply_to(message))
    assert "not less than yours (50)" in reply, reply
    assert not await redacted(ranks, message)
    refusals = [a for a in await ranks.db.store.audit_log(category="command") if a.outcome == "refused"]
    assert sum(ranks.senior.user_id in a.message and ranks.roommod.user_id in a.message for a in refusals) == 3
    assert not [a for a in await ranks.db.store.actions(limit=50) if a.target == ranks.senior.user_id]
    assert await membership(ranks, ranks.senior) == "join"


async def test_a_room_moderator_still_acts_against_those_below_them(ranks: Room) -> None:
    junior = await ranks.stage.new_user("junior", join=ranks.room)
    message = await junior.send_text(ranks.room, "spam")
    assert "ok" in await ask(ranks, ranks.roommod, ranks.room, f"!mod kick {junior.user_id} spamming")
    assert await membership(ranks, junior) == "leave"
    reply = await ask(ranks, ranks.roommod, ranks.room, f"!mod redact {junior.user_id}")
    assert "redacted" in reply, reply
    await wait_for(lambda: redacted(ranks, message), timeout=30, description="the junior's message redacted")
    assert "ok" in await ask(ranks, ranks.roommod, ranks.room, f"!mod ban {junior.user_id} spamming")
    assert await membership(ranks, junior) == "ban"


async def test_the_safety_team_acts_with_the_bots_authority(ranks: Room) -> None:
    """As in Mjolnir and Draupnir: the management room is the authority; the bot's power the limit."""
    senior = await ranks.stage.new_user("senior", join=ranks.room)
    await ranks.mod.set_power_level(ranks.room, senior.user_id, 75)
    reply = await ask(ranks, ranks.mod, ranks.mgmt, f"!mod kick {senior.user_id} {ranks.room}")
    assert "kick" in reply and "ok" in reply, reply
    assert await membership(ranks, senior) == "leave"


# --- no room is not every room -------------------------------------------------------------------


async def test_all_with_no_protected_room_is_refused_and_nothing_is_sent(ranks: Room) -> None:
    user = await ranks.stage.new_user("bystander", join=ranks.room)
    message = await user.send_text(ranks.room, "hello")
    assert "No longer protecting" in await ask(ranks, ranks.mod, ranks.mgmt, f"!mod rooms unprotect {ranks.room}")
    try:
        for verb in ("redact", "ban"):
            reply = await ask(ranks, ranks.mod, ranks.mgmt, f"!mod {verb} {user.user_id} all")
            assert "protects no rooms" in reply, reply
        # Synapse reads an empty room list as every room: the message would be gone by now.
        assert not await redacted(ranks, message)
        assert await membership(ranks, user) == "join"
    finally:
        assert "Protecting" in await ask(ranks, ranks.mod, ranks.mgmt, f"!mod rooms protect {ranks.room}")


# --- when the bot speaks -------------------------------------------------------------------------


async def test_plain_talk_about_the_bot_is_not_a_command(ranks: Room) -> None:
    talker = await ranks.stage.new_user("talker", join=ranks.room)
    chatter = [
        await send(talker, ranks.room, "modbot status"),
        await send(talker, ranks.room, "modbot is down again"),
        await send(ranks.roommod, ranks.room, "Modbot, version"),
    ]
    # Addressed on purpose: the prefix, "modbot:", a mention (m.mentions) or a pill.
    assert "modbot 0." in await ask(ranks, ranks.roommod, ranks.room, "modbot: version")
    assert "modbot 0." in await ask(ranks, ranks.roommod, ranks.room, "modbot version", **{"m.mentions": {"user_ids": [ranks.stage.bot_user_id]}})
    pill = f'<a href="https://matrix.to/#/{ranks.stage.bot_user_id}">modbot</a> version'
    assert "modbot 0." in await ask(ranks, ranks.roommod, ranks.room, "modbot version", format="org.matrix.custom.html", formatted_body=pill)
    # The answers above came after the chatter had been seen (Synapse sends in order).
    for event_id in chatter:
        assert await ranks.db.store.load_event(event_id) is None  # not even stored
        assert await replies(ranks, ranks.room, event_id) == []


async def test_a_refused_user_is_answered_once_and_audited_every_time(ranks: Room) -> None:
    outsider = await ranks.stage.new_user("outsider", join=ranks.room)
    first = await send(outsider, ranks.room, f"!mod ban {ranks.senior.user_id}")
    assert "not permitted" in await answer(ranks, ranks.room, first)
    # Again at once, and in another form: audited, not answered (the bot is exempt from
    # rate limits; commands.refusal_reply_interval is 300 s by default).
    again = [
        await send(outsider, ranks.room, "!mod status"),
        await send(outsider, ranks.room, "modbot: kick @x:localhost " + "because " * 6000),
    ]
    for event_id in again:
        [entry] = await audited(ranks, event_id)
        assert entry.outcome == "denied" and "not answered" in entry.message, entry
        assert len(entry.message) < 700  # 48 kB of reason: the audit keeps the gist
    # Another refused user is answered: the limit is per user.
    other = await ranks.stage.new_user("outsider", join=ranks.room)
    assert "not permitted" in await ask(ranks, other, ranks.room, "!mod status")
    await asyncio.sleep(1)
    for event_id in again:
        assert await replies(ranks, ranks.room, event_id) == []
    assert await membership(ranks, ranks.senior) == "join"


def _reply_to(event_id: str) -> dict[str, Any]:
    return {"m.relates_to": {"m.in_reply_to": {"event_id": event_id}}}

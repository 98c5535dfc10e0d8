"""Matrix policy lists (MSC2313, MSC4205, MSC4207) against a real Synapse and a real modbot.

A curator, with a raw client, keeps a policy room the way Draupnir does: a public room whose
rules are state events (`m.policy.rule.user` with `entity`, `recommendation: m.ban` and a
`reason`; removal by empty content; `m.policy.rule.mxc` with `hashes.sha256`). Moderators
point modbot at it with `!mod policylist watch`; modbot publishes its own incidents to a
room of the operator's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from bot.cli.scan import add_images
from bot.demo.matrix import MatrixUser
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=1515), "PNG")
BENIGN = encode(make_photo(seed=1516), "PNG")
NEUTRAL_REASON = "spam"


def sha256_b64(value: str) -> str:
    return base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    curator: MatrixUser
    policy_room: str
    publish_room: str

    @property
    def mod(self) -> MatrixUser:
        return self.stage.moderator

    @property
    def rooms(self) -> list[str]:
        return self.stage.protected_rooms


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("policylists")
    async with staged(workdir, protected_rooms=2) as stage:
        curator = await stage.new_user("curator")
        # Draupnir's policy rooms are public, so that any bot may follow them.
        policy_room = await curator.create_room("ban list", preset="public_chat")
        publish_room = await stage.moderator.create_room(
            "our ban list", invite=[stage.bot_user_id], power_level_content_override={"users": {stage.bot_user_id: 100}}
        )
        known = workdir / "known.png"
        known.write_bytes(KNOWN)
        add_images([known], stage.config(), "known", None)
        known.unlink()
        stage.write_config(policy_lists={
            "publish": {"room": publish_room, "users": True, "media": True, "reason": NEUTRAL_REASON},
        })
        async with bot_running(stage) as (bot, db):
            yield World(stage, bot, db, curator, policy_room, publish_room)


async def ask(w: World, text: str, timeout: float = 30) -> str:
    sent = await w.mod.send_message(w.stage.management_room, {"msgtype": "m.text", "body": text})

    async def reply() -> str | None:
        for m in await w.mod.messages(w.stage.management_room, limit=50):
            relates = m.get("content", {}).get("m.relates_to", {})
            if m.get("sender") == w.stage.bot_user_id and relates.get("m.in_reply_to", {}).get("event_id") == sent:
                return m["content"]["body"]
        return None

    return await wait_for(reply, timeout=timeout, description=f"reply to {text!r}")


async def memberships(w: World, user: str, wanted: str, timeout: float = 30) -> None:
    async def all_of() -> bool:
        return all([await w.mod.get_membership(room, user) == wanted for room in w.rooms])

    await wait_for(all_of, timeout=timeout, description=f"{user} {wanted} in both protected rooms")


async def write_rule(w: World, state_key: str, content: dict[str, Any], type: str = "m.policy.rule.user") -> str:
    return await w.curator.send_state(w.policy_room, type, state_key, content)


async def room_state(user: MatrixUser, room: str) -> list[dict[str, Any]]:
    return await user.request("GET", f"/_matrix/client/v3/rooms/{room}/state")


async def joined(w: World, prefix: str) -> MatrixUser:
    user = await w.stage.new_user(prefix)
    for room in w.rooms:
        await w.mod.invite(room, user.user_id)
        await user.join(room)
    return user


async def test_watching_a_room_with_rules_bans_an_existing_member_of_both_protected_rooms(world: World) -> None:
    w = world
    spammer = await joined(w, "spammer")
    await write_rule(w, f"rule:{spammer.user_id}", {"entity": spammer.user_id, "recommendation": "m.ban", "reason": "spam"})
    reply = await ask(w, f"!mod policylist watch {w.policy_room}")
    assert f"Watching `{w.policy_room}`: 1 rules" in reply
    await memberships(w, spammer.user_id, "ban")
    listed = await ask(w, "!mod policylist list")
    assert "1 policy rooms watched" in listed and f"`{w.policy_room}` (command): 1 rules, updated" in listed


async def test_a_rule_written_later_arrives_through_the_appservice_and_bans(world: World) -> None:
    w = world
    member = await joined(w, "troll")
    # The list is watched (the test above): this rule comes as an event in a transaction.
    await write_rule(w, "rule:troll", {"entity": member.user_id, "recommendation": "m.ban", "reason": "trolling"})
    await memberships(w, member.user_id, "ban")


async def test_a_rule_written_while_modbot_is_down_is_acted_on_after_the_restart(world: World) -> None:
    w = world
    member = await joined(w, "whiledown")
    await w.bot.stop()
    await write_rule(w, "rule:whiledown", {"entity": member.user_id, "recommendation": "m.ban", "reason": "spam"})
    await w.bot.start()
    await memberships(w, member.user_id, "ban")


async def test_a_glob_rule_bans_a_new_joiner_at_join(world: World) -> None:
    w = world
    await write_rule(w, "rule:glob", {"entity": "@latecomer*:localhost", "recommendation": "m.ban", "reason": "spam wave"})
    bystander = await joined(w, "bystander")

    async def rule_known() -> bool:
        return any("@latecomer*" in e.message for e in await w.db.store.audit_log(category="policylist"))

    await wait_for(rule_known, timeout=30, description="the glob rule read")
    latecomer = await w.stage.new_user("latecomer")
    await w.mod.invite(w.rooms[0], latecomer.user_id)
    await latecomer.join(w.rooms[0])
    await memberships(w, latecomer.user_id, "ban")
    for room in w.rooms:
        assert await w.mod.get_membership(room, bystander.user_id) == "join"


async def test_removing_the_rule_unbans(world: World) -> None:
    w = world
    target = await joined(w, "reformed")
    await write_rule(w, "rule:reformed", {"entity": target.user_id, "recommendation": "m.ban", "reason": "spam"})
    await memberships(w, target.user_id, "ban")
    await write_rule(w, "rule:reformed", {})
    await memberships(w, target.user_id, "leave")
    audit = await w.db.store.audit_log(category="policylist")
    assert any(e.outcome == "rule_removed" and target.user_id in e.message for e in audit)
    unbans = [a for a in await w.db.store.actions(limit=500) if a.kind == "unban" and a.target == target.user_id]
    assert sorted(a.room_id for a in unbans) == sorted(w.rooms) and all(a.status == "ok" for a in unbans)


async def test_a_published_incident_appears_as_a_well_formed_rule(world: World) -> None:
    w = world
    poster = await joined(w, "poster")
    mxc = await poster.upload(KNOWN, "image/png", "x.png")
    await poster.send_image(w.rooms[0], mxc, mimetype="image/png", size=len(KNOWN))

    async def published() -> list[dict[str, Any]] | None:
        rules = [e for e in await room_state(w.mod, w.publish_room) if e["type"].startswith("m.policy.rule.")]
        return rules if len(rules) >= 2 else None

    rules = await wait_for(published, timeout=60, description="the incident's rules published")
    [user_rule] = [e for e in rules if e["type"] == "m.policy.rule.user"]
    assert user_rule["content"] == {"entity": poster.user_id, "recommendation": "m.ban", "reason": NEUTRAL_REASON}
    assert user_rule["sender"] == w.stage.bot_user_id and user_rule["state_key"]
    [mxc_rule] = [e for e in rules if e["type"] == "m.policy.rule.mxc"]
    assert mxc_rule["content"] == {"hashes": {"sha256": sha256_b64(mxc)}, "recommendation": "m.takedown"}
    media_id = mxc.rsplit("/", 1)[1]
    text = str([(e["state_key"], e["content"]) for e in rules])
    assert media_id not in text and "csam" not in text.lower() and "known" not in text


async def test_an_mxc_rule_quarantines_the_media_and_redacts_its_event(world: World) -> None:
    w = world
    sender = await joined(w, "sharer")
    mxc = await sender.upload(BENIGN, "image/png", "y.png")
    event_id = await sender.send_image(w.rooms[1], mxc, mimetype="image/png", size=len(BENIGN))

    async def scanned() -> bool:
        event = await w.db.store.load_event(event_id)
        return event is not None and event.status == "done"

    await wait_for(scanned, timeout=60, description="the benign image scanned (no match)")
    assert await w.mod.download_status(mxc) == 200
    await write_rule(w, "mxc:" + sha256_b64(mxc)[:16], {"hashes": {"sha256": sha256_b64(mxc)}, "recommendation": "m.takedown"},
                     type="m.policy.rule.mxc")

    async def redacted() -> bool:
        event = await w.mod.get_event(w.rooms[1], event_id)
        return "url" not in event.get("content", {})

    await wait_for(redacted, timeout=60, description="the event carrying the media redacted")
    await wait_for(lambda: _status_is(w, mxc, 404), timeout=30, description="the media quarantined")


async def _status_is(w: World, mxc: str, status: int) -> bool:
    return await w.mod.download_status(mxc) == status


async def test_status_and_check_show_the_watched_lists(world: World) -> None:
    w = world
    status = await ask(w, "!mod status")
    assert f"Policy list `{w.policy_room}` (command):" in status and "rules, updated" in status
    check = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bot", "check", "-c", str(w.stage.config_path)],
        capture_output=True, text=True, cwd=w.bot.workdir, timeout=120,
    )
    assert f"ok    policy list `{w.policy_room}` (command):" in check.stdout, check.stdout + check.stderr



async def test_a_room_protected_later_has_its_members_checked_against_the_rules(world: World) -> None:
    w = world
    await write_rule(w, "rule:early", {"entity": "@early*:localhost", "recommendation": "m.ban", "reason": "spam wave"})

    async def rule_known() -> bool:
        return any("@early*" in e.message for e in await w.db.store.audit_log(category="policylist"))

    await wait_for(rule_known, timeout=30, description="the glob rule read")
    # The room and its members were there before modbot protected it: no join to judge.
    room = await w.mod.create_room("protected later", invite=[w.stage.bot_user_id],
                                   power_level_content_override={"users": {w.stage.bot_user_id: 100}})
    early, bystander = await w.stage.new_user("early"), await w.stage.new_user("neighbour")
    for user in (early, bystander):
        await w.mod.invite(room, user.user_id)
        await user.join(room)
    reply = await ask(w, f"!mod rooms protect {room}", timeout=60)
    assert f"Protecting `{room}`" in reply and f"{room}`: 4 members, 1 banned by a policy list" in reply
    assert await w.mod.get_membership(room, early.user_id) == "ban"
    assert await w.mod.get_membership(room, bystander.user_id) == "join"
    # Asked again: nobody left to ban (the early joiner is no longer a member).
    checked = await ask(w, "!mod policylist check", timeout=60)
    assert "Checked the members of 3 protected rooms:" in checked and f"{room}`: 3 members, 0 banned" in checked
    assert "No longer protecting" in await ask(w, f"!mod rooms unprotect {room}")

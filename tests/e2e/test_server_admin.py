"""Server-admin policy actions against a real Synapse and a real modbot process.

One stage: a management room and three protected rooms. Under the "local offender" policy
(the README's) a local user who posts known media is suspended (cannot send or join), the rest of their media
quarantined and their events redacted, and the room stays as it was; in the third room a
rule takes the room down (blocked, not purged). A policy that treats the server as another
one shows what a remote sender gets instead of account actions.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
import yaml

from bot.cli.adminapis import AdminApi, offered
from bot.cli.check import homeserver_for
from bot.cli.scan import add_images
from bot.demo.matrix import MatrixRequestError, MatrixUser
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=131), "PNG")
OTHER = encode(make_photo(seed=132), "PNG")
# Uploaded by suspended users; distinct, since Synapse quarantines a new copy of quarantined bytes.
LATE, WHILE_SUSPENDED, AFTER_UNSUSPEND = (encode(make_photo(seed=seed), "PNG") for seed in (133, 134, 135))
LOCAL_OFFENDER = [
    "quarantine", "redact", "quarantine_user_media", {"redact_user": "all"}, "suspend", "notify",
]


@dataclass
class Admin:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    policy_path: Path

    @property
    def takedown_room(self) -> str:
        return self.stage.protected_rooms[2]

    def write_policy(self, **extra: Any) -> None:
        policy = {
            "exempt": {"power_level": 100},
            "rules": [{"name": "local-offender", "actions": LOCAL_OFFENDER}],
            "rooms": {self.takedown_room: {"rules": [{"name": "takedown", "actions": ["quarantine", "redact", "takedown_room", "notify"]}]}},
            **extra,
        }
        self.policy_path.write_text(yaml.safe_dump(policy))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Admin]:
    workdir = tmp_path_factory.mktemp("admin")
    async with staged(workdir, protected_rooms=3) as stage:
        known = workdir / "known.png"
        known.write_bytes(KNOWN)
        add_images([known], stage.config(), "known", None)
        known.unlink()
        a = Admin(stage, BotProcess.for_stage(stage), None, workdir / "policy.yaml")  # type: ignore[arg-type]
        a.write_policy()
        # Suspended users' uploads polled every 2 s (bot/act/uploadwatch.py).
        stage.write_config(policy_file=str(a.policy_path), suspended_uploads={"interval": 2})
        async with bot_running(stage, a.bot) as (_, db):
            a.db = db
            yield a


async def post_image(user: MatrixUser, room: str, data: bytes) -> tuple[str, str]:
    mxc = await user.upload(data, "image/png", "image.png")
    return mxc, await user.send_image(room, mxc, mimetype="image/png", size=len(data))


async def redacted(user: MatrixUser, room: str, event_id: str) -> bool:
    return "redacted_because" in (await user.get_event(room, event_id)).get("unsigned", {})


async def refused(call: Any) -> MatrixRequestError | None:
    try:
        await call
    except MatrixRequestError as e:
        return e
    return None


async def action_outcomes(a: Admin, event_id: str) -> set[tuple[str, str]]:
    return {(r.kind, r.status) for r in await a.db.store.actions(event_id=event_id)}


async def test_local_offender_is_suspended_their_media_quarantined_and_events_redacted(admin: Admin) -> None:
    stage, room, other_room = admin.stage, admin.stage.protected_rooms[0], admin.stage.protected_rooms[1]
    offender = await stage.new_user("offender", join=room)
    await stage.moderator.invite(other_room, offender.user_id)
    await offender.join(other_room)
    own_room = await offender.create_room("my own room")
    other_mxc, other_event = await post_image(offender, other_room, OTHER)
    text_event = await offender.send_text(room, "hello")
    own_text = await offender.send_text(own_room, "in my own room")
    known_mxc, known_event = await post_image(offender, room, KNOWN)

    await wait_for(lambda: _has(action_outcomes(admin, known_event), ("notify", "ok")), timeout=90, description="the notice, sent last")
    outcomes = await action_outcomes(admin, known_event)
    assert {("quarantine", "ok"), ("redact", "ok"), ("quarantine_user_media", "ok"), ("redact_user", "ok"), ("suspend", "ok")} <= outcomes
    # Suspended: checked by trying.
    send_error = await refused(offender.send_text(own_room, "still here?"))
    assert send_error is not None and send_error.errcode == "M_USER_SUSPENDED", send_error
    await stage.moderator.invite(admin.takedown_room, offender.user_id)
    join_error = await refused(offender.join(admin.takedown_room))
    assert join_error is not None and join_error.errcode == "M_USER_SUSPENDED", join_error
    # Synapse 1.163 does not refuse a suspended user's uploads (no suspension check in its
    # media endpoints): the upload succeeds, and modbot quarantines it within a poll or two.
    late_mxc = await offender.upload(LATE, "image/png", "late.png")
    await wait_for(lambda: _eq(stage.admin.download_status(late_mxc), 404), timeout=60,
                   description="the suspended user's new upload quarantined")
    # The other media quarantined, the events redacted, in the protected rooms and elsewhere.
    assert await stage.admin.download_status(known_mxc) == 404
    assert await stage.admin.download_status(other_mxc) == 404
    for where, event in ((room, known_event), (room, text_event), (other_room, other_event)):
        await wait_for(lambda: redacted(stage.moderator, where, event), timeout=30, description=f"{event} redacted")
    assert await redacted(offender, own_room, own_text)
    # The room untouched: not blocked, members still talk, newcomers can join.
    await stage.moderator.send_text(room, "the room goes on")
    newcomer = await stage.new_user("newcomer", join=room)
    assert await stage.moderator.get_membership(room, newcomer.user_id) == "join"
    assert await stage.moderator.get_membership(room, offender.user_id) == "join"  # not banned: suspended
    notice = await _notice_naming(admin, known_event)
    assert "suspend" in notice and offender.user_id in notice


async def test_takedown_blocks_the_room_without_purging_it(admin: Admin) -> None:
    stage, room = admin.stage, admin.takedown_room
    poster = await stage.new_user("poster", join=room)
    before = await stage.moderator.send_text(room, "said before the takedown")
    late = await stage.new_user("late")
    await stage.moderator.invite(room, late.user_id)  # invited before, joining after
    _, event = await post_image(poster, room, KNOWN)
    await wait_for(lambda: _has(action_outcomes(admin, event), ("block_room", "ok")), timeout=60, description="room blocked")
    state = await stage.admin.request("GET", f"/_synapse/admin/v1/rooms/{quote(room, safe='')}/block")
    assert state["block"] is True
    join_error = await refused(late.join(room))
    assert join_error is not None and "blocked" in str(join_error), join_error  # joins refused
    # Not purged: the room and its history are still there.
    assert (await stage.moderator.get_event(room, before))["content"]["body"] == "said before the takedown"
    assert not {kind for kind, _ in await action_outcomes(admin, event)} & {"purge_room", "suspend"}


async def test_a_remote_sender_gets_the_remote_actions_instead_of_account_actions(admin: Admin) -> None:
    stage, room = admin.stage, admin.stage.protected_rooms[0]
    # This policy treats only another server as local: the stage's users are "remote".
    admin.write_policy(
        local_servers=["elsewhere.invalid"],
        remote_senders={"actions": [{"ban": "all"}], "server_acl": {"after": 1, "within": 3600}},
    )
    await admin.bot.stop()
    await admin.bot.start()
    try:
        remote = await stage.new_user("remote", join=room)
        _, event = await post_image(remote, room, KNOWN)
        await wait_for(lambda: _has(action_outcomes(admin, event), ("notify", "ok")), timeout=60, description="notice")
        # Banned in every protected room, pre-emptively where it never joined (the third
        # room was taken down by the test before).
        for protected in stage.protected_rooms[:2]:
            assert await stage.moderator.get_membership(protected, remote.user_id) == "ban"
        kinds = {kind for kind, _ in await action_outcomes(admin, event)}
        assert not kinds & {"suspend", "quarantine_user_media", "redact_user", "deactivate"}
        # Not suspended: it can still upload.
        await remote.upload(OTHER, "image/png", "fine.png")
        audit = [r.message for r in await admin.db.store.audit_log(limit=200)]
        assert any("never denies the bot's own server" in m for m in audit)
        notice = await _notice_naming(admin, event)
        assert "another server" in notice and "instead of" in notice
    finally:
        admin.write_policy()


async def _eq(coro: Any, expected: Any) -> bool:
    return await coro == expected


async def _has(coro: Any, item: Any) -> bool:
    return item in await coro


async def _notice_naming(a: Admin, event_id: str) -> str:
    async def find() -> str | None:
        for m in await a.stage.moderator.messages(a.stage.management_room, limit=100):
            body = m.get("content", {}).get("body", "")
            if m.get("sender") == a.stage.bot_user_id and event_id in body:
                return body
        return None

    await wait_for(find, timeout=20, description=f"notice naming {event_id}")
    return await find() or ""


def _modbot_check(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "check", "-c", str(config_path)], capture_output=True, text=True, timeout=60)


async def test_check_tells_which_admin_apis_synapse_offers_and_the_policy_uses(admin: Admin) -> None:
    result = await asyncio.to_thread(_modbot_check, admin.stage.config_path)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "ok    admin API suspend: offered (used by: suspend)" in out
    assert "ok    admin API user media quarantine: offered (used by: quarantine_user_media)" in out
    assert "ok    admin API redact a user's events: offered (used by: redact_user)" in out
    assert "ok    admin API block a room: offered (used by: takedown_room)" in out
    assert "ok    admin API deactivate: offered (not used by the policy)" in out
    assert "ok    admin API event reports: offered (used by: reports)" in out
    assert "ok    admin API user reports: offered (used by: reports (optional))" in out


async def test_an_api_synapse_lacks_is_told_apart_from_one_it_has(admin: Admin) -> None:
    async with aiohttp.ClientSession() as session:
        hs = homeserver_for(admin.stage.config(), session)
        assert not await offered(hs, AdminApi("nothing", "/_synapse/admin/v1/no_such_api/{bot}", "never"), admin.stage.room)
        assert await offered(hs, AdminApi("suspend", "/_synapse/admin/v1/suspend/{bot}", "1.122"), admin.stage.room)


async def command(a: Admin, text: str, *, reply_to: str | None = None) -> tuple[str, str]:
    """Send a command to the management room as the moderator; the bot's answer (id, body)."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": text}
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    sent = await a.stage.moderator.send_message(a.stage.management_room, content)

    async def find() -> tuple[str, str] | None:
        for m in await a.stage.moderator.messages(a.stage.management_room, limit=100):
            relates = m.get("content", {}).get("m.relates_to", {})
            if m.get("sender") == a.stage.bot_user_id and relates.get("m.in_reply_to", {}).get("event_id") == sent:
                return m["event_id"], m["content"]["body"]
        return None

    return await wait_for(find, timeout=60, description=f"the answer to {text!r}")


async def test_commands_suspend_and_unsuspend(admin: Admin) -> None:
    user = await admin.stage.new_user("talker", join=admin.stage.protected_rooms[1])
    room = admin.stage.protected_rooms[1]
    _, answer = await command(admin, f"!mod suspend {user.user_id}")
    assert f"suspended {user.user_id}" in answer
    error = await refused(user.send_text(room, "am I suspended?"))
    assert error is not None and error.errcode == "M_USER_SUSPENDED"
    while_suspended = await user.upload(WHILE_SUSPENDED, "image/png", "while.png")  # Synapse accepts it...
    await wait_for(lambda: _eq(admin.stage.admin.download_status(while_suspended), 404), timeout=60,
                   description="quarantined while suspended")  # ...and modbot takes it down
    _, answer = await command(admin, f"!mod unsuspend {user.user_id}")
    assert f"unsuspended {user.user_id}" in answer
    await user.send_text(room, "back again")

    async def stopped() -> bool:
        return any(e.outcome == "stopped" and user.user_id in e.message
                   for e in await admin.db.store.audit_log(category="suspension"))

    await wait_for(stopped, timeout=60, description="the upload watch stopped")
    after = await user.upload(AFTER_UNSUSPEND, "image/png", "after.png")
    await asyncio.sleep(5)  # two polls and more
    assert await admin.stage.admin.download_status(after) == 200


async def test_deactivate_asks_first_and_a_reply_confirm_does_it(admin: Admin) -> None:
    user = await admin.stage.new_user("leaving")
    question, answer = await command(admin, f"!mod deactivate {user.user_id} --erase")
    assert "needs confirmation" in answer and "--yes" in answer
    assert (await user.whoami())["user_id"] == user.user_id  # nothing done yet
    _, answer = await command(admin, "!mod confirm", reply_to=question)
    assert f"deactivated {user.user_id} and erased" in answer
    assert await refused(user.whoami()) is not None  # its token is gone
    outsider = await admin.stage.new_user("outsider")
    _, answer = await command(admin, f"!mod deactivate {outsider.user_id} --yes")
    assert f"deactivated {outsider.user_id}" in answer


async def test_takedown_command_blocks_unblock_undoes_and_purge_asks_first(admin: Admin) -> None:
    stage = admin.stage
    room = await stage.moderator.create_room("to take down")
    guest = await stage.new_user("guest")
    await stage.moderator.invite(room, guest.user_id)
    _, answer = await command(admin, f"!mod takedown {room}")
    assert f"blocked {room}" in answer
    assert await refused(guest.join(room)) is not None
    _, answer = await command(admin, f"!mod unblock {room}")
    assert f"unblocked {room}" in answer
    await guest.join(room)
    _, answer = await command(admin, f"!mod takedown {room} --purge")
    assert "needs confirmation" in answer
    assert await stage.moderator.get_membership(room, guest.user_id) == "join"  # nothing purged
    _, answer = await command(admin, f"!mod takedown {stage.management_room} --purge --yes")
    assert "does not take down its management room" in answer

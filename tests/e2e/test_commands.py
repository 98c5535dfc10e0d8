"""Moderator commands, the review queue and incident records, against a real Synapse.

The stage: a management room (the moderator's safety team), protected room A with the
default kind of rule (act at once), protected room B whose rule sends matches to review,
a room moderator with power 50 in room A, and a peer with power 100 there (as much as
the bot). The policy lives in its own file so that a reload can be tried.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from PIL import Image

from bot.commands.handlers import build_commands
from bot.demo.matrix import MatrixUser
from bot.demo.samples import make_clip
from bot.demo.waiting import wait_for
from bot.cli.scan import add_images
from bot.demo.stage import Stage
from bot.lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=303), "PNG")


@dataclass
class Team:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    roommod: MatrixUser
    peer: MatrixUser
    policy_path: Path

    @property
    def mod(self) -> MatrixUser:
        return self.stage.moderator

    @property
    def mgmt(self) -> str:
        return self.stage.management_room

    @property
    def room_a(self) -> str:
        return self.stage.protected_rooms[0]

    @property
    def room_b(self) -> str:
        return self.stage.protected_rooms[1]

    def write_policy(self, text: str | None = None) -> None:
        self.policy_path.write_text(text if text is not None else yaml.safe_dump(self.policy()))

    def policy(self) -> dict[str, Any]:
        return {
            "exempt": {"power_level": 100},
            "rules": [{"name": "known-media", "actions": ["quarantine", "redact", "ban", "notify"]}],
            "rooms": {self.room_b: {"rules": [{"name": "needs-review", "actions": ["review", "ban", "notify"]}]}},
        }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def team(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Team]:
    workdir = tmp_path_factory.mktemp("commands")
    async with staged(workdir, protected_rooms=2) as stage:
        roommod = await stage.new_user("roommod", join=stage.protected_rooms[0])
        peer = await stage.new_user("peer", join=stage.protected_rooms[0])
        await stage.moderator.set_power_level(stage.protected_rooms[0], roommod.user_id, 50)
        await stage.moderator.set_power_level(stage.protected_rooms[0], peer.user_id, 100)
        known = workdir / "known.png"
        known.write_bytes(KNOWN)
        add_images([known], stage.config(), "known", None)
        known.unlink()
        policy_path = workdir / "policy.yaml"
        t = Team(stage, BotProcess.for_stage(stage), None, roommod, peer, policy_path)  # type: ignore[arg-type]
        t.write_policy()
        stage.write_config(policy_file=str(policy_path))
        async with bot_running(stage, t.bot) as (_, db):
            t.db = db
            yield t


async def command(user: MatrixUser, room: str, text: str, *, reply_to: str | None = None) -> str:
    content: dict[str, Any] = {"msgtype": "m.text", "body": text}
    if reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return await user.send_message(room, content)


async def answer(t: Team, room: str, command_event: str, timeout: float = 20) -> str:
    """The bot's reply to a command."""

    async def find() -> str | None:
        for m in await t.mod.messages(room, limit=100):
            relates = m.get("content", {}).get("m.relates_to", {})
            if m.get("sender") == t.stage.bot_user_id and relates.get("m.in_reply_to", {}).get("event_id") == command_event:
                return m["content"]["body"]
        return None

    return await wait_for(find, timeout=timeout, description=f"reply to {command_event}")


async def ask(t: Team, user: MatrixUser, room: str, text: str, *, reply_to: str | None = None, timeout: float = 20) -> str:
    return await answer(t, room, await command(user, room, text, reply_to=reply_to), timeout=timeout)


async def membership(t: Team, room: str, user: MatrixUser) -> str | None:
    return await t.mod.get_membership(room, user.user_id)


async def post(user: MatrixUser, room: str, data: bytes) -> tuple[str, str]:
    mxc = await user.upload(data, "image/png", "x.png")
    return mxc, await user.send_image(room, mxc, mimetype="image/png", size=len(data))


async def processed(t: Team, event_id: str) -> bool:
    event = await t.db.store.load_event(event_id)
    return event is not None and event.status != "pending"


# --- who may do what ------------------------------------------------------------------------------


async def test_management_room_members_get_help_status_version_and_lists(team: Team) -> None:
    help_text = await ask(team, team.mod, team.mgmt, "!mod help")
    for usage in ("ban <user|reply> [<room|all>]", "review approve <id>", "rooms protect <room>", "allow", "report <incident>"):
        assert usage in help_text
    assert "redact <user|reply> [limit <limit>]" in await ask(team, team.mod, team.mgmt, "!mod help redact")
    status = await ask(team, team.mod, team.mgmt, "!mod status")
    assert "Protected rooms: 2" in status and "List known" in status and "Queue:" in status
    assert "modbot 0." in await ask(team, team.mod, team.mgmt, "!mod version")
    lists = await ask(team, team.mod, team.mgmt, "!mod lists")
    assert lists.startswith("known: ") and "sha256 1, md5 1" in lists and "label csam-test, enabled" in lists
    # The bot's localpart and a colon work like the prefix.
    assert "modbot 0." in await ask(team, team.mod, team.mgmt, "modbot: version")


async def test_users_without_power_are_not_permitted_and_the_attempt_is_audited(team: Team) -> None:
    nobody = await team.stage.new_user("nobody", join=team.room_a)
    event = await command(nobody, team.room_a, "!mod ban @someone:localhost")
    assert "not permitted" in await answer(team, team.room_a, event)
    elsewhere = await team.stage.new_user("nobody", join=team.room_a)
    await team.mod.invite(team.mgmt, elsewhere.user_id)
    await elsewhere.join(team.mgmt)
    event = await command(elsewhere, team.mgmt, "!mod status")
    assert "not permitted" in await answer(team, team.mgmt, event)
    denied = [a for a in await team.db.store.audit_log(category="command") if a.outcome == "denied"]
    assert {a.event_id for a in denied} >= {event}
    await team.mod.kick(team.mgmt, elsewhere.user_id)


@pytest.mark.parametrize("name", sorted(build_commands().commands))
async def test_every_command_is_refused_to_a_user_without_power(team: Team, name: str) -> None:
    outsider = await team.stage.new_user("outsider", join=team.room_a)
    event = await command(outsider, team.room_a, f"!mod {name} @someone:localhost")
    assert "not permitted" in await answer(team, team.room_a, event)
    denied = [a for a in await team.db.store.audit_log(event_id=event, category="command")]
    assert [a.outcome for a in denied] == ["denied"]


async def test_a_room_moderator_runs_room_commands_in_their_room_only(team: Team) -> None:
    target = await team.stage.new_user("target", join=team.room_a)
    assert "ban" in await ask(team, team.roommod, team.room_a, f"!mod ban {target.user_id} spamming")
    assert await membership(team, team.room_a, target) == "ban"
    assert "management room" in await ask(team, team.roommod, team.room_a, "!mod status")
    assert "management room only" in await ask(team, team.roommod, team.room_a, f"!mod ban {target.user_id} all")
    assert "this room only" in await ask(team, team.roommod, team.room_a, f"!mod kick {target.user_id} {team.room_b}")


# --- targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["reply", "id", "matrix.to link"])
async def test_ban_accepts_a_reply_an_id_or_a_matrix_to_link(team: Team, how: str) -> None:
    target = await team.stage.new_user("spammer", join=team.room_a)
    if how == "reply":
        message = await target.send_text(team.room_a, "buy my stuff")
        reply = await ask(team, team.mod, team.room_a, "!mod ban", reply_to=message)
    elif how == "id":
        reply = await ask(team, team.mod, team.mgmt, f"!mod ban {target.user_id} {team.room_a}")
    else:
        reply = await ask(team, team.mod, team.mgmt, f"!mod ban https://matrix.to/#/{target.user_id} https://matrix.to/#/{team.room_a}")
    assert "ok" in reply, reply
    assert await membership(team, team.room_a, target) == "ban"
    actions = [a for a in await team.db.store.actions(limit=20) if a.kind == "ban" and a.target == target.user_id]
    assert actions and actions[0].decided_by == f"command by {team.mod.user_id}"


async def test_the_bot_refuses_to_act_against_its_peers_the_safety_team_and_itself(team: Team) -> None:
    assert "not less than the bot" in await ask(team, team.mod, team.mgmt, f"!mod ban {team.peer.user_id} {team.room_a}")
    assert "safety team" in await ask(team, team.roommod, team.room_a, f"!mod kick {team.mod.user_id}")
    assert "itself" in await ask(team, team.mod, team.mgmt, f"!mod ban {team.stage.bot_user_id} {team.room_a}")
    assert await membership(team, team.room_a, team.peer) == "join"


async def test_kick_unban_and_redact(team: Team) -> None:
    user = await team.stage.new_user("noisy", join=team.room_a)
    messages = [await user.send_text(team.room_a, f"noise {i}") for i in range(3)]
    reply = await ask(team, team.mod, team.mgmt, f"!mod redact {user.user_id} limit 10 {team.room_a}", timeout=60)
    assert "redacted" in reply, reply
    for event_id in messages:
        await wait_for(lambda e=event_id: _redacted(team, team.room_a, e), timeout=20)
    assert "ok" in await ask(team, team.mod, team.mgmt, f"!mod kick {user.user_id} {team.room_a} bye")
    assert await membership(team, team.room_a, user) == "leave"
    await ask(team, team.mod, team.mgmt, f"!mod ban {user.user_id} all")
    assert await membership(team, team.room_b, user) == "ban"  # banned pre-emptively where never joined
    assert "ok" in await ask(team, team.mod, team.mgmt, f"!mod unban {user.user_id} all")
    assert await membership(team, team.room_a, user) == "leave"


async def _redacted(t: Team, room: str, event_id: str) -> bool:
    return "redacted_because" in (await t.mod.get_event(room, event_id)).get("unsigned", {})


async def test_quarantine_and_unquarantine_by_mxc_and_by_user(team: Team) -> None:
    user = await team.stage.new_user("uploader", join=team.room_a)
    first = await user.upload(encode(make_photo(seed=1001), "PNG"), "image/png", "a.png")
    second = await user.upload(encode(make_photo(seed=1002), "PNG"), "image/png", "b.png")
    assert "quarantined" in await ask(team, team.mod, team.mgmt, f"!mod quarantine {first}")
    assert await team.stage.admin.download_status(first) == 404
    assert "unquarantined" in await ask(team, team.mod, team.mgmt, f"!mod unquarantine {first}")
    assert await team.stage.admin.download_status(first) == 200
    assert "quarantined 2 media" in await ask(team, team.mod, team.mgmt, f"!mod quarantine {user.user_id}")
    assert await team.stage.admin.download_status(second) == 404


# --- rooms, scanning, lists, allowlist, policy ----------------------------------------------------------


async def test_protecting_and_unprotecting_a_room(team: Team) -> None:
    room = await team.mod.create_room("late room", invite=[team.stage.bot_user_id], power_level_content_override={"users": {team.stage.bot_user_id: 100}})
    reply = await ask(team, team.mod, team.mgmt, f"!mod rooms protect {room}")
    assert f"Protecting `{room}`" in reply and "bot power 100" in reply
    assert room in await ask(team, team.mod, team.mgmt, "!mod rooms list")
    offender = await team.stage.new_user("late", join=room)
    _, event_id = await post(offender, room, KNOWN)
    await wait_for(lambda: _redacted(team, room, event_id), timeout=20)
    assert "No longer protecting" in await ask(team, team.mod, team.mgmt, f"!mod rooms unprotect {room}")
    other = await team.stage.new_user("late", join=room)
    _, event_id = await post(other, room, KNOWN)
    await asyncio.sleep(2)
    assert not await _redacted(team, room, event_id)


async def test_scan_reports_without_acting_unless_asked(team: Team) -> None:
    user = await team.stage.new_user("scanned", join=team.room_a)
    # Posted in dry run, so that the pipeline leaves it up (an exemption would not: an exempt
    # sender's media is removed all the same).
    assert "Dry run on" in await ask(team, team.mod, team.mgmt, f"!mod dryrun on {team.room_a}")
    try:
        _, event_id = await post(user, team.room_a, KNOWN)
        await wait_for(lambda: processed(team, event_id), timeout=20)
        reply = await ask(team, team.mod, team.room_a, "!mod scan", reply_to=event_id, timeout=30)
        assert "list known" in reply and "exact sha256" in reply
        assert not await _redacted(team, team.room_a, event_id)
    finally:
        assert "Dry run off" in await ask(team, team.mod, team.mgmt, f"!mod dryrun off {team.room_a}")
    reply = await ask(team, team.mod, team.room_a, "!mod scan --act", reply_to=event_id, timeout=30)
    assert "Rule known-media" in reply, reply
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)


async def test_hash_add_and_remove_change_what_matches(team: Team) -> None:
    photo = make_photo(seed=2024)
    image = encode(photo, "PNG")
    poster = await team.stage.new_user("first", join=team.room_a)
    _, event_id = await post(poster, team.room_a, image)
    await wait_for(lambda: processed(team, event_id), timeout=20)
    # sha256, md5, pdq, phash and the low-frequency signature (bot/hashing/smoothsig.py), and,
    # downloaded again, the crops and brightened copy `hashes add-image` lists, naming the image
    reply = await ask(team, team.mod, team.room_a, "!mod hash add known extra-label", reply_to=event_id)
    added = int(re.search(r"Added (\d+) hashes", reply).group(1))  # type: ignore[union-attr]
    assert added == 5 + len(ADD_IMAGE_CROPS) + len(ADD_IMAGE_GAINS), reply
    again = await team.stage.new_user("again", join=team.room_a)
    _, second = await post(again, team.room_a, image)
    await wait_for(lambda: _redacted(team, team.room_a, second), timeout=20)
    # A copy cropped to 90%: found by the listed crop (no guess reaches a cut of 5% a side).
    cropper = await team.stage.new_user("cropper", join=team.room_a)
    _, cropped = await post(cropper, team.room_a, encode(_centre(photo, 0.9), "JPEG", quality=90))
    await wait_for(lambda: _redacted(team, team.room_a, cropped), timeout=20)
    # The copy is not listed itself: removing it removes nothing and names what it matched.
    reply = await ask(team, team.mod, team.room_a, "!mod hash remove known", reply_to=cropped)
    sha = await _sha256_of(image)
    assert "Removed 0 entries" in reply and f"`hash remove known sha256:{sha}` removes that listed image" in reply, reply
    # Once removed by reply (the media is quarantined by now), the crops go with the image.
    reply = await ask(team, team.mod, team.room_a, "!mod hash remove known", reply_to=event_id)
    assert f"Removed {added} entries" in reply, reply
    third_user = await team.stage.new_user("third", join=team.room_a)
    _, third = await post(third_user, team.room_a, image)
    await wait_for(lambda: processed(team, third), timeout=20)
    assert not await _redacted(team, team.room_a, third)
    _, recropped = await post(third_user, team.room_a, encode(_centre(photo, 0.9), "JPEG", quality=85))
    await wait_for(lambda: processed(team, recropped), timeout=20)
    assert not await _redacted(team, team.room_a, recropped)


def _centre(image: Image.Image, keep: float) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return image.crop((dx, dy, w - dx, h - dy))


async def test_hash_add_of_a_video_lists_its_vpdq_and_a_re_encoded_copy_is_then_acted_on(team: Team) -> None:
    scenes = [(make_photo(seed, (480, 360)), 3.0) for seed in (2031, 2032)]
    poster = await team.stage.new_user("filmer", join=team.room_a)
    mxc = await poster.upload(make_clip(scenes), "video/mp4", "clip")
    event_id = await poster.send_message(team.room_a, {"msgtype": "m.video", "body": "clip", "url": mxc})
    await wait_for(lambda: processed(team, event_id), timeout=30)
    assert not await _redacted(team, team.room_a, event_id)
    assert "Added 3 hashes" in await ask(team, team.mod, team.room_a, "!mod hash add known csam", reply_to=event_id)
    again = await team.stage.new_user("refilmer", join=team.room_a)
    copy = await again.upload(make_clip(scenes, "libvpx", "webm", 25, (320, 240)), "video/webm", "clip")
    second = await again.send_message(team.room_a, {"msgtype": "m.video", "body": "clip", "url": copy})
    await wait_for(lambda: _redacted(team, team.room_a, second), timeout=30)
    assert "Removed 3 entries" in await ask(team, team.mod, team.room_a, "!mod hash remove known", reply_to=event_id)


async def test_an_allowlisted_false_positive_is_skipped_until_removed(team: Team) -> None:
    sha = (await _sha256_of(KNOWN))
    reply = await ask(team, team.mod, team.mgmt, f"!mod allow {sha} test false positive")
    assert f"sha256 `{sha}`" in reply
    user = await team.stage.new_user("allowed", join=team.room_a)
    _, event_id = await post(user, team.room_a, KNOWN)
    await wait_for(lambda: processed(team, event_id), timeout=20)
    assert not await _redacted(team, team.room_a, event_id)
    assert sha in await ask(team, team.mod, team.mgmt, "!mod allow list")
    assert "Removed 1" in await ask(team, team.mod, team.mgmt, f"!mod allow remove {sha}")
    other = await team.stage.new_user("notallowed", join=team.room_a)
    _, event_id = await post(other, team.room_a, KNOWN)
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)


async def _sha256_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


async def test_policy_reload_refuses_a_broken_file_and_keeps_the_old_policy(team: Team) -> None:
    assert "known-media" in await ask(team, team.mod, team.mgmt, "!mod policy show")
    team.write_policy("rules:\n  - name: x\n    actions: [bann]\n")
    try:
        reply = await ask(team, team.mod, team.mgmt, "!mod policy reload")
        assert "not reloaded" in reply and "policy.yaml:3" in reply and "bann" in reply
        user = await team.stage.new_user("stillmatched", join=team.room_a)
        _, event_id = await post(user, team.room_a, KNOWN)
        await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)
    finally:
        team.write_policy()
    assert "Policy reloaded" in await ask(team, team.mod, team.mgmt, "!mod policy reload")


async def test_dry_run_switched_on_and_off_for_a_room(team: Team) -> None:
    assert "Dry run on" in await ask(team, team.mod, team.mgmt, f"!mod dryrun on {team.room_a}")
    try:
        user = await team.stage.new_user("dry", join=team.room_a)
        _, event_id = await post(user, team.room_a, KNOWN)
        await wait_for(lambda: processed(team, event_id), timeout=20)
        assert not await _redacted(team, team.room_a, event_id)
        statuses = {a.status for a in await team.db.store.actions(event_id=event_id)}
        assert "dry_run" in statuses
    finally:
        assert "Dry run off" in await ask(team, team.mod, team.mgmt, f"!mod dryrun off {team.room_a}")
    user = await team.stage.new_user("wet", join=team.room_a)
    _, event_id = await post(user, team.room_a, KNOWN)
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)


async def test_audit_lists_recent_actions_for_a_user(team: Team) -> None:
    user = await team.stage.new_user("audited", join=team.room_a)
    await ask(team, team.mod, team.mgmt, f"!mod kick {user.user_id} {team.room_a}")
    reply = await ask(team, team.mod, team.mgmt, f"!mod audit 5 {user.user_id}")
    assert "ok: kick" in reply and user.user_id in reply


# --- review queue and incidents --------------------------------------------------------------------------


async def _review_card(t: Team, event_id: str) -> int:
    async def find() -> int | None:
        for m in await t.mod.messages(t.mgmt, limit=100):
            body = m.get("content", {}).get("body", "")
            if m.get("sender") == t.stage.bot_user_id and body.startswith("modbot review #") and event_id in body:
                return int(body.split("#", 1)[1].split(":", 1)[0])
        return None

    return await wait_for(find, timeout=20, description="review card")


async def test_review_approve_runs_the_remaining_actions_and_records_an_incident(team: Team) -> None:
    user = await team.stage.new_user("reviewed", join=team.room_b)
    mxc, event_id = await post(user, team.room_b, KNOWN)
    review_id = await _review_card(team, event_id)
    assert await team.stage.admin.download_status(mxc) == 404  # held
    assert await _redacted(team, team.room_b, event_id)
    assert await membership(team, team.room_b, user) == "join"  # the ban waits for a moderator
    assert f"#{review_id}" in await ask(team, team.mod, team.mgmt, "!mod review list")
    reply = await ask(team, team.mod, team.mgmt, f"!mod review approve {review_id}")
    assert "approved" in reply and "incident #" in reply
    assert await membership(team, team.room_b, user) == "ban"
    incident_id = int(reply.split("incident #", 1)[1].split(" ", 1)[0])
    report = await ask(team, team.mod, team.mgmt, f"!mod report {incident_id}")
    assert user.user_id in report and event_id in report and "sha256" in report and "Decided by: " + team.mod.user_id in report
    assert "already approved" in await ask(team, team.mod, team.mgmt, f"!mod review approve {review_id}")


async def test_review_reject_releases_the_media_and_stops_future_matches(team: Team) -> None:
    image = encode(make_photo(seed=303).rotate(180), "PNG")  # a near copy: a perceptual match
    user = await team.stage.new_user("innocent", join=team.room_b)
    mxc, event_id = await post(user, team.room_b, image)
    review_id = await _review_card(team, event_id)
    assert await team.stage.admin.download_status(mxc) == 404
    reply = await ask(team, team.mod, team.mgmt, f"!mod review reject {review_id} --tell")
    assert "rejected" in reply and "cannot be undone" in reply
    assert await team.stage.admin.download_status(mxc) == 200
    assert await membership(team, team.room_b, user) == "join"
    told = [m for m in await team.mod.messages(team.room_b, limit=30) if m.get("sender") == team.stage.bot_user_id]
    assert any("removed by mistake" in m.get("content", {}).get("body", "") for m in told)
    again = await team.stage.new_user("innocent", join=team.room_a)
    _, second = await post(again, team.room_a, image)
    await wait_for(lambda: processed(team, second), timeout=20)
    assert not await _redacted(team, team.room_a, second)


def _modbot(t: Team, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args, "-c", str(t.stage.config_path)], capture_output=True, text=True, timeout=60
    )


async def test_report_export_has_the_report_fields_and_no_media(team: Team) -> None:
    user = await team.stage.new_user("exported", join=team.room_a)
    _, event_id = await post(user, team.room_a, KNOWN)
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)
    await asyncio.sleep(1)
    exported = _modbot(team, "report", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    reports = json.loads(exported.stdout)
    mine = [r for r in reports if r["internet_details"]["event_id"] == event_id]
    assert len(mine) == 1
    assert mine[0]["reported_person"]["esp_user_id"] == user.user_id
    assert mine[0]["uploaded_files"][0]["hashes"]["sha256"] == await _sha256_of(KNOWN)
    csv_out = _modbot(team, "report", "export", "--format", "csv").stdout
    assert event_id in csv_out
    for text in (exported.stdout, csv_out):
        for probe in (KNOWN[1000:1048], base64.b64encode(KNOWN[999:1047]).decode()):
            assert (probe.decode("latin-1") if isinstance(probe, bytes) else probe) not in text


async def test_audit_verify_detects_an_edited_incident(team: Team) -> None:
    user = await team.stage.new_user("chained", join=team.room_a)
    _, event_id = await post(user, team.room_a, KNOWN)
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)
    await asyncio.sleep(1)
    ok = _modbot(team, "audit", "verify")
    assert ok.returncode == 0 and "chain intact" in ok.stdout, ok.stdout + ok.stderr
    db_path = team.stage.config_data["database"]["url"].split("///", 1)[1]
    await team.db.engine.dispose()  # this process's SQLite locks are per process: let go first
    with sqlite3.connect(db_path) as conn:
        row_id, record = conn.execute("select id, record_json from incidents order by id limit 1").fetchone()
        conn.execute("update incidents set record_json = ? where id = ?", (record.replace("@", "@x"), row_id))
    try:
        broken = _modbot(team, "audit", "verify")
        assert broken.returncode == 1 and f"incident {row_id}" in broken.stdout and "edited" in broken.stdout
    finally:
        with sqlite3.connect(db_path) as conn:
            conn.execute("update incidents set record_json = ? where id = ?", (record, row_id))


async def test_audit_anchor_posts_the_head_and_verify_catches_truncation_through_the_room(team: Team) -> None:
    user = await team.stage.new_user("anchored", join=team.room_a)
    _, event_id = await post(user, team.room_a, KNOWN)
    await wait_for(lambda: _redacted(team, team.room_a, event_id), timeout=20)
    await asyncio.sleep(1)
    reply = await ask(team, team.mod, team.mgmt, "!mod audit anchor")
    assert reply.startswith("Anchored: ") and "Not done" not in reply, reply
    head_hash = reply.split("hash `", 1)[1].split("`", 1)[0]
    notices = [
        m["content"]["modbot.anchor"] for m in await team.mod.messages(team.mgmt, limit=100)
        if m.get("sender") == team.stage.bot_user_id and "modbot.anchor" in m.get("content", {})
    ]
    assert notices and notices[0]["head_hash"] == head_hash  # newest first
    head_id = notices[0]["head_id"]

    ok = _modbot(team, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    room_line = next(line for line in ok.stdout.splitlines() if line.startswith("management room "))
    assert int(room_line.split(": ", 1)[1].split(" ", 1)[0]) >= 1, room_line

    # The newest row deleted, and the anchor file gone with it: the room still tells.
    anchor_file = Path(team.stage.config().incidents.anchor_file)
    moved = anchor_file.with_suffix(".moved")
    db_path = team.stage.config_data["database"]["url"].split("///", 1)[1]
    await team.db.engine.dispose()
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("select * from incidents where id = ?", (head_id,)).fetchone())
        conn.execute("delete from incidents where id = ?", (head_id,))
    anchor_file.rename(moved)
    try:
        broken = _modbot(team, "audit", "verify")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert f"incident {head_id} missing: the anchor of " in broken.stdout
        assert "(management room)" in broken.stdout
    finally:
        moved.rename(anchor_file)
        with sqlite3.connect(db_path) as conn:
            conn.execute(f"insert into incidents ({', '.join(row)}) values ({', '.join('?' * len(row))})", tuple(row.values()))
    assert _modbot(team, "audit", "verify").returncode == 0

"""Each section's commands, run against the services a handler is given (tests/command_kit.py):
the reply, and what the command did or would have sent: homeserver calls, executor actions,
audit rows, the controls' state, the list file."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import command_kit
import pytest
from command_kit import BOT, MGMT, MOD, OTHER, PDQ, ROOM, ROOM_MOD, SHA, SPAMMER, CommandKit, known, power

from bot import __version__
from bot.commands.context import CommandError
from bot.model import Hashes, MatchKind, Verdict

# The fixture, found by pytest under this name. Bound by assignment, not imported: the
# tests' `kit` parameters would otherwise shadow an unused import (as pyflakes reports).
kit = command_kit.kit

IMAGE = "mxc://evil.example/abc"


# --- info ----------------------------------------------------------------------------------


async def test_status_reports_queue_rooms_policy_lists_and_errors(kit: CommandKit) -> None:
    kit.queue_errors[:] = ["$e1: boom", "$e2: bang"]
    lines = (await kit.send("!mod status"))[0].splitlines()
    assert lines[0].startswith(f"modbot {__version__}, up ")
    assert lines[1].startswith("Queue: 2 waiting; events ")
    assert lines[2] == f"Protected rooms: 1; management room {MGMT}"
    assert lines[3] == "Policy: 1 rules, dry run off; allowlist 0 hashes"
    assert lines[4] == "List known: 1 entries"
    assert lines[5:] == ["Recent error: $e1: boom", "Recent error: $e2: bang"]


async def test_help_in_a_protected_room_lists_only_the_room_commands(kit: CommandKit) -> None:
    [text] = await kit.send("!mod help", room=ROOM, sender=ROOM_MOD)
    assert "`ban <user|reply> [<room|all>] [<reason...>]`" in text and "`version`" in text
    assert "rooms protect" not in text and "status" not in text
    assert (await kit.run("version")).lines == [f"modbot {__version__}"]
    first = (await kit.run("help rooms")).lines[0]
    assert first == "`!mod rooms list`: the protected rooms and the bot's power in each"


# --- rooms ----------------------------------------------------------------------------------


async def test_rooms_protect_joins_records_and_says_the_bots_power(kit: CommandKit) -> None:
    reply = await kit.run(f"rooms protect {OTHER}")
    assert reply.lines == [f"Protecting `{OTHER}`: bot power 100 (ban 50, redact 50)"]
    assert kit.homeserver.called("join") == [(OTHER,)]
    assert kit.controls.protected == {ROOM, OTHER}
    assert await kit.moderation.protection_overrides() == {OTHER: True}
    [row] = await kit.store.audit_log(category="rooms")
    assert (row.outcome, row.message, row.sender) == ("protected", f"{MOD}: protect {OTHER}", MOD)

    assert (await kit.run(f"rooms unprotect {OTHER}")).lines == [f"No longer protecting `{OTHER}`."]
    assert kit.controls.protected == {ROOM}
    assert (await kit.run("rooms list")).lines == ["1 protected rooms:", f"`{ROOM}`: bot power 100 (ban 50, redact 50)"]


async def test_start_up_knows_the_protected_rooms_once_it_has_tried_to_join_each(kit: CommandKit) -> None:
    # Until then the policy lists keep every join (bot/policylists/service.py, wants).
    kit.controls.protected.clear()
    for room in (ROOM, OTHER):
        await kit.moderation.set_protected(room, True, MOD)  # protected by command
    kit.homeserver.unjoinable.add(OTHER)  # it cannot be joined now: the rest are still known
    assert not kit.controls.rooms_known
    await kit.controls.join_protected()
    assert kit.controls.rooms_known and kit.controls.protected == {ROOM}


async def test_rooms_protect_without_an_invite_says_so_and_changes_nothing(kit: CommandKit) -> None:
    kit.homeserver.unjoinable.add(OTHER)
    with pytest.raises(CommandError, match=f"cannot join {OTHER} \\(invite {BOT} first\\): HTTP 403"):
        await kit.run(f"rooms protect {OTHER}")
    assert kit.controls.protected == {ROOM}
    assert await kit.store.audit_log(category="rooms") == []


# --- media ----------------------------------------------------------------------------------


async def test_scan_of_a_replied_to_image_reports_the_match(kit: CommandKit) -> None:
    kit.image_message("$img", IMAGE)
    kit.media.verdicts[SHA] = [known()]
    reply = await kit.run("scan", room=ROOM, scope="room", reply_to="$img")
    assert reply.lines == [f"`{IMAGE}`: sha256 `{SHA}`: list known, label csam (exact sha256)"]
    assert kit.executor.actions == [] and kit.enforcer.calls == []

    reply = await kit.run("scan --act", room=ROOM, scope="room", reply_to="$img")
    assert kit.enforcer.calls == [("enforce", "known-media", SPAMMER)]
    assert reply.lines[1].startswith("Rule known-media: ")


async def test_quarantine_goes_through_the_executor(kit: CommandKit) -> None:
    reply = await kit.run(f"quarantine {IMAGE}")
    assert reply.lines == [f"quarantined {IMAGE}"] and reply.ok
    assert kit.homeserver.called("quarantine") == [("evil.example", "abc")]
    [action] = kit.executor.actions
    assert (action.kind, action.target, action.room_id, action.by) == ("quarantine", IMAGE, None, MOD)

    assert (await kit.run(f"quarantine {SPAMMER}")).lines == [f"quarantined 3 media of {SPAMMER}"]
    with pytest.raises(CommandError, match="safety team"):
        await kit.run(f"quarantine {MOD}")
    assert (await kit.run(f"unquarantine {IMAGE}")).lines == [f"unquarantined {IMAGE}"]
    assert [a.kind for a in kit.executor.actions] == ["quarantine", "quarantine", "unquarantine"]


# --- lists ----------------------------------------------------------------------------------


async def test_hash_add_writes_the_list_file_and_reloads_it(kit: CommandKit) -> None:
    kit.image_message("$img", IMAGE)
    reply = await kit.run("hash add known spam", reply_to="$img")
    assert reply.lines == ["Added 3 hashes to list known (label spam)."]
    text = kit.list_path.read_text()
    assert f"sha256,{SHA},spam" in text and f"pdq,{PDQ},spam" in text
    assert (await kit.run("lists")).lines == [
        "known: 4 entries (sha256 2, md5 1, pdq 1), label csam, enabled"
    ]
    with pytest.raises(CommandError, match="no hash list 'other' \\(have: known\\)"):
        await kit.run("hash add other spam", reply_to="$img")


CROP = "0f" * 32
OTHER_SHA = "77" * 32


class Crops:
    """The image's crops as the sandbox would give them, or why there are none."""

    def __init__(self, crops: tuple[tuple[str, str], ...], why: str | None = None) -> None:
        self.crops, self.why, self.asked = crops, why, []  # type: list[tuple[str, str]]

    async def crops_of(self, ref: object, sha256: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
        self.asked.append((getattr(ref, "mxc"), sha256))
        return self.crops, self.why


async def test_hash_add_lists_an_images_crops_naming_it_as_hashes_add_image_does(kit: CommandKit) -> None:
    kit.image_message("$img", IMAGE)
    kit.services = replace(kit.services, crops=Crops(((CROP, "crop to 95%, top left"),)))
    reply = await kit.run("hash add known spam", reply_to="$img")
    assert reply.lines == ["Added 4 hashes to list known (label spam)."]
    assert f'pdq,{CROP},spam,"crop to 95%, top left; of sha256:{SHA}"' in kit.list_path.read_text()
    assert kit.services.crops.asked == [(IMAGE, SHA)]  # type: ignore[union-attr]


async def test_hash_add_says_when_an_images_crops_cannot_be_listed(kit: CommandKit) -> None:
    kit.image_message("$img", IMAGE)
    kit.services = replace(kit.services, crops=Crops((), "cannot download it again: HTTP 404"))
    reply = await kit.run("hash add known spam", reply_to="$img")
    assert reply.lines == [
        "Added 3 hashes to list known (label spam).",
        f"`{IMAGE}`: its own hashes only, no crops (cannot download it again: HTTP 404).",
    ]


async def test_hash_remove_by_reply_removes_the_rows_derived_from_the_image_and_no_others(kit: CommandKit) -> None:
    kit.image_message("$img", IMAGE)
    kit.services = replace(kit.services, crops=Crops(((CROP, "crop to 95%, top left"),)))
    await kit.run("hash add known spam", reply_to="$img")
    other = f'pdq,{"1e" * 32},csam,"crop to 95%, centred; of sha256:{OTHER_SHA}"\n'
    kit.list_path.write_text(kit.list_path.read_text() + other)
    # The media may be gone by now (purged): the SHA-256 modbot kept names the derived rows.
    assert (await kit.run("hash remove known", reply_to="$img")).lines == ["Removed 4 entries from list known."]
    text = kit.list_path.read_text()
    assert SHA not in text and CROP not in text and other in text
    assert (await kit.run(f"hash remove known sha256:{OTHER_SHA}")).lines == ["Removed 1 entries from list known."]
    assert "1e" * 32 not in kit.list_path.read_text()
    # Media that is not listed itself: what it matches instead, and the two ways out.
    assert (await kit.run("hash remove known", reply_to="$img")).lines == [
        "Removed 0 entries from list known: the media is not listed itself.", "Nothing in list known matches it now.",
    ]
    kit.media.verdicts[SHA] = [
        Verdict("hashlist", "csam", MatchKind.NEAR, list_name="known", hash_type="pdq", distance=12, matched_hash=CROP,
                details={"entry": "crop to 95%, top left", "entry_image": OTHER_SHA}),
        Verdict("hashlist", "csam", MatchKind.NEAR, list_name="other", hash_type="pdq", distance=3, matched_hash=PDQ),
    ]
    assert (await kit.run("hash remove known", reply_to="$img")).lines == [
        "Removed 0 entries from list known: the media is not listed itself.",
        "It matches list known, label csam (near, pdq distance 12; the list's entry is of the image's crop to 95%, "
        f"top left (listed image sha256:{OTHER_SHA})): `hash remove known sha256:{OTHER_SHA}` removes that listed "
        "image; `allow` spares this media instead.",
    ]


async def test_hash_remove_by_reply_finds_rows_that_do_not_name_the_image_by_their_value(kit: CommandKit) -> None:
    # A crop row written by an older modbot (or in a plain list, which has no derived column).
    kit.image_message("$img", IMAGE)
    kit.list_path.write_text(kit.list_path.read_text() + f'pdq,{CROP},csam,"crop to 95%, top left"\n')
    kit.services = replace(kit.services, crops=Crops(((CROP, "crop to 95%, top left"),)))
    assert (await kit.run("hash remove known", reply_to="$img")).lines == ["Removed 1 entries from list known."]
    assert CROP not in kit.list_path.read_text()


def video_of(kit: CommandKit, event_id: str, mxc: str, seconds: int, *, max_vpdq_frames: int) -> None:
    """A posted video sampled into `seconds` frames, and list known capped at `max_vpdq_frames`."""
    kit.image_message(event_id, mxc)
    frames = tuple((s, f"{s:064x}", 90) for s in range(seconds))
    kit.media.hashes[mxc] = Hashes(sha256=SHA, md5="cd" * 16, size=10, frame_pdqs=frames)
    capped = kit.services.hash_lists[0].model_copy(update={"max_vpdq_frames": max_vpdq_frames})
    kit.services = replace(kit.services, hash_lists=[capped])


async def test_hash_add_of_a_video_longer_than_the_lists_vpdq_entries_may_be_is_refused(kit: CommandKit) -> None:
    before = kit.list_path.read_text()
    video_of(kit, "$vid", IMAGE, 9, max_vpdq_frames=5)
    with pytest.raises(CommandError) as refused:
        await kit.run("hash add known spam", reply_to="$vid")
    assert str(refused.value) == (
        f"`{IMAGE}`: 9 frames sampled, more than list known's max_vpdq_frames (5); "
        "lower processing.max_video_frames or raise it; nothing added"
    )
    assert kit.list_path.read_text() == before  # not even its SHA-256


async def test_hash_add_of_a_video_takes_as_many_frames_as_the_list_allows(kit: CommandKit) -> None:
    # Over the default cap (3,600), within the list's own: the list's cap is the one applied.
    video_of(kit, "$film", IMAGE, 3601, max_vpdq_frames=4000)
    reply = await kit.run("hash add known film", reply_to="$film")
    assert reply.lines == ["Added 3 hashes to list known (label film)."]  # SHA-256, MD5 and the vPDQ
    [entry] = [line for line in kit.list_path.read_text().splitlines() if line.startswith("vpdq,")]
    assert entry.endswith(",film") and entry.count(";") == 3600


async def test_allow_records_the_false_positive_and_matching_skips_it(kit: CommandKit) -> None:
    reply = await kit.run(f"allow {SHA} a cat")
    assert reply.lines == [f"Allowlisted #1 sha256 `{SHA}`"]
    assert kit.controls.allowlist.reason(SimpleNamespace(sha256=SHA, pdq=None, md5=None))  # type: ignore[arg-type]
    assert (await kit.run("allow list")).lines == [f"#1 sha256 `{SHA}`: a cat ({MOD})"]
    assert (await kit.run("allow remove #1")).lines == ["Removed 1 allowlist entry."]
    assert len(kit.controls.allowlist) == 0


# --- members --------------------------------------------------------------------------------


async def test_ban_everywhere_from_the_management_room(kit: CommandKit) -> None:
    kit.controls.protected.add(OTHER)
    reply = await kit.run(f"ban {SPAMMER} all spam")
    assert reply.lines == [f"ban {SPAMMER} in `{OTHER}`: ok", f"ban {SPAMMER} in `{ROOM}`: ok"]
    assert kit.homeserver.called("ban") == [(OTHER, SPAMMER, "spam"), (ROOM, SPAMMER, "spam")]
    assert [(a.kind, a.target, a.room_id) for a in kit.executor.actions] == [
        ("ban", SPAMMER, OTHER), ("ban", SPAMMER, ROOM)
    ]


async def test_a_room_moderator_cannot_have_the_bot_kick_someone_above_them(kit: CommandKit) -> None:
    kit.homeserver.powers[ROOM] = power({"@admin:example.org": 75})
    [answer] = await kit.send("!mod kick @admin:example.org", room=ROOM, sender=ROOM_MOD)
    assert answer == (
        f"kick @admin:example.org in `{ROOM}`: refused: "
        "@admin:example.org has power 75 here, not less than yours (50); you cannot kick them"
    )
    assert kit.homeserver.called("kick") == [] and kit.executor.actions == []
    [refused] = [a for a in await kit.store.audit_log(category="command") if a.outcome == "refused"]
    assert refused.room_id == ROOM and refused.sender == ROOM_MOD


async def test_redact_uses_the_admin_api(kit: CommandKit) -> None:
    reply = await kit.run(f"redact {SPAMMER} limit 20 room", room=ROOM, sender=ROOM_MOD, scope="room")
    assert reply.lines == [f"redacted {SPAMMER}'s events in 1 room(s)"]
    assert kit.homeserver.called("redact_user_events") == [(SPAMMER, [ROOM], f"redacted by {ROOM_MOD}", 20)]


# --- policy ---------------------------------------------------------------------------------


async def test_dryrun_in_one_room_is_stored_audited_and_in_force(kit: CommandKit) -> None:
    assert (await kit.run(f"dryrun on {ROOM}")).lines == [f"Dry run on in {ROOM}."]
    assert kit.controls.policy.for_room(ROOM).dry_run and not kit.controls.policy.for_room(OTHER).dry_run
    assert await kit.moderation.settings("dry_run") == {f"dry_run:{ROOM}": True}
    [row] = await kit.store.audit_log(category="policy")
    assert row.message == f"{MOD}: dry run on {ROOM}"
    assert (await kit.run("policy show")).lines[0] == "Policy in force:"


async def test_policy_reload_reads_the_config_again(kit: CommandKit) -> None:
    reply = await kit.run("policy reload")
    assert reply.lines == ["Policy reloaded: 1 rules."] and reply.ok
    assert [r.outcome for r in await kit.store.audit_log(category="policy")] == ["reloaded"]


# --- review ---------------------------------------------------------------------------------


async def test_review_list_and_approve(kit: CommandKit) -> None:
    review_id = (await kit.moderation.open_review(
        event_id="$img", room_id=ROOM, sender=SPAMMER, rule="known-media", detail={}, held=True
    )).id
    assert (await kit.run("review list")).lines == [f"#{review_id}: {SPAMMER} in `{ROOM}`, rule known-media, held"]
    kit.enforcer.answer = (await kit.moderation.review(review_id), [], SimpleNamespace(id=4))
    reply = await kit.run(f"review approve {review_id}")
    assert reply.lines == [f"Review #{review_id} approved; incident #4 recorded."]
    assert kit.enforcer.calls == [("approve", review_id, MOD)]
    kit.enforcer.answer = (None, [], None)
    with pytest.raises(CommandError, match="no review item #99"):
        await kit.run("review approve 99")


# --- actions --------------------------------------------------------------------------------


async def test_actions_lists_a_failed_action_and_retries_it(kit: CommandKit) -> None:
    await kit.store.claim_action("ban:a", kind="ban", target=SPAMMER, event_id="$e1", room_id=ROOM,
                                 decided_by="known", operation='{"op":"ban","args":{}}')
    await kit.store.finish_action("ban:a", "failed", 1, "ban failed: HTTP 403")
    lines = (await kit.run("actions")).lines
    assert lines[0] == "1 open actions (newest first):"
    assert lines[1].startswith(f"#1 ban `{SPAMMER}` in {ROOM} (failed, 1 attempts) for $e1: ban failed")
    reply = await kit.run("actions retry 1")
    assert reply.lines[0].startswith(f"Action #1 (ban {SPAMMER}) will be tried again within seconds")
    assert [a.outcome for a in await kit.store.audit_log(category="action")] == ["requeued"]


# --- evidence (audit) -----------------------------------------------------------------------


async def test_audit_anchor_and_the_action_log(kit: CommandKit) -> None:
    reply = await kit.run("audit anchor")
    assert reply.lines == [f"Anchored: 7 incidents held, head #7, hash `{'cd' * 32}`."] and reply.ok
    assert kit.anchors.calls == [("command", MOD)]
    await kit.store.audit("action", "ok", f"ban {SPAMMER} in {ROOM}", room_id=ROOM, sender=SPAMMER)
    await kit.store.audit("action", "ok", f"kick @other:example.org in {ROOM}", room_id=ROOM)
    [line] = (await kit.run(f"audit 5 {SPAMMER}")).lines
    assert line.endswith(f"ok: ban {SPAMMER} in {ROOM}")
    with pytest.raises(CommandError, match="no incident #3"):
        await kit.run("report 3")

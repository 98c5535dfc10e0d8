"""The moderation pipeline against a real Synapse and a real modbot process.

One stage for the module: Synapse with modbot registered, a moderator, a management room,
a protected room and a second protected room that runs in dry-run mode. Each test brings
its own offender, since a matched offender is banned.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
import yaml
from PIL import ImageOps

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.cli.scan import add_images
from bot.demo.stage import KNOWN_LABEL, Stage
from bot.hashing import compute_hashes, hamming
from bot.hashing.uncrop import HYPOTHESES
from bot.lists.format import HashEntry, append_entries
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo, make_png_bomb, truncated
from smooth_kit import dark_room

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SIZE_CAP = 3 * 1024 * 1024  # small, so a test can send a file over it cheaply
KNOWN = make_photo(seed=101)
KNOWN_PNG = encode(KNOWN, "PNG")
SMOOTH = dark_room(1)  # PDQ quality under 50
SMOOTH_PNG = encode(SMOOTH, "PNG")
CROPPED_SOURCE = make_photo(seed=202)  # listed by its PDQ alone; posted with its bottom cut off


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    trusted: MatrixUser

    @property
    def room(self) -> str:
        return self.stage.protected_rooms[0]

    @property
    def dry_room(self) -> str:
        return self.stage.protected_rooms[1]

    def write_config(self, **processing: object) -> None:
        self.stage.write_config(
            policy={
                "exempt": {"users": [self.trusted.user_id], "power_level": 100},
                "rules": [{"name": "known-media", "actions": ["quarantine", "redact", "ban", "notify"]}],
                "rooms": {self.dry_room: {"dry_run": True}},
            },
            processing={"concurrency": 4, "max_media_bytes": SIZE_CAP, "download_timeout": 20, **processing},
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("stage")
    async with staged(workdir, protected_rooms=2) as stage:
        trusted = await stage.new_user("trusted")
        for room in stage.protected_rooms:
            await stage.moderator.invite(room, trusted.user_id)
            await trusted.join(room)
        known_file = workdir / "known.png"
        known_file.write_bytes(KNOWN_PNG)
        add_images([known_file], stage.config(), "known", None)
        known_file.unlink()
        # As a provider lists a smooth image: its PDQ only (no signature, no crops).
        append_entries(stage.list_path, [HashEntry("pdq", compute_hashes(SMOOTH_PNG).pdq or "", KNOWN_LABEL)])
        source_pdq = compute_hashes(encode(CROPPED_SOURCE, "PNG")).pdq or ""
        append_entries(stage.list_path, [HashEntry("pdq", source_pdq, KNOWN_LABEL)])
        w = World(stage, BotProcess.for_stage(stage), None, trusted)  # type: ignore[arg-type]
        w.write_config()
        async with bot_running(stage, w.bot) as (_, db):
            w.db = db
            yield w


async def post_image(user: MatrixUser, room: str, data: bytes, mimetype: str = "image/png", **extra: object) -> tuple[str, str]:
    mxc = await user.upload(data, mimetype, "image")
    event_id = await user.send_image(room, mxc, mimetype=mimetype, size=len(data), **extra)
    return mxc, event_id


async def redacted(user: MatrixUser, room: str, event_id: str) -> bool:
    event = await user.get_event(room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def processed(w: World, event_id: str) -> str | None:
    event = await w.db.store.load_event(event_id)
    return event.status if event and event.status != "pending" else None


async def notices(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    return [
        m["content"].get("body", "")
        for m in messages
        if m.get("sender") == w.stage.bot_user_id and m.get("content", {}).get("msgtype") == "m.notice"
    ]


async def assert_moderated(w: World, offender: MatrixUser, room: str, event_id: str, mxc: str) -> None:
    """What a known image brings about: quarantine, redaction, ban, notice, audit rows."""
    await wait_for(lambda: redacted(w.stage.moderator, room, event_id), timeout=20, description=f"{event_id} redacted")
    assert await w.stage.admin.download_status(mxc) == 404
    await wait_for(
        lambda: _eq(w.stage.moderator.get_membership(room, offender.user_id), "ban"), timeout=10, description="ban"
    )
    await wait_for(lambda: _any_contains(notices(w), event_id), timeout=10, description="notice")
    notice = next(n for n in await notices(w) if event_id in n)
    assert offender.user_id in notice and room in notice and "list known" in notice
    actions = {(a.kind, a.status) for a in await w.db.store.actions(event_id=event_id)}
    assert {("quarantine", "ok"), ("redact", "ok"), ("notify", "ok")} <= actions
    assert ("ban", "ok") in actions or ("ban", "skipped") in actions


async def _eq(coro, expected) -> bool:  # type: ignore[no-untyped-def]
    return await coro == expected


async def _any_contains(coro, needle: str) -> bool:  # type: ignore[no-untyped-def]
    return any(needle in item for item in await coro)


def _variant(name: str) -> tuple[bytes, str]:
    if name == "original":
        return KNOWN_PNG, "image/png"
    if name == "jpeg-q50":
        return encode(KNOWN, "JPEG", quality=50), "image/jpeg"
    if name == "half-size":
        return encode(KNOWN.resize((KNOWN.width // 2, KNOWN.height // 2)), "PNG"), "image/png"
    if name == "mirrored":
        return encode(ImageOps.mirror(KNOWN), "JPEG", quality=90), "image/jpeg"
    if name == "white-border":
        border = ImageOps.expand(KNOWN, border=KNOWN.width // 10, fill="white")
        return encode(border, "JPEG", quality=90), "image/jpeg"
    raise ValueError(name)


@pytest.mark.parametrize("variant", ["original", "jpeg-q50", "half-size", "mirrored", "white-border"])
async def test_known_image_and_its_copies_are_quarantined_redacted_and_banned(world: World, variant: str) -> None:
    offender = await world.stage.new_user("offender", join=world.room)
    data, mime = _variant(variant)
    mxc, event_id = await post_image(offender, world.room, data, mime)
    await assert_moderated(world, offender, world.room, event_id, mxc)
    verdicts = await world.db.store.verdicts_for(event_id=event_id)
    assert [v.list_name for v in verdicts] == ["known"]
    expected_kind = "exact" if variant == "original" else "near"
    assert verdicts[0].kind == expected_kind


async def test_a_smooth_images_copy_is_found_in_a_pdq_only_list_by_its_most_reliable_bits(world: World) -> None:
    # Half size, JPEG q60: 40-50 PDQ bits from the listed hash, past every PDQ bound.
    copy = encode(SMOOTH.resize((SMOOTH.width // 2, SMOOTH.height // 2)), "JPEG", quality=60)
    hashes = compute_hashes(copy)
    assert (hashes.pdq_quality or 0) < 50 and min(hamming(q, compute_hashes(SMOOTH_PNG).pdq or "") for q in hashes.pdq_queries) > 28
    offender = await world.stage.new_user("smooth", join=world.room)
    mxc, event_id = await post_image(offender, world.room, copy, "image/jpeg")
    await assert_moderated(world, offender, world.room, event_id, mxc)
    notice = next(n for n in await notices(world) if event_id in n)
    assert "most reliable bits apart in 0 of its 64" in notice
    # Another dim image of the same kind is left alone.
    user = await world.stage.new_user("dim", join=world.room)
    _, other_event = await post_image(user, world.room, encode(dark_room(12), "JPEG", quality=75), "image/jpeg")
    assert await wait_for(lambda: processed(world, other_event), timeout=20) == "done"
    assert not await redacted(world.stage.moderator, world.room, other_event)


async def test_a_copy_with_a_strip_cut_off_is_found_in_a_pdq_only_list_by_a_crop_guess(world: World) -> None:
    # 5% of the height cut from the bottom (where a watermark would be): 48 bits from the
    # listed PDQ, past the bound; padded back by the guess, 14.
    width, height = CROPPED_SOURCE.size
    copy = encode(CROPPED_SOURCE.crop((0, 0, width, height - round(height * 0.05))), "JPEG", quality=85)
    listed = compute_hashes(encode(CROPPED_SOURCE, "PNG")).pdq or ""
    assert min(hamming(q, listed) for q in compute_hashes(copy).pdq_queries) > 31
    offender = await world.stage.new_user("cropper", join=world.room)
    mxc, event_id = await post_image(offender, world.room, copy, "image/jpeg")
    await assert_moderated(world, offender, world.room, event_id, mxc)
    notice = next(n for n in await notices(world) if event_id in n)
    assert "a cropped copy: matched when padded back as if 5% cut from the bottom" in notice
    (verdict,) = await world.db.store.verdicts_for(event_id=event_id)
    assert (verdict.list_name, verdict.hash_type, verdict.kind) == ("known", "pdq", "near") and verdict.distance <= 31
    # The guesses are kept with the media: a re-post of the (now quarantined) mxc matches again.
    media = await world.db.store.get_media(mxc)
    assert media is not None and media.hashes is not None and len(media.hashes.pdq_uncropped) == len(HYPOTHESES)


async def test_unknown_image_is_left_alone_and_recorded_as_no_match(world: World) -> None:
    user = await world.stage.new_user("poster", join=world.room)
    mxc, event_id = await post_image(user, world.room, encode(make_photo(seed=555), "JPEG", quality=85), "image/jpeg")
    assert await wait_for(lambda: processed(world, event_id), timeout=20) == "done"
    assert not await redacted(world.stage.moderator, world.room, event_id)
    assert await world.stage.admin.download_status(mxc) == 200
    assert await world.stage.moderator.get_membership(world.room, user.user_id) == "join"
    assert [v.kind for v in await world.db.store.verdicts_for(event_id=event_id)] == ["no_match"]
    assert await world.db.store.actions(event_id=event_id) == []


async def test_the_same_bytes_uploaded_again_are_hashed_from_memory_and_a_bomb_once(world: World) -> None:
    # A raid posts one file from many accounts: each upload is a new mxc, the bytes the same.
    photo, bomb = encode(make_photo(seed=556), "JPEG", quality=85), make_png_bomb(30_000, 30_000)
    before = _metric(await world.bot.metrics(), "modbot_media_repeats_total")
    posted = []
    for n in range(3):
        user = await world.stage.new_user(f"repeater{n}", join=world.room)
        posted += [await post_image(user, world.room, photo, "image/jpeg"), await post_image(user, world.room, bomb)]
    for mxc, event_id in posted:
        await wait_for(lambda: processed(world, event_id), timeout=20)
        assert not await redacted(world.stage.moderator, world.room, event_id)
    # Each copy recorded under its own mxc with the first one's hashes (the bomb's refusal too).
    first_photo, first_bomb = (await world.db.store.get_media(posted[0][0])), (await world.db.store.get_media(posted[1][0]))
    for n, (mxc, _event) in enumerate(posted):
        stored = await world.db.store.get_media(mxc)
        first = first_photo if n % 2 == 0 else first_bomb
        assert stored is not None and first is not None and (stored.hashes, stored.error) == (first.hashes, first.error)
    assert first_bomb is not None and (first_bomb.error or "").startswith("decompression bomb")
    assert _metric(await world.bot.metrics(), "modbot_media_repeats_total") - before == 4


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_dry_run_room_only_notifies(world: World) -> None:
    offender = await world.stage.new_user("dry", join=world.dry_room)
    mxc, event_id = await post_image(offender, world.dry_room, KNOWN_PNG)
    await wait_for(lambda: _any_contains(notices(world), event_id), timeout=20, description="dry-run notice")
    notice = next(n for n in await notices(world) if event_id in n)
    assert "DRY RUN" in notice
    assert not await redacted(world.stage.moderator, world.dry_room, event_id)
    assert await world.stage.admin.download_status(mxc) == 200
    assert await world.stage.moderator.get_membership(world.dry_room, offender.user_id) == "join"
    statuses = {(a.kind, a.status) for a in await world.db.store.actions(event_id=event_id)}
    assert statuses == {("quarantine", "dry_run"), ("redact", "dry_run"), ("ban", "dry_run"), ("notify", "ok")}


async def assert_exempt_but_media_removed(w: World, sender: MatrixUser, event_id: str, mxc: str, why: str) -> str:
    """An exempt sender's known image: quarantined, redacted, a notice saying who, what and
    why they are exempt; no ban attempted. Returns the notice."""
    await wait_for(lambda: redacted(w.stage.moderator, w.room, event_id), timeout=20, description=f"{event_id} redacted")
    assert await w.stage.admin.download_status(mxc) == 404
    await wait_for(lambda: _any_contains(notices(w), event_id), timeout=10, description="notice")
    notice = next(n for n in await notices(w) if event_id in n)
    assert notice.startswith("modbot: known media detected (sender exempt)")
    assert f"Sender: {sender.user_id}" in notice and mxc in notice and "list known" in notice
    assert f"The sender is exempt: {why}" in notice and "Spared: ban (room)" in notice

    async def recorded() -> set[tuple[str, str]]:
        return {(a.kind, a.status) for a in await w.db.store.actions(event_id=event_id)}

    await wait_for(lambda: _eq(recorded(), {("quarantine", "ok"), ("redact", "ok"), ("notify", "ok")}), timeout=10)
    assert await w.stage.moderator.get_membership(w.room, sender.user_id) == "join"
    decisions = await w.db.store.audit_log(event_id=event_id, category="decision")
    assert [d.outcome for d in decisions] == ["exempt"]
    return notice


async def test_an_exempt_users_known_image_is_removed_but_they_are_not_banned(world: World) -> None:
    mxc, event_id = await post_image(world.trusted, world.room, KNOWN_PNG)
    await assert_exempt_but_media_removed(world, world.trusted, event_id, mxc, "listed in exempt.users")


async def test_a_room_creators_known_image_is_removed_and_the_moderators_told(world: World) -> None:
    # The moderator created the room (build_stage), in room version 12, Synapse's default:
    # unlimited power, which the default exemption (power_level 100) covers.
    creator = world.stage.moderator
    assert (await creator.get_state(world.room, "m.room.create")).get("room_version") == "12"
    mxc, event_id = await post_image(creator, world.room, KNOWN_PNG)
    await assert_exempt_but_media_removed(
        world, creator, event_id, mxc, "a creator of the room (unlimited power in room version 12; exempt.power_level is 100)"
    )
    # No ban was even tried (the homeserver would refuse it: creators cannot be banned).
    audit = await world.db.store.audit_log(event_id=event_id, category="action")
    assert not any(a.message.startswith("ban") for a in audit)


async def test_known_image_as_thumbnail(world: World) -> None:
    offender = await world.stage.new_user("thumb", join=world.room)
    thumb = await offender.upload(KNOWN_PNG, "image/png", "thumb.png")
    file_mxc = await offender.upload(b"%PDF-1.4 harmless document", "application/pdf", "doc.pdf")
    event_id = await offender.send_message(
        world.room,
        {"msgtype": "m.file", "body": "doc.pdf", "url": file_mxc,
         "info": {"mimetype": "application/pdf", "thumbnail_url": thumb, "thumbnail_info": {"mimetype": "image/png"}}},
    )
    await assert_moderated(world, offender, world.room, event_id, thumb)
    assert await world.stage.admin.download_status(file_mxc) == 200  # only the matching media is quarantined


async def test_known_image_inside_formatted_body(world: World) -> None:
    offender = await world.stage.new_user("html", join=world.room)
    mxc = await offender.upload(KNOWN_PNG, "image/png", "inline.png")
    event_id = await offender.send_message(
        world.room,
        {"msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
         "formatted_body": f'<p>look</p><img src="{mxc}" alt="x">'},
    )
    await assert_moderated(world, offender, world.room, event_id, mxc)


async def test_known_image_in_an_edit(world: World) -> None:
    offender = await world.stage.new_user("edit", join=world.room)
    _, original = await post_image(offender, world.room, encode(make_photo(seed=777), "PNG"))
    mxc = await offender.upload(KNOWN_PNG, "image/png", "edit.png")
    edit = await offender.send_message(
        world.room,
        {"msgtype": "m.image", "body": "* image", "url": mxc,
         "m.new_content": {"msgtype": "m.image", "body": "image", "url": mxc, "info": {"mimetype": "image/png"}},
         "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
    )
    await assert_moderated(world, offender, world.room, edit, mxc)


async def test_known_image_as_avatar(world: World) -> None:
    offender = await world.stage.new_user("avatar", join=world.room)
    mxc = await offender.upload(KNOWN_PNG, "image/png", "avatar.png")
    await offender.set_avatar_url(mxc)

    async def member_event() -> str | None:
        for m in await world.stage.moderator.messages(world.room, limit=50):
            if m.get("type") == "m.room.member" and m.get("state_key") == offender.user_id and m.get("sender") == offender.user_id:
                prev = m.get("unsigned", {}).get("prev_content", {})
                if prev.get("membership") == "join" and ("avatar_url" in m.get("content", {}) or "redacted_because" in m.get("unsigned", {})):
                    return m["event_id"]
        return None

    event_id = await wait_for(member_event, timeout=20, description="avatar member event")
    await wait_for(lambda: _eq(world.stage.moderator.get_membership(world.room, offender.user_id), "ban"), timeout=20)
    assert await world.stage.admin.download_status(mxc) == 404

    async def recorded() -> bool:
        # The ban is visible on the homeserver a moment before its row is updated.
        actions = {(a.kind, a.status) for a in await world.db.store.actions(event_id=event_id)}
        return ("quarantine", "ok") in actions and ("ban", "ok") in actions

    await wait_for(recorded, timeout=10, description="quarantine and ban recorded")


def _non_image() -> tuple[bytes, str, str]:
    return b"this is not an image at all, just text " * 20, "image/png", "not an image"


def _truncated_png() -> tuple[bytes, str, str]:
    return truncated(encode(make_photo(seed=9), "PNG")), "image/png", "truncated or corrupt"


def _bomb() -> tuple[bytes, str, str]:
    return make_png_bomb(50000, 50000), "image/png", "decompression bomb"


def _over_cap() -> tuple[bytes, str, str]:
    return bytes(SIZE_CAP + 1024), "image/png", "size cap"


@pytest.mark.parametrize("make", [_non_image, _truncated_png, _bomb, _over_cap], ids=["non-image", "truncated-png", "png-bomb", "over-cap"])
async def test_bad_media_gets_an_audit_row_not_a_crash(world: World, make) -> None:  # type: ignore[no-untyped-def]
    user = await world.stage.new_user("bad", join=world.room)
    data, mime, reason = make()
    mxc, event_id = await post_image(user, world.room, data, mime)
    assert await wait_for(lambda: processed(world, event_id), timeout=30) == "done"
    messages = [a.message for a in await world.db.store.audit_log(event_id=event_id, category="scan")]
    assert any(reason in m for m in messages), messages
    assert world.bot.alive()
    assert (await world.bot.health() or {}).get("status") == "ok"


@pytest.mark.parametrize(
    "content, reason",
    [
        ({"msgtype": "m.image", "body": "x", "url": 12345}, "url"),
        ({"msgtype": "m.image", "body": "x", "url": "mxc://localhost/../../etc/passwd"}, "invalid mxc"),
        ({"msgtype": "m.image", "body": "x", "url": "https://example.org/a.png"}, "invalid mxc"),
    ],
    ids=["url-not-a-string", "path-traversal", "not-mxc"],
)
async def test_malformed_event_content_is_audited(world: World, content: dict, reason: str) -> None:
    user = await world.stage.new_user("malformed", join=world.room)
    event_id = await user.send_message(world.room, content)
    assert await wait_for(lambda: processed(world, event_id), timeout=20) == "done"
    messages = [a.message for a in await world.db.store.audit_log(event_id=event_id, category="scan")]
    assert any("malformed event content" in m and reason in m for m in messages), messages
    assert world.bot.alive()


async def test_metrics_count_events_matches_and_actions(world: World) -> None:
    offender = await world.stage.new_user("metrics", join=world.room)
    mxc, event_id = await post_image(offender, world.room, KNOWN_PNG)
    await wait_for(lambda: redacted(world.stage.moderator, world.room, event_id), timeout=20)
    text = await world.bot.metrics()
    assert 'modbot_actions_total{kind="redact",outcome="ok"}' in text
    assert 'modbot_matches_total{kind="exact",label="csam-test",list="known"}' in text
    assert "modbot_queue_depth" in text and "modbot_end_to_end_seconds_bucket" in text


async def test_no_media_bytes_reach_the_disk(world: World) -> None:
    """Hashes and metadata only: neither the database nor any file of modbot's holds media."""
    offender = await world.stage.new_user("disk", join=world.room)
    secret = make_photo(seed=4242)
    data = encode(secret, "PNG")
    mxc, event_id = await post_image(offender, world.room, data)  # unknown: hashed and recorded
    assert await wait_for(lambda: processed(world, event_id), timeout=20) == "done"
    media = await world.db.store.get_media(mxc)
    assert media is not None and media.hashes is not None and media.hashes.size == len(data)
    await asyncio.sleep(0.5)  # let SQLite's WAL settle
    # Opening and closing the database files here would drop this process's SQLite locks
    # (POSIX locks are per process), so the reader lets go of its connections first.
    await world.db.engine.dispose()

    probes = [data[i : i + 64] for i in range(1024, len(data) - 64, len(data) // 8)]
    modbot_files = [p for p in world.stage.workdir.rglob("*") if p.is_file() and "synapse" not in p.parts]
    assert any(p.name.startswith("modbot.db") for p in modbot_files)
    for path in modbot_files:
        content = path.read_bytes()
        for probe in [*probes, KNOWN_PNG[2048:2112]]:
            assert probe not in content, f"media bytes found in {path}"
    # The bot's working directory holds nothing (mautrix would put a state file here).
    assert [p.name for p in world.bot.workdir.iterdir()] == []


async def test_crash_after_intake_resumes_and_acts_once(world: World) -> None:
    """Killed after storing an event but before processing it, modbot processes it on restart, once."""
    await world.bot.stop()
    world.write_config(enabled=False)  # intake only: events are stored, not processed
    await world.bot.start()
    try:
        offender = await world.stage.new_user("crash", join=world.room)
        mxc, event_id = await post_image(offender, world.room, KNOWN_PNG)

        async def stored() -> bool:
            event = await world.db.store.load_event(event_id)
            return event is not None and event.status == "pending"

        await wait_for(stored, timeout=20, description="event stored durably")
        await world.bot.kill()
    finally:
        world.write_config()
    await world.bot.start()
    await assert_moderated(world, offender, world.room, event_id, mxc)
    await asyncio.sleep(1.0)  # give a duplicate, if any, time to show
    actions = await world.db.store.actions(event_id=event_id)
    assert sorted(a.kind for a in actions) == ["ban", "notify", "quarantine", "redact"]
    redactions = [
        m for m in await world.stage.moderator.messages(world.room, limit=100)
        if m.get("type") == "m.room.redaction" and (m.get("redacts") == event_id or m.get("content", {}).get("redacts") == event_id)
    ]
    assert len(redactions) == 1
    assert sum(event_id in n for n in await notices(world)) == 1


async def test_events_sent_while_modbot_is_down_are_delivered_and_processed(world: World) -> None:
    await world.bot.kill()
    offender = await world.stage.new_user("down", join=world.room)
    mxc, event_id = await post_image(offender, world.room, KNOWN_PNG)
    await asyncio.sleep(0.5)  # Synapse tries, fails, and backs off
    await world.bot.start()  # the start-up ping makes Synapse retry at once
    await assert_moderated(world, offender, world.room, event_id, mxc)


def _modbot_check(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "check", "-c", str(config_path)], capture_output=True, text=True, timeout=60
    )


async def test_check_reports_what_the_bot_has_and_what_it_lacks(world: World, tmp_path: Path) -> None:
    good = await asyncio.to_thread(_modbot_check, world.stage.config_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "bot is a server admin" in good.stdout and "all checks passed" in good.stdout

    # A room where the bot was invited with no power, and the bot no longer a server admin.
    weak_room = await world.stage.moderator.create_room("no power", invite=[world.stage.bot_user_id])
    unjoined_room = await world.stage.moderator.create_room("not joined")
    as_token = world.stage.config_data["appservice"]["as_token"]
    bot = MatrixUser(world.stage.synapse.base_url, world.stage.bot_user_id, as_token)
    try:
        await bot.request("POST", f"/_matrix/client/v3/join/{quote(weak_room)}", json_body={})
    finally:
        await bot.close()
    data = yaml.safe_load(world.stage.config_path.read_text())
    data["rooms"]["protected"] = [*data["rooms"]["protected"], weak_room, unjoined_room]
    data["database"]["url"] = f"sqlite+aiosqlite:///{tmp_path / 'check.db'}"
    weak_config = tmp_path / "config.yaml"
    weak_config.write_text(yaml.safe_dump(data))
    await world.stage.admin.request(
        "PUT", f"/_synapse/admin/v2/users/{world.stage.bot_user_id}", json_body={"admin": False}
    )
    try:
        bad = await asyncio.to_thread(_modbot_check, weak_config)
    finally:
        await world.stage.admin.make_admin(world.stage.bot_user_id)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "is not a server admin" in bad.stdout and "_synapse/admin/v2/users/" in bad.stdout
    assert f"protected room {weak_room}: bot has power 0, needs 50" in bad.stdout
    assert f"protected room {unjoined_room}: bot is not joined" in bad.stdout

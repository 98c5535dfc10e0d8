"""Videos against a real Synapse and a real modbot process: an m.video whose vPDQ is on a
list (put there by `hashes add-video`) is acted on, re-encoded as a poster would; an
unrelated video is left alone; a video too large to sample keeps its exact hashes and is
audited. Clips are generated (bot.demo.samples.make_clip, tests/hostile_video.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.cli.videos import add_videos
from bot.demo.matrix import MatrixUser
from bot.demo.samples import make_clip, make_photo
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from bot.hashing.video import VIDEO_BYTES_PER_PIXEL
from botproc import BotProcess, StoreReader, bot_running, staged
from hostile_video import flat_clip

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN_SCENES = [(make_photo(seed, (480, 360)), 3.0) for seed in (201, 202, 203)]


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader

    @property
    def room(self) -> str:
        return self.stage.protected_rooms[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("stage")
    async with staged(workdir, protected_rooms=1) as stage:
        known = workdir / "known.mp4"
        known.write_bytes(make_clip(KNOWN_SCENES))
        added, _ = add_videos([known], stage.config(), "known", None)
        assert added == 3  # sha256, md5 and the vPDQ
        known.unlink()
        stage.write_config(
            policy={"rules": [{"name": "known-media", "actions": ["quarantine", "redact", "notify"]}]},
            # Posted videos are sampled for 6 s of their 9: the known one still matches (all
            # its sampled frames are the entry's), and the limit is audited.
            processing={"concurrency": 2, "download_timeout": 20, "max_video_frames": 6},
        )
        async with bot_running(stage) as (bot, db):
            yield World(stage, bot, db)


async def post_video(user: MatrixUser, room: str, data: bytes, mimetype: str) -> tuple[str, str]:
    mxc = await user.upload(data, mimetype, "clip")
    content = {"msgtype": "m.video", "body": "clip", "url": mxc, "info": {"mimetype": mimetype, "size": len(data)}}
    return mxc, await user.send_message(room, content)


async def redacted(user: MatrixUser, room: str, event_id: str) -> bool:
    event = await user.get_event(room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def processed(w: World, event_id: str) -> str | None:
    event = await w.db.store.load_event(event_id)
    return event.status if event and event.status != "pending" else None


async def notice_about(w: World, event_id: str) -> str | None:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    bodies = [m["content"].get("body", "") for m in messages if m.get("sender") == w.stage.bot_user_id]
    return next((b for b in bodies if event_id in b), None)


async def test_a_re_encoded_copy_of_a_listed_video_is_quarantined_and_redacted(world: World) -> None:
    poster = await world.stage.new_user("videoposter", join=world.room)
    copy = make_clip(KNOWN_SCENES, "libvpx", "webm", 25, (320, 240))  # other codec, size and frame rate
    mxc, event_id = await post_video(poster, world.room, copy, "video/webm")
    await wait_for(lambda: redacted(world.stage.moderator, world.room, event_id), timeout=60, description="redacted")
    assert await world.stage.admin.download_status(mxc) == 404
    [verdict] = await world.db.store.verdicts_for(event_id=event_id)
    assert (verdict.kind, verdict.list_name, verdict.hash_type) == ("near", "known", "vpdq")
    notice = await wait_for(lambda: notice_about(world, event_id), timeout=20, description="notice")
    assert "of the video's frames" in notice and "list known" in notice
    audit = [(a.category, a.outcome, a.message) for a in await world.db.store.audit_log(limit=200) if a.mxc == mxc]
    assert ("scan", "partial", "video scanned in part: frame limit: the first 6 s sampled (processing.max_video_frames)") in audit


async def test_an_unrelated_video_is_left_alone(world: World) -> None:
    poster = await world.stage.new_user("otherposter", join=world.room)
    other = make_clip([(make_photo(seed, (480, 360)), 3.0) for seed in (301, 302, 303)])
    mxc, event_id = await post_video(poster, world.room, other, "video/mp4")
    assert await wait_for(lambda: processed(world, event_id), timeout=60) == "done"
    assert not await redacted(world.stage.moderator, world.room, event_id)
    assert await world.stage.admin.download_status(mxc) == 200
    assert [v.kind for v in await world.db.store.verdicts_for(event_id=event_id)] == ["no_match"]


async def test_a_video_with_frames_too_large_to_sample_keeps_its_exact_hashes_and_is_audited(world: World) -> None:
    poster = await world.stage.new_user("bigposter", join=world.room)
    huge = flat_clip(7680, 4320, 3)  # 8K frames: 530 MB to decode (16 bytes a pixel), refused from the header
    mxc, event_id = await post_video(poster, world.room, huge, "video/x-matroska")
    assert await wait_for(lambda: processed(world, event_id), timeout=60) == "done"
    audit = [(a.category, a.outcome, a.message) for a in await world.db.store.audit_log(limit=200) if a.mxc == mxc]
    needed = 7680 * 4320 * VIDEO_BYTES_PER_PIXEL
    assert ("scan", "partial", "exact hashes only, no perceptual scan: decompression bomb: video frames of 7680x4320 "
            f"need {needed} bytes to decode, over the limit of 201326592 (processing.max_decoded_bytes)") in audit
    assert [v.kind for v in await world.db.store.verdicts_for(event_id=event_id)] == ["no_match"]
    assert (await world.bot.health() or {}).get("status") == "ok"  # no worker was lost to it

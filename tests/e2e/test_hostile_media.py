"""Hostile media posted to a real Synapse: each file is audited, the bot stays in service,
and a known image posted right after is acted on. SIGTERM stops the bot even while a
hashing worker is busy.

The files are tests/hostile.py's (benign generated pixels in lying or costly containers).
The bot runs with a 2 s CPU limit per media and the JPEG scan cap lifted, so that the
progressive JPEG with thousands of scans reaches the sandbox's CPU limit for real.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from hostile import hostile_bytes, jpeg_with_scans

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.cli.scan import add_images
from bot.demo.stage import Stage
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN_PNG = encode(make_photo(seed=202), "PNG")
HEAVY_JPEG = jpeg_with_scans(2000, (4096, 4096))  # ~20 s of CPU when its scans are not capped

# (file from tests/hostile.py, what its scan audit row must say)
POSTED = [
    ("16-bit RGBA PNG, 64 MP", "decoded image too large"),
    ("lossless WebP, 64 MP flat", "decoded image too large"),
    ("GIF with an 8000x8000 canvas", None),  # decoded within the limits: an ordinary no-match
    ("ICO hiding a 13000x13000 PNG", "unsupported image format ICO"),
    ("JPEG claiming 60000x60000", "decompression bomb"),
    ("truncated WebP", "truncated or corrupt image"),
]


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader

    def write_config(self, **processing: object) -> None:
        self.stage.write_config(
            policy={"rules": [{"name": "known-media", "actions": ["quarantine", "redact", "notify"]}]},
            processing={"concurrency": 4, "hash_cpu_seconds": 2, "max_jpeg_scans": 1_000_000, **processing},
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("hostile")
    async with staged(workdir) as stage:
        known_file = workdir / "known.png"
        known_file.write_bytes(KNOWN_PNG)
        add_images([known_file], stage.config(), "known", None)
        known_file.unlink()
        w = World(stage, BotProcess.for_stage(stage), None)  # type: ignore[arg-type]
        w.write_config()
        async with bot_running(stage, w.bot) as (_, db):
            w.db = db
            yield w


async def post(user: MatrixUser, room: str, data: bytes, mimetype: str) -> tuple[str, str]:
    mxc = await user.upload(data, mimetype, "image")
    return mxc, await user.send_image(room, mxc, mimetype=mimetype, size=len(data))


async def done(w: World, event_id: str) -> bool:
    event = await w.db.store.load_event(event_id)
    return event is not None and event.status == "done"


async def redacted(w: World, event_id: str) -> bool:
    event = await w.stage.moderator.get_event(w.stage.room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def scan_messages(w: World, event_id: str) -> list[str]:
    return [a.message for a in await w.db.store.audit_log(event_id=event_id)]


async def test_hostile_files_are_audited_and_a_known_image_right_after_is_acted_on(world: World) -> None:
    poster = await world.stage.new_user("hostile", join=world.stage.room)
    posted = []
    for name, reason in POSTED:
        _, event_id = await post(poster, world.stage.room, hostile_bytes(name), "image/png")
        posted.append((name, reason, event_id))
    _, heavy = await post(poster, world.stage.room, HEAVY_JPEG, "image/jpeg")
    offender = await world.stage.new_user("offender", join=world.stage.room)
    _, known = await post(offender, world.stage.room, KNOWN_PNG, "image/png")

    await wait_for(lambda: redacted(world, known), timeout=90, description="the known image redacted")
    for name, reason, event_id in posted:
        await wait_for(lambda e=event_id: done(world, e), timeout=90, description=f"{name} processed")
        messages = await scan_messages(world, event_id)
        if reason is None:
            assert any("no match" in m for m in messages), (name, messages)
        else:
            assert any(reason in m for m in messages), (name, messages)
    await wait_for(lambda: done(world, heavy), timeout=90, description="the heavy JPEG processed")
    heavy_messages = await scan_messages(world, heavy)
    assert any("not scanned: resource limit (cpu)" in m for m in heavy_messages), heavy_messages
    assert world.bot.alive()
    assert (await world.bot.health() or {}).get("status") == "ok"


async def test_sigterm_stops_the_bot_within_10_s_while_a_worker_is_busy(world: World) -> None:
    # Last in the module: it stops the bot. A worker gets a minute of CPU for the heavy JPEG.
    await world.bot.stop()
    world.write_config(hash_cpu_seconds=60)
    await world.bot.start()
    poster = await world.stage.new_user("heavy", join=world.stage.room)
    _, event_id = await post(poster, world.stage.room, HEAVY_JPEG, "image/jpeg")
    await wait_for(lambda: _stored(world, event_id), timeout=30, description="the heavy JPEG stored")
    await asyncio.sleep(2)  # downloaded and in a worker by now (it needs ~20 s there)
    assert not await done(world, event_id)

    assert world.bot.proc is not None
    started = time.monotonic()
    world.bot.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(world.bot.proc.wait, 30)
    assert time.monotonic() - started < 10
    assert world.bot.proc.returncode == 0, world.bot.log_tail()


async def _stored(w: World, event_id: str) -> bool:
    return await w.db.store.load_event(event_id) is not None

"""PhotoDNA and Google's Content Safety API in a real modbot process, against their
loopback fakes and a real Synapse.

A sticker-sized image PhotoDNA knows is enlarged in the bot's hashing sandbox, matched,
and acted on like any known media; an image the Content Safety API ranks VERY_HIGH is only
held for a moderator's review: its sender is not banned, whatever the rules after it say.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.demo.samples import encode, make_photo
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from botproc import BotProcess, StoreReader, bot_running, staged
from fake_services import KnownMedia
from fake_vendors import FakeContentSafety, FakePhotoDna

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ENV = {"MODBOT_TEST_PHOTODNA_KEY": "photodna-e2e-key", "MODBOT_TEST_GCS_KEY": "gcs-e2e-key"}


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    photodna: FakePhotoDna
    safety: FakeContentSafety

    @property
    def room(self) -> str:
        return self.stage.protected_rooms[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("scanning-services")
    photodna, safety = FakePhotoDna(ENV["MODBOT_TEST_PHOTODNA_KEY"]), FakeContentSafety(ENV["MODBOT_TEST_GCS_KEY"])
    await photodna.start()
    await safety.start()
    saved = {k: os.environ.get(k) for k in ENV}
    try:
        async with staged(workdir, protected_rooms=1) as stage:
            os.environ.update(ENV)  # the keys reach modbot the way an operator's would
            stage.write_config(
                hash_lists=[],
                classifiers=[
                    {"name": "photodna", "timeout": 5, "settings": {"url": photodna.base, "subscription_key_env": "MODBOT_TEST_PHOTODNA_KEY"}},
                    {"name": "gcs", "type": "google_content_safety", "timeout": 5,
                     "settings": {"url": safety.url + "/v1beta1", "api_key_env": "MODBOT_TEST_GCS_KEY", "min_priority": "HIGH"}},
                ],
                policy={
                    "exempt": {"users": [], "power_level": 100},
                    "rules": [
                        {"name": "gcs-review", "match": {"classifier": "gcs"}, "actions": [{"review": "hold"}, "notify"]},
                        {"name": "known", "actions": ["quarantine", "redact", "ban", "notify"]},
                    ],
                },
            )  # fmt: skip
            async with bot_running(stage) as (bot, db):
                yield World(stage, bot, db, photodna, safety)
    finally:
        await photodna.stop()
        await safety.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def _eq(value: object, wanted: object) -> bool:
    return await value == wanted  # type: ignore[misc]


async def audit(w: World, event_id: str) -> list[tuple[str, str, str]]:
    return [(r.category, r.outcome, r.message) for r in await w.db.store.audit_log(event_id=event_id)]


async def test_a_small_image_photodna_knows_is_enlarged_matched_and_acted_on(world: World) -> None:
    offender = await world.stage.new_user("sticker", join=world.room)
    small = encode(make_photo(seed=4242, size=(128, 96)), "PNG")
    world.photodna.known.append(KnownMedia.of(encode(make_photo(seed=4242, size=(800, 600)), "PNG"), "NCMEC"))
    mxc = await offender.upload(small, "image/png", "sticker")
    event_id = await offender.send_image(world.room, mxc, mimetype="image/png", size=len(small))
    await wait_for(lambda: _eq(world.stage.moderator.get_membership(world.room, offender.user_id), "ban"), timeout=30, description="ban")
    ((content_type, _, pixels),) = world.photodna.bodies
    assert content_type == "image/jpeg" and pixels is not None and min(pixels) == 160
    rows = await audit(world, event_id)
    assert any(c == "scan" and o == "sent" and "photodna: enlarged and re-encoded: PNG 128x96" in m for c, o, m in rows), rows
    verdicts = await world.db.store.verdicts_for(event_id=event_id)
    matched = [(v.classifier, v.label, v.list_name, v.hash_type) for v in verdicts if v.label]  # gcs: a no-match row
    assert matched == [("photodna", "csam", "NCMEC", "photodna")]


async def test_a_content_safety_verdict_only_holds_the_media_for_review(world: World) -> None:
    user = await world.stage.new_user("flagged", join=world.room)
    image = encode(make_photo(seed=4343), "PNG")
    world.safety.priorities.append((KnownMedia.of(image, "-"), "VERY_HIGH"))
    mxc = await user.upload(image, "image/png", "image")
    event_id = await user.send_image(world.room, mxc, mimetype="image/png", size=len(image))

    async def held() -> bool:
        event = await world.stage.moderator.get_event(world.room, event_id)
        return "redacted_because" in event.get("unsigned", {})

    await wait_for(held, timeout=30, description="held for review")
    decisions = [m for c, o, m in await audit(world, event_id) if c == "decision"]
    assert decisions and "gcs-review" in decisions[0] and "review (hold)" in decisions[0]
    assert await world.stage.moderator.get_membership(world.room, user.user_id) == "join"  # no ban

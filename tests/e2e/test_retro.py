"""Retroactive matching against a real Synapse and a real modbot process.

An image is posted while no list knows it; then its hashes are added to the list file.
The running bot sees the file change, reloads the list and, finding the image in its
history, quarantines it, redacts the event and bans the sender — once: a further reload
does nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.cli.scan import add_images
from bot.demo.stage import Stage
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LATER_KNOWN = encode(make_photo(seed=303), "PNG")
NEVER_KNOWN = encode(make_photo(seed=404), "JPEG", quality=85)


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("retro")
    async with staged(workdir) as stage:
        stage.list_path.write_text("type,hash,label\n", encoding="utf-8")  # nothing known yet
        stage.write_config(
            policy={"rules": [{"name": "known-media", "actions": ["quarantine", "redact", "ban", "notify"]}]}
        )
        async with bot_running(stage) as (bot, db):
            yield World(stage, bot, db)


async def post_image(user: MatrixUser, room: str, data: bytes, mimetype: str) -> tuple[str, str]:
    mxc = await user.upload(data, mimetype, "image")
    return mxc, await user.send_image(room, mxc, mimetype=mimetype, size=len(data))


async def status(w: World, event_id: str) -> str | None:
    event = await w.db.store.load_event(event_id)
    return event.status if event and event.status != "pending" else None


async def redacted(w: World, event_id: str) -> bool:
    event = await w.stage.moderator.get_event(w.stage.room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def reloads(w: World) -> int:
    return len([a for a in await w.db.store.audit_log(category="lists", limit=1000) if a.outcome == "reloaded"])


async def runs_done(w: World) -> int:
    return len([r for r in await w.db.store.retro_runs() if r.status == "done"])


async def notices(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    return [m["content"].get("body", "") for m in messages if m.get("sender") == w.stage.bot_user_id]


async def test_media_posted_before_its_hash_was_listed_is_acted_on_when_the_list_changes(world: World, tmp_path: Path) -> None:
    w = world
    offender = await w.stage.new_user("early", join=w.stage.room)
    bystander = await w.stage.new_user("bystander", join=w.stage.room)
    mxc, event_id = await post_image(offender, w.stage.room, LATER_KNOWN, "image/png")
    other_mxc, other_event = await post_image(bystander, w.stage.room, NEVER_KNOWN, "image/jpeg")
    for e in (event_id, other_event):
        assert await wait_for(lambda e=e: status(w, e), timeout=30) == "done"
    assert await w.db.store.actions(event_id=event_id) == []  # unknown when posted
    runs_before = await runs_done(w)

    # A moderator adds the image to the list the bot is watching.
    image = tmp_path / "later-known.png"
    image.write_bytes(LATER_KNOWN)
    add_images([image], w.stage.config(), "known", None)

    await wait_for(lambda: redacted(w, event_id), timeout=60, description="retroactive redaction")
    assert await w.stage.admin.download_status(mxc) == 404
    await wait_for(
        lambda: _eq(w.stage.moderator.get_membership(w.stage.room, offender.user_id), "ban"), timeout=20, description="ban"
    )
    await wait_for(lambda: _any(notices(w), event_id), timeout=20, description="notice")
    await wait_for(lambda: _gt(runs_done(w), runs_before), timeout=20, description="retro run recorded")

    actions = {(a.kind, a.status) for a in await w.db.store.actions(event_id=event_id)}
    assert {("quarantine", "ok"), ("redact", "ok"), ("ban", "ok"), ("notify", "ok")} <= actions
    audit = await w.db.store.audit_log(event_id=event_id, limit=100)
    retro_rows = [a for a in audit if "retroactive" in a.message]
    assert {a.category for a in retro_rows} >= {"verdict", "decision", "action"}
    (run, *_) = await w.db.store.retro_runs()
    assert run.list_name == "known" and run.media_matched == 1 and run.events_acted == 1
    # The bystander's image matched nothing and was left alone.
    assert await w.db.store.actions(event_id=other_event) == []
    assert await w.stage.admin.download_status(other_mxc) == 200

    # A second change to the list (an unrelated entry): reloaded and matched, nothing more done.
    reloads_before, runs_before = await reloads(w), await runs_done(w)
    notices_before = len(await notices(w))
    with w.stage.list_path.open("a", encoding="utf-8") as f:
        f.write("pdq," + "5a" * 32 + ",csam-test\n")
    await wait_for(lambda: _gt(reloads(w), reloads_before), timeout=30, description="second reload")
    await wait_for(lambda: _gt(runs_done(w), runs_before), timeout=30, description="second retro run")
    (second, *_) = await w.db.store.retro_runs()
    assert (second.new_entries, second.media_matched, second.events_acted) == (1, 0, 0)
    assert {(a.kind, a.status) for a in await w.db.store.actions(event_id=event_id)} == actions
    assert len(await notices(w)) == notices_before


async def _eq(coro, expected) -> bool:  # type: ignore[no-untyped-def]
    return await coro == expected


async def _gt(coro, value: int) -> bool:  # type: ignore[no-untyped-def]
    return await coro > value


async def _any(coro, needle: str) -> bool:  # type: ignore[no-untyped-def]
    return any(needle in item for item in await coro)



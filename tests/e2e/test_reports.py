"""Users' reports against a real Synapse and a real modbot process: each report is carded
once in the management room, a report of known media is acted on without a moderator, a
report of unknown media waits for `report act`, and a restart in the middle of polling
cards nothing twice."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import pytest_asyncio

from bot.cli.scan import add_images
from bot.demo.matrix import MatrixUser
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from bot.intake.reported import CSAM_TAG
from bot.record.moderation import ModerationStore
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=141), "PNG")
CARD = re.compile(r"^modbot report #(\d+): ")


@dataclass
class Desk:
    stage: Stage
    bot: BotProcess
    db: StoreReader


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    workdir = tmp_path_factory.mktemp("reports")
    async with staged(workdir, protected_rooms=1) as stage:
        known = workdir / "known.png"
        known.write_bytes(KNOWN)
        add_images([known], stage.config(), "known", None)
        known.unlink()
        stage.write_config(
            policy={"exempt": {"power_level": 100}, "rules": [{"name": "known-media", "actions": ["quarantine", "redact", "ban", "notify"]}]},
            reports={"interval": 1, "page_size": 2},  # small pages: paging is exercised too
            # A card claimed by the killed process is taken over when its claim's lease ends.
            processing={**stage.config_data["processing"], "action_lease": 5},
        )
        async with bot_running(stage) as (bot, db):
            yield Desk(stage, bot, db)


async def post_image(user: MatrixUser, room: str, data: bytes) -> tuple[str, str]:
    mxc = await user.upload(data, "image/png", "image.png")
    return mxc, await user.send_image(room, mxc, mimetype="image/png", size=len(data))


async def report(user: MatrixUser, room: str, event_id: str, reason: str) -> None:
    await user.request(
        "POST", f"/_matrix/client/v3/rooms/{quote(room, safe='')}/report/{quote(event_id, safe='')}",
        json_body={"reason": reason, "score": -100},
    )


async def cards(d: Desk) -> list[str]:
    messages = await d.stage.moderator.messages(d.stage.management_room, limit=200)
    return [
        m["content"]["body"] for m in messages
        if m.get("sender") == d.stage.bot_user_id and CARD.match(m.get("content", {}).get("body", ""))
    ]


async def card_for(d: Desk, event_id: str) -> str:
    async def find() -> str | None:
        return next((c for c in await cards(d) if f"Event: {event_id}" in c), None)

    return await wait_for(find, timeout=60, description=f"a card for {event_id}")


async def redacted(user: MatrixUser, room: str, event_id: str) -> bool:
    return "redacted_because" in (await user.get_event(room, event_id)).get("unsigned", {})


async def test_a_report_of_unknown_media_is_carded_and_report_act_bans_and_quarantines(desk: Desk) -> None:
    stage, room = desk.stage, desk.stage.room
    poster = await stage.new_user("poster", join=room)
    reporter = await stage.new_user("reporter", join=room)
    mxc, event = await post_image(poster, room, encode(make_photo(seed=142), "PNG"))
    await report(reporter, room, event, "this is not ok")
    card = await card_for(desk, event)
    assert f"Reported by: {reporter.user_id}" in card and f"Sender: {poster.user_id}" in card
    assert "Reason: this is not ok (score -100)" in card
    assert f"Media {mxc}: no match" in card and "sha256 " in card
    assert f"Earlier incidents of {poster.user_id}: none" in card
    number = CARD.match(card).group(1)  # type: ignore[union-attr]
    await stage.moderator.send_text(stage.management_room, f"!mod report act {number}")
    await wait_for(lambda: _is(stage.moderator.get_membership(room, poster.user_id), "ban"), timeout=60, description="ban")
    await wait_for(lambda: _is(stage.admin.download_status(mxc), 404), timeout=30, description="quarantine")
    assert await redacted(stage.moderator, room, event)
    async def incident() -> bool:
        return any(i.event_id == event for i in await ModerationStore(desk.db.engine).incidents())

    await wait_for(incident, timeout=30, description="an incident recorded for the report")


async def test_a_report_of_known_media_is_acted_on_without_a_moderator_and_flagged_first(desk: Desk) -> None:
    stage = desk.stage
    # A room modbot does not watch: only the report brings the media to its attention.
    owner = await stage.new_user("owner")
    elsewhere = await owner.create_room("unwatched")
    reporter = await stage.new_user("witness")
    await owner.invite(elsewhere, reporter.user_id)
    await reporter.join(elsewhere)
    mxc, event = await post_image(owner, elsewhere, KNOWN)
    await report(reporter, elsewhere, event, f"abuse imagery {CSAM_TAG}")
    card = await card_for(desk, event)
    assert card.startswith("modbot report #") and "ABUSE IMAGERY reported" in card.splitlines()[0]
    assert "list known" in card and "Acted on by policy rule known-media" in card
    assert await stage.admin.download_status(mxc) == 404
    assert "report act" not in card  # nothing left for a moderator


async def test_a_restart_in_the_middle_of_polling_cards_no_report_twice(desk: Desk) -> None:
    stage, room = desk.stage, desk.stage.room
    poster = await stage.new_user("chatty", join=room)
    reporter = await stage.new_user("watcher", join=room)
    events = [await poster.send_text(room, f"message {i}") for i in range(6)]
    for event in events:
        await report(reporter, room, event, "spam")
    await wait_for(lambda: _any_card(desk, events), timeout=60, description="the first card")
    await desk.bot.kill()  # SIGKILL while the rest are being read and carded
    await desk.bot.start()
    for event in events:
        await card_for(desk, event)
    counts = Counter(next(line for line in c.splitlines() if line.startswith("Event: ")) for c in await cards(desk))
    assert all(counts[f"Event: {event}"] == 1 for event in events), counts


async def _is(coro, expected) -> bool:  # type: ignore[no-untyped-def]
    return await coro == expected


async def _any_card(d: Desk, events: list[str]) -> bool:
    return any(f"Event: {e}" in c for c in await cards(d) for e in events)


async def test_hash_add_as_a_reply_to_a_card_lists_the_reported_media(desk: Desk) -> None:
    stage, room = desk.stage, desk.stage.room
    poster = await stage.new_user("sharer", join=room)
    reporter = await stage.new_user("noticer", join=room)
    image = encode(make_photo(seed=143), "PNG")
    _, event = await post_image(poster, room, image)
    await report(reporter, room, event, "please look")
    await card_for(desk, event)
    card_id = next(
        m["event_id"] for m in await stage.moderator.messages(stage.management_room, limit=200)
        if m.get("sender") == stage.bot_user_id and f"Event: {event}" in m.get("content", {}).get("body", "")
    )
    await stage.moderator.send_message(stage.management_room, {
        "msgtype": "m.text", "body": "!mod hash add known reported", "m.relates_to": {"m.in_reply_to": {"event_id": card_id}},
    })
    digest = hashlib.sha256(image).hexdigest()
    await wait_for(lambda: digest in stage.list_path.read_text(), timeout=60, description="the reported media on the list")


async def test_a_user_report_is_carded_and_report_act_bans_in_every_protected_room(desk: Desk) -> None:
    stage, room = desk.stage, desk.stage.room
    pest = await stage.new_user("pest", join=room)
    reporter = await stage.new_user("annoyed", join=room)
    await reporter.request("POST", f"/_matrix/client/v3/users/{quote(pest.user_id, safe='')}/report", json_body={"reason": "harassment"})

    async def find() -> str | None:
        return next((c for c in await cards(desk) if f"Reported user: {pest.user_id}" in c), None)

    card = await wait_for(find, timeout=60, description="a card for the user report")
    assert "a user reported a user" in card and f"Reported by: {reporter.user_id}" in card and "Reason: harassment" in card
    number = CARD.match(card).group(1)  # type: ignore[union-attr]
    await stage.moderator.send_text(stage.management_room, f"!mod report act {number}")
    await wait_for(lambda: _is(stage.moderator.get_membership(room, pest.user_id), "ban"), timeout=60, description="ban")

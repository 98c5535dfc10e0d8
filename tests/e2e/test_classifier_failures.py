"""A scanning service that fails, against a real Synapse and a real modbot process.

modbot asks a loopback stand-in for Arachnid Shield (media upload mode) about every image.
Three protected rooms differ only in what their policy says a failed scan means:
fail_open, fail_closed and review. The service is made to fail, recover, or know an image
as each test needs; each test brings its own sender.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.demo.samples import encode, make_photo
from bot.demo.stage import Stage
from botproc import BotProcess, StoreReader, bot_running, staged
from fake_services import Fault, FakeArachnid, KnownMedia, server_error

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LABEL = "csam-test"  # a benign stand-in: the images are generated
PASSWORD_ENV = "MODBOT_TEST_ARACHNID_PASSWORD"


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    arachnid: FakeArachnid

    @property
    def open_room(self) -> str:
        return self.stage.protected_rooms[0]

    @property
    def closed_room(self) -> str:
        return self.stage.protected_rooms[1]

    @property
    def review_room(self) -> str:
        return self.stage.protected_rooms[2]


def rule(on_failure: str) -> dict[str, object]:
    return {
        "name": f"arachnid-{on_failure}",
        "match": {"classifier": "arachnid"},
        "actions": ["quarantine", "redact", "ban", "notify"],
        "on_failure": on_failure,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("classifier-failures")
    arachnid = FakeArachnid()
    await arachnid.start()
    saved = os.environ.get(PASSWORD_ENV)
    try:
        async with staged(workdir, protected_rooms=3) as stage:
            # The password reaches modbot the way an operator's would: from its environment.
            os.environ[PASSWORD_ENV] = arachnid.password
            stage.write_config(
                hash_lists=[],
                classifiers=[
                    {
                        "name": "arachnid",
                        "type": "arachnid",
                        "timeout": 5,
                        "retries": 1,
                        "backoff": 0.1,
                        "max_backoff": 1,
                        # Failing scans must stay failures the service is asked about again,
                        # not a breaker that refuses: each test flips the service.
                        "circuit_breaker": {"failures": 1000, "reset_after": 1},
                        "settings": {
                            "url": arachnid.url,
                            "mode": "media",
                            "username": arachnid.username,
                            "password_env": PASSWORD_ENV,
                        },
                    }
                ],
                processing={"concurrency": 4, "download_timeout": 20, "rescan_delay": 1, "rescan_max_delay": 2},
                policy={
                    "exempt": {"users": [], "power_level": 100},
                    "rules": [rule("fail_open")],
                    "rooms": {
                        stage.protected_rooms[1]: {"rules": [rule("fail_closed")]},
                        stage.protected_rooms[2]: {"rules": [rule("review")]},
                    },
                },
            )
            async with bot_running(stage) as (bot, db):
                yield World(stage, bot, db, arachnid)
    finally:
        await arachnid.stop()
        if saved is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = saved


@pytest.fixture(autouse=True)
def healthy_service(world: World) -> None:
    world.arachnid.fail_always(None)
    world.arachnid.fail_next()
    world.arachnid.known.clear()


_seeds = iter(range(9000, 10000))


def fresh_image() -> bytes:
    """An image nobody has posted yet: each scan below starts from an unknown file."""
    return encode(make_photo(seed=next(_seeds)), "PNG")


async def post(user: MatrixUser, room: str, data: bytes) -> tuple[str, str]:
    mxc = await user.upload(data, "image/png", "image")
    event_id = await user.send_image(room, mxc, mimetype="image/png", size=len(data))
    return mxc, event_id


async def status(w: World, event_id: str) -> str | None:
    event = await w.db.store.load_event(event_id)
    return event.status if event else None


async def status_is(w: World, event_id: str, *wanted: str) -> str | None:
    current = await status(w, event_id)
    return current if current in wanted else None


async def redacted(w: World, room: str, event_id: str) -> bool:
    event = await w.stage.moderator.get_event(room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def notices(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    return [
        m["content"].get("body", "")
        for m in messages
        if m.get("sender") == w.stage.bot_user_id and m.get("content", {}).get("msgtype") == "m.notice"
    ]


async def notice_about(w: World, event_id: str, title: str) -> str | None:
    return next((n for n in await notices(w) if event_id in n and title in n), None)


async def audit(w: World, event_id: str, category: str | None = None) -> list[tuple[str, str, str]]:
    rows = await w.db.store.audit_log(event_id=event_id, category=category)
    return [(r.category, r.outcome, r.message) for r in reversed(rows)]


async def test_fail_open_lets_the_media_through_and_audits_the_failure(world: World) -> None:
    world.arachnid.fail_always(server_error())
    user = await world.stage.new_user("open", join=world.open_room)
    mxc, event_id = await post(user, world.open_room, fresh_image())
    assert await wait_for(lambda: status_is(world, event_id, "done"), timeout=30) == "done"
    assert not await redacted(world, world.open_room, event_id)
    assert await world.stage.admin.download_status(mxc) == 200
    assert await world.db.store.actions(event_id=event_id) == []
    rows = await audit(world, event_id)
    assert any(c == "scan" and o == "classifier_error" and "arachnid: POST /v1/media/: HTTP 500" in m for c, o, m in rows)
    (decision,) = [(o, m) for c, o, m in rows if c == "decision"]
    assert decision[0] == "fail_open" and "let through" in decision[1]


async def test_fail_closed_holds_the_media_until_a_scan_succeeds_then_releases_it(world: World) -> None:
    world.arachnid.fail_always(server_error())
    user = await world.stage.new_user("closed", join=world.closed_room)
    mxc, event_id = await post(user, world.closed_room, fresh_image())

    await wait_for(lambda: redacted(world, world.closed_room, event_id), timeout=30, description="held: redacted")
    assert await world.stage.admin.download_status(mxc) == 404  # quarantined
    assert await wait_for(lambda: status_is(world, event_id, "held"), timeout=10) == "held"
    held = await wait_for(lambda: notice_about(world, event_id, "media held: a scan failed"), timeout=10)
    assert "Scan failed (fail_closed): arachnid" in held and "HTTP 500" in held
    assert await world.stage.moderator.get_membership(world.closed_room, user.user_id) == "join"  # no ban on a failure
    decisions = [(o, m) for c, o, m in await audit(world, event_id, "decision")]
    assert decisions[0][0] == "fail_closed" and "quarantine, redact, notify" in decisions[0][1]

    # The service recovers: the next scan (the bot reads its own quarantined copy) is clean.
    world.arachnid.fail_always(None)
    assert await wait_for(lambda: status_is(world, event_id, "done"), timeout=30, description="re-scanned") == "done"
    assert await world.stage.admin.download_status(mxc) == 200  # unquarantined
    released = await wait_for(lambda: notice_about(world, event_id, "held media released"), timeout=10)
    assert "cannot be undone" in released
    assert await redacted(world, world.closed_room, event_id)  # as the notice says
    rows = await audit(world, event_id)
    assert any(c == "scan" and o == "released" and "redaction cannot be undone" in m for c, o, m in rows)
    assert [v.kind for v in await world.db.store.verdicts_for(event_id=event_id)] == ["no_match"]
    # The bot's re-scan sent the file again: the upload went through twice or more.
    sha = (await world.db.store.get_media(mxc)).hashes.sha256  # type: ignore[union-attr]
    assert sum(1 for r in world.arachnid.requests if r.body_sha256 == sha) >= 2


async def test_a_held_image_that_turns_out_known_gets_the_rules_actions(world: World) -> None:
    world.arachnid.fail_always(server_error())
    user = await world.stage.new_user("closedmatch", join=world.closed_room)
    data = fresh_image()
    mxc, event_id = await post(user, world.closed_room, data)
    assert await wait_for(lambda: status_is(world, event_id, "held"), timeout=30) == "held"

    world.arachnid.known.append(KnownMedia.of(data, LABEL))
    world.arachnid.fail_always(None)
    assert await wait_for(lambda: status_is(world, event_id, "done"), timeout=30) == "done"
    await wait_for(
        lambda: _eq(world.stage.moderator.get_membership(world.closed_room, user.user_id), "ban"), timeout=15, description="ban"
    )
    assert await world.stage.admin.download_status(mxc) == 404  # stays quarantined
    assert await wait_for(lambda: notice_about(world, event_id, "known media detected"), timeout=10)
    verdicts = await world.db.store.verdicts_for(event_id=event_id)
    assert [(v.classifier, v.label, v.kind) for v in verdicts] == [("arachnid", LABEL, "exact")]


async def test_review_hands_a_failed_scan_to_a_moderator(world: World) -> None:
    world.arachnid.fail_always(server_error())
    user = await world.stage.new_user("review", join=world.review_room)
    mxc, event_id = await post(user, world.review_room, fresh_image())
    assert await wait_for(lambda: status_is(world, event_id, "done"), timeout=30) == "done"
    decisions = [(o, m) for c, o, m in await audit(world, event_id, "decision")]
    assert decisions and decisions[0][0] == "review" and "review (flag)" in decisions[0][1]
    # Flagged, not held: the media stays up while a moderator looks.
    assert not await redacted(world, world.review_room, event_id)
    assert await world.stage.admin.download_status(mxc) == 200
    card = await wait_for(lambda: notice_about(world, event_id, "review #"), timeout=15, description="review card")
    assert "Flagged only" in card


async def test_the_same_file_is_sent_to_the_service_once(world: World) -> None:
    user = await world.stage.new_user("twice", join=world.open_room)
    data = fresh_image()
    first_mxc, first = await post(user, world.open_room, data)
    assert await wait_for(lambda: status_is(world, first, "done"), timeout=30) == "done"
    second_mxc, second = await post(user, world.open_room, data)  # a new upload, the same bytes
    assert await wait_for(lambda: status_is(world, second, "done"), timeout=30) == "done"
    assert first_mxc != second_mxc
    sha = (await world.db.store.get_media(first_mxc)).hashes.sha256  # type: ignore[union-attr]
    assert sum(1 for r in world.arachnid.requests if r.body_sha256 == sha) == 1
    assert any(o == "cached" for _, o, _ in await audit(world, second, "scan"))
    assert 'modbot_classifier_scans_total{classifier="arachnid",outcome="cached"}' in await world.bot.metrics()


async def test_credentials_never_reach_the_audit_the_notices_or_the_log(world: World) -> None:
    # A service that repeats the credentials it was sent in its error, in a fail_closed
    # room: the error goes to the audit log, the notice and the bot's log.
    world.arachnid.fail_always(Fault(401, f"bad login for {world.arachnid.password}", echo_auth=True))
    user = await world.stage.new_user("leak", join=world.closed_room)
    _mxc, event_id = await post(user, world.closed_room, fresh_image())
    held = await wait_for(lambda: notice_about(world, event_id, "media held"), timeout=30, description="hold notice")
    basic = base64.b64encode(f"{world.arachnid.username}:{world.arachnid.password}".encode()).decode()
    everything = "\n".join(
        [held, *(m for _, _, m in await audit(world, event_id)), *await notices(world), world.bot.log_path.read_text()]
    )
    assert "HTTP 401" in everything
    assert world.arachnid.password not in everything
    assert basic not in everything
    world.arachnid.fail_always(None)
    assert await wait_for(lambda: status_is(world, event_id, "done"), timeout=30) == "done"


async def _eq(coro, expected) -> bool:  # type: ignore[no-untyped-def]
    return await coro == expected

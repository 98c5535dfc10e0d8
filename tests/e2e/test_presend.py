"""Pre-send checks against a real Synapse that loads synapse-http-antispam (issue 12).

Synapse asks modbot before it accepts an event. An observer in the room syncs continuously
and downloads every media it sees: for known media it must receive nothing at all, while the
sender is told M_FORBIDDEN and the follow-up (quarantine, incident, ban, notice) happens
anyway. One stage for the module: modbot with `presend.enabled`, a protected room, a
second protected room whose policy says `presend: fail_closed`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from PIL import ImageOps
from sqlalchemy import text

from bot.cli.scan import add_images
from bot.demo.matrix import MatrixRequestError, MatrixUser
from bot.demo.stage import Stage
from bot.demo.waiting import wait_for
from bot.record.moderation import ModerationStore
from botproc import BotProcess, StoreReader, bot_running, staged
from observer import Observer
from fake_services import FakeScanner, KnownMedia, server_error, slow
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = make_photo(seed=1201)
KNOWN_PNG = encode(KNOWN, "PNG")
DEADLINE = 2.0


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader
    moderation: ModerationStore
    observer: Observer
    trusted: MatrixUser
    scanner: FakeScanner
    seen: set[str] = field(default_factory=set)

    @property
    def room(self) -> str:
        return self.stage.protected_rooms[0]

    @property
    def closed_room(self) -> str:
        return self.stage.protected_rooms[1]

    async def synced(self, room: str) -> None:
        """Wait until the observer has seen a message sent now: whatever came before it, it has seen too."""
        marker = await self.stage.moderator.send_text(room, "sync marker")
        await wait_for(lambda: marker in self.observer.events, timeout=30, description="observer synced")


def write_config(
    stage: Stage, scanner: FakeScanner, trusted: str, *, slow_scanner: bool = False,
    processing: dict[str, Any] | None = None, dry_run: bool = False, **presend: Any,
) -> None:
    classifiers = []
    if slow_scanner:
        classifiers = [{
            "name": "scanner", "type": "http", "timeout": 10, "retries": 0,
            "settings": {"url": f"{scanner.url}/scan", "mode": "hashes", "token": scanner.token},
        }]
    stage.write_config(
        presend={**stage.config_data["presend"], "deadline": DEADLINE, **presend},
        classifiers=classifiers,
        policy={
            "dry_run": dry_run,
            "exempt": {"users": [trusted], "power_level": 100},
            "rules": [{"name": "known-media", "actions": ["quarantine", "redact", "ban", "notify"]}],
            "rooms": {stage.protected_rooms[1]: {"presend": "fail_closed"}},
        },
        processing={**stage.config_data["processing"], "rescan_delay": 1, "rescan_max_delay": 2, **(processing or {})},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("presend")
    scanner = FakeScanner()
    await scanner.start()
    try:
        async with staged(workdir, protected_rooms=2, presend={"deadline": DEADLINE}) as stage:
            known_file = workdir / "known.png"
            known_file.write_bytes(KNOWN_PNG)
            add_images([known_file], stage.config(), "known", None)
            known_file.unlink()
            trusted = await stage.new_user("trusted")
            watcher = await stage.new_user("observer")
            for room in stage.protected_rooms:
                for user in (trusted, watcher):
                    await stage.moderator.invite(room, user.user_id)
                    await user.join(room)
            write_config(stage, scanner, trusted.user_id)
            async with bot_running(stage) as (bot, db):
                observer = Observer(watcher)
                try:
                    await observer.start()
                    yield World(stage, bot, db, ModerationStore(db.engine), observer, trusted, scanner)
                finally:
                    await observer.stop()
    finally:
        await scanner.stop()


def _variant(name: str) -> tuple[bytes, str]:
    if name == "original":
        return KNOWN_PNG, "image/png"
    if name == "re-encoded":
        return encode(KNOWN, "JPEG", quality=50), "image/jpeg"
    if name == "mirrored":
        return encode(ImageOps.mirror(KNOWN), "JPEG", quality=90), "image/jpeg"
    raise ValueError(name)


async def send_form(user: MatrixUser, room: str, form: str) -> tuple[str, str]:
    """Upload the known image and send it in `form`; (mxc, the event's send coroutine's result or error)."""
    if form in ("original", "re-encoded", "mirrored"):
        data, mime = _variant(form)
        mxc = await user.upload(data, mime, "image")
        return mxc, await user.send_image(room, mxc, mimetype=mime, size=len(data))
    mxc = await user.upload(encode(KNOWN.resize((KNOWN.width // 2, KNOWN.height // 2)), "JPEG", quality=85), "image/jpeg")
    if form == "thumbnail-only":
        main = await user.upload(encode(make_photo(seed=1299), "JPEG", quality=85), "image/jpeg")
        return mxc, await user.send_image(room, main, mimetype="image/jpeg", thumbnail_url=mxc)
    if form == "inline-img":
        content = {
            "msgtype": "m.text", "body": "look", "format": "org.matrix.custom.html",
            "formatted_body": f'look <img src="{mxc}" alt="x">',
        }
        return mxc, await user.send_message(room, content)
    raise ValueError(form)


async def rejected(coro: Any) -> MatrixRequestError:
    with pytest.raises(MatrixRequestError) as caught:
        await coro
    return caught.value


async def blocked_event(w: World, sender: str) -> str:
    """The id of the event the pre-send check stored for `sender` (it never reached the room)."""
    async def find() -> str | None:
        for entry in await w.db.store.audit_log(category="presend", limit=500):
            if entry.outcome == "blocked" and entry.sender == sender:
                return entry.event_id
        return None

    return await wait_for(find, timeout=20, description=f"blocked event of {sender}")


async def notices(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=100)
    return [
        m["content"].get("body", "") for m in messages
        if m.get("sender") == w.stage.bot_user_id and m.get("content", {}).get("msgtype") == "m.notice"
    ]


async def notice_about(w: World, event_id: str) -> str | None:
    return next((n for n in await notices(w) if event_id in n), None)


async def incident_of(w: World, event_id: str) -> dict[str, Any] | None:
    return next((i.record for i in await w.moderation.incidents() if i.record["event_id"] == event_id), None)


async def membership(w: World, room: str, user_id: str) -> str | None:
    return await w.stage.moderator.get_membership(room, user_id)


@pytest.mark.parametrize("form", ["original", "re-encoded", "mirrored", "thumbnail-only", "inline-img"])
async def test_known_media_is_refused_before_anyone_receives_it_and_acted_on(world: World, form: str) -> None:
    offender = await world.stage.new_user("offender", join=world.room)
    error = await rejected(send_form(offender, world.room, form))
    assert (error.status, error.errcode) == (403, "M_FORBIDDEN")
    assert "could not be sent" in error.message and "known" not in error.message  # neutral
    event_id = await blocked_event(world, offender.user_id)

    incident = await wait_for(lambda: incident_of(world, event_id), timeout=30, description="incident")
    assert incident["delivery"] == "blocked before delivery"
    assert incident["event"]["event_id"] == event_id and incident["event"]["sender"] == offender.user_id
    mxc = incident["media"][0]["mxc"]
    assert await world.stage.admin.download_status(mxc) == 404  # quarantined: kept, unserved
    await wait_for(lambda: _eq(membership(world, world.room, offender.user_id), "ban"), timeout=20, description="ban")
    notice = await wait_for(lambda: notice_about(world, event_id), timeout=20, description="notice")
    assert notice.startswith("modbot: known media blocked before delivery") and offender.user_id in notice
    actions = {(a.kind, a.status) for a in await world.db.store.actions(event_id=event_id)}
    assert {("quarantine", "ok"), ("ban", "ok"), ("notify", "ok")} <= actions
    assert ("redact", "ok") not in actions  # nothing to redact: it was never sent
    stored = await world.db.store.load_event(event_id)
    assert stored is not None and stored.presend == "blocked" and stored.sender == offender.user_id

    await world.synced(world.room)
    assert world.observer.carrying(mxc) == []
    assert mxc not in world.observer.downloads
    assert not any(e.get("sender") == offender.user_id and e.get("type") == "m.room.message" for e in world.observer.events.values())


async def _eq(coro: Any, expected: Any) -> bool:
    return await coro == expected


async def test_an_unknown_image_is_delivered_and_its_scan_is_shared(world: World) -> None:
    poster = await world.stage.new_user("poster", join=world.room)
    data = encode(make_photo(seed=1202), "JPEG", quality=85)
    mxc = await poster.upload(data, "image/jpeg", "image")
    event_id = await poster.send_image(world.room, mxc, mimetype="image/jpeg", size=len(data))
    await wait_for(lambda: event_id in world.observer.events, timeout=30, description="delivered")
    await wait_for(lambda: mxc in world.observer.downloads, timeout=30, description="downloaded")
    assert world.observer.downloads[mxc] == 200

    async def done() -> bool:
        event = await world.db.store.load_event(event_id)
        return event is not None and event.status == "done"

    await wait_for(done, timeout=30, description="processed by the appservice path")
    # Hashed once, by the pre-send check: the appservice path found the hashes it recorded
    # (hashing again would have moved last_scanned).
    media = await world.db.store.get_media(mxc)
    assert media is not None and media.hashes is not None
    async with world.db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT first_seen, last_scanned FROM media WHERE mxc = :m"), {"m": mxc})).one()
    assert row.first_seen == row.last_scanned
    audits = [(a.category, a.outcome) for a in await world.db.store.audit_log(event_id=event_id)]
    assert audits.count(("verdict", "no_match")) == 2  # the pre-send scan and the appservice path's
    assert [v.kind for v in await world.db.store.verdicts_for(event_id=event_id)] == ["no_match"]
    assert await membership(world, world.room, poster.user_id) == "join"


async def test_an_exempt_sender_is_refused_too_but_nothing_is_done_to_them(world: World) -> None:
    mxc = await world.trusted.upload(KNOWN_PNG, "image/png", "image")
    error = await rejected(world.trusted.send_image(world.room, mxc, size=len(KNOWN_PNG)))
    assert error.errcode == "M_FORBIDDEN"
    event_id = await blocked_event(world, world.trusted.user_id)
    notice = await wait_for(lambda: notice_about(world, event_id), timeout=30, description="notice")
    assert notice.startswith("modbot: known media blocked before delivery (sender exempt)")
    assert "The sender is exempt" in notice
    assert await world.stage.admin.download_status(mxc) == 404
    assert await membership(world, world.room, world.trusted.user_id) == "join"
    kinds = {a.kind for a in await world.db.store.actions(event_id=event_id)}
    assert "ban" not in kinds


async def restart(w: World, **settings: Any) -> None:
    """modbot again, with the stage's settings plus `presend` (slow_scanner: the loopback scanner as a classifier)."""
    await w.bot.stop()
    write_config(w.stage, w.scanner, w.trusted.user_id, **settings)
    await w.bot.start()


async def redacted(w: World, room: str, event_id: str) -> bool:
    event = await w.stage.moderator.get_event(room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def test_with_modbot_stopped_events_flow_and_are_acted_on_once_it_is_back(world: World) -> None:
    offender = await world.stage.new_user("whiledown", join=world.room)
    await world.bot.stop()
    try:
        mxc = await offender.upload(KNOWN_PNG, "image/png", "image")
        event_id = await offender.send_image(world.room, mxc, size=len(KNOWN_PNG))  # fail open: accepted
        await wait_for(lambda: event_id in world.observer.events, timeout=30, description="delivered while modbot is down")
    finally:
        await world.bot.start()
    await wait_for(lambda: redacted(world, world.room, event_id), timeout=60, description="redacted once modbot is back")
    await wait_for(lambda: _eq(membership(world, world.room, offender.user_id), "ban"), timeout=20, description="ban")
    assert await world.stage.admin.download_status(mxc) == 404
    stored = await world.db.store.load_event(event_id)
    assert stored is not None and stored.presend is None  # the appservice path's, not blocked


async def test_a_slow_classifier_lets_the_event_through_on_time_and_it_is_acted_on_afterwards(world: World) -> None:
    late_known = encode(make_photo(seed=1203), "JPEG", quality=85)
    world.scanner.known.append(KnownMedia.of(late_known, "csam-test"))
    world.scanner.fail_always(slow(DEADLINE + 3))  # answers, but after the deadline
    await restart(world, slow_scanner=True)
    try:
        offender = await world.stage.new_user("slow", join=world.room)
        mxc = await offender.upload(late_known, "image/jpeg", "image")
        started = asyncio.get_running_loop().time()
        event_id = await offender.send_image(world.room, mxc, mimetype="image/jpeg", size=len(late_known))
        assert asyncio.get_running_loop().time() - started < DEADLINE + 2  # allowed on time, not after the scanner
        await wait_for(lambda: redacted(world, world.room, event_id), timeout=60, description="acted on afterwards")
        await wait_for(lambda: _eq(membership(world, world.room, offender.user_id), "ban"), timeout=20, description="ban")
        outcomes = [a.outcome for a in await world.db.store.audit_log(event_id=event_id, category="presend")]
        assert outcomes == ["timed_out"]

        # Where the policy says `presend: fail_closed`, the same wait rejects the event instead.
        other = await world.stage.new_user("closed", join=world.closed_room)
        unknown = encode(make_photo(seed=1204), "JPEG", quality=85)
        mxc2 = await other.upload(unknown, "image/jpeg", "image")
        error = await rejected(other.send_image(world.closed_room, mxc2, mimetype="image/jpeg"))
        assert error.errcode == "M_FORBIDDEN"
        await world.synced(world.closed_room)
        assert world.observer.carrying(mxc2) == []

        # A classifier that fails outright: allowed and audited, refused where fail_closed.
        world.scanner.fail_always(server_error())
        failing = encode(make_photo(seed=1206), "JPEG", quality=85)
        mxc3 = await other.upload(failing, "image/jpeg", "image")
        await rejected(other.send_image(world.closed_room, mxc3, mimetype="image/jpeg"))
        poster = await world.stage.new_user("failing", join=world.room)
        event_id = await poster.send_image(world.room, mxc3, mimetype="image/jpeg")
        audit = [(a.outcome, a.message) for a in await world.db.store.audit_log(event_id=event_id, category="presend")]
        assert [outcome for outcome, _ in audit] == ["failed"] and "scanner" in audit[0][1]
    finally:
        world.scanner.fail_always(None)
        await restart(world)


async def create_unuploaded(user: MatrixUser) -> str:
    """An mxc URI whose content is not uploaded yet (MSC2246 asynchronous upload)."""
    return str((await user.request("POST", "/_matrix/media/v1/create"))["content_uri"])


async def test_media_not_uploaded_yet_is_refused_by_default(world: World) -> None:
    user = await world.stage.new_user("early", join=world.room)
    mxc = await create_unuploaded(user)
    error = await rejected(user.send_image(world.room, mxc))
    assert error.errcode == "M_FORBIDDEN" and "finished uploading" in error.message
    await world.synced(world.room)
    assert world.observer.carrying(mxc) == []


async def test_media_not_uploaded_yet_can_be_allowed_and_is_fetched_again_until_it_comes(world: World) -> None:
    await restart(world, pending_upload="allow", processing={"failure_memory": 1})
    try:
        offender = await world.stage.new_user("late", join=world.room)
        mxc = await create_unuploaded(offender)
        event_id = await offender.send_image(world.room, mxc)  # allowed: nothing to scan yet
        server, media_id = mxc.removeprefix("mxc://").split("/")
        await offender.request(
            "PUT", f"/_matrix/media/v3/upload/{server}/{media_id}", data=KNOWN_PNG, headers={"Content-Type": "image/png"}
        )
        await wait_for(lambda: redacted(world, world.room, event_id), timeout=90, description="late upload acted on")
        assert await world.stage.admin.download_status(mxc) == 404
    finally:
        await restart(world)



@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def failing_closed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Stage, BotProcess]]:
    """A second server whose module is configured `fail_open: false` (presend.fail_open)."""
    async with staged(tmp_path_factory.mktemp("presend-closed"), presend={"fail_open": False}) as stage:
        bot = BotProcess.for_stage(stage)
        try:
            await bot.start()
            yield stage, bot
        finally:
            await bot.stop()


async def test_with_the_module_failing_closed_events_are_refused_while_modbot_is_down(
    failing_closed: tuple[Stage, BotProcess],
) -> None:
    stage, bot = failing_closed
    user = await stage.new_user("poster", join=stage.room)
    data = encode(make_photo(seed=1205), "JPEG", quality=85)
    mxc = await user.upload(data, "image/jpeg", "image")
    await user.send_image(stage.room, mxc, mimetype="image/jpeg")  # modbot up: an unknown image goes through
    await bot.stop()
    try:
        error = await rejected(user.send_image(stage.room, mxc, mimetype="image/jpeg", body="while down"))
        assert error.status >= 400
        bodies = [m.get("content", {}).get("body") for m in await stage.moderator.messages(stage.room)]
        assert "while down" not in bodies
    finally:
        await bot.start()
    await user.send_image(stage.room, mxc, mimetype="image/jpeg", body="back")


async def test_check_and_status_say_synapse_calls_the_endpoint(world: World) -> None:
    async def checked() -> str | None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "check", "-c", str(world.stage.config_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=world.bot.workdir,
        )
        out = (await proc.communicate())[0].decode()
        return out if "blocked" in out else None  # counts are flushed every 2 s

    out = await wait_for(checked, timeout=30, description="modbot check reporting pre-send counts")
    assert "ok    pre-send: last ping from synapse-http-antispam" in out
    assert "ok    pre-send: last check_event_for_spam" in out and "s ago" in out

    await world.stage.moderator.send_text(world.stage.management_room, "!mod status")

    async def status() -> str | None:
        return next((n for n in await replies(world) if "Pre-send checks since start" in n), None)

    reply = await wait_for(status, timeout=30, description="status reply")
    assert "allowed" in reply and "blocked" in reply and "timed out" in reply


async def replies(w: World) -> list[str]:
    messages = await w.stage.moderator.messages(w.stage.management_room, limit=50)
    return [m["content"].get("body", "") for m in messages if m.get("sender") == w.stage.bot_user_id]


async def test_in_dry_run_known_media_is_let_through_and_only_noticed(world: World) -> None:
    await restart(world, dry_run=True)
    try:
        offender = await world.stage.new_user("dry", join=world.room)
        # Bytes of their own: Synapse quarantines every upload of content it quarantined before.
        data = encode(KNOWN, "JPEG", quality=70)
        mxc = await offender.upload(data, "image/jpeg", "image")
        event_id = await offender.send_image(world.room, mxc, mimetype="image/jpeg", size=len(data))  # allowed
        await wait_for(lambda: event_id in world.observer.events, timeout=30, description="delivered")
        notice = await wait_for(lambda: notice_about(world, event_id), timeout=30, description="dry-run notice")
        assert "DRY RUN" in notice
        outcomes = [a.outcome for a in await world.db.store.audit_log(event_id=event_id, category="presend")]
        assert outcomes == ["dry_run"]
        assert await world.stage.admin.download_status(mxc) == 200
        assert await membership(world, world.room, offender.user_id) == "join"
    finally:
        await restart(world)

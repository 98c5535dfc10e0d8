"""Two real Synapse servers federating on loopback, modbot protecting the rooms of the first
(issues 12, 13 and 15 where they concern other servers).

Server one (`localhost:PORT`) runs modbot with the pre-send check (synapse-http-antispam);
server two (`127.0.0.1:PORT`: a server ACL matches hosts, not ports, so the two servers need
different hosts — see bot/demo/federation.py) has users who join server one's protected rooms
over federation. An observer on server one syncs continuously and downloads every media it
sees, as clients do.

The servers are shared by the tests of the module, which run in order: remote media refused
before delivery (issue 12), and acted on after the fact while modbot was down; the
policy-list server ACL (issue 15) added and lifted before the incident-count ACL (issue 13)
denies server two for good.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio

from bot.cli.scan import add_images
from bot.demo.federation import FederationListener
from bot.demo.matrix import MatrixRequestError, MatrixUser
from bot.demo.stage import Stage
from bot.demo.synapse import ThrowawaySynapse
from bot.demo.waiting import free_port, wait_for
from bot.record.moderation import ModerationStore
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo
from observer import Observer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=1701), "PNG")
DEADLINE = 5.0  # remote media is fetched over federation within the pre-send deadline
LOCAL_OFFENDER_RULE = {
    "name": "known-media",
    # Account actions: what a local offender gets; a remote sender gets remote_senders' instead.
    "actions": ["quarantine", "redact", "ban", "suspend", "quarantine_user_media", "notify"],
}


@dataclass
class World:
    one: Stage
    two: ThrowawaySynapse
    bot: BotProcess
    db: StoreReader
    moderation: ModerationStore
    observer: Observer
    curator: MatrixUser
    policy_room: str
    lobby: str  # a room of server one's that modbot does not protect
    users: int = 0

    @property
    def rooms(self) -> list[str]:
        return self.one.protected_rooms

    @property
    def two_host(self) -> str:
        return self.two.server_name.rsplit(":", 1)[0]

    async def remote_user(self, prefix: str) -> MatrixUser:
        """A user of server two who has joined the first protected room and the lobby of server one."""
        self.users += 1
        user = await self.two.register_user(f"{prefix}{self.users}")
        for room in (self.rooms[0], self.lobby):
            # Inviting waits for server two to take the invite: it can join at once. (Polling
            # its /sync for the invite instead fails: Synapse answers the same initial /sync
            # from a cache for 2 minutes, `sync_response_cache_duration`.)
            await self.one.moderator.invite(room, user.user_id)
            await user.request(
                "POST", f"/_matrix/client/v3/join/{quote(room, safe='')}",
                params={"server_name": self.one.synapse.server_name}, json_body={},
            )
            await wait_for(
                lambda: _eq(self.one.moderator.get_membership(room, user.user_id), "join"),
                timeout=60, description=f"{user.user_id} joined on server one",
            )
        return user

    async def synced(self, room: str) -> None:
        """Wait until the observer has seen a message sent now (and so whatever came before it)."""
        marker = await self.one.moderator.send_text(room, "sync marker")
        await wait_for(lambda: marker in self.observer.events, timeout=60, description="observer synced")

    async def refused(self, user: MatrixUser, room: str, body: str) -> None:
        """`user` of server two sends `body` to `room`: server two accepts it, server one never does.

        Server two sends to server one in order (one queue per destination), so once a later
        message of the same user has reached the observer through the lobby, server one has
        had the first one offered, and refused it."""
        event_id = await user.send_text(room, body)
        later = await user.send_text(self.lobby, f"after: {body}")
        await wait_for(lambda: later in self.observer.events, timeout=120, description="server two's later message")
        assert event_id not in self.observer.events
        with pytest.raises(MatrixRequestError) as unknown:
            await self.one.admin.request("GET", f"/_synapse/admin/v1/fetch_event/{quote(event_id)}")
        assert unknown.value.status == 404  # not stored at all: refused at the door

    async def acl(self, room: str) -> dict[str, Any] | None:
        """The room's m.room.server_acl as server one has it."""
        try:
            return await self.one.moderator.get_state(room, "m.room.server_acl")
        except MatrixRequestError as e:
            if e.status == 404:
                return None
            raise


async def _eq(coro: Any, expected: Any) -> bool:
    return await coro == expected


def write_config(stage: Stage, policy_room: str, **remote_senders: Any) -> None:
    """The local offender rule, `remote_senders` as given, the policy room watched with server ACLs opted in."""
    stage.write_config(
        presend={**stage.config_data["presend"], "deadline": DEADLINE},
        policy={"rules": [LOCAL_OFFENDER_RULE], **({"remote_senders": remote_senders} if remote_senders else {})},
        policy_lists={"watch": [policy_room], "server_acl": True},
        processing={**stage.config_data["processing"], "rescan_delay": 1, "rescan_max_delay": 2},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("federation")
    two = ThrowawaySynapse(workdir / "two", federation=FederationListener(free_port(), host="127.0.0.1"))
    await two.start()
    try:
        async with staged(
            workdir / "one", protected_rooms=2, presend={"deadline": DEADLINE}, federation=FederationListener(free_port())
        ) as one:
            known_file = workdir / "known.png"
            known_file.write_bytes(KNOWN)
            add_images([known_file], one.config(), "known", None)
            known_file.unlink()
            watcher = await one.new_user("observer")
            lobby = await one.moderator.create_room("lobby")
            for room in (*one.protected_rooms, lobby):
                await one.moderator.invite(room, watcher.user_id)
                await watcher.join(room)
            curator = await one.new_user("curator")
            policy_room = await curator.create_room("server ban list", preset="public_chat")
            write_config(one, policy_room)
            async with bot_running(one) as (bot, db):
                observer = Observer(watcher)
                try:
                    await observer.start()
                    yield World(one, two, bot, db, ModerationStore(db.engine), observer, curator, policy_room, lobby)
                finally:
                    await observer.stop()
    finally:
        await two.stop()


async def blocked_event(w: World, sender: str) -> str:
    """The id of the event the pre-send check refused for `sender`."""
    async def find() -> str | None:
        for entry in await w.db.store.audit_log(category="presend", limit=500):
            if entry.outcome == "blocked" and entry.sender == sender:
                return entry.event_id
        return None

    return await wait_for(find, timeout=60, description=f"blocked event of {sender}")


async def incident_of(w: World, event_id: str) -> dict[str, Any] | None:
    return next((i.record for i in await w.moderation.incidents() if i.record["event_id"] == event_id), None)


async def media_info(admin: MatrixUser, mxc: str) -> dict[str, Any]:
    """Synapse's admin view of a media (for remote media: the server's local copy)."""
    server, media_id = mxc.removeprefix("mxc://").split("/")
    answer = await admin.request("GET", f"/_synapse/admin/v1/media/{quote(server)}/{quote(media_id)}")
    return answer["media_info"]


async def _quarantined(w: World, mxc: str) -> bool:
    return (await media_info(w.one.admin, mxc))["quarantined_by"] == w.one.bot_user_id


async def test_known_remote_media_is_refused_before_local_users_receive_it_and_its_local_copy_quarantined(
    world: World,
) -> None:
    w = world
    visitor = await w.remote_user("visitor")
    # An unknown image from server two is delivered and downloadable on server one.
    data = encode(make_photo(seed=1702), "JPEG", quality=85)
    unknown = await visitor.upload(data, "image/jpeg", "image")
    assert unknown.startswith(f"mxc://{w.two.server_name}/")  # remote media, for server one
    delivered = await visitor.send_image(w.rooms[0], unknown, mimetype="image/jpeg", size=len(data))
    await wait_for(lambda: delivered in w.observer.events, timeout=60, description="unknown image delivered")
    await wait_for(lambda: unknown in w.observer.downloads, timeout=60, description="unknown image downloaded")
    assert w.observer.downloads[unknown] == 200

    # A known one: server two accepts its own user's event; server one's pre-send check
    # refuses it and Synapse soft-fails it there.
    mxc = await visitor.upload(KNOWN, "image/png", "image")
    await visitor.send_image(w.rooms[0], mxc, size=len(KNOWN))
    event_id = await blocked_event(w, visitor.user_id)

    incident = await wait_for(lambda: incident_of(w, event_id), timeout=60, description="incident")
    assert incident["delivery"] == "blocked before delivery"
    assert incident["event"]["sender"] == visitor.user_id and incident["media"][0]["mxc"] == mxc
    actions = {(a.kind, a.target, a.status) for a in await w.db.store.actions(event_id=event_id)}
    assert ("quarantine", mxc, "ok") in actions
    # Server one's copy of the remote media is quarantined: kept, unserved, to its admin too.
    info = await media_info(w.one.admin, mxc)
    assert (info["media_origin"], info["quarantined_by"]) == (w.two.server_name, w.one.bot_user_id)
    assert await w.one.admin.download_status(mxc) == 404
    await w.synced(w.rooms[0])
    assert w.observer.carrying(mxc) == []
    assert mxc not in w.observer.downloads
    assert event_id not in w.observer.events

    # The same bytes again, uploaded anew to server two by someone else: server one fetches
    # its own copy, and that is refused and quarantined as well.
    again = await w.remote_user("again")
    copy = await again.upload(KNOWN, "image/png", "image")
    await again.send_image(w.rooms[0], copy, size=len(KNOWN))
    copy_event = await blocked_event(w, again.user_id)
    await wait_for(lambda: incident_of(w, copy_event), timeout=60, description="incident of the copy")
    await wait_for(lambda: _quarantined(w, copy), timeout=60, description="copy quarantined")
    await w.synced(w.rooms[0])
    assert copy_event not in w.observer.events and copy not in w.observer.downloads

    # Remote senders get the remote actions: a ban in every protected room (also the one
    # they never joined), no account action (server one has no account of theirs).
    for room in w.rooms:
        await wait_for(lambda: _eq(w.one.moderator.get_membership(room, visitor.user_id), "ban"), timeout=60, description="ban")
    kinds = {a.kind for a in await w.db.store.actions(event_id=event_id)}
    assert not kinds & {"suspend", "quarantine_user_media", "deactivate", "redact_user"}
    (presend,) = [a.message for a in await w.db.store.audit_log(event_id=event_id, category="presend")]
    assert "ban (all)" in presend and "instead of: suspend" in presend  # the pre-send check decides as the pipeline does


async def redacted(w: World, room: str, event_id: str) -> bool:
    event = await w.one.moderator.get_event(room, event_id)
    return "redacted_because" in event.get("unsigned", {})


async def test_with_modbot_stopped_remote_media_flows_and_is_acted_on_once_it_is_back(world: World) -> None:
    w = world
    visitor = await w.remote_user("whiledown")
    # Bytes of their own (a re-encoded copy, matched by PDQ), so that nothing about the
    # earlier tests' quarantined copies can stand in for this one.
    data = encode(make_photo(seed=1701), "JPEG", quality=85)
    await w.bot.stop()
    try:
        mxc = await visitor.upload(data, "image/jpeg", "image")
        event_id = await visitor.send_image(w.rooms[0], mxc, mimetype="image/jpeg", size=len(data))
        # The module fails open: server one accepts the event and its users see it.
        await wait_for(lambda: event_id in w.observer.events, timeout=120, description="delivered while modbot is down")
    finally:
        await w.bot.start()
    # The appservice path: server one's copy of the remote media quarantined, the remote
    # event redacted in server one's room, the sender banned in every protected room.
    await wait_for(lambda: redacted(w, w.rooms[0], event_id), timeout=120, description="redacted once modbot is back")
    await wait_for(lambda: _quarantined(w, mxc), timeout=60, description="remote copy quarantined")
    assert await w.one.admin.download_status(mxc) == 404
    for room in w.rooms:
        await wait_for(lambda: _eq(w.one.moderator.get_membership(room, visitor.user_id), "ban"), timeout=60, description="ban")
    stored = await w.db.store.load_event(event_id)
    assert stored is not None and stored.presend is None  # the appservice path's, not blocked


async def denied_in(w: World, host: str) -> int:
    """In how many protected rooms the server ACL, as server one has it, denies `host`."""
    return sum([host in ((await w.acl(room)) or {}).get("deny", []) for room in w.rooms])


async def denies(w: World, host: str) -> bool:
    return await denied_in(w, host) == len(w.rooms)


async def allows(w: World, host: str) -> bool:
    return await denied_in(w, host) == 0


async def test_a_watched_server_rule_denies_server_two_in_the_protected_rooms_until_it_is_removed(world: World) -> None:
    w = world
    member = await w.remote_user("member")
    rule = {"entity": w.two_host, "recommendation": "m.ban", "reason": "spam"}
    await w.curator.send_state(w.policy_room, "m.policy.rule.server", "rule:two", rule)
    await wait_for(lambda: denies(w, w.two_host), timeout=60, description="server two in both rooms' ACL")
    for room in w.rooms:
        acl = await w.acl(room)
        assert acl is not None and acl["allow"] == ["*"] and acl["deny"] == [w.two_host]  # never server one

    # Server one refuses what server two's users send now.
    await w.refused(member, w.rooms[0], "sent while denied")

    # Removing the rule (empty content, as Draupnir does) takes the entry out again.
    await w.curator.send_state(w.policy_room, "m.policy.rule.server", "rule:two", {})
    await wait_for(lambda: allows(w, w.two_host), timeout=60, description="server two out of both rooms' ACL")
    welcome = await member.send_text(w.rooms[0], "sent once allowed again")
    await wait_for(lambda: welcome in w.observer.events, timeout=120, description="server two's message delivered again")


async def restart(w: World, **remote_senders: Any) -> None:
    await w.bot.stop()
    write_config(w.one, w.policy_room, **remote_senders)
    await w.bot.start()


async def test_after_n_incidents_from_server_two_the_protected_rooms_deny_it(world: World) -> None:
    w = world
    await restart(w, actions=[{"ban": "all"}], server_acl={"after": 2, "within": 3600})
    bystander = await w.remote_user("bystander")
    first, second = await w.remote_user("first"), await w.remote_user("second")

    async def post_known(user: MatrixUser) -> str:
        mxc = await user.upload(KNOWN, "image/png", "image")
        await user.send_image(w.rooms[0], mxc, size=len(KNOWN))
        return await blocked_event(w, user.user_id)

    one = await post_known(first)
    await wait_for(lambda: incident_of(w, one), timeout=60, description="first incident")

    async def not_yet() -> bool:
        return any("1 of 2 incidents" in a.message for a in await w.db.store.audit_log(event_id=one, limit=100))

    await wait_for(not_yet, timeout=60, description="first incident counted, server two not denied yet")
    assert await allows(w, w.two_host)

    two = await post_known(second)
    await wait_for(lambda: incident_of(w, two), timeout=60, description="second incident")
    await wait_for(lambda: denies(w, w.two_host), timeout=60, description="server two in both rooms' ACL")
    for room in w.rooms:
        acl = await w.acl(room)
        assert acl is not None and acl["deny"] == [w.two_host]  # never server one, whose bot wrote it
    for user in (first, second):
        for room in w.rooms:
            assert await w.one.moderator.get_membership(room, user.user_id) == "ban"

    # A user of server two who did nothing is refused too: server one no longer takes its events.
    await w.refused(bystander, w.rooms[0], "after the ACL")
    # Nor can anyone of server two join now.
    latecomer = await w.two.register_user("latecomer")
    await w.one.moderator.invite(w.rooms[1], latecomer.user_id)
    with pytest.raises(MatrixRequestError) as refused_join:
        await latecomer.request(
            "POST", f"/_matrix/client/v3/join/{quote(w.rooms[1], safe='')}",
            params={"server_name": w.one.synapse.server_name}, json_body={},
        )
    assert refused_join.value.status == 403
    assert await w.one.moderator.get_membership(w.rooms[1], latecomer.user_id) != "join"
    # Server one's own users are not refused.
    await w.synced(w.rooms[0])

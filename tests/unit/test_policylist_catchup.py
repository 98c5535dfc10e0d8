"""Catching up at start until it is done (bot/policylists/catchup.py).

At start modbot reads the watched policy rooms' state and checks the protected rooms'
members. Synapse is often not up yet when modbot starts: what could not be read is tried
again, after 30 s, then twice as long each time up to 10 minutes, until everything is done,
and nothing is acted on twice.

Real: the storage, the executor, the rule service and enforcer. Fake and recording: the
homeserver (tests/policylist_kit.py), which the test takes down and brings back.
"""

from __future__ import annotations

from typing import Any

from bot.act.homeserver import HomeserverError
from bot.configmodel import PolicyListsConfig
from bot.policylists.catchup import FIRST_RETRY, MOST_RETRY, catch_up
from bot.record.store import Store

from action_kit import ROOM
from policylist_kit import BYSTANDER, LIST, SPAMMER, Kit, PolicyHomeserver, rule_event

OTHER_LIST = "!other-list:example.org"


class FlakyHomeserver(PolicyHomeserver):
    """Unreachable while `down`; counts the reads of each room's state and members."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.down_rooms: set[str] = set()  # rooms whose state cannot be read even when up
        self.reads: list[str] = []

    def _check(self, room: str) -> None:
        self.reads.append(room)
        if self.down or room in self.down_rooms:
            raise HomeserverError("cannot reach the homeserver: connection refused")

    async def join(self, room: str) -> str:
        if self.down:
            raise HomeserverError("cannot reach the homeserver: connection refused")
        return room

    async def room_state(self, room_id: str) -> list[dict[str, Any]]:
        self._check(room_id)
        return await super().room_state(room_id)

    async def joined_members(self, room_id: str) -> set[str]:
        self._check(room_id)
        return await super().joined_members(room_id)


class Sleeps:
    """A sleep that returns at once, records the delays, and brings Synapse back after `after` of them."""

    def __init__(self, hs: FlakyHomeserver, after: int) -> None:
        self.hs, self.after, self.delays = hs, after, []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if len(self.delays) >= self.after:
            self.hs.down = False
            self.hs.down_rooms.clear()


def kit(store: Store, *watch: str) -> Kit:
    k = Kit(store, FlakyHomeserver(), PolicyListsConfig(watch=list(watch)))
    k.protected = [ROOM]
    k.hs.members[ROOM] = {BYSTANDER, SPAMMER}
    k.hs.state[LIST] = [rule_event("@spammer*:evil.org", key="g", n=1)]
    k.hs.state[OTHER_LIST] = []
    return k


async def test_a_list_that_cannot_be_read_at_start_is_read_once_synapse_is_back(store: Store) -> None:
    k = kit(store, LIST)
    k.hs.down = True
    sleeps = Sleeps(k.hs, after=3)

    attempts = await catch_up(k.lists, lambda: k.protected, sleep=sleeps)

    assert attempts == 4 and sleeps.delays == [FIRST_RETRY, 2 * FIRST_RETRY, 4 * FIRST_RETRY]
    assert k.hs.bans() == {(ROOM, SPAMMER)}  # the rule read at last, the member it names banned
    audit = await store.audit_log(category="policylist")
    assert sum(e.outcome == "failed" and LIST in e.message for e in audit) == 3  # each failure audited


async def test_members_that_cannot_be_listed_are_checked_again(store: Store) -> None:
    # The rule is known (stored before): the list reads, but the room's members do not.
    k = kit(store, LIST)
    await k.lists.sync(LIST)
    k.hs.calls.clear()
    k.hs.members[ROOM] = {BYSTANDER, SPAMMER, "@spammer9:evil.org"}  # joined while modbot was away
    k.hs.down_rooms = {ROOM}
    sleeps = Sleeps(k.hs, after=1)

    assert await catch_up(k.lists, lambda: k.protected, sleep=sleeps) == 2
    assert (ROOM, "@spammer9:evil.org") in k.hs.bans()
    assert [c[0] for c in k.hs.calls].count("ban") == 1  # the one banned before is not banned again


async def test_only_what_failed_is_tried_again(store: Store) -> None:
    k = kit(store, LIST, OTHER_LIST)
    k.hs.down_rooms = {OTHER_LIST}
    sleeps = Sleeps(k.hs, after=1)

    assert await catch_up(k.lists, lambda: k.protected, sleep=sleeps) == 2

    # The second attempt read the list that failed and nothing else; the rule was read once.
    assert k.hs.reads.count(OTHER_LIST) == 2 and k.hs.reads.count(LIST) == 1
    assert k.hs.bans() == {(ROOM, SPAMMER)}


async def test_the_wait_doubles_up_to_ten_minutes(store: Store) -> None:
    k = kit(store, LIST)
    k.hs.down = True
    sleeps = Sleeps(k.hs, after=8)

    await catch_up(k.lists, lambda: k.protected, sleep=sleeps)

    assert sleeps.delays == [30, 60, 120, 240, 480, 600, 600, 600] and MOST_RETRY == 600


async def test_nothing_to_catch_up_is_one_attempt_and_no_wait(store: Store) -> None:
    k = kit(store, LIST)
    sleeps = Sleeps(k.hs, after=1)
    assert await catch_up(k.lists, lambda: k.protected, sleep=sleeps) == 1 and sleeps.delays == []


async def test_an_unexpected_error_is_logged_and_tried_again(store: Store, caplog: Any) -> None:
    k = kit(store, LIST)
    original = k.lists.check_members
    calls = []

    async def broken_once(rooms: Any) -> Any:
        calls.append(rooms)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return await original(rooms)

    k.lists.check_members = broken_once  # type: ignore[method-assign]
    sleeps = Sleeps(k.hs, after=1)
    assert await catch_up(k.lists, lambda: k.protected, sleep=sleeps) == 2
    assert "catching up failed (attempt 1)" in caplog.text
    assert k.hs.bans() == {(ROOM, SPAMMER)}

"""m.policy.rule.room with m.ban: recorded only by default; with `policy_lists.room_rules: block`
the room is blocked on this server, never a protected or the management room, and removing
the rule unblocks what it blocked (unless another rule still names the room).

Real: the storage (SQLite, migrated), the executor, the rule service and enforcer; the
homeserver is the recording fake of test_policylists.py.
"""

from __future__ import annotations

from typing import Any

from bot.configmodel import PolicyListsConfig
from bot.errors import HomeserverError
from bot.policylists.rules import entity_hash
from bot.record.store import Store

from action_kit import MANAGEMENT, OTHER, ROOM
from policylist_kit import LIST, MOD, Kit, PolicyHomeserver, removal, rule_event

BAD = "!bad:evil.org"
ROOM_RULE = "m.policy.rule.room"


class BlockingHomeserver(PolicyHomeserver):
    def __init__(self) -> None:
        super().__init__()
        self.blocked: set[str] = set()
        self.aliases = {"#bad:evil.org": BAD}

    async def block_room(self, room_id: str, block: bool = True) -> None:
        await self._record("block_room", room_id, block)
        (self.blocked.add if block else self.blocked.discard)(room_id)

    async def resolve_room(self, room: str) -> str:
        return self.aliases.get(room, room)


async def kit(store: Store, room_rules: str) -> Kit:
    k = Kit(store, BlockingHomeserver(), PolicyListsConfig(room_rules=room_rules))  # type: ignore[arg-type]
    await k.lists.watch(LIST, by=MOD)
    return k


def blocks(k: Kit) -> list[tuple[Any, ...]]:
    return [c for c in k.hs.calls if c[0] == "block_room"]


async def outcomes(store: Store) -> list[tuple[str, str]]:
    return [(e.outcome, e.message) for e in await store.audit_log(category="policylist")]


async def test_by_default_a_room_rule_is_recorded_and_nothing_is_blocked(store: Store) -> None:
    k = await kit(store, "record")
    await k.send(rule_event(BAD, key="r", n=1, type=ROOM_RULE))
    assert blocks(k) == [] and len(k.lists.index) == 1
    assert any(o == "rule_added" and BAD in m for o, m in await outcomes(store))


async def test_opted_in_a_room_rule_blocks_the_room_and_its_removal_unblocks_it(store: Store) -> None:
    k = await kit(store, "block")
    await k.send(rule_event(BAD, key="r", n=1, type=ROOM_RULE))
    assert k.hs.blocked == {BAD}
    await k.lists.sync(LIST)  # the rule read again (a restart's catch-up) blocks nothing twice
    assert len(blocks(k)) == 1
    await k.send(removal("r", 1, type=ROOM_RULE))
    assert k.hs.blocked == set() and blocks(k) == [("block_room", BAD, True), ("block_room", BAD, False)]
    # Through the executor: durable, keyed and audited like any action.
    assert sorted((a.kind, a.target, a.status) for a in await store.actions()) == [
        ("block_room", BAD, "ok"), ("block_room", BAD, "ok")]


async def test_an_alias_is_resolved_and_the_room_blocked(store: Store) -> None:
    k = await kit(store, "block")
    await k.send(rule_event("#bad:evil.org", key="a", n=1, type=ROOM_RULE))
    assert k.hs.blocked == {BAD}


async def test_a_protected_room_or_the_management_room_is_never_blocked_and_the_refusal_is_audited(store: Store) -> None:
    k = await kit(store, "block")
    for n, room in enumerate((ROOM, OTHER, MANAGEMENT), start=1):
        await k.send(rule_event(room, key=f"p{n}", n=n, type=ROOM_RULE))
    assert blocks(k) == []
    refused = [m for o, m in await outcomes(store) if o == "refused"]
    assert len(refused) == 3 and all("never blocked" in m for m in refused)


async def test_globs_and_hashes_block_nothing_they_act_at_join_only(store: Store) -> None:
    k = await kit(store, "block")
    await k.send(rule_event("!bad*:evil.org", key="g", n=1, type=ROOM_RULE))
    await k.send(rule_event(None, key="h", n=2, type=ROOM_RULE, hashes={"sha256": entity_hash(BAD)}))
    assert blocks(k) == []
    assert sum(o == "recorded" for o, _ in await outcomes(store)) == 2


async def test_a_room_named_by_two_rules_stays_blocked_until_both_are_gone(store: Store) -> None:
    k = await kit(store, "block")
    await k.send(rule_event(BAD, key="one", n=1, type=ROOM_RULE))
    await k.send(rule_event(BAD, key="two", n=2, type=ROOM_RULE))
    await k.send(removal("one", 3, type=ROOM_RULE))
    assert k.hs.blocked == {BAD}
    await k.send(removal("two", 4, type=ROOM_RULE))
    assert k.hs.blocked == set()


async def test_a_rule_whose_reason_changes_keeps_the_block_and_a_later_removal_lifts_it(store: Store) -> None:
    k = await kit(store, "block")
    await k.send(rule_event(BAD, key="r", n=1, type=ROOM_RULE))
    await k.send(rule_event(BAD, key="r", n=2, type=ROOM_RULE, reason="still bad"))
    assert k.hs.blocked == {BAD}
    await k.send(removal("r", 3, type=ROOM_RULE))
    assert k.hs.blocked == set()


async def test_a_block_the_homeserver_cannot_make_now_stays_pending_and_is_still_the_rules(store: Store) -> None:
    k = await kit(store, "block")
    k.hs.fail["block_room"] = HomeserverError("HTTP 502: bad gateway", status=502)
    await k.send(rule_event(BAD, key="r", n=1, type=ROOM_RULE))
    assert k.hs.blocked == set()
    # Recorded as the rule's although pending: removing the rule must know to unblock.
    assert [b.room_id for b in await k.repo.bans_of((LIST, ROOM_RULE, "r"))] == [BAD]

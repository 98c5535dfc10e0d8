"""The members already in a protected room, checked against the policy lists' user rules.

Joins are judged as they arrive and rules when they arrive; what neither sees is a room
protected later (its members joined before) and a join Synapse never delivered. Both are
covered by a check of the room's current members: when a room is protected, at each start,
and by `policylist check`.

Real: the storage, the executor, the rule service and enforcer. Fake and recording: the
homeserver (tests/policylist_kit.py), with the rooms' members set by the test.
"""

from __future__ import annotations

from bot.act.homeserver import HomeserverError
from bot.configmodel import PolicyListsConfig
from bot.policylists.enforce import MEMBERS_TTL
from bot.policylists.rules import entity_hash
from bot.record.store import Store

from action_kit import BOT, MANAGEMENT, OTHER, ROOM
from policylist_kit import BYSTANDER, LIST, MOD, SPAMMER, SPAMMER2, Kit, PolicyHomeserver, removal, rule_event

GLOB = "@spammer*:evil.org"


async def kit_with(store: Store, config: PolicyListsConfig | None = None) -> Kit:
    """Only ROOM protected, with no member a rule names; OTHER (SPAMMER2 a member) not yet."""
    k = Kit(store, PolicyHomeserver(), config or PolicyListsConfig())
    k.protected = [ROOM]
    k.hs.members[ROOM] = {BYSTANDER}
    await k.lists.watch(LIST, by=MOD)
    return k


async def protect(k: Kit, room: str) -> list[str]:
    k.protected.append(room)
    return [c.describe() for c in await k.lists.check_members([room])]


async def test_a_room_protected_later_has_its_members_named_by_a_rule_banned_everywhere(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event(GLOB, key="g", n=1))
    assert k.hs.bans() == set()  # nobody it names is in a protected room yet
    k.hs.members[OTHER] = {SPAMMER2, BYSTANDER}
    lines = await protect(k, OTHER)
    assert lines == [f"`{OTHER}`: 2 members, 1 banned by a policy list"]
    assert k.hs.bans() == {(ROOM, SPAMMER2), (OTHER, SPAMMER2)}
    audit = await store.audit_log(category="policylist")
    assert any(e.outcome == "member_matched" and e.sender == SPAMMER2 and GLOB in e.message for e in audit)
    assert any(e.outcome == "members_checked" and e.room_id == OTHER for e in audit)


async def test_literal_and_hashed_rules_name_members_as_globs_do(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event(None, key="h", n=1, hashes={"sha256": entity_hash(SPAMMER2)}))
    k.hs.members[OTHER] = {SPAMMER2, BYSTANDER}
    await protect(k, OTHER)
    assert (OTHER, SPAMMER2) in k.hs.bans() and all(u != BYSTANDER for _, u in k.hs.bans())


async def test_checking_again_after_a_restart_does_not_ban_twice(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event(GLOB, key="g", n=1))
    k.hs.members[OTHER] = {SPAMMER2}
    await protect(k, OTHER)
    before = k.hs.kinds().count("ban")
    # Synapse's view has not changed yet (a ban still pending, say): the same rule, room and
    # user make the same action key.
    await k.lists.check_members([ROOM, OTHER])
    assert k.hs.kinds().count("ban") == before == 2


async def test_the_safety_team_and_the_bot_are_spared_by_the_check(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event("@*:example.org", key="all", n=1))  # would name the bot: refused on arrival
    k.hs.members[OTHER] = {MOD, BOT}
    await k.send(rule_event(MOD, key="m", n=2))
    lines = await protect(k, OTHER)
    assert k.hs.bans() == set()
    assert lines == [f"`{OTHER}`: 2 members, 0 banned by a policy list"]


async def test_a_rule_naming_more_members_than_allowed_is_refused_by_the_check_too(store: Store) -> None:
    k = await kit_with(store, PolicyListsConfig(max_bans_per_rule=1))
    await k.send(rule_event(GLOB, key="g", n=1))
    k.hs.members[OTHER] = {SPAMMER, SPAMMER2, BYSTANDER}
    lines = await protect(k, OTHER)
    assert k.hs.bans() == set()
    assert lines == [f"`{OTHER}`: 3 members, 0 banned by a policy list, 1 rules refused (too many members)"]
    refused = [e for e in await store.audit_log(category="policylist") if e.outcome == "refused"]
    assert any("2 members of" in e.message and "max_bans_per_rule" in e.message for e in refused)


async def test_removing_the_rule_lifts_the_bans_the_check_made(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event(GLOB, key="g", n=1))
    k.hs.members[OTHER] = {SPAMMER2}
    await protect(k, OTHER)
    await k.send(removal("g", n=2))
    assert k.hs.unbans() == {(ROOM, SPAMMER2), (OTHER, SPAMMER2)}


async def test_without_a_user_rule_that_bans_nothing_is_asked_of_the_homeserver(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event(SPAMMER, key="r", n=1, recommendation="org.example.watch"))
    calls = len(k.hs.calls)
    assert await k.lists.check_members([ROOM, OTHER]) == []
    assert len(k.hs.calls) == calls


async def test_a_room_whose_members_cannot_be_listed_is_reported_and_audited(store: Store) -> None:
    class Failing(PolicyHomeserver):
        async def joined_members(self, room_id: str) -> set[str]:
            if room_id == OTHER:
                raise HomeserverError("HTTP 403 M_FORBIDDEN: not in room")
            return await super().joined_members(room_id)

    k = Kit(store, Failing(), PolicyListsConfig())
    await k.lists.watch(LIST, by=MOD)
    await k.send(rule_event(GLOB, key="g", n=1))
    [failed, fine] = await k.lists.check_members([OTHER, ROOM])
    assert failed.error is not None and "cannot list its members" in failed.describe()
    assert fine.error is None
    assert any(e.outcome == "failed" and OTHER in e.message for e in await store.audit_log(category="policylist"))


# --- asking for members once, not once per rule ----------------------------------------------


def member_reads(k: Kit, room: str) -> int:
    return sum(1 for c in k.hs.calls if c[:2] == ("joined_members", room))


async def test_a_list_of_many_glob_and_hashed_rules_reads_each_rooms_members_once(store: Store) -> None:
    k = Kit(store, CountingHomeserver(), PolicyListsConfig())
    k.hs.state[LIST] = [rule_event(f"@wave{n}*:evil.org", key=f"g{n}", n=n) for n in range(30)]
    k.hs.state[LIST] += [rule_event(None, key=f"h{n}", n=100 + n, hashes={"sha256": entity_hash(f"@x{n}:evil.org")})
                         for n in range(30)]
    await k.lists.watch(LIST, by=MOD)
    assert len(k.lists.index) == 60
    assert (member_reads(k, ROOM), member_reads(k, OTHER)) == (1, 1)  # not 60 each
    assert member_reads(k, MANAGEMENT) == 0  # nobody named: nobody to spare


async def test_a_join_processed_after_the_members_were_read_is_seen_by_the_next_rule(store: Store) -> None:
    k = await kit_with(store)
    await k.send(rule_event("@wave*:evil.org", key="a", n=1))  # reads ROOM's members
    k.hs.members[ROOM].add("@bob:evil.org")
    join = {"type": "m.room.member", "state_key": "@bob:evil.org", "sender": "@bob:evil.org",
            "content": {"membership": "join"}, "room_id": ROOM, "event_id": "$bobjoin"}
    await k.deliver(join)  # no rule names bob yet
    assert k.hs.bans() == set()
    await k.send(rule_event("@bob*:evil.org", key="b", n=2))
    assert (ROOM, "@bob:evil.org") in k.hs.bans()


async def test_members_are_read_again_after_a_while(store: Store) -> None:
    now = [0.0]
    k = Kit(store, CountingHomeserver(), PolicyListsConfig(), clock=lambda: now[0])
    await k.lists.watch(LIST, by=MOD)
    await k.send(rule_event("@a*:evil.org", key="a", n=1))
    await k.send(rule_event("@b*:evil.org", key="b", n=2))
    assert member_reads(k, ROOM) == 1
    now[0] = MEMBERS_TTL
    await k.send(rule_event("@c*:evil.org", key="c", n=3))
    assert member_reads(k, ROOM) == 2


class CountingHomeserver(PolicyHomeserver):
    async def joined_members(self, room_id: str) -> set[str]:
        await self._record("joined_members", room_id)
        return await super().joined_members(room_id)

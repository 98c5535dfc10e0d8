"""Policy lists' rule lifecycle: a rule arrives, bans, changes, goes and unbans; joins are judged;
server rules and media takedowns; what the intake keeps.

Real: the storage (SQLite, migrated), the executor, the rule service and enforcer. Fake and
recording: the homeserver (tests/action_kit.py), with rooms' members and state set by the test.
"""

from __future__ import annotations

import json

import pytest

from bot.act.executor import Executor
from bot.configmodel import PolicyListsConfig, PolicyPublishConfig
from bot.metrics import Metrics
from bot.model import MediaRef
from bot.policylists.publish import Publisher
from bot.policylists.rules import entity_hash, parse_rule
from bot.record.moderation import Incident
from bot.record.store import Store, StoredEvent

from action_kit import BOT, MANAGEMENT, OTHER, ROOM
from policylist_kit import BYSTANDER, LIST, MOD, SPAMMER, SPAMMER2, Kit, PolicyHomeserver, removal, rule_event


@pytest.fixture
async def kit(store: Store) -> Kit:
    k = Kit(store, PolicyHomeserver(), PolicyListsConfig())
    await k.lists.watch(LIST, by=MOD)
    return k


async def test_watching_a_room_reads_its_rules_and_bans_everywhere_including_non_members(store: Store) -> None:
    k = Kit(store, PolicyHomeserver(), PolicyListsConfig())
    k.hs.state[LIST] = [rule_event(SPAMMER, key="r1", n=1), rule_event("@elsewhere:evil.org", key="r2", n=2)]
    room_id, rules = await k.lists.watch(LIST, by=MOD)
    assert (room_id, rules) == (LIST, 2)
    # A literal entity is banned pre-emptively in every protected room, member or not.
    assert k.hs.bans() == {(r, u) for r in (ROOM, OTHER) for u in (SPAMMER, "@elsewhere:evil.org")}
    [status] = await k.lists.status()
    assert (status.room_id, status.rules, status.source) == (LIST, 2, "command") and status.last_update is not None
    audit = await store.audit_log(category="policylist")
    assert any(e.outcome == "watched" and LIST in e.message for e in audit)
    assert any(e.outcome == "rule_added" and SPAMMER in e.message for e in audit)


async def test_a_glob_rule_bans_matching_members_of_every_protected_room_and_spares_the_rest(kit: Kit) -> None:
    await kit.send(rule_event("@spammer*:evil.org", key="g", n=1))
    assert kit.hs.bans() == {(r, u) for r in (ROOM, OTHER) for u in (SPAMMER, SPAMMER2)}
    assert all(u != BYSTANDER for _, u in kit.hs.bans())


async def test_a_hashed_rule_bans_the_member_whose_id_it_hashes(kit: Kit) -> None:
    await kit.send(rule_event(None, key="h", n=1, hashes={"sha256": entity_hash(SPAMMER2)}))
    assert kit.hs.bans() == {(ROOM, SPAMMER2), (OTHER, SPAMMER2)}


async def test_removing_a_rule_unbans_what_it_banned_and_only_that(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    await kit.send(removal("r", 1))
    assert kit.hs.unbans() == {(ROOM, SPAMMER), (OTHER, SPAMMER)}
    assert len(kit.lists.index) == 0 and await kit.repo.rules() == []
    outcomes = {e.outcome for e in await kit.store.audit_log(category="policylist")}
    assert {"rule_added", "rule_removed"} <= outcomes


async def test_a_user_banned_by_two_rules_stays_banned_until_both_are_gone(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="literal", n=1))
    await kit.send(rule_event("@spam*:evil.org", key="glob", n=2))
    await kit.send(removal("literal", 1))
    assert (ROOM, SPAMMER) not in kit.hs.unbans()
    await kit.send(removal("glob", 2))
    assert {(ROOM, SPAMMER), (OTHER, SPAMMER)} <= kit.hs.unbans()


async def test_a_changed_rule_unbans_the_old_entity_and_bans_the_new(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    await kit.send(rule_event(SPAMMER2, key="r", n=2))
    assert kit.hs.unbans() == {(ROOM, SPAMMER), (OTHER, SPAMMER)}
    assert {(ROOM, SPAMMER2), (OTHER, SPAMMER2)} <= kit.hs.bans()


async def test_a_rule_whose_reason_changes_keeps_its_bans_and_a_later_removal_lifts_them(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    await kit.send(rule_event(SPAMMER, key="r", n=2, reason="still spam"))
    assert kit.hs.unbans() == set()
    await kit.send(removal("r", 2))
    assert kit.hs.unbans() == {(ROOM, SPAMMER), (OTHER, SPAMMER)}


async def test_a_removal_that_overtakes_the_rule_it_removes_leaves_no_rule(kit: Kit) -> None:
    # Both in one transaction, worked on side by side: the removal happens to finish first.
    add, gone = rule_event(SPAMMER, key="r", n=1), removal("r", 1)
    kit.hs.state[LIST] = [gone]  # what the room holds once both are sent
    await kit.deliver(gone)
    await kit.deliver(add)
    assert kit.hs.bans() == set() and len(kit.lists.index) == 0


async def test_a_replayed_rule_event_does_nothing_again(kit: Kit) -> None:
    raw = rule_event(SPAMMER, key="r", n=1)
    await kit.deliver(raw)
    calls = len(kit.hs.calls)
    await kit.lists.apply(parse_rule(raw), raw)
    assert len(kit.hs.calls) == calls


async def test_a_new_joiner_matching_a_glob_is_banned_at_join_and_others_are_not(kit: Kit) -> None:
    await kit.send(rule_event("@late*:evil.org", key="g", n=1))
    assert kit.hs.bans() == set()
    join = {"type": "m.room.member", "state_key": "@latecomer:evil.org", "sender": "@latecomer:evil.org",
            "content": {"membership": "join"}, "room_id": ROOM, "event_id": "$join1"}
    assert kit.lists.wants(join)
    assert await kit.deliver(join)
    assert kit.hs.bans() == {(ROOM, "@latecomer:evil.org"), (OTHER, "@latecomer:evil.org")}
    innocent = {**join, "state_key": BYSTANDER, "sender": BYSTANDER, "event_id": "$join2"}
    await kit.deliver(innocent)
    assert all(u != BYSTANDER for _, u in kit.hs.bans())


async def test_the_intake_keeps_rule_events_and_joins_to_protected_rooms_only_while_a_user_rule_bans(kit: Kit) -> None:
    join = {"type": "m.room.member", "state_key": SPAMMER, "content": {"membership": "join"}, "room_id": ROOM}
    assert not kit.lists.wants(join)  # no rules yet: joins are not stored
    assert kit.lists.wants(rule_event(SPAMMER, key="r", n=1))
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    assert kit.lists.wants(join)
    assert not kit.lists.wants({**join, "room_id": "!unprotected:example.org"})
    assert not kit.lists.wants({**join, "content": {"membership": "leave"}})
    assert not kit.lists.wants({"type": "m.room.message", "content": {"body": "hi"}, "room_id": ROOM})


async def test_joins_are_kept_before_start_up_knows_the_protected_rooms(kit: Kit) -> None:
    # The intake opens before the protected rooms are joined; a join Synapse delivers then
    # (held back while modbot was down) must not be dropped as "not in a protected room".
    await kit.send(rule_event("@late*:evil.org", key="g", n=1))
    join = {"type": "m.room.member", "state_key": "@latecomer:evil.org", "sender": "@latecomer:evil.org",
            "content": {"membership": "join"}, "room_id": ROOM, "event_id": "$early"}
    kit.rooms_known = False
    kit.protected[:] = []  # not joined yet
    assert kit.lists.wants(join)
    assert kit.lists.wants({**join, "room_id": "!unprotected:example.org"})  # which is which is not known yet
    assert not kit.lists.wants({**join, "content": {"membership": "leave"}})
    kit.protected[:] = [ROOM, OTHER]
    kit.rooms_known = True
    assert not kit.lists.wants({**join, "room_id": "!unprotected:example.org"})
    # Processed once the rooms are known: the kept join to a protected room bans.
    assert await kit.deliver(join)
    assert (ROOM, "@latecomer:evil.org") in kit.hs.bans()


async def test_rules_from_a_room_not_watched_are_ignored(kit: Kit) -> None:
    stray = {**rule_event(SPAMMER, key="r", n=1), "room_id": "!stranger:example.org"}
    assert await kit.deliver(stray)
    assert kit.hs.bans() == set() and len(kit.lists.index) == 0


async def test_the_safety_team_and_the_bot_are_never_banned_by_a_list(kit: Kit) -> None:
    await kit.send(rule_event(MOD, key="m", n=1))
    assert kit.hs.bans() == set()
    kit.hs.members[ROOM].add(BOT)
    await kit.send(rule_event("@*:example.org", key="all", n=2))
    assert kit.hs.bans() == set()
    assert any(e.outcome == "refused" and "modbot itself" in e.message for e in await kit.store.audit_log(category="policylist"))


async def test_a_glob_matching_more_members_than_allowed_is_refused(store: Store) -> None:
    k = Kit(store, PolicyHomeserver(), PolicyListsConfig(max_bans_per_rule=1))
    await k.lists.watch(LIST, by=MOD)
    await k.send(rule_event("@spammer*:evil.org", key="g", n=1))
    assert k.hs.bans() == set()
    assert any("max_bans_per_rule" in e.message for e in await store.audit_log(category="policylist"))


async def test_a_list_is_bounded_new_rules_past_the_bound_are_refused_and_audited(store: Store) -> None:
    k = Kit(store, PolicyHomeserver(), PolicyListsConfig(max_rules_per_list=3))
    k.hs.state[LIST] = [rule_event(f"@flood{i}:evil.org", key=f"f{i}", n=i) for i in range(10)]
    _, rules = await k.lists.watch(LIST, by=MOD)
    assert rules == 3 and len(await k.repo.rules()) == 3
    refused = [e for e in await store.audit_log(category="policylist") if e.outcome == "refused"]
    assert len(refused) == 7 and all("max_rules_per_list" in e.message for e in refused)
    # A rule already kept may still change.
    await k.send(rule_event("@changed:evil.org", key="f0", n=100))
    assert {r.entity for r in await k.repo.rules()} == {"@changed:evil.org", "@flood1:evil.org", "@flood2:evil.org"}


async def test_a_join_with_an_avatar_is_left_to_the_pipeline_after_the_check(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    plain = {"type": "m.room.member", "state_key": BYSTANDER, "sender": BYSTANDER, "content": {"membership": "join"},
             "room_id": ROOM, "event_id": "$plain"}
    assert await kit.deliver(plain) is True
    avatar = {**plain, "event_id": "$avatar", "content": {"membership": "join", "avatar_url": "mxc://example.org/face"}}
    assert await kit.deliver(avatar) is False


async def test_a_malformed_rule_is_audited_and_not_acted_on(kit: Kit) -> None:
    await kit.send(rule_event("x" * 400, key="bad", n=1))
    assert kit.hs.calls == [] and len(kit.lists.index) == 0
    assert any(e.outcome == "refused" for e in await kit.store.audit_log(category="policylist"))


async def test_server_rules_add_acl_entries_only_when_opted_in(store: Store) -> None:
    off = Kit(store, PolicyHomeserver(), PolicyListsConfig())
    await off.lists.watch(LIST, by=MOD)
    await off.send(rule_event("evil.org", key="s", n=1, type="m.policy.rule.server"))
    assert off.hs.calls == []

    on = Kit(store, PolicyHomeserver(), PolicyListsConfig(server_acl=True))
    await on.lists.load()
    on.hs.acl[ROOM] = {"allow": ["*"], "deny": ["old.example"], "allow_ip_literals": False}
    await on.send(rule_event("bad.org", key="s2", n=2, type="m.policy.rule.server"))
    assert on.hs.acl[ROOM] == {"allow": ["*"], "deny": ["old.example", "bad.org"], "allow_ip_literals": False}
    assert on.hs.acl[OTHER]["deny"] == ["bad.org"] and on.hs.acl[OTHER]["allow"] == ["*"]
    await on.send(removal("s2", 2, type="m.policy.rule.server"))
    assert on.hs.acl[ROOM]["deny"] == ["old.example"] and on.hs.acl[OTHER]["deny"] == []


async def test_an_mxc_rule_quarantines_seen_media_and_redacts_its_events_and_later_ones(kit: Kit) -> None:
    mxc = "mxc://example.org/abc"
    ref = MediaRef(mxc, "example.org", "abc", "content.url", "image/png")
    posted = {"type": "m.room.message", "event_id": "$posted", "room_id": ROOM, "sender": SPAMMER,
              "content": {"msgtype": "m.image", "url": mxc, "body": "x"}}
    await kit.store.store_transaction("t-posted", [posted], wanted=lambda e: True)
    await kit.store.link_event_media("$posted", [ref])
    await kit.send(rule_event(None, key="m", n=1, type="m.policy.rule.mxc", recommendation="m.takedown",
                                 reason=None, hashes={"sha256": entity_hash(mxc)}))
    assert ("quarantine", "example.org", "abc") in kit.hs.calls
    assert [c[2] for c in kit.hs.calls if c[0] == "redact"] == ["$posted"]
    # A later post of the same media is redacted on arrival, before the pipeline would fetch it.
    again = {**posted, "event_id": "$again"}
    result = await kit.store.store_transaction("t-again", [again], wanted=lambda e: True)
    assert await kit.lists.handle(result.queued[0]) is True
    assert [c[2] for c in kit.hs.calls if c[0] == "redact"] == ["$posted", "$again"]
    other = {**posted, "event_id": "$other", "content": {"msgtype": "m.image", "url": "mxc://example.org/fine"}}
    result = await kit.store.store_transaction("t-other", [other], wanted=lambda e: True)
    assert await kit.lists.handle(result.queued[0]) is False  # not the lists': the pipeline takes it


async def test_a_sync_removes_rules_gone_while_modbot_was_away(kit: Kit) -> None:
    kit.hs.state[LIST] = [rule_event(SPAMMER, key="r", n=1)]
    await kit.lists.sync(LIST)
    assert (ROOM, SPAMMER) in kit.hs.bans()
    # A fresh start: the rules come back from the database, the state no longer has the rule.
    again = Kit(kit.store, kit.hs, PolicyListsConfig())
    await again.lists.load()
    assert len(again.lists.index) == 1
    kit.hs.state[LIST] = []
    await again.lists.sync(LIST)
    assert (ROOM, SPAMMER) in kit.hs.unbans() and len(again.lists.index) == 0


async def test_after_a_restart_the_stored_rules_still_keep_a_user_banned_by_two(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="a", n=1))
    await kit.send(rule_event("@spam*:evil.org", key="b", n=2))
    again = Kit(kit.store, kit.hs, PolicyListsConfig())
    await again.lists.load()
    await again.send(removal("a", 1))
    assert kit.hs.unbans() == set()
    await again.send(removal("b", 2))
    assert (ROOM, SPAMMER) in kit.hs.unbans()


async def test_incidents_are_published_as_rules_only_when_opted_in(store: Store) -> None:
    hs = PolicyHomeserver()
    executor = Executor(hs, store, Metrics(), protected_rooms=lambda: [ROOM],  # type: ignore[arg-type]
                        management_room=lambda: MANAGEMENT)
    record = {"reported_user": SPAMMER, "room_id": ROOM, "incident_type": "csam-test",
              "media": [{"mxc": "mxc://example.org/abc", "sha256": "ab" * 32}],
              "actions": [{"kind": "ban", "target": SPAMMER, "outcome": "ok"}]}
    incident = Incident(1, "$posted", record, 0.0, "", "")
    off = Publisher(PolicyPublishConfig(room="!ours:example.org"), lambda: executor)
    off.room_id = "!ours:example.org"
    await off.incident_recorded(incident)
    assert hs.calls == []
    on = Publisher(PolicyPublishConfig(room="!ours:example.org", users=True, media=True, reason="spam"), lambda: executor)
    on.room_id = "!ours:example.org"
    await on.incident_recorded(incident)
    await on.incident_recorded(incident)  # once per sender and media, whatever the number of incidents
    published = {(c[2], json.dumps(c[4], sort_keys=True)) for c in hs.calls if c[0] == "state"}
    assert len([c for c in hs.calls if c[0] == "state"]) == 2
    assert published == {
        ("m.policy.rule.user", json.dumps({"entity": SPAMMER, "reason": "spam", "recommendation": "m.ban"}, sort_keys=True)),
        ("m.policy.rule.mxc", json.dumps({"hashes": {"sha256": entity_hash("mxc://example.org/abc")},
                                          "recommendation": "m.takedown"}, sort_keys=True)),
    }
    assert "csam" not in str(hs.calls) and "ab" * 32 not in str(hs.calls)


async def test_a_room_that_cannot_be_read_is_marked_with_why(kit: Kit) -> None:
    del kit.hs.state[LIST]
    await kit.lists.sync(LIST)
    [status] = await kit.lists.status()
    assert status.error and "M_FORBIDDEN" in status.error and "last read failed" in status.describe()


async def test_unwatching_forgets_the_rules_and_keeps_the_bans(kit: Kit) -> None:
    await kit.send(rule_event(SPAMMER, key="r", n=1))
    assert await kit.lists.unwatch(LIST, by=MOD) == LIST
    assert await kit.lists.status() == [] and len(kit.lists.index) == 0 and kit.hs.unbans() == set()
    with pytest.raises(KeyError):
        await kit.lists.unwatch(LIST, by=MOD)


async def test_stored_events_for_the_lists_are_finished_by_the_caller(kit: Kit) -> None:
    # handle() says whether the event was the lists' own; the rule itself is stored durably.
    raw = rule_event(SPAMMER, key="r", n=1)
    assert await kit.deliver(raw)
    stored = await kit.store.load_event("$rule1")
    assert isinstance(stored, StoredEvent) and json.loads(json.dumps(stored.event))["content"]["entity"] == SPAMMER

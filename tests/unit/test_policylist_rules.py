"""Policy rules (MSC2313, MSC4205, MSC4207): reading rule events, glob and hash matching, the
rule index, and the rules modbot publishes. All pure; the events are shaped as Draupnir and
Mjolnir write them."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.configmodel import PolicyPublishConfig
from bot.policylists.index import RuleIndex
from bot.policylists.publish import banned_sender, mxc_rule, user_rule
from bot.policylists.rules import (
    BAN,
    MAX_ENTITY,
    MXC,
    SERVER,
    TAKEDOWN,
    USER,
    PolicyRule,
    Refused,
    Removed,
    acl_entry,
    bans_user,
    entity_hash,
    glob_match,
    parse_rule,
)

LIST = "!list:example.org"


def event(content: object, type: str = "m.policy.rule.user", state_key: str = "rule:1", event_id: str = "$r1") -> dict:
    return {"type": type, "state_key": state_key, "content": content, "room_id": LIST, "event_id": event_id,
            "sender": "@curator:example.org"}


def rule(entity: str | None, kind: str = USER, sha: str | None = None, key: str = "k", rec: str = BAN) -> PolicyRule:
    return PolicyRule(LIST, f"m.policy.rule.{kind}", key, kind, rec, entity, sha, "", f"$ev-{key}")


# --- globs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("@spammer:evil.org", "@spammer:evil.org", True),
        ("@spammer:evil.org", "@spammer:evil.org.uk", False),  # whole string, not a prefix
        ("@spam*:evil.org", "@spammer:evil.org", True),
        ("@spam*:evil.org", "@spam:evil.org", True),
        ("@spam*:evil.org", "@ham:evil.org", False),
        ("@*:evil.org", "@anyone:evil.org", True),
        ("@*:evil.org", "@anyone:good.org", False),
        ("@user?:example.org", "@user1:example.org", True),
        ("@user?:example.org", "@user12:example.org", False),
        ("*", "", True),
        ("?", "", False),
        ("@Spam*:evil.org", "@spam1:evil.org", False),  # user ids are case-sensitive
        ("*.evil.org", "matrix.evil.org", True),
        ("*.evil.org", "evil.org", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
    ],
)
def test_globs_match_whole_entities(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


def _reference(pattern: str, text: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab*?", max_size=12), st.text(alphabet="ab", max_size=14))
def test_the_glob_matcher_agrees_with_a_regular_expression(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) is _reference(pattern, text)


def test_a_hostile_glob_is_matched_in_linear_steps_not_backtracking() -> None:
    # "*a*a*a...*a*b" against "aaaa...": a backtracking matcher tries exponentially many splits;
    # the two-pointer one resumes after the last star only.
    pattern = "*a" * 120 + "*b"
    assert len(pattern) <= MAX_ENTITY
    assert glob_match(pattern, "a" * 5000) is False
    assert glob_match("*" * MAX_ENTITY, "@anyone:example.org") is True


def test_a_glob_longer_than_an_entity_may_be_never_matches() -> None:
    assert glob_match("*" * (MAX_ENTITY + 1), "x") is False


# --- hashes (MSC4205, MSC4207) ---------------------------------------------------------------------------


def test_entity_hashes_are_those_of_the_proposals_examples() -> None:
    assert entity_hash("@yarrgh:example.com") == "VPqwbUV7mMMkOVto3kPwsNXXiALMs7VCKWh3OeqqjGs="  # MSC4205
    assert entity_hash("mxc://example.com/0") == "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM="  # MSC4207


def test_a_hashed_rule_matches_the_entity_it_hashes_and_nothing_else() -> None:
    hashed = rule(None, sha=entity_hash("@yarrgh:example.com"))
    assert hashed.matches("@yarrgh:example.com")
    assert not hashed.matches("@yarrgh:example.org")


# --- reading rule events ----------------------------------------------------------------------------------


def test_a_user_ban_rule_is_read() -> None:
    parsed = parse_rule(event({"entity": "@spam*:evil.org", "recommendation": "m.ban", "reason": "spam"}))
    assert parsed == PolicyRule(LIST, "m.policy.rule.user", "rule:1", USER, BAN, "@spam*:evil.org", None, "spam", "$r1")
    assert isinstance(parsed, PolicyRule) and parsed.is_glob and parsed.bans


def test_mjolnir_legacy_types_and_recommendations_are_read_as_the_stable_ones() -> None:
    parsed = parse_rule(event({"entity": "evil.org", "recommendation": "org.matrix.mjolnir.ban"},
                              type="org.matrix.mjolnir.rule.server"))
    assert isinstance(parsed, PolicyRule) and (parsed.kind, parsed.recommendation) == (SERVER, BAN)
    legacy = parse_rule(event({"entity": "@a:b.c", "recommendation": "m.ban"}, type="m.room.rule.user"))
    assert isinstance(legacy, PolicyRule) and legacy.kind == USER


def test_an_mxc_takedown_rule_is_read_with_its_hash() -> None:
    sha = entity_hash("mxc://example.com/0")
    parsed = parse_rule(event({"hashes": {"sha256": sha}, "recommendation": "m.takedown"}, type="m.policy.rule.mxc"))
    assert isinstance(parsed, PolicyRule)
    assert (parsed.kind, parsed.recommendation, parsed.entity, parsed.sha256) == (MXC, TAKEDOWN, None, sha)
    assert parsed.matches("mxc://example.com/0") and parsed.bans


@pytest.mark.parametrize("content", [{}, {"recommendation": "m.ban"}, {"reason": "gone"}])
def test_content_without_an_entity_removes_the_rule(content: dict) -> None:
    assert parse_rule(event(content)) == Removed(LIST, "m.policy.rule.user", "rule:1")


@pytest.mark.parametrize(
    "content",
    [
        {"entity": "x" * (MAX_ENTITY + 1), "recommendation": "m.ban"},
        {"entity": 12, "recommendation": "m.ban"},
        {"entity": "", "recommendation": "m.ban"},
        {"hashes": {"sha256": "not base64!"}, "recommendation": "m.ban"},
        {"hashes": {"sha256": "AAAA"}, "recommendation": "m.ban"},  # base64, but not 32 bytes
        {"entity": "@a:b.c"},
        {"entity": "@a:b.c", "recommendation": ["m.ban"]},
        "not an object",
    ],
)
def test_malformed_rules_are_refused_with_a_reason(content: object) -> None:
    parsed = parse_rule(event(content))
    assert isinstance(parsed, Refused) and parsed.why


def test_an_overlong_state_key_is_refused_and_other_events_are_not_rules() -> None:
    assert isinstance(parse_rule(event({"entity": "@a:b.c", "recommendation": "m.ban"}, state_key="k" * 300)), Refused)
    assert parse_rule({"type": "m.room.message", "content": {}, "room_id": LIST}) is None
    assert parse_rule({"type": "m.policy.rule.user", "content": {}, "room_id": LIST}) is None  # not state


def test_reasons_are_bounded_and_unknown_recommendations_kept_but_not_acted_on() -> None:
    parsed = parse_rule(event({"entity": "@a:b.c", "recommendation": "org.example.mute", "reason": "r" * 5000}))
    assert isinstance(parsed, PolicyRule) and len(parsed.reason) == 500 and not parsed.bans


# --- what rules ask for ---------------------------------------------------------------------------------


def test_only_user_rules_ban_users() -> None:
    assert bans_user(rule("@spam*:evil.org"), "@spammer:evil.org")
    assert not bans_user(rule("evil.org", kind=SERVER), "@spammer:evil.org")  # server rules are ACL entries
    assert not bans_user(rule("@spam*:evil.org", rec="org.example.mute"), "@spammer:evil.org")


def test_server_rules_never_deny_our_own_server() -> None:
    assert acl_entry(rule("evil.org", kind=SERVER), "example.org") == "evil.org"
    assert acl_entry(rule("*.evil.org", kind=SERVER), "example.org") == "*.evil.org"
    assert acl_entry(rule("*", kind=SERVER), "example.org") is None
    assert acl_entry(rule("example.*", kind=SERVER), "example.org") is None
    assert acl_entry(rule(None, kind=SERVER, sha=entity_hash("evil.org")), "example.org") is None


def test_a_server_rule_denies_a_host_since_acls_ignore_ports() -> None:
    assert acl_entry(rule("evil.org:8448", kind=SERVER), "example.org:8448") == "evil.org"
    assert acl_entry(rule("127.0.0.1", kind=SERVER), "localhost:8448") == "127.0.0.1"
    # Our own host on another port, or our own host named with our port: both deny us.
    assert acl_entry(rule("example.org:9999", kind=SERVER), "example.org:8448") is None
    assert acl_entry(rule("example.org", kind=SERVER), "example.org:8448") is None
    assert acl_entry(rule("*:8448", kind=SERVER), "example.org") is None


# --- the index ---------------------------------------------------------------------------------------------


def test_the_index_finds_literal_glob_and_hashed_rules_and_forgets_removed_ones() -> None:
    literal, glob = rule("@a:evil.org", key="1"), rule("@spam*:evil.org", key="2")
    hashed = rule(None, sha=entity_hash("@b:evil.org"), key="3")
    index = RuleIndex([literal, glob, hashed])
    assert index.bans("@a:evil.org") == [literal]
    assert index.bans("@spam1:evil.org") == [glob]
    assert index.bans("@b:evil.org") == [hashed]
    assert index.bans("@c:evil.org") == []
    assert index.has_user_bans() and not index.has_takedowns()
    for r in (literal, glob, hashed):
        index.remove((r.list_room, r.event_type, r.state_key))
    assert not index.has_user_bans() and index.bans("@a:evil.org") == [] and len(index) == 0


def test_replacing_a_rule_at_its_key_drops_the_old_entity() -> None:
    index = RuleIndex([rule("@old:evil.org")])
    replaced = index.put(rule("@new:evil.org"))
    assert replaced is not None and replaced.entity == "@old:evil.org"
    assert index.bans("@old:evil.org") == [] and len(index.bans("@new:evil.org")) == 1


def test_many_glob_rules_are_matched_against_one_user() -> None:
    rng = random.Random(7)
    rules = [rule(f"@{''.join(rng.choice('abc') for _ in range(5))}*:x.org", key=str(i)) for i in range(2000)]
    index = RuleIndex(rules)
    user = "@abcab1:x.org"
    assert {r.state_key for r in index.bans(user)} == {r.state_key for r in rules if glob_match(r.entity or "", user)}


# --- publishing --------------------------------------------------------------------------------------------


def test_published_rules_are_well_formed_and_say_nothing_of_the_media() -> None:
    key, content = user_rule("@spammer:evil.org", "spam")
    assert content == {"entity": "@spammer:evil.org", "recommendation": "m.ban", "reason": "spam"}
    mkey, mcontent = mxc_rule("mxc://example.com/0")
    assert mcontent == {"hashes": {"sha256": "ZDSM130dcJ578ANfiJxoN5Nle2+c5uEkDuHHduxj6AM="}, "recommendation": "m.takedown"}
    assert "example.com/0" not in mkey and key != mkey and key == user_rule("@spammer:evil.org", "other")[0]
    # What the publisher writes is what the reader reads back.
    back = parse_rule(event(mcontent, type="m.policy.rule.mxc", state_key=mkey))
    assert isinstance(back, PolicyRule) and back.matches("mxc://example.com/0")


def test_only_a_sender_modbot_banned_is_published() -> None:
    banned = {"reported_user": "@s:x", "actions": [{"kind": "ban", "target": "@s:x", "outcome": "ok"}]}
    spared = {"reported_user": "@s:x", "actions": [{"kind": "quarantine", "target": "mxc://x/y", "outcome": "ok"}]}
    failed = {"reported_user": "@s:x", "actions": [{"kind": "ban", "target": "@s:x", "outcome": "failed"}]}
    assert banned_sender(banned) and not banned_sender(spared) and not banned_sender(failed)


@pytest.mark.parametrize("reason", ["CSAM", "child abuse", "matched PDQ hash", "NCMEC list"])
def test_a_published_reason_must_be_neutral(reason: str) -> None:
    with pytest.raises(ValidationError, match="neutral"):
        PolicyPublishConfig(reason=reason)
    assert PolicyPublishConfig(reason="spam").reason == "spam"

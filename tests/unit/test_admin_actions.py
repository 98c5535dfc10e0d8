"""Server-admin policy actions, the pure parts: parsing them in a policy, what a remote
sender gets instead of account actions, and the steps (keys, calls, refusals) each makes."""

from __future__ import annotations

import pytest

from bot.act.admin import admin_steps, ordered
from bot.model import ActionKind, Decision, EventContext, PlannedAction, Verdict, MatchKind
from bot.policy import ConfigError, decide, parse_policy
from bot.senders import RemoteSenders, ServerAcl, for_sender, host_of, server_of

A = PlannedAction
CTX = EventContext("$ev", "!room:home.org", "@bad:home.org", 0)
REMOTE_CTX = EventContext("$ev2", "!room:home.org", "@bad:other.net", 0)
MATCH = [Verdict(classifier="hashlist", label="csam", kind=MatchKind.EXACT, list_name="known")]
LOCAL_OFFENDER = {"rules": [{"name": "local-offender", "actions": [
    "quarantine", "redact", "quarantine_user_media", {"redact_user": "all"}, "suspend", "notify"]}]}
BOT = "@modbot:home.org"


def steps(action: PlannedAction, ctx: EventContext = CTX, rooms: tuple[str, ...] = ("!a:home.org", "!b:home.org"), **d: object):
    return admin_steps(action, ctx, Decision(rule="r", **d), protected_rooms=rooms, management_room="!mgmt:home.org", bot_user_id=BOT)  # type: ignore[arg-type]


@pytest.mark.parametrize(("written", "parsed"), [
    ("suspend", A(ActionKind.SUSPEND)),
    ("deactivate", A(ActionKind.DEACTIVATE, "keep")),
    ({"deactivate": "erase"}, A(ActionKind.DEACTIVATE, "erase")),
    ("quarantine_user_media", A(ActionKind.QUARANTINE_USER_MEDIA)),
    ("redact_user", A(ActionKind.REDACT_USER, "this")),
    ({"redact_user": "protected"}, A(ActionKind.REDACT_USER, "protected")),
    ("takedown_room", A(ActionKind.TAKEDOWN_ROOM, "block")),
    ({"takedown_room": "purge"}, A(ActionKind.TAKEDOWN_ROOM, "purge")),
])
def test_admin_actions_parse_with_their_scopes(written: object, parsed: PlannedAction) -> None:
    policy = parse_policy({"rules": [{"name": "r", "actions": [written]}]})
    assert policy.rules[0].actions == (parsed,)
    assert parse_policy(policy.model_dump(mode="json")).rules == policy.rules  # dumps to what parses again


@pytest.mark.parametrize("written", [{"redact_user": "everywhere"}, {"takedown_room": "delete"}, "server_acl", {"suspend": "x"}])
def test_bad_admin_actions_are_refused(written: object) -> None:
    with pytest.raises(ConfigError):
        parse_policy({"rules": [{"name": "r", "actions": [written]}]})


def test_remote_senders_cannot_be_given_account_actions() -> None:
    with pytest.raises(ConfigError, match="remote sender"):
        parse_policy({"remote_senders": {"actions": ["suspend"]}})


def test_a_local_sender_keeps_the_account_actions() -> None:
    d = decide(MATCH, CTX, parse_policy(LOCAL_OFFENDER), home_server="home.org")
    assert [a.kind for a in d.actions] == [
        ActionKind.QUARANTINE, ActionKind.REDACT, ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER,
        ActionKind.SUSPEND, ActionKind.NOTIFY,
    ]
    assert d.remote_server is None and d.replaced == ()


def test_a_remote_sender_is_banned_everywhere_instead() -> None:
    d = decide(MATCH, REMOTE_CTX, parse_policy(LOCAL_OFFENDER), home_server="home.org")
    assert d.actions == (A(ActionKind.QUARANTINE), A(ActionKind.REDACT), A(ActionKind.NOTIFY), A(ActionKind.BAN, "all"))
    assert d.remote_server == "other.net"
    assert {a.kind for a in d.replaced} == {ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER, ActionKind.SUSPEND}


def test_local_servers_say_who_is_local() -> None:
    policy = parse_policy({**LOCAL_OFFENDER, "local_servers": ["other.net"]})
    assert decide(MATCH, REMOTE_CTX, policy, home_server="home.org").remote_server is None
    assert decide(MATCH, CTX, policy, home_server="home.org").remote_server == "home.org"


def test_without_a_home_server_nobody_is_taken_for_remote() -> None:
    assert decide(MATCH, REMOTE_CTX, parse_policy(LOCAL_OFFENDER)).remote_server is None


def test_the_wider_ban_wins_and_the_server_acl_is_opt_in() -> None:
    remote = RemoteSenders(actions=(A(ActionKind.BAN, "all"),), server_acl=ServerAcl(after=3, within=86400))
    result = for_sender((A(ActionKind.BAN, "room"), A(ActionKind.SUSPEND)), "@x:other.net", ["home.org"], remote)
    assert result.actions == (A(ActionKind.BAN, "all"), A(ActionKind.SERVER_ACL))
    assert result.server_acl_after == (3, 86400)
    plain = for_sender((A(ActionKind.SUSPEND),), "@x:other.net", ["home.org"], RemoteSenders())
    assert ActionKind.SERVER_ACL not in {a.kind for a in plain.actions}


def test_a_rule_without_account_actions_is_the_same_for_remote_senders() -> None:
    actions = (A(ActionKind.QUARANTINE), A(ActionKind.BAN, "room"))
    assert for_sender(actions, "@x:other.net", ["home.org"], RemoteSenders()).actions == actions


def test_an_exempt_sender_is_spared_the_account_actions() -> None:
    policy = parse_policy({**LOCAL_OFFENDER, "exempt": {"users": ["@bad:home.org"]}})
    d = decide(MATCH, CTX, policy, home_server="home.org")
    assert {a.kind for a in d.actions} == {ActionKind.QUARANTINE, ActionKind.REDACT, ActionKind.NOTIFY}
    assert {a.kind for a in d.spared} == {ActionKind.QUARANTINE_USER_MEDIA, ActionKind.REDACT_USER, ActionKind.SUSPEND}


def test_server_of() -> None:
    assert server_of("@a:example.org:8448") == "example.org:8448"
    assert server_of("@nocolon") == ""


@pytest.mark.parametrize(("server", "host"), [
    ("example.org", "example.org"), ("example.org:8448", "example.org"), ("127.0.0.1:8448", "127.0.0.1"),
    ("[::1]:8448", "[::1]"), ("[::1]", "[::1]"), ("", ""),
])
def test_host_of_drops_the_port(server: str, host: str) -> None:
    assert host_of(server) == host


def test_account_actions_end_the_account_last() -> None:
    mixed = [A(ActionKind.NOTIFY), A(ActionKind.SUSPEND), A(ActionKind.BAN), A(ActionKind.REDACT_USER), A(ActionKind.QUARANTINE)]
    assert [a.kind for a in ordered(mixed)] == [
        ActionKind.QUARANTINE, ActionKind.REDACT_USER, ActionKind.BAN, ActionKind.SUSPEND, ActionKind.NOTIFY,
    ]


def test_steps_have_one_key_per_action() -> None:
    (suspend,) = steps(A(ActionKind.SUSPEND))
    assert (suspend.key, suspend.operation.op, suspend.operation.args) == (  # type: ignore[union-attr]
        "suspend:@bad:home.org:$ev", "suspend", {"user_id": "@bad:home.org", "suspend": "true"})
    (deactivate,) = steps(A(ActionKind.DEACTIVATE, "erase"))
    assert deactivate.key == "deactivate:@bad:home.org" and deactivate.operation.args["erase"] == "true"  # type: ignore[union-attr]
    (block,) = steps(A(ActionKind.TAKEDOWN_ROOM, "block"))
    assert block.operation.op == "block_room" and block.room_id == "!room:home.org"  # type: ignore[union-attr]
    (purge,) = steps(A(ActionKind.TAKEDOWN_ROOM, "purge"))
    assert purge.operation.op == "purge_room" and purge.key == "purge_room:!room:home.org"  # type: ignore[union-attr]


@pytest.mark.parametrize(("scope", "rooms"), [("this", "!room:home.org"), ("protected", "!a:home.org\n!b:home.org"), ("all", "")])
def test_redact_user_names_its_rooms(scope: str, rooms: str) -> None:
    (step,) = steps(A(ActionKind.REDACT_USER, scope))
    assert step.skip is None and step.operation.args["rooms"] == rooms and step.operation.args["scope"] == scope  # type: ignore[union-attr]


def test_redact_user_in_protected_rooms_with_none_is_refused_never_sent_empty() -> None:
    (step,) = steps(A(ActionKind.REDACT_USER, "protected"), rooms=())
    assert step.operation is None and step.skip == "no protected room to redact in"


def test_never_the_bot_the_management_room_or_its_own_server() -> None:
    bot_ctx = EventContext("$e", "!room:home.org", BOT, 0)
    assert all(s.skip for k in (ActionKind.SUSPEND, ActionKind.DEACTIVATE) for s in steps(A(k), bot_ctx))
    mgmt = EventContext("$e", "!mgmt:home.org", "@bad:home.org", 0)
    assert steps(A(ActionKind.TAKEDOWN_ROOM, "purge"), mgmt)[0].skip == "never the management room"
    assert steps(A(ActionKind.SERVER_ACL))[0].skip == "never denies the bot's own server"


def test_the_server_acl_denies_the_host_and_never_one_the_bot_shares() -> None:
    # Synapse checks an ACL against the server's host, port ignored (measured with two
    # servers in tests/e2e/test_federation.py): an entry with a port would deny nothing.
    with_port = EventContext("$ev3", "!room:home.org", "@bad:127.0.0.1:8448", 0)
    assert [s.operation.args["entry"] for s in steps(A(ActionKind.SERVER_ACL), with_port)] == ["127.0.0.1"] * 2  # type: ignore[union-attr]
    # Another server on the bot's own host: denying it would deny the bot's server too.
    neighbour = EventContext("$ev4", "!room:home.org", "@bad:home.org:8449", 0)
    (step,) = steps(A(ActionKind.SERVER_ACL), neighbour)
    assert step.operation is None and step.skip == "never denies the bot's own server"


def test_server_acl_is_one_step_per_protected_room() -> None:
    acl = steps(A(ActionKind.SERVER_ACL), REMOTE_CTX)
    assert [(s.key, s.operation.args) for s in acl] == [  # type: ignore[union-attr]
        ("server_acl:!a:home.org:other.net", {"room_id": "!a:home.org", "change": "deny", "entry": "other.net"}),
        ("server_acl:!b:home.org:other.net", {"room_id": "!b:home.org", "change": "deny", "entry": "other.net"}),
    ]

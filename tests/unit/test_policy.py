"""The policy: which rule fires for which verdicts, who is exempt, and how bad YAML is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.model import (
    CREATOR_POWER, ActionKind, Classification, Decision, EventContext, FailureMode, MatchKind, PlannedAction, Verdict,
)
from bot.policy import DEFAULT_POLICY, Policy, decide, describe, load_policy_file, outcome, parse_policy
from bot.yamlload import ConfigError, parse_yaml

ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"

EXACT_CSAM = Verdict("hashlist", "csam", MatchKind.EXACT, list_name="csam", hash_type="sha256", distance=0)
NEAR_CSAM_10 = Verdict("hashlist", "csam", MatchKind.NEAR, list_name="csam", hash_type="pdq", distance=10)
NEAR_CSAM_40 = Verdict("hashlist", "csam", MatchKind.NEAR, list_name="csam", hash_type="pdq", distance=40)
NEAR_NO_DISTANCE = Verdict("remote", "csam", MatchKind.NEAR)
EXACT_SPAM = Verdict("hashlist", "spam", MatchKind.EXACT, list_name="spam-list", hash_type="md5", distance=0)
REMOTE_CSAM = Verdict("remote", "csam", MatchKind.EXACT)

QUARANTINE = PlannedAction(ActionKind.QUARANTINE)
REDACT = PlannedAction(ActionKind.REDACT)
BAN_ROOM = PlannedAction(ActionKind.BAN, "room")
BAN_ALL = PlannedAction(ActionKind.BAN, "all")
NOTIFY = PlannedAction(ActionKind.NOTIFY)


def ctx(sender: str = "@spammer:evil.org", power: int = 0, room: str = ROOM) -> EventContext:
    return EventContext(event_id="$event", room_id=room, sender=sender, sender_power=power)


def policy(text: str) -> Policy:
    doc = parse_yaml(textwrap.dedent(text), "policy.yaml")
    return parse_policy(doc.data, source=doc.source, lines=doc.lines)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        policy(text)
    return caught.value.messages


# --- matching: each field of `match`, one rule with a single notify action ---------------

MATCH_CASES = [
    # (match mapping, verdict, fires?)
    ("{}", EXACT_SPAM, True),
    ("{classifier: hashlist}", EXACT_CSAM, True),
    ("{classifier: hashlist}", REMOTE_CSAM, False),
    ("{classifier: [remote, hashlist]}", REMOTE_CSAM, True),
    ("{lists: [csam]}", EXACT_CSAM, True),
    ("{lists: [csam]}", EXACT_SPAM, False),
    ("{lists: csam}", EXACT_CSAM, True),
    ("{lists: [csam]}", REMOTE_CSAM, False),  # no list at all
    ("{labels: [csam]}", REMOTE_CSAM, True),
    ("{labels: [csam, other]}", EXACT_SPAM, False),
    ("{kind: exact}", EXACT_CSAM, True),
    ("{kind: exact}", NEAR_CSAM_10, False),
    ("{kind: [exact, near]}", NEAR_CSAM_10, True),
    ("{max_distance: 31}", NEAR_CSAM_10, True),
    ("{max_distance: 31}", NEAR_CSAM_40, False),
    ("{max_distance: 40}", NEAR_CSAM_40, True),
    ("{max_distance: 0}", EXACT_CSAM, True),  # the bound is about near matches only
    ("{max_distance: 31}", NEAR_NO_DISTANCE, False),  # an unknown distance satisfies no bound
    ("{lists: [csam], kind: near, max_distance: 31}", NEAR_CSAM_10, True),
    ("{lists: [csam], kind: near, max_distance: 31}", EXACT_CSAM, False),
]


@pytest.mark.parametrize(("match", "verdict", "fires"), MATCH_CASES)
def test_a_rule_fires_when_every_given_match_field_matches(match: str, verdict: Verdict, fires: bool) -> None:
    p = policy(f"rules: [{{name: r, match: {match}, actions: [notify]}}]")
    decision = decide([verdict], ctx(), p)
    assert decision.rule == ("r" if fires else None)
    assert decision.actions == ((NOTIFY,) if fires else ())


# --- rule order ---------------------------------------------------------------------------

ORDERED = """
    rules:
      - name: close-csam
        match: {labels: [csam], max_distance: 31}
        actions: [quarantine, redact, {ban: all}, notify]
      - name: any-csam
        match: {labels: [csam]}
        actions: [quarantine, notify]
      - name: anything
        actions: [notify]
"""


@pytest.mark.parametrize(
    ("verdicts", "rule", "actions", "matching"),
    [
        ([EXACT_CSAM], "close-csam", (QUARANTINE, REDACT, BAN_ALL, NOTIFY), (EXACT_CSAM,)),
        ([NEAR_CSAM_40], "any-csam", (QUARANTINE, NOTIFY), (NEAR_CSAM_40,)),
        ([EXACT_SPAM], "anything", (NOTIFY,), (EXACT_SPAM,)),
        # The first rule matching ANY verdict wins; the decision carries the verdicts it matched.
        ([EXACT_SPAM, NEAR_CSAM_40, NEAR_CSAM_10], "close-csam", (QUARANTINE, REDACT, BAN_ALL, NOTIFY), (NEAR_CSAM_10,)),
        ([NEAR_CSAM_40, EXACT_SPAM], "any-csam", (QUARANTINE, NOTIFY), (NEAR_CSAM_40,)),
    ],
)
def test_the_first_rule_matching_any_verdict_wins(
    verdicts: list[Verdict], rule: str, actions: tuple[PlannedAction, ...], matching: tuple[Verdict, ...]
) -> None:
    assert decide(verdicts, ctx(), policy(ORDERED)) == Decision(rule=rule, actions=actions, verdicts=matching)


def test_no_verdicts_or_no_matching_rule_decides_nothing() -> None:
    p = policy("rules: [{name: csam-only, match: {labels: [csam]}, actions: [notify]}]")
    assert decide([], ctx(), p) == Decision(rule=None)
    assert decide([EXACT_SPAM], ctx(), p) == Decision(rule=None)
    assert not decide([EXACT_SPAM], ctx(), p).acts


def test_ban_defaults_to_the_events_room() -> None:
    p = policy("rules: [{name: r, actions: [redact, {ban: room}]}, {name: s, actions: [ban]}]")
    assert p.rules[0].actions == (REDACT, BAN_ROOM)
    assert p.rules[1].actions == (BAN_ROOM,)


# --- exemptions ---------------------------------------------------------------------------

EXEMPTING = """
    exempt: {users: ["@trusted:example.org"], power_level: 50}
    rules: [{name: csam, match: {labels: csam}, actions: [quarantine, ban]}]
"""
CREATOR_REASON = "a creator of the room (unlimited power in room version 12; exempt.power_level is 50)"


@pytest.mark.parametrize(
    ("sender", "power", "reason"),
    [
        ("@trusted:example.org", 0, "listed in exempt.users"),
        ("@mod:example.org", 50, "power level 50 >= exempt.power_level 50"),
        ("@admin:example.org", 100, "power level 100 >= exempt.power_level 50"),
        ("@creator:example.org", CREATOR_POWER, CREATOR_REASON),
        ("@someone:example.org", 49, None),
    ],
)
def test_exempt_senders_are_spared_the_ban_but_their_media_is_quarantined_and_notified(
    sender: str, power: int, reason: str | None
) -> None:
    decision = decide([EXACT_CSAM], ctx(sender, power), policy(EXEMPTING))
    assert decision.rule == "csam"
    assert decision.exempt_reason == reason
    assert decision.verdicts == (EXACT_CSAM,)
    # The rule has no notify: an exempt sender's match gets one all the same.
    assert decision.actions == ((QUARANTINE, NOTIFY) if reason else (QUARANTINE, BAN_ROOM))
    assert decision.spared == ((BAN_ROOM,) if reason else ())
    assert decision.acts


@pytest.mark.parametrize(
    ("actions", "kept", "spared"),
    [
        ("[quarantine, redact, {ban: all}, notify]", (QUARANTINE, REDACT, NOTIFY), (BAN_ALL,)),
        ("[notify, ban]", (NOTIFY,), (BAN_ROOM,)),
        ("[ban]", (NOTIFY,), (BAN_ROOM,)),
        ("[redact]", (REDACT, NOTIFY), ()),
        ("[review, ban, notify]", (PlannedAction(ActionKind.REVIEW, "hold"), NOTIFY), (BAN_ROOM,)),
    ],
)
def test_an_exemption_drops_only_the_actions_against_the_person(
    actions: str, kept: tuple[PlannedAction, ...], spared: tuple[PlannedAction, ...]
) -> None:
    decision = decide([EXACT_CSAM], ctx(power=100), policy(f"rules: [{{name: r, actions: {actions}}}]"))
    assert (decision.actions, decision.spared) == (kept, spared)
    assert decision.exempt_reason == "power level 100 >= exempt.power_level 100"


def test_a_room_creator_is_exempt_under_the_default_policy_and_its_media_still_removed() -> None:
    decision = decide([EXACT_CSAM], ctx("@creator:example.org", CREATOR_POWER), DEFAULT_POLICY)
    assert decision.exempt_reason == "a creator of the room (unlimited power in room version 12; exempt.power_level is 100)"
    assert decision.actions == (QUARANTINE, REDACT, NOTIFY) and decision.spared == (BAN_ROOM,)


def test_an_exempt_sender_whose_media_matches_no_rule_gets_no_decision() -> None:
    assert decide([EXACT_SPAM], ctx("@trusted:example.org"), policy(EXEMPTING)) == Decision(rule=None)


def test_power_level_null_exempts_nobody_by_power() -> None:
    p = policy("exempt: {power_level: null}\nrules: [{name: r, actions: [notify]}]")
    assert decide([EXACT_CSAM], ctx(power=100), p).acts


# --- per-room overrides -------------------------------------------------------------------

OVERRIDDEN = """
    dry_run: false
    exempt: {power_level: 100}
    rules: [{name: global, actions: [quarantine, redact, ban, notify]}]
    rooms:
      "!room:example.org":
        dry_run: true
        exempt: {users: ["@bot:example.org"], power_level: 50}
        rules: [{name: room-only, actions: [notify]}]
      "!dryrun:example.org":
        dry_run: true
"""


@pytest.mark.parametrize(
    ("room", "sender", "power", "expected"),
    [
        # A room without overrides uses the global settings.
        (OTHER_ROOM, "@u:x.org", 0, Decision("global", (QUARANTINE, REDACT, BAN_ROOM, NOTIFY), verdicts=(EXACT_CSAM,))),
        (OTHER_ROOM, "@u:x.org", 50, Decision("global", (QUARANTINE, REDACT, BAN_ROOM, NOTIFY), verdicts=(EXACT_CSAM,))),
        # Every key a room gives replaces the global one.
        (ROOM, "@u:x.org", 0, Decision("room-only", (NOTIFY,), dry_run=True, verdicts=(EXACT_CSAM,))),
        (ROOM, "@u:x.org", 50, Decision("room-only", (NOTIFY,), dry_run=True, exempt_reason="power level 50 >= exempt.power_level 50", verdicts=(EXACT_CSAM,))),
        (ROOM, "@bot:example.org", 0, Decision("room-only", (NOTIFY,), dry_run=True, exempt_reason="listed in exempt.users", verdicts=(EXACT_CSAM,))),
        # Keys a room leaves out keep their global value.
        ("!dryrun:example.org", "@u:x.org", 0, Decision("global", (QUARANTINE, REDACT, BAN_ROOM, NOTIFY), dry_run=True, verdicts=(EXACT_CSAM,))),
        ("!dryrun:example.org", "@u:x.org", 100, Decision("global", (QUARANTINE, REDACT, NOTIFY), dry_run=True, exempt_reason="power level 100 >= exempt.power_level 100", spared=(BAN_ROOM,), verdicts=(EXACT_CSAM,))),
    ],
)
def test_room_overrides_replace_global_settings(room: str, sender: str, power: int, expected: Decision) -> None:
    assert decide([EXACT_CSAM], ctx(sender, power, room), policy(OVERRIDDEN)) == expected


def test_room_overrides_accept_room_version_12_ids() -> None:
    p = policy('rooms: {"!opaqueV12roomId": {dry_run: true}}')
    assert p.for_room("!opaqueV12roomId").dry_run is True


def test_global_dry_run_is_carried_by_the_decision() -> None:
    decision = decide([EXACT_CSAM], ctx(), policy("dry_run: true\nrules: [{name: r, actions: [redact, notify]}]"))
    assert decision.dry_run and decision.actions == (REDACT, NOTIFY)


# --- the default policy -------------------------------------------------------------------


@pytest.mark.parametrize("document", [None, {}])
def test_no_policy_or_a_policy_without_rules_gets_the_default_rule(document: object) -> None:
    p = parse_policy(document)
    assert p.rules == DEFAULT_POLICY.rules
    decision = decide([NEAR_CSAM_40], ctx(), p)
    assert decision == Decision("known-media", (QUARANTINE, REDACT, BAN_ROOM, NOTIFY), verdicts=(NEAR_CSAM_40,))
    assert decide([EXACT_SPAM], ctx(power=100), p).exempt_reason == "power level 100 >= exempt.power_level 100"


def test_an_empty_rule_list_matches_nothing() -> None:
    assert decide([EXACT_CSAM], ctx(), policy("rules: []")) == Decision(rule=None)


# --- errors name the file, the line and what is wrong ------------------------------------

ERROR_CASES = [
    (
        "unknown action",
        """\
        rules:
          - name: r
            actions:
              - quarantine
              - bann
        """,
        ["policy.yaml:5: rules[0].actions[1]: unknown action 'bann' (expected one of quarantine, redact, ban, notify, review, suspend, deactivate, quarantine_user_media, redact_user, takedown_room)"],
    ),
    (
        "unknown action in a flow list",
        "rules:\n  - name: r\n    actions: [quarantine, bann]\n",
        ["policy.yaml:3: rules[0].actions[1]: unknown action 'bann' (expected one of quarantine, redact, ban, notify, review, suspend, deactivate, quarantine_user_media, redact_user, takedown_room)"],
    ),
    (
        "bad ban scope",
        "rules:\n  - name: r\n    actions: [{ban: everywhere}]\n",
        ["policy.yaml:3: rules[0].actions[0]: unknown ban scope 'everywhere' (expected one of room, all)"],
    ),
    (
        "options on an action that takes none",
        "rules:\n  - name: r\n    actions: [{notify: all}]\n",
        ["policy.yaml:3: rules[0].actions[0]: action 'notify' takes no options"],
    ),
    (
        "an action given twice",
        "rules:\n  - name: r\n    actions:\n      - ban\n      - notify\n      - {ban: all}\n",
        ["policy.yaml:6: rules[0].actions[2]: action 'ban' is given twice"],
    ),
    (
        "empty actions",
        "rules:\n  - name: r\n    actions: []\n",
        ["policy.yaml:3: rules[0].actions: must not be empty"],
    ),
    (
        "missing actions",
        "rules:\n  - name: r\n    match: {}\n",
        ["policy.yaml:2: rules[0]: missing required key 'actions'"],
    ),
    (
        "unknown match kind",
        "rules:\n  - name: r\n    match:\n      kind: [exact, fuzzy]\n    actions: [notify]\n",
        ["policy.yaml:4: rules[0].match.kind[1]: unknown match kind 'fuzzy' (expected one of exact, near)"],
    ),
    (
        "misspelled key",
        "rules:\n  - name: r\n    match:\n      list: [csam]\n    actions: [notify]\n",
        ["policy.yaml:4: rules[0].match.list: unknown key 'list' (did you mean 'lists'?)"],
    ),
    (
        "misspelled top-level key",
        "dryrun: true\n",
        ["policy.yaml:1: dryrun: unknown key 'dryrun' (did you mean 'dry_run'?)"],
    ),
    (
        "wrong type",
        "exempt:\n  power_level: lots\n",
        [
            "policy.yaml:2: exempt.power_level: Input should be a valid integer, "
            "unable to parse string as an integer (got 'lots')"
        ],
    ),
    (
        "a mapping where a list belongs",
        "rules:\n  name: r\n",
        ["policy.yaml:1: rules: expected a list, got a mapping"],
    ),
    (
        "duplicate rule names",
        "rules:\n  - {name: r, actions: [notify]}\n  - name: s\n    actions: [notify]\n  - name: r\n    actions: [ban]\n",
        ["policy.yaml:5: rules[2].name: duplicate rule name 'r'"],
    ),
    (
        "a room key that is not a room ID",
        'rooms:\n  "!ok:example.org": {dry_run: true}\n  "#alias:example.org": {dry_run: true}\n',
        [
            "policy.yaml:3: rooms['#alias:example.org']: "
            "room overrides are keyed by room ID (like !abc:example.org), got '#alias:example.org'"
        ],
    ),
    (
        "an error inside a room override",
        'rooms:\n  "!ok:example.org":\n    rules:\n      - name: r\n        actions: [bann]\n',
        [
            "policy.yaml:5: rooms['!ok:example.org'].rules[0].actions[0]: "
            "unknown action 'bann' (expected one of quarantine, redact, ban, notify, review, suspend, deactivate, quarantine_user_media, redact_user, takedown_room)"
        ],
    ),
    (
        "exempt user that is not a user ID",
        "exempt:\n  users:\n    - '@ok:example.org'\n    - trusted\n",
        ["policy.yaml:4: exempt.users[1]: not a Matrix user ID (like @name:example.org): 'trusted'"],
    ),
    (
        "an empty match list",
        "rules:\n  - name: r\n    match: {labels: []}\n    actions: [notify]\n",
        ["policy.yaml:3: rules[0].match.labels: must not be empty; leave the field out to match anything"],
    ),
    (
        "several problems at once, in file order",
        "dry_run: maybe\nrules:\n  - name: r\n    actions: [bann]\n",
        [
            "policy.yaml:1: dry_run: Input should be a valid boolean, unable to interpret input (got 'maybe')",
            "policy.yaml:4: rules[0].actions[0]: unknown action 'bann' (expected one of quarantine, redact, ban, notify, review, suspend, deactivate, quarantine_user_media, redact_user, takedown_room)",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in ERROR_CASES], ids=[case[0] for case in ERROR_CASES])
def test_errors_name_file_line_and_problem(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules:\n  - name: r\n    actions: [notify\n", "policy.yaml:4: YAML syntax error: "),
        ("dry_run: true\n  exempt: {}\n", "policy.yaml:2: YAML syntax error: mapping values are not allowed here"),
        ("dry_run: true\ndry_run: false\n", "policy.yaml:2: duplicate key 'dry_run' (first given on line 1)"),
    ],
)
def test_yaml_syntax_errors_name_the_line(text: str, expected: str) -> None:
    (message,) = errors(text)
    assert message.startswith(expected)


def test_a_policy_file_is_loaded_and_its_errors_name_it(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - name: r\n    actions: [notify]\n")
    assert load_policy_file(good).rules[0].actions == (NOTIFY,)

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: r\n    actions: [bann]\n")
    with pytest.raises(ConfigError) as caught:
        load_policy_file(bad)
    assert str(caught.value).startswith(f"{bad}:3: rules[0].actions[0]: unknown action 'bann'")


def test_policies_are_frozen() -> None:
    p = policy("rules: [{name: r, actions: [notify]}]")
    with pytest.raises(ValueError):
        p.dry_run = True  # type: ignore[misc]


@pytest.mark.parametrize("text", [ORDERED, EXEMPTING, OVERRIDDEN])
def test_a_dumped_policy_is_a_valid_policy_document(text: str) -> None:
    p = policy(text)
    assert Policy.model_validate(p.model_dump(mode="json")) == p


def test_actions_dump_in_their_yaml_form() -> None:
    assert policy(ORDERED).model_dump(mode="json")["rules"][0]["actions"] == ["quarantine", "redact", {"ban": "all"}, "notify"]


# --- the decision vocabulary: one audit outcome and one line per decision ---------------------

DOWN = Classification("remote", error="timeout")
REVIEW_HOLD = PlannedAction(ActionKind.REVIEW, "hold")
REVIEW_FLAG = PlannedAction(ActionKind.REVIEW, "flag")
RULE = "known-csam"


@pytest.mark.parametrize(
    ("decision", "expected_outcome", "expected_line"),
    [
        pytest.param(Decision(rule=None), "no_rule", "matches found but no policy rule applies", id="no rule"),
        pytest.param(
            Decision(RULE, (QUARANTINE, REDACT, BAN_ROOM, NOTIFY), verdicts=(EXACT_CSAM,)),
            "act", "rule known-csam: quarantine, redact, ban (room), notify", id="act",
        ),
        pytest.param(
            Decision(RULE, (QUARANTINE, BAN_ALL), dry_run=True, verdicts=(EXACT_CSAM,)),
            "dry_run", "rule known-csam [dry run]: quarantine, ban (all)", id="dry run",
        ),
        pytest.param(
            Decision(RULE, (QUARANTINE, NOTIFY), exempt_reason="listed in exempt.users", spared=(BAN_ROOM,), verdicts=(EXACT_CSAM,)),
            "exempt", "rule known-csam: quarantine, notify; the sender is exempt (listed in exempt.users), spared: ban",
            id="exempt",
        ),
        pytest.param(
            Decision(RULE, (QUARANTINE,), exempt_reason="power level 100 >= exempt.power_level 100", verdicts=(EXACT_CSAM,)),
            "exempt", "rule known-csam: quarantine; the sender is exempt (power level 100 >= exempt.power_level 100), spared: nothing",
            id="exempt, nothing spared",
        ),
        pytest.param(
            Decision(RULE, (REVIEW_HOLD, BAN_ROOM), verdicts=(EXACT_CSAM,)),
            "act", "rule known-csam: review (hold), ban (room)", id="review scope hold",
        ),
        pytest.param(
            Decision(RULE, (REVIEW_FLAG,), dry_run=True, verdicts=(EXACT_CSAM,)),
            "dry_run", "rule known-csam [dry run]: review (flag)", id="review scope flag, dry run",
        ),
        pytest.param(
            Decision("on_failure", failures=(DOWN,), on_failure=FailureMode.FAIL_OPEN),
            "fail_open", "rule on_failure: nothing to do, the media is let through; scan failed (fail_open): remote: timeout",
            id="failed scan, fail_open",
        ),
        pytest.param(
            Decision("on_failure", dry_run=True, failures=(DOWN,), on_failure=FailureMode.FAIL_OPEN),
            "fail_open", "rule on_failure: nothing to do, the media is let through; scan failed (fail_open): remote: timeout",
            id="failed scan, fail_open, dry run: nothing would be done",
        ),
        pytest.param(
            Decision("strict", (QUARANTINE, REDACT, NOTIFY), failures=(DOWN,), on_failure=FailureMode.FAIL_CLOSED),
            "fail_closed", "rule strict: quarantine, redact, notify; scan failed (fail_closed): remote: timeout",
            id="failed scan, fail_closed",
        ),
        pytest.param(
            Decision("strict", (QUARANTINE, REDACT, NOTIFY), dry_run=True, failures=(DOWN,), on_failure=FailureMode.FAIL_CLOSED),
            "dry_run", "rule strict [dry run]: quarantine, redact, notify; scan failed (fail_closed): remote: timeout",
            id="failed scan, fail_closed, dry run",
        ),
        pytest.param(
            Decision("careful", (REVIEW_FLAG,), failures=(DOWN,), on_failure=FailureMode.REVIEW),
            "review", "rule careful: review (flag); scan failed (review): remote: timeout", id="failed scan, review",
        ),
        pytest.param(
            Decision(
                RULE, (QUARANTINE, NOTIFY), verdicts=(EXACT_CSAM,),
                failures=(DOWN, Classification("hma", error="HTTP 503")), on_failure=FailureMode.FAIL_CLOSED,
            ),
            "act", "rule known-csam: quarantine, notify; scan failed (fail_closed): remote: timeout; hma: HTTP 503",
            id="a match and failed scans: the match decides the outcome",
        ),
    ],
)
def test_describe_and_outcome(decision: Decision, expected_outcome: str, expected_line: str) -> None:
    assert outcome(decision) == expected_outcome
    assert describe(decision) == expected_line


@pytest.mark.parametrize(
    ("policy_yaml", "failures", "expected_outcome", "expected_line"),
    [
        pytest.param(
            "on_failure: review\n", (DOWN,), "review",
            "rule on_failure: review (flag); scan failed (review): remote: timeout", id="policy on_failure review",
        ),
        pytest.param(
            """
            rules:
              - name: strict-remote
                match: {classifier: remote}
                actions: [notify]
                on_failure: fail_closed
            """,
            (DOWN,), "fail_closed",
            "rule strict-remote: quarantine, redact, notify; scan failed (fail_closed): remote: timeout",
            id="rule on_failure fail_closed",
        ),
        pytest.param(
            """
            rules:
              - name: flagged
                actions: [{review: flag}]
            """,
            (), "act", "rule flagged: review (flag)", id="review rule",
        ),
    ],
)
def test_describe_and_outcome_of_decide(
    policy_yaml: str, failures: tuple[Classification, ...], expected_outcome: str, expected_line: str
) -> None:
    verdicts = [] if failures else [EXACT_CSAM]
    decision = decide(verdicts, ctx(), policy(policy_yaml), failures)
    assert (outcome(decision), describe(decision)) == (expected_outcome, expected_line)

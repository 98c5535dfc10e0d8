"""The policy's answer to a failed scan: on_failure per rule, per room and for the policy."""

from __future__ import annotations

import pytest

from bot.model import (
    ActionKind,
    Classification,
    Decision,
    EventContext,
    FailureMode,
    MatchKind,
    PlannedAction,
    Verdict,
)
from bot.policy import FAILURE_DEFAULT_RULE, ConfigError, decide, parse_policy
from bot.yamlload import parse_yaml

ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"
QUARANTINE, REDACT, NOTIFY = (PlannedAction(k) for k in (ActionKind.QUARANTINE, ActionKind.REDACT, ActionKind.NOTIFY))
HOLD = (QUARANTINE, REDACT, NOTIFY)
FLAG = PlannedAction(ActionKind.REVIEW, "flag")


def ctx(sender: str = "@someone:example.org", power: int = 0, room: str = ROOM) -> EventContext:
    return EventContext(event_id="$e", room_id=room, sender=sender, sender_power=power)


def failed(classifier: str, error: str = "HTTP 500") -> Classification:
    return Classification(classifier, error=error)


def policy(text: str):  # type: ignore[no-untyped-def]
    doc = parse_yaml(text, "policy.yaml")
    return parse_policy(doc.data, source=doc.source, lines=doc.lines)


RULES = """
rules:
  - name: arachnid-csam
    match: {classifier: arachnid, labels: [csam]}
    actions: [quarantine, redact, {ban: all}, notify]
    on_failure: fail_closed
  - name: hma
    match: {classifier: [hma-eu, hma-us]}
    actions: [quarantine, redact, notify]
    on_failure: review
  - name: anything-else
    actions: [notify]
"""


@pytest.mark.parametrize(
    ("classifier", "mode", "rule", "actions"),
    [
        ("arachnid", FailureMode.FAIL_CLOSED, "arachnid-csam", HOLD),
        ("hma-us", FailureMode.REVIEW, "hma", (FLAG,)),
        # No rule with on_failure covers "scanner": the policy default applies.
        ("scanner", FailureMode.FAIL_OPEN, FAILURE_DEFAULT_RULE, ()),
    ],
)
def test_a_failure_is_matched_to_the_first_rule_covering_its_classifier(
    classifier: str, mode: FailureMode, rule: str, actions: tuple[PlannedAction, ...]
) -> None:
    decision = decide([], ctx(), policy(RULES), failures=[failed(classifier)])
    assert decision.rule == rule
    assert decision.on_failure is mode
    assert decision.actions == actions
    assert decision.failures == (failed(classifier),)
    assert decision.verdicts == ()


def test_a_rule_without_a_classifier_covers_every_classifier_and_rules_without_on_failure_are_skipped() -> None:
    p = policy("""
rules:
  - name: notify-only
    actions: [notify]
  - name: everything
    match: {labels: [csam]}
    actions: [quarantine]
    on_failure: fail_closed
""")
    decision = decide([], ctx(), p, failures=[failed("anything")])
    assert (decision.rule, decision.on_failure) == ("everything", FailureMode.FAIL_CLOSED)


def test_the_policy_default_and_a_room_override() -> None:
    p = policy(f"""
on_failure: review
rules:
  - name: any
    actions: [notify]
rooms:
  "{OTHER_ROOM}": {{on_failure: fail_closed}}
""")
    assert decide([], ctx(), p, failures=[failed("x")]).on_failure is FailureMode.REVIEW
    in_other = decide([], ctx(room=OTHER_ROOM), p, failures=[failed("x")])
    assert (in_other.rule, in_other.on_failure, in_other.actions) == (FAILURE_DEFAULT_RULE, FailureMode.FAIL_CLOSED, HOLD)


def test_the_default_is_fail_open_and_no_failure_means_no_failure_mode() -> None:
    p = policy("rules: [{name: any, actions: [notify]}]")
    assert decide([], ctx(), p, failures=[failed("x")]).on_failure is FailureMode.FAIL_OPEN
    assert decide([], ctx(), p, failures=[Classification("x")]) == Decision(rule=None)
    assert decide([], ctx(), p) == Decision(rule=None)


def test_the_strictest_failure_wins() -> None:
    decision = decide([], ctx(), policy(RULES), failures=[failed("scanner"), failed("hma-eu"), failed("arachnid")])
    assert (decision.on_failure, decision.rule) == (FailureMode.FAIL_CLOSED, "arachnid-csam")
    assert [f.classifier for f in decision.failures] == ["scanner", "hma-eu", "arachnid"]
    assert decide([], ctx(), policy(RULES), failures=[failed("scanner"), failed("hma-eu")]).on_failure is FailureMode.REVIEW


def test_a_hold_adds_to_a_rule_that_fired_on_a_verdict() -> None:
    verdict = Verdict("hashlist", "spam", MatchKind.EXACT, list_name="spam")
    decision = decide([verdict], ctx(), policy(RULES), failures=[failed("arachnid")])
    # The verdict's rule fires (anything-else: notify); the hold adds quarantine and redact.
    assert decision.rule == "anything-else"
    assert decision.verdicts == (verdict,)
    assert decision.actions == (NOTIFY, QUARANTINE, REDACT)
    assert decision.holds


def test_an_exempt_senders_media_is_held_too() -> None:
    # An exemption spares people, not media: a hold only quarantines and redacts.
    decision = decide([], ctx(power=100), policy(RULES), failures=[failed("arachnid")])
    assert decision.exempt_reason and decision.acts
    assert decision.actions == (QUARANTINE, REDACT, NOTIFY)
    assert decision.on_failure is FailureMode.FAIL_CLOSED and decision.holds


def test_fail_open_decides_nothing_to_do() -> None:
    decision = decide([], ctx(), policy(RULES), failures=[failed("scanner")])
    assert not decision.acts and not decision.holds
    assert decision.on_failure is FailureMode.FAIL_OPEN


def test_min_score_applies_to_verdicts_that_have_a_score() -> None:
    p = policy("rules: [{name: confident, match: {min_score: 0.9}, actions: [notify]}]")
    low = Verdict("scanner", "csam", MatchKind.NEAR, score=0.5)
    high = Verdict("scanner", "csam", MatchKind.NEAR, score=0.95)
    unscored = Verdict("hashlist", "csam", MatchKind.EXACT)
    assert decide([low], ctx(), p).rule is None
    assert decide([high], ctx(), p).verdicts == (high,)
    assert decide([unscored], ctx(), p).verdicts == (unscored,)


def test_an_unknown_on_failure_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as e:
        policy("rules:\n  - name: a\n    actions: [notify]\n    on_failure: fail_shut\n")
    assert str(e.value) == (
        "policy.yaml:4: rules[0].on_failure: unknown on_failure 'fail_shut'"
        " (expected one of fail_open, fail_closed, review)"
    )

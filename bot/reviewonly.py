"""Verdicts a person must review: checking that no policy rule acts on one by itself. PURE.

Some classifiers' verdicts may only lead to a `review` (a hold or a flag, then a
moderator's decision): Google's Content Safety API, whose terms require human review, and
the score of Hive's CSAM classifier. Each such classifier declares templates of those
verdicts (`Classifier.review_only_verdicts`); a rule whose `match` would take one, before
an earlier rule took every one of them, may have no actions but `review` and `notify`.
The config refuses any other when it is loaded (bot/config.py), so that no automatic
quarantine, redaction or ban can ever follow from such a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.model import ActionKind, Verdict
from bot.policy import Policy, Rule

REVIEW_ACTIONS = frozenset({ActionKind.REVIEW, ActionKind.NOTIFY})
PolicyPath = tuple[str | int, ...]


def review_only_problems(policy: Policy, templates: Sequence[Verdict]) -> list[tuple[PolicyPath, str]]:
    """(path in the policy, message) for each rule that could act on a review-only verdict."""
    rule_sets: list[tuple[PolicyPath, tuple[Rule, ...]]] = [(("rules",), policy.rules)]
    rule_sets += [(("rooms", room, "rules"), p.rules) for room, p in policy.rooms.items() if p.rules is not None]
    problems: list[tuple[PolicyPath, str]] = []
    for path, rules in rule_sets:
        for template in templates:
            for index, rule in enumerate(rules):
                # The template carries the highest score the classifier gives, so a rule
                # with min_score matches it if it matches any such verdict.
                if not rule.match.matches(template):
                    continue
                acting = [a.kind.value for a in rule.actions if a.kind not in REVIEW_ACTIONS]
                if acting:
                    problems.append(((*path, index, "actions"), _message(rule, template, acting)))
                    break
                if rule.match.min_score is None or rule.match.min_score <= 0:
                    break  # every such verdict stops at this review rule
    return problems


def _message(rule: Rule, template: Verdict, acting: list[str]) -> str:
    return (
        f"rule {rule.name!r} would {', '.join(acting)} on a verdict of classifier {template.classifier!r}"
        f" (label {template.label!r}), which may only lead to a review; give that classifier"
        f" a rule of its own before this one, e.g. {{name: {template.classifier}-review,"
        f" match: {{classifier: {template.classifier}}}, actions: [review, notify]}}"
    )

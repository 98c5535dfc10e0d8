"""Verdicts that may only lead to a review (Google's Content Safety API, Hive's classifier
score): the config refuses any policy rule that would act on one without a person."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config
from bot.model import ActionKind, EventContext, MatchKind, Verdict
from bot.policy import decide

BASE = """\
homeserver: {url: "http://127.0.0.1:8008", domain: example.org}
appservice: {as_token: secret-as, hs_token: secret-hs}
classifiers:
  - {name: gcs, type: google_content_safety, settings: {api_key_env: GCS_KEY}}
  - {name: hive, settings: {api_key_env: HIVE_KEY}}
"""
CTX = EventContext(event_id="$e", room_id="!r:example.org", sender="@u:example.org", sender_power=0)


def load(tmp_path: Path, text: str = "") -> object:
    path = tmp_path / "config.yaml"
    path.write_text(BASE + textwrap.dedent(text))
    return load_config(path)


def refusal(tmp_path: Path, text: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.messages


def test_the_default_policy_would_ban_on_a_content_safety_verdict_so_it_is_refused(tmp_path: Path) -> None:
    messages = refusal(tmp_path)
    assert len(messages) == 2  # gcs, and hive's classifier score
    assert "config.yaml:3: classifiers: the default policy: rule 'known-media' would quarantine, redact, ban" in messages[0]
    assert "classifier 'gcs' (label 'csam-suspected'), which may only lead to a review" in messages[0]
    assert "{name: gcs-review, match: {classifier: gcs}, actions: [review, notify]}" in messages[0]
    assert "classifier 'hive' (label 'csam-classifier')" in messages[1]


def test_review_rules_first_make_a_policy_acceptable(tmp_path: Path) -> None:
    config = load(tmp_path, """
        policy:
          rules:
            - {name: hive-known, match: {classifier: hive, labels: [csam, sexual-exploitation]}, actions: [quarantine, redact, {ban: all}, notify]}
            - {name: services-review, match: {classifier: [gcs, hive]}, actions: [{review: hold}, notify]}
            - {name: the-rest, actions: [quarantine, redact, ban, notify]}
    """)
    verdict = Verdict("gcs", "csam-suspected", MatchKind.NEAR, score=1.0)
    decision = decide([verdict], CTX, config.policy)  # type: ignore[attr-defined]
    assert decision.rule == "services-review"
    assert [a.kind for a in decision.actions] == [ActionKind.REVIEW, ActionKind.NOTIFY]


def test_a_review_rule_that_takes_only_high_scores_leaves_the_rest_to_a_banning_rule_and_is_refused(tmp_path: Path) -> None:
    messages = refusal(tmp_path, """
        policy:
          rules:
            - {name: urgent, match: {classifier: [gcs, hive], min_score: 0.75}, actions: [review]}
            - {name: everything, actions: [quarantine, notify]}
    """)
    assert [m.split(": ", 2)[1] for m in messages] == ["policy.rules[1].actions"] * 2
    assert "rule 'everything' would quarantine" in messages[0]


def test_a_rule_for_other_labels_does_not_count_but_a_room_override_does(tmp_path: Path) -> None:
    messages = refusal(tmp_path, """
        policy:
          rules:
            - {name: lists, match: {classifier: hashlist}, actions: [quarantine, redact, ban]}
            - {name: known-hive, match: {labels: [csam]}, actions: [quarantine, redact, ban]}
            - {name: review, actions: [review]}
          rooms:
            "!kids:example.org":
              rules:
                - {name: strict, match: {kind: [near]}, actions: [review, redact]}
    """)
    assert len(messages) == 2
    assert all(":15: policy.rooms['!kids:example.org'].rules[0].actions: rule 'strict' would redact" in m for m in messages)


def test_a_disabled_classifier_is_not_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE.replace("settings: {api_key_env: GCS_KEY}}", "enabled: false, settings: {api_key_env: GCS_KEY}}")
        .replace("settings: {api_key_env: HIVE_KEY}}", "enabled: false, settings: {api_key_env: HIVE_KEY}}")
    )
    assert load_config(path).policy.rules[0].name == "known-media"


def test_a_policy_file_is_checked_too(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("rules:\n  - {name: all, actions: [ban]}\n")
    messages = refusal(tmp_path, "policy_file: policy.yaml\n")
    assert messages[0].startswith(f"{tmp_path / 'policy.yaml'}: rules.0.actions: rule 'all' would ban")

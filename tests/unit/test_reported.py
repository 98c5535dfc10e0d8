"""Users' reports as Synapse lists them: parsed, bounded, flagged (bot/intake/reported.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.intake.reported import CSAM_TAG, MAX_REASON, Report, flagged_first, marks_abuse_imagery, parse_report

# As Synapse 1.163's GET /_synapse/admin/v1/event_reports lists one.
EVENT_REPORT = {
    "id": 2, "received_ts": 1796071002625, "room_id": "!JduC3dpgDp5O3uvPJG7kZzZBvuNK5GZ9mTEhSb3ALCU",
    "event_id": "$0QAKSMfPQ3s6dGY3sbUYVLihjus_JB3dotu4YBJ1Lds", "user_id": "@r2:localhost", "score": -100,
    "reason": "x", "sender": "@p1:localhost", "canonical_alias": None, "name": "protected 1",
}
USER_REPORT = {"id": 7, "received_ts": 1796071002700, "target_user_id": "@spam:localhost", "user_id": "@r2:localhost", "reason": "bot"}


def test_an_event_report() -> None:
    report = parse_report("event", EVENT_REPORT)
    assert report == Report(
        "event", "2", 1796071002625, "@r2:localhost", "x", score=-100, room_id=EVENT_REPORT["room_id"],
        event_id=EVENT_REPORT["event_id"], target="@p1:localhost", flagged=False,
    )
    assert report is not None and Report.from_json(report.as_json()) == report


def test_a_user_report() -> None:
    report = parse_report("user", USER_REPORT)
    assert report is not None and (report.kind, report.report_id, report.target, report.reason) == ("user", "7", "@spam:localhost", "bot")


@pytest.mark.parametrize(("kind", "entry"), [
    ("event", None),
    ("event", []),
    ("event", {**EVENT_REPORT, "id": None}),
    ("event", {**EVENT_REPORT, "id": True}),
    ("event", {**EVENT_REPORT, "user_id": "not-a-user"}),
    ("event", {**EVENT_REPORT, "room_id": "#alias:x"}),
    ("event", {**EVENT_REPORT, "event_id": "$" + "a" * 300}),
    ("event", {**EVENT_REPORT, "event_id": "$has space"}),
    ("user", {**USER_REPORT, "target_user_id": None}),
])
def test_what_is_not_a_report_is_refused(kind: str, entry: Any) -> None:
    assert parse_report(kind, entry) is None


def test_a_missing_sender_or_odd_score_still_makes_a_report() -> None:
    report = parse_report("event", {**EVENT_REPORT, "sender": None, "score": "high", "reason": None})
    assert report is not None and (report.target, report.score, report.reason) == (None, None, "")


def test_a_long_reason_is_cut_and_says_so() -> None:
    report = parse_report("event", {**EVENT_REPORT, "reason": "a" * 70000})
    assert report is not None and len(report.reason) < MAX_REASON + 40 and report.reason.endswith("[cut: 70000 characters]")


@pytest.mark.parametrize(("reason", "phrases", "flagged"), [
    (CSAM_TAG, (), True),
    (f"Reported as {CSAM_TAG.upper()}", (), True),
    ("child abuse imagery", ("Child Abuse",), True),
    ("spam", ("child abuse",), False),
    ("", ("",), False),
])
def test_abuse_imagery_is_flagged(reason: str, phrases: tuple[str, ...], flagged: bool) -> None:
    assert marks_abuse_imagery(reason, phrases) is flagged
    assert parse_report("event", {**EVENT_REPORT, "reason": reason}, phrases).flagged is flagged  # type: ignore[union-attr]


def test_flagged_reports_come_first_then_the_oldest() -> None:
    old = Report("event", "1", 100, "@a:x", "spam")
    new = Report("event", "2", 200, "@a:x", "spam")
    flagged = Report("event", "3", 300, "@a:x", CSAM_TAG, flagged=True)
    assert flagged_first([new, flagged, old]) == [flagged, old, new]

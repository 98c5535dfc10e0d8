"""Incident records and their exports (PURE): what an operator hands over holds identifiers,
times, hashes, matches and actions, and never media."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from bot.act.incidents import CSV_FIELDS, build_record, csv_rows, cybertipline_report, export, iso, summary

# Fake hashes: the right shapes, of no real file.
SHA_A, MD5_A, PDQ_A = "a1" * 32, "a2" * 16, "a3" * 32
SHA_B, MD5_B = "b1" * 32, "b2" * 16
SENT_MS = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
DETECTED, ACTIONED = 1_700_000_001.5, 1_700_000_002.25

MEDIA_A = {"mxc": "mxc://example.org/fileA", "source": "content.url", "mimetype": "image/png", "sha256": SHA_A, "md5": MD5_A, "pdq": PDQ_A, "size": 2048}
# Known only by the homeserver's SHA-256 (the bytes were never fetched): no md5, no pdq.
MEDIA_B = {"mxc": "mxc://example.org/fileB", "source": "content.info.thumbnail_url", "mimetype": "image/jpeg", "sha256": SHA_B, "md5": None, "pdq": None, "size": 512}
MATCH_EXACT = {"classifier": "hashlist", "list": "test-list", "label": "test-label", "kind": "exact", "hash_type": "sha256", "distance": 0, "matched_hash": SHA_A}
MATCH_NEAR = {"classifier": "hashlist", "list": "other-list", "label": "another-label", "kind": "near", "hash_type": "pdq", "distance": 12, "matched_hash": "c3" * 32}
ACTIONS = [
    {"kind": "quarantine", "target": "mxc://example.org/fileA", "room": None, "outcome": "ok", "detail": "quarantined"},
    {"kind": "ban", "target": "@spam:example.org", "room": "!room:example.org", "outcome": "failed", "detail": "M_FORBIDDEN"},
]


def record(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "event_id": "$event:example.org",
        "room_id": "!room:example.org",
        "sender": "@spam:example.org",
        "homeserver": "example.org",
        "sent_ts_ms": SENT_MS,
        "detected_at": DETECTED,
        "actioned_at": ACTIONED,
        "media": [MEDIA_A, MEDIA_B],
        "matches": [MATCH_EXACT, MATCH_NEAR],
        "rule": "known-bad",
        "decided_by": "policy",
        "actions": ACTIONS,
    }
    return build_record(**{**args, **overrides})


# --- the record ------------------------------------------------------------------------------


def test_a_record_holds_identifiers_times_hashes_matches_and_actions() -> None:
    assert record() == {
        "incident_type": "another-label, test-label",
        "event_id": "$event:example.org",
        "room_id": "!room:example.org",
        "reported_user": "@spam:example.org",
        "homeserver": "example.org",
        "sent_at": "2023-11-14T22:13:20.123Z",
        "detected_at": "2023-11-14T22:13:21.500Z",
        "actioned_at": "2023-11-14T22:13:22.250Z",
        "media": [MEDIA_A, MEDIA_B],
        "matches": [MATCH_EXACT, MATCH_NEAR],
        "rule": "known-bad",
        "decided_by": "policy",
        "actions": ACTIONS,
        "retroactive": False,
    }


@pytest.mark.parametrize(
    ("matches", "incident_type"),
    [
        ([], "known media"),
        ([{**MATCH_EXACT, "label": None}], "known media"),
        ([MATCH_EXACT, MATCH_EXACT], "test-label"),
        ([MATCH_NEAR, MATCH_EXACT], "another-label, test-label"),
    ],
)
def test_the_incident_type_names_the_labels_once_each(matches: list[dict[str, Any]], incident_type: str) -> None:
    assert record(matches=matches)["incident_type"] == incident_type


def test_a_record_without_a_send_time_and_a_retroactive_one() -> None:
    r = record(sent_ts_ms=None, retroactive=True, decided_by="@mod:example.org")
    assert r["sent_at"] is None
    assert r["retroactive"] is True
    assert r["decided_by"] == "@mod:example.org"


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (None, None),
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_700_000_000.0, "2023-11-14T22:13:20.000Z"),
        (1_700_000_000.9999, "2023-11-14T22:13:20.999Z"),  # truncated, never rounded into the next second
    ],
)
def test_times_are_utc_iso_with_milliseconds(ts: float | None, text: str | None) -> None:
    assert iso(ts) == text


# --- exports ---------------------------------------------------------------------------------

ROW_HASH_1, ROW_HASH_2 = "d1" * 32, "d2" * 32


def incidents() -> list[tuple[int, dict[str, Any], str]]:
    single = record(
        event_id="$second:example.org", media=[MEDIA_B], matches=[MATCH_NEAR], actions=[], sent_ts_ms=None, retroactive=True
    )
    return [(1, record(), ROW_HASH_1), (2, single, ROW_HASH_2)]


def expected_file(media: dict[str, Any]) -> dict[str, Any]:
    return {
        "original_location": media["mxc"],
        "hashes": {k: media[k] for k in ("sha256", "md5", "pdq") if media[k]},
        "file_size": media["size"],
        "mimetype": media["mimetype"],
        "viewed_by_esp": False,
        "publicly_available": None,
    }


def test_the_json_export_has_the_report_fields_and_only_what_the_records_hold() -> None:
    first, second = json.loads(export(incidents(), "json"))
    assert first == {
        "incident_id": 1,
        "incident_summary": {"incident_type": "another-label, test-label", "incident_date_time": "2023-11-14T22:13:20.123Z"},
        "reported_person": {"esp_user_id": "@spam:example.org"},
        "internet_details": {
            "type": "chat/instant messaging (Matrix)",
            "homeserver": "example.org",
            "room_id": "!room:example.org",
            "event_id": "$event:example.org",
        },
        "uploaded_files": [expected_file(MEDIA_A), expected_file(MEDIA_B)],
        "detection": {
            "detected_at": "2023-11-14T22:13:21.500Z",
            "actioned_at": "2023-11-14T22:13:22.250Z",
            "matches": [MATCH_EXACT, MATCH_NEAR],
            "decided_by": "policy",
            "actions": ACTIONS,
            "retroactive": False,
        },
        "integrity": {"row_hash": ROW_HASH_1},
    }
    # Without a send time the incident's time is when it was detected.
    assert second["incident_summary"]["incident_date_time"] == "2023-11-14T22:13:21.500Z"
    assert second["uploaded_files"] == [{**expected_file(MEDIA_B), "hashes": {"sha256": SHA_B}}]
    assert second["detection"]["retroactive"] is True
    assert second["integrity"] == {"row_hash": ROW_HASH_2}


def test_the_report_is_made_of_the_record_alone() -> None:
    """Every value in a report is one the record (or its row hash) holds, or a fixed label."""
    inc_id, rec, row_hash = incidents()[0]
    report = cybertipline_report(inc_id, rec, row_hash)
    held = set(leaves(rec)) | {inc_id, row_hash, "chat/instant messaging (Matrix)", False, None}
    for value in leaves(report):
        assert value in held, value
        assert not isinstance(value, bytes | bytearray | memoryview)


def test_the_csv_export_has_one_row_per_file() -> None:
    text = export(incidents(), "csv")
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_FIELDS
    rows = list(reader)
    assert [(r["incident_id"], r["mxc"]) for r in rows] == [
        ("1", "mxc://example.org/fileA"),
        ("1", "mxc://example.org/fileB"),
        ("2", "mxc://example.org/fileB"),
    ]
    assert rows[0] == {
        "incident_id": "1",
        "incident_type": "another-label, test-label",
        "incident_time": "2023-11-14T22:13:20.123Z",
        "detected_time": "2023-11-14T22:13:21.500Z",
        "actioned_time": "2023-11-14T22:13:22.250Z",
        "reported_user": "@spam:example.org",
        "homeserver": "example.org",
        "room_id": "!room:example.org",
        "event_id": "$event:example.org",
        "mxc": "mxc://example.org/fileA",
        "file_sha256": SHA_A,
        "file_md5": MD5_A,
        "file_pdq": PDQ_A,
        "file_size": "2048",
        "file_mimetype": "image/png",
        "matched_list": "test-list",
        "matched_label": "test-label",
        "match_kind": "exact",
        "match_distance": "0",
        "decided_by": "policy",
        "actions": "quarantine mxc://example.org/fileA: ok; ban @spam:example.org: failed",
        "retroactive": "False",
        "row_hash": ROW_HASH_1,
    }
    # A file known only by its SHA-256 has empty md5 and pdq cells, not "None".
    assert (rows[1]["file_sha256"], rows[1]["file_md5"], rows[1]["file_pdq"], rows[1]["file_size"]) == (SHA_B, "", "", "512")
    assert (rows[2]["incident_time"], rows[2]["actions"], rows[2]["retroactive"]) == ("", "", "True")
    assert rows[2]["matched_label"] == "another-label" and rows[2]["match_distance"] == "12"


def test_an_incident_without_files_still_has_its_csv_row() -> None:
    [row] = csv_rows([(3, record(media=[]), ROW_HASH_1)])
    assert row["incident_id"] == 3
    assert row["event_id"] == "$event:example.org"
    assert all(row[k] is None for k in ("mxc", "file_sha256", "file_md5", "file_pdq", "file_size", "file_mimetype"))


def test_the_csv_is_made_of_the_record_alone() -> None:
    inc_id, rec, row_hash = incidents()[0]
    held = set(leaves(rec)) | {inc_id, row_hash}
    for row in csv_rows([(inc_id, rec, row_hash)]):
        assert set(row) == set(CSV_FIELDS)
        for field, value in row.items():
            if field != "actions":  # the actions, joined into one cell
                assert value in held, (field, value)


def test_fields_beside_the_hashes_never_reach_an_export() -> None:
    """Whatever else a media entry carries (a caption, a thumbnail) is not exported."""
    smuggled = {**MEDIA_A, "thumbnail": "iVBORw0KGgoAAAANSUhEUg", "body": "holiday.png", "data": [137, 80, 78, 71]}
    rows = [(1, record(media=[smuggled]), ROW_HASH_1)]
    for fmt in ("json", "csv"):
        text = export(rows, fmt)
        for secret in ("iVBORw0KGgo", "holiday.png", "137"):
            assert secret not in text, (fmt, secret)
        assert SHA_A in text and MD5_A in text and PDQ_A in text


def test_exports_of_nothing() -> None:
    assert json.loads(export([], "json")) == []
    assert export([], "csv").splitlines() == [",".join(CSV_FIELDS)]


def test_unicode_and_commas_survive_the_csv() -> None:
    rec = record(sender="@ünï,cödé:example.org", room_id='!room"quoted":example.org')
    [row, _] = list(csv.DictReader(io.StringIO(export([(1, rec, ROW_HASH_1)], "csv"))))
    assert row["reported_user"] == "@ünï,cödé:example.org"
    assert row["room_id"] == '!room"quoted":example.org'


# --- the summary -----------------------------------------------------------------------------


def test_the_summary_names_who_where_when_files_matches_and_actions() -> None:
    assert summary(1, record(retroactive=True, decided_by="@mod:example.org")) == [
        "Incident #1: another-label, test-label",
        "Reported user: @spam:example.org",
        "Room: !room:example.org  Event: $event:example.org",
        "Sent: 2023-11-14T22:13:20.123Z  Detected: 2023-11-14T22:13:21.500Z  Actioned: 2023-11-14T22:13:22.250Z",
        f"File: mxc://example.org/fileA sha256 {SHA_A} md5 {MD5_A} pdq {PDQ_A}",
        f"File: mxc://example.org/fileB sha256 {SHA_B} md5 None pdq None",
        "Match: list test-list, label test-label, exact",
        "Match: list other-list, label another-label, near, distance 12",
        "Decided by: @mod:example.org (retroactive)",
        "Action: quarantine mxc://example.org/fileA: ok",
        "Action: ban @spam:example.org: failed",
    ]


def test_the_summary_of_a_bare_record() -> None:
    lines = summary(2, record(media=[], matches=[], actions=[]))
    assert lines[0] == "Incident #2: known media"
    assert lines[-1] == "Decided by: policy"
    assert not any(line.startswith(("File:", "Match:", "Action:")) for line in lines)


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from leaves(v)
    else:
        yield value

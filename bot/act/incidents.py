"""Incident records: what an operator hands to a lawyer or the authorities. PURE.

An incident is built once a match is confirmed (acted on by policy, or approved by a
moderator). It carries identifiers, times, hashes, the match and every action with its
outcome and who decided it — never the media.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

CSV_FIELDS = (
    "incident_id",
    "incident_type",
    "incident_time",
    "detected_time",
    "actioned_time",
    "reported_user",
    "homeserver",
    "room_id",
    "event_id",
    "mxc",
    "file_sha256",
    "file_md5",
    "file_pdq",
    "file_size",
    "file_mimetype",
    "matched_list",
    "matched_label",
    "match_kind",
    "match_distance",
    "decided_by",
    "actions",
    "retroactive",
    "row_hash",
)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_record(
    *,
    event_id: str,
    room_id: str,
    sender: str,
    homeserver: str,
    sent_ts_ms: int | None,
    detected_at: float,
    actioned_at: float,
    media: Sequence[dict[str, Any]],
    matches: Sequence[dict[str, Any]],
    rule: str | None,
    decided_by: str,
    actions: Sequence[dict[str, Any]],
    retroactive: bool = False,
) -> dict[str, Any]:
    """The incident as stored (and hash-chained). `media` items: mxc and hashes; no bytes."""
    labels = sorted({m.get("label") for m in matches if m.get("label")})
    return {
        "incident_type": ", ".join(labels) or "known media",
        "event_id": event_id,
        "room_id": room_id,
        "reported_user": sender,
        "homeserver": homeserver,
        "sent_at": iso(sent_ts_ms / 1000) if sent_ts_ms else None,
        "detected_at": iso(detected_at),
        "actioned_at": iso(actioned_at),
        "media": list(media),
        "matches": list(matches),
        "rule": rule,
        "decided_by": decided_by,
        "actions": list(actions),
        "retroactive": retroactive,
    }


def cybertipline_report(incident_id: int, record: dict[str, Any], row_hash: str) -> dict[str, Any]:
    """The fields a CyberTipline-style report asks for, from one incident."""
    return {
        "incident_id": incident_id,
        "incident_summary": {
            "incident_type": record.get("incident_type"),
            "incident_date_time": record.get("sent_at") or record.get("detected_at"),
        },
        "reported_person": {"esp_user_id": record.get("reported_user")},
        "internet_details": {
            "type": "chat/instant messaging (Matrix)",
            "homeserver": record.get("homeserver"),
            "room_id": record.get("room_id"),
            "event_id": record.get("event_id"),
        },
        "uploaded_files": [
            {
                "original_location": m.get("mxc"),
                "hashes": {k: m.get(k) for k in ("sha256", "md5", "pdq") if m.get(k)},
                "file_size": m.get("size"),
                "mimetype": m.get("mimetype"),
                # modbot never displays media: matches are made on hashes alone.
                "viewed_by_esp": False,
                "publicly_available": None,
            }
            for m in record.get("media", [])
        ],
        "detection": {
            "detected_at": record.get("detected_at"),
            "actioned_at": record.get("actioned_at"),
            "matches": record.get("matches", []),
            "decided_by": record.get("decided_by"),
            "actions": record.get("actions", []),
            "retroactive": record.get("retroactive", False),
        },
        "integrity": {"row_hash": row_hash},
    }


def csv_rows(incidents: Iterable[tuple[int, dict[str, Any], str]]) -> list[dict[str, Any]]:
    """One CSV row per file of each incident."""
    rows = []
    for incident_id, record, row_hash in incidents:
        match = (record.get("matches") or [{}])[0]
        actions = "; ".join(f"{a.get('kind')} {a.get('target')}: {a.get('outcome')}" for a in record.get("actions", []))
        for m in record.get("media") or [{}]:
            rows.append(
                {
                    "incident_id": incident_id,
                    "incident_type": record.get("incident_type"),
                    "incident_time": record.get("sent_at"),
                    "detected_time": record.get("detected_at"),
                    "actioned_time": record.get("actioned_at"),
                    "reported_user": record.get("reported_user"),
                    "homeserver": record.get("homeserver"),
                    "room_id": record.get("room_id"),
                    "event_id": record.get("event_id"),
                    "mxc": m.get("mxc"),
                    "file_sha256": m.get("sha256"),
                    "file_md5": m.get("md5"),
                    "file_pdq": m.get("pdq"),
                    "file_size": m.get("size"),
                    "file_mimetype": m.get("mimetype"),
                    "matched_list": match.get("list"),
                    "matched_label": match.get("label"),
                    "match_kind": match.get("kind"),
                    "match_distance": match.get("distance"),
                    "decided_by": record.get("decided_by"),
                    "actions": actions,
                    "retroactive": record.get("retroactive", False),
                    "row_hash": row_hash,
                }
            )
    return rows


def export(incidents: Sequence[tuple[int, dict[str, Any], str]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([cybertipline_report(i, r, h) for i, r, h in incidents], indent=2, sort_keys=True)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(csv_rows(incidents))
    return out.getvalue()


def summary(incident_id: int, record: dict[str, Any]) -> list[str]:
    """Lines for a chat reply or a terminal."""
    lines = [
        f"Incident #{incident_id}: {record.get('incident_type')}",
        f"Reported user: {record.get('reported_user')}",
        f"Room: {record.get('room_id')}  Event: {record.get('event_id')}",
        f"Sent: {record.get('sent_at')}  Detected: {record.get('detected_at')}  Actioned: {record.get('actioned_at')}",
    ]
    for m in record.get("media", []):
        lines.append(f"File: {m.get('mxc')} sha256 {m.get('sha256')} md5 {m.get('md5')} pdq {m.get('pdq')}")
    for match in record.get("matches", []):
        lines.append(
            f"Match: list {match.get('list')}, label {match.get('label')}, {match.get('kind')}"
            + (f", distance {match.get('distance')}" if match.get("kind") == "near" else "")
        )
    lines.append(f"Decided by: {record.get('decided_by')}" + (" (retroactive)" if record.get("retroactive") else ""))
    for a in record.get("actions", []):
        lines.append(f"Action: {a.get('kind')} {a.get('target')}: {a.get('outcome')}")
    return lines

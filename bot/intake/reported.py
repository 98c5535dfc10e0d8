"""Users' reports as Synapse's admin API lists them, PURE: parsed, bounded, and flagged when
their reason marks abuse imagery (MSC3215's tag, or a phrase the config lists).

Reports are written by any user of the server, so every field is checked and bounded here:
an entry that is not a report is refused (the caller audits it), a long reason is cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# MSC3215: the reason tag a client sets for a report of child sexual abuse material.
CSAM_TAG = "org.matrix.msc3215.abuse.nature.csam"
MAX_REASON = 1000  # characters of a reason kept; the rest is cut, and the card says so
MAX_ID = 255


@dataclass(frozen=True)
class Report:
    kind: str  # "event" or "user"
    report_id: str
    received_ts: int | None
    reporter: str
    reason: str
    score: int | None = None
    room_id: str | None = None
    event_id: str | None = None
    target: str | None = None  # the reported event's sender, or the reported user
    flagged: bool = False  # the reason marks abuse imagery: carded first, and says so

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "report_id": self.report_id, "received_ts": self.received_ts, "reporter": self.reporter,
            "reason": self.reason, "score": self.score, "room_id": self.room_id, "event_id": self.event_id,
            "target": self.target, "flagged": self.flagged,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def marks_abuse_imagery(reason: str, phrases: Iterable[str]) -> bool:
    text = reason.casefold()
    return CSAM_TAG in text or any(p.casefold() in text for p in phrases if p)


def _id(value: Any, prefix: str | None = None) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID or any(c.isspace() for c in value):
        return None
    if prefix and not value.startswith(prefix):
        return None
    return value


def _reason(value: Any) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + f" [cut: {len(text)} characters]"


def parse_report(kind: str, entry: Any, phrases: Sequence[str] = ()) -> Report | None:
    """One entry of `event_reports` (kind "event") or `user_reports` (kind "user"); None if
    it is not a report modbot can use."""
    if not isinstance(entry, dict):
        return None
    report_id = _id(entry.get("id"))
    reporter = _id(entry.get("user_id"), "@")
    if report_id is None or reporter is None:
        return None
    ts = entry.get("received_ts")
    received = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
    reason = _reason(entry.get("reason"))
    flagged = marks_abuse_imagery(reason, phrases)
    if kind == "user":
        target = _id(entry.get("target_user_id"), "@")
        if target is None:
            return None
        return Report("user", report_id, received, reporter, reason, target=target, flagged=flagged)
    room_id, event_id = _id(entry.get("room_id"), "!"), _id(entry.get("event_id"), "$")
    if room_id is None or event_id is None:
        return None
    score = entry.get("score")
    return Report(
        "event", report_id, received, reporter, reason,
        score=score if isinstance(score, int) and not isinstance(score, bool) else None,
        room_id=room_id, event_id=event_id, target=_id(entry.get("sender"), "@"), flagged=flagged,
    )


def flagged_first(reports: Iterable[Report]) -> list[Report]:
    """Abuse-imagery reports first, then the rest; oldest first within each."""
    return sorted(reports, key=lambda r: (not r.flagged, r.received_ts or 0, r.report_id))

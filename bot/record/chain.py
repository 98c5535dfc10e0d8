"""The incident chain's cryptography and its checks, PURE: no database, no files, no clock.

Each incident row carries a hash over its contents and the previous row's hash. Rows written
before issue 10 use plain SHA-256 (scheme `sha256`): anyone holding the database can recompute
them. Rows written since use HMAC-SHA256 with a key kept outside the database (scheme
`hmac-sha256`): an attacker with the database but not the key cannot rewrite a row, or the
rows before it, without the check failing. A keyed chain still cannot show that its newest
rows were deleted; anchors (the head's id and hash, and the row count, kept outside the
database) do: `check_anchors`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
LEGACY = "sha256"
KEYED = "hmac-sha256"
SCHEMES = (LEGACY, KEYED)
KEY_BYTES = 32
# Domain separation: a row MAC can never be taken for a retention mark's, or the reverse.
_ROW_DOMAIN = b"modbot incident chain v2\n"
_MARK_DOMAIN = b"modbot incident retention mark v1\n"


@dataclass(frozen=True)
class Link:
    """One incident row as the chain sees it."""

    id: int
    event_id: str
    created_at: float
    record_json: str
    prev_hash: str
    row_hash: str
    scheme: str


@dataclass(frozen=True)
class RetentionMark:
    """Where the chain starts after retention purged its oldest rows.

    `mac` is None for marks written before the chain was keyed: such a mark is trusted as
    the chain's start, never as proof that an anchored row was purged on purpose.
    """

    prev_hash: str
    next_id: int
    mac: str | None = None


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_id: int | None
    message: str


@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment: what is kept outside the database."""

    head_id: int  # 0: the chain was empty
    head_hash: str
    count: int  # rows held then (retention lowers it; ids never go back)
    at: float  # whole seconds (see to_json)
    reason: str  # daily | command | incident | start

    def to_json(self) -> dict[str, Any]:
        # Whole seconds: Matrix's canonical JSON has no floats (Synapse answers M_BAD_JSON).
        return {"v": 1, **asdict(self), "at": int(self.at)}

    @classmethod
    def from_json(cls, data: Any) -> Anchor | None:
        """The anchor in `data`, or None when it is not one (never raises)."""
        if not isinstance(data, dict):
            return None
        try:
            head_id, count, at = data["head_id"], data["count"], data["at"]
            head_hash, reason = data["head_hash"], data.get("reason", "")
        except KeyError:
            return None
        if not (isinstance(head_id, int) and isinstance(count, int) and isinstance(at, int | float)):
            return None
        if not (isinstance(head_hash, str) and len(head_hash) == 64 and isinstance(reason, str)):
            return None
        if isinstance(head_id, bool) or head_id < 0 or count < 0:
            return None
        return cls(head_id, head_hash.lower(), count, float(at), reason)


def canonical_record(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _message(prev_hash: str, id_: int, event_id: str, created_at: float, record_json: str) -> bytes:
    canonical = json.dumps(
        {"id": id_, "event_id": event_id, "created_at": repr(created_at), "record": record_json},
        sort_keys=True,
        separators=(",", ":"),
    )
    return (prev_hash + "\n" + canonical).encode()


def legacy_hash(prev_hash: str, id_: int, event_id: str, created_at: float, record_json: str) -> str:
    """The plain SHA-256 link of rows written before the chain was keyed."""
    return hashlib.sha256(_message(prev_hash, id_, event_id, created_at, record_json)).hexdigest()


def keyed_hash(key: bytes, prev_hash: str, id_: int, event_id: str, created_at: float, record_json: str) -> str:
    message = _ROW_DOMAIN + _message(prev_hash, id_, event_id, created_at, record_json)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def link_hash(link: Link, key: bytes | None) -> str | None:
    """The hash `link` should carry under its scheme; None when that needs a key we lack."""
    args = (link.prev_hash, link.id, link.event_id, link.created_at, link.record_json)
    if link.scheme == LEGACY:
        return legacy_hash(*args)
    if link.scheme == KEYED and key is not None:
        return keyed_hash(key, *args)
    return None


def mark_mac(key: bytes, prev_hash: str, next_id: int) -> str:
    message = _MARK_DOMAIN + json.dumps({"prev_hash": prev_hash, "next_id": next_id}, sort_keys=True).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def mark_is_authentic(mark: RetentionMark, key: bytes | None) -> bool:
    return (
        key is not None
        and mark.mac is not None
        and hmac.compare_digest(mark.mac, mark_mac(key, mark.prev_hash, mark.next_id))
    )


def verify_links(links: Iterable[Link], key: bytes | None, start: RetentionMark | None) -> ChainReport:
    """Walk the rows in id order; name the first one that is not what the chain says.

    Each row must point at the previous row's hash (or the retention mark's), carry the hash
    its scheme gives, and be keyed once a keyed row has been seen (no downgrade to plain
    SHA-256, which anyone could recompute).
    """
    expected_prev = start.prev_hash if start else GENESIS
    expected_id = start.next_id if start else None
    keyed_seen = False
    checked = 0
    for link in links:
        if link.prev_hash != expected_prev or (expected_id is not None and link.id != expected_id):
            return ChainReport(False, checked, link.id, f"incident {link.id}: chain broken (a row before it was removed or altered)")
        if link.scheme not in SCHEMES:
            return ChainReport(False, checked, link.id, f"incident {link.id}: unknown chain scheme {link.scheme!r}")
        if link.scheme == LEGACY and keyed_seen:
            return ChainReport(False, checked, link.id, f"incident {link.id}: plain SHA-256 after keyed rows (rewritten without the key)")
        expected = link_hash(link, key)
        if expected is None:
            return ChainReport(False, checked, link.id, f"incident {link.id}: keyed, and no chain key was given to check it")
        if not hmac.compare_digest(expected, link.row_hash):
            what = "its keyed hash (edited, or not the key it was written with)" if link.scheme == KEYED else "its hash (edited)"
            return ChainReport(False, checked, link.id, f"incident {link.id}: contents do not match {what}")
        keyed_seen = keyed_seen or link.scheme == KEYED
        expected_prev, expected_id = link.row_hash, link.id + 1
        checked += 1
    return ChainReport(True, checked, None, f"{checked} incidents, chain intact")


@dataclass(frozen=True)
class AnchorCheck:
    ok: bool
    checked: int  # anchors compared with the rows
    problems: tuple[str, ...]


def check_anchors(
    sourced: Sequence[tuple[str, Anchor]],
    row_hashes: Mapping[int, str],
    mark: RetentionMark | None,
    key: bytes | None,
) -> AnchorCheck:
    """Compare the rows with anchors kept elsewhere (`(where, anchor)` pairs).

    An anchored head must still be there with the same hash: if it is gone, the rows from
    the newest one left up to it were deleted (truncation, or everything); if its hash
    differs, the chain was rewritten. A head purged by retention is accepted only under a
    retention mark authenticated with the key, which someone with the database alone
    cannot forge.
    """
    purged_below = mark.next_id if mark is not None and mark_is_authentic(mark, key) else None
    last_id = max(row_hashes, default=None)
    problems: list[str] = []
    checked = 0
    seen: set[tuple[int, str]] = set()
    for where, anchor in sorted(sourced, key=lambda s: -s[1].head_id):
        if anchor.head_id == 0 or (anchor.head_id, anchor.head_hash) in seen:
            continue
        seen.add((anchor.head_id, anchor.head_hash))
        if purged_below is not None and anchor.head_id < purged_below:
            continue
        checked += 1
        found = row_hashes.get(anchor.head_id)
        if found is None:
            if last_id is None:
                first_missing = purged_below or 1
            else:
                first_missing = last_id + 1 if last_id < anchor.head_id else anchor.head_id
            problems.append(
                f"incidents {first_missing}-{anchor.head_id} missing: the anchor of {_when(anchor.at)} ({where}) "
                f"says the chain reached incident {anchor.head_id} ({anchor.count} rows)"
                if first_missing < anchor.head_id
                else f"incident {anchor.head_id} missing: the anchor of {_when(anchor.at)} ({where}) says the chain reached it"
            )
        elif not hmac.compare_digest(found, anchor.head_hash):
            problems.append(
                f"incident {anchor.head_id}: its hash differs from the anchor of {_when(anchor.at)} ({where}): "
                "the chain up to it was rewritten"
            )
    return AnchorCheck(not problems, checked, tuple(problems))


def anchor_notice(anchor: Anchor) -> tuple[str, str]:
    """The management room's notice for an anchor: plain text and HTML."""
    head = f"incident #{anchor.head_id}" if anchor.head_id else "no incident yet"
    text = (
        f"Evidence anchor ({anchor.reason}, {_when(anchor.at)}): {anchor.count} incidents held, head {head}, "
        f"hash {anchor.head_hash}. Keep this message: `modbot audit verify` compares the incident log with it."
    )
    html = (
        f"<b>Evidence anchor</b> ({anchor.reason}, {_when(anchor.at)}): {anchor.count} incidents held, head {head}, "
        f"hash <code>{anchor.head_hash}</code>. Keep this message: <code>modbot audit verify</code> compares the "
        "incident log with it."
    )
    return text, html


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")

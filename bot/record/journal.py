"""What processing one event writes, gathered and committed in one database transaction.

A media event that matches nothing used to cost eight round trips to the database, five
of them commits (its links, its media row, its verdicts, its audit row, its status); at
tens of events a second that was a quarter of the bot's CPU. The pipeline now notes
those writes here and EventRepo.commit (events.py) writes them together, with the event's
new status, as Core statements compiled once. Before the bot acts on a match the journal is committed,
so the audit log still reads in order: what was found, then what was done about it.

A crash before the commit loses nothing: the event is still pending, and is processed
again from the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import Hashes, MediaRef, Verdict


@dataclass(frozen=True)
class MediaSeen:
    """What the media table held of an event's media when the intake stored the event, read
    in the intake's own transaction (bot/record/events.py), so that processing it needs no
    lookup of its own: hashes by mxc, None for media without hashes then. `forgotten` is
    media.RecentHashes.forgotten when it was read (see there)."""

    hashes: Mapping[str, Hashes | None]
    forgotten: int


@dataclass
class EventJournal:
    """Rows waiting to be written for one event (or for a command's lookup, `event_id` None)."""

    event_id: str | None = None
    room_id: str | None = None
    sender: str | None = None
    clock: Callable[[], float] = time.time
    links: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # by mxc: the latest row wins
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    seen: MediaSeen | None = None  # the event's media as the intake found it (media.py)

    def __bool__(self) -> bool:
        return bool(self.links or self.media or self.verdicts or self.audits)

    def link(self, refs: Iterable[MediaRef]) -> None:
        """The event carried these media."""
        assert self.event_id is not None, "only an event has media links"
        self.links.extend({"event_id": self.event_id, "mxc": r.mxc, "source": r.source} for r in refs)

    def record_media(
        self,
        ref: MediaRef,
        *,
        status: str,
        hashes: Hashes | None = None,
        mimetype: str | None = None,
        error: str | None = None,
    ) -> None:
        now = self.clock()
        row: dict[str, Any] = {
            "mxc": ref.mxc, "status": status, "mimetype": mimetype, "error": error,
            "first_seen": now, "last_scanned": now,
        }
        if hashes is not None:
            row.update(media_hash_columns(hashes))
        self.media[ref.mxc] = row

    def pending_hashes(self, mxc: str) -> Hashes | None:
        """Hashes noted for `mxc` and not yet committed (media seen twice in one event)."""
        row = self.media.get(mxc)
        return hashes_from_columns(row.get) if row is not None else None

    def record_verdicts(self, mxc: str, classifier: str, verdicts: Sequence[Verdict]) -> None:
        """What a classifier found; an empty `verdicts` is recorded as "no match"."""
        assert self.event_id is not None, "verdicts belong to an event"
        self.verdicts.extend(verdict_rows(self.event_id, mxc, classifier, verdicts, self.clock()))

    def audit(self, category: str, outcome: str, message: str, *, mxc: str | None = None) -> None:
        self.audits.append(
            audit_row(self.clock(), category, outcome, message, self.event_id, self.room_id, self.sender, mxc)
        )

    def clear(self) -> None:
        self.links.clear()
        self.media.clear()
        self.verdicts.clear()
        self.audits.clear()


def audit_row(
    ts: float,
    category: str,
    outcome: str,
    message: str,
    event_id: str | None = None,
    room_id: str | None = None,
    sender: str | None = None,
    mxc: str | None = None,
) -> dict[str, Any]:
    """A row of the audit table, as the journal and the store's own writes insert it."""
    return {
        "ts": ts, "category": category, "outcome": outcome, "message": message,
        "event_id": event_id, "room_id": room_id, "sender": sender, "mxc": mxc,
    }


def media_hash_columns(hashes: Hashes) -> dict[str, Any]:
    return {
        "sha256": hashes.sha256,
        "md5": hashes.md5,
        "sha1": hashes.sha1,
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
        "phash": hashes.phash,
        "pdq_queries": ",".join(hashes.pdq_queries) or None,
        "frame_pdqs": ";".join(f"{n}:{h}:{q}" for n, h, q in hashes.frame_pdqs) or None,
        "lowfreq": ",".join(hashes.lowfreq) or None,
        "pdq_coefficients": ",".join(hashes.pdq_coefficients) or None,
        "pdq_uncropped": ",".join(hashes.pdq_uncropped) or None,
        "lowfreq_uncropped": ",".join(hashes.lowfreq_uncropped) or None,
        "pdq_uncropped_tiers": ",".join(hashes.pdq_uncropped_tiers) or None,
        "size": hashes.size,
        "width": hashes.width,
        "height": hashes.height,
    }


def hashes_from_columns(column: Callable[[str], Any]) -> Hashes | None:
    """The inverse of media_hash_columns, reading each column through `column`; None when
    the media was never hashed."""
    if not column("sha256") or column("size") is None:
        return None
    queries = column("pdq_queries")
    return Hashes(
        sha256=column("sha256"),
        md5=column("md5"),
        sha1=column("sha1"),
        size=column("size"),
        pdq=column("pdq"),
        pdq_quality=column("pdq_quality"),
        phash=column("phash"),
        pdq_queries=tuple(queries.split(",")) if queries else (),
        width=column("width"),
        height=column("height"),
        frame_pdqs=_frames(column("frame_pdqs")),
        lowfreq=_hex_texts(column("lowfreq"), 72),  # smoothsig's signatures
        pdq_coefficients=_hex_texts(column("pdq_coefficients"), 1024),  # pdqcoef's texts
        pdq_uncropped=_hex_texts(column("pdq_uncropped"), 64),  # uncrop's guesses, in order
        lowfreq_uncropped=_hex_texts(column("lowfreq_uncropped"), 72),  # their signatures
        pdq_uncropped_tiers=_hex_texts(column("pdq_uncropped_tiers"), 128),  # their bits' tiers
    )


def _hex_texts(text: str | None, length: int) -> tuple[str, ...]:
    """A column of `,`-joined hex texts read back: those media_hash_columns wrote, of `length` each."""
    return tuple(t for t in (text or "").split(",") if len(t) == length and t.isalnum())


def _frames(text: str | None) -> tuple[tuple[int, str, int], ...]:
    """The frame_pdqs column read back (media_hash_columns wrote it)."""
    frames = []
    for item in (text or "").split(";"):
        number, _, rest = item.partition(":")
        pdq, _, quality = rest.partition(":")
        if number.isdigit() and len(pdq) == 64 and quality.isdigit():
            frames.append((int(number), pdq, int(quality)))
    return tuple(frames)


def verdict_rows(
    event_id: str, mxc: str, classifier: str, verdicts: Sequence[Verdict], now: float
) -> list[dict[str, Any]]:
    """The verdict table's rows for what a classifier found; "no_match" when it found nothing.

    Every row has every column, so that a list of them is one executemany.
    """
    rows = [
        {
            "event_id": event_id, "mxc": mxc, "classifier": classifier, "kind": v.kind.value,
            "list_name": v.list_name or "", "label": v.label, "hash_type": v.hash_type,
            "distance": v.distance, "matched_hash": v.matched_hash, "created_at": now,
        }
        for v in verdicts
    ]
    return rows or [{
        "event_id": event_id, "mxc": mxc, "classifier": classifier, "kind": "no_match",
        "list_name": "", "label": "", "hash_type": None, "distance": None, "matched_hash": None,
        "created_at": now,
    }]

"""Whether a newly read hash list file may replace the version matching uses. PURE.

A list file replaced by garbage, truncated to nothing or cut short by a failed copy still
parses: into an empty or much smaller list. Loaded as it is, it silently turns matching
off. So a version is *held* (the previous one stays in use, the management room and
`modbot check` are told) when it would

- leave the list empty,
- reject most of its lines (more rejected lines than entries), or
- drop more than `max_drop_share` of the entries of the version last accepted,

unless it is the version last accepted (same content digest) or the one an operator
accepted with `modbot hashes accept NAME`. What was last accepted is persisted per list
(`ListRecord`: entry count and SHA-256 of the file), so a list garbled while the bot was
down is caught at start too; a list with no record (new) is held only when empty or
mostly rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ListRecord:
    """What the bot last accepted for one list, and what an operator accepted since."""

    name: str
    entries: int | None = None  # of the version last loaded; None: never loaded
    digest: str | None = None  # SHA-256 of that version's file
    accepted_digest: str | None = None  # a version accepted by `modbot hashes accept`
    accepted_by: str | None = None

    def knows(self, digest: str | None) -> bool:
        """Whether a file with this digest was loaded or accepted before."""
        return digest is not None and digest in (self.digest, self.accepted_digest)


@dataclass(frozen=True)
class ListHold:
    """A version of a list that was read but not put in use, and why."""

    reason: str
    digest: str | None  # of the held file: what `accept` must name
    entries: int
    rejected: int


def hold_reason(
    entries: int,
    rejected: int,
    digest: str | None,
    record: ListRecord | None,
    max_drop_share: float,
) -> str | None:
    """Why a version of `entries` entries and `rejected` bad lines must wait for acceptance; None if it may load."""
    if record is not None and record.knows(digest):
        return None
    if entries == 0:
        return "it would leave the list empty" + (f" ({rejected} lines rejected)" if rejected else "")
    if rejected > entries:
        return f"most of its lines are rejected ({rejected} of {rejected + entries})"
    before = record.entries if record is not None else None
    if before:
        dropped = before - entries
        if dropped > max_drop_share * before:
            return (
                f"it would drop {dropped} of the {before} entries last loaded ({dropped / before:.0%}, "
                f"more than hashlist.max_drop_share {max_drop_share:.0%})"
            )
    return None


def judge(report: Any, digest: str | None, record: ListRecord | None, max_drop_share: float) -> ListHold | None:
    """`hold_reason` for a loaded list's report (a `ListLoadReport`); an unreadable file is held too."""
    if not report.enabled:
        return None
    rejected = sum(1 for line, _ in report.errors if line)
    if report.failed:
        reason: str | None = next(r for line, r in report.errors if line == 0)
    else:
        reason = hold_reason(report.entries, rejected, digest, record, max_drop_share)
    return ListHold(reason, digest, report.entries, rejected) if reason is not None else None


class ListHistory(Protocol):
    """Where what each list last loaded, and what operators accepted, is kept (the database)."""

    async def records(self) -> dict[str, ListRecord]: ...

    async def record_loaded(self, name: str, entries: int, digest: str | None) -> None: ...

"""Known false positives. PURE: an immutable snapshot the pipeline consults before deciding.

The allowlist always wins: media whose SHA-256 is allowlisted, or whose PDQ is within
ALLOW_PDQ_DISTANCE of an allowlisted PDQ (a re-encoded copy of the same false match), is
never acted on. The distance is tighter than matching's 31 so that an allowlisted image
does not shield everything that merely resembles it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .hashing import hamming
from .model import Hashes

ALLOW_PDQ_DISTANCE = 16


@dataclass(frozen=True)
class Allowlist:
    sha256: frozenset[str] = frozenset()
    pdq: tuple[str, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[tuple[str, str]]) -> Allowlist:
        """From (hash_type, hash) pairs."""
        pairs = list(entries)
        return cls(
            frozenset(h for t, h in pairs if t == "sha256"),
            tuple(h for t, h in pairs if t == "pdq"),
        )

    def reason(self, hashes: Hashes) -> str | None:
        """Why this media is allowlisted, or None."""
        if hashes.sha256 in self.sha256:
            return f"allowlisted sha256 {hashes.sha256}"
        if hashes.pdq:
            for entry in self.pdq:
                distance = hamming(hashes.pdq, entry)
                if distance <= ALLOW_PDQ_DISTANCE:
                    return f"allowlisted pdq {entry} (distance {distance})"
        return None

    def __len__(self) -> int:
        return len(self.sha256) + len(self.pdq)

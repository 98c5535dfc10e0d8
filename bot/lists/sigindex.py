"""A list's low-frequency signature entries, indexed for matching smooth images. PURE (numpy).

The entries (`lowfreq` rows, bot/hashing/smoothsig.py) are unit vectors of 36 numbers
compared by correlation, not by Hamming distance, so the PDQ indexes of bot.lists.index do
not apply. Only `hashes add-image` and chat `hash add` write them (one per listed image),
so lists hold few: the index is one (n, 36) float32 matrix and a lookup is one matrix
product of the query's 8 or 16 turned and flipped signatures with it (bench/bench_index.py
style figures in README "Smooth images": ~0.3 ms at 10,000 entries, ~4 ms at 100,000).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.hashing.smoothsig import LENGTH, parse


@dataclass(frozen=True)
class SignatureEntry:
    """One `lowfreq` list entry: its text (72 hex digits) and label."""

    text: str
    label: str


def entry_id(text: str) -> str:
    """What a verdict names the entry by (`matched_hash` holds 64 characters at most)."""
    return "lowfreq:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class SignatureIndex:
    """The signature entries of one list; a (type, text, label) listed twice is one entry."""

    def __init__(self, entries: Sequence[SignatureEntry]) -> None:
        self.entries = tuple(dict.fromkeys(entries))
        self.matrix = np.zeros((len(self.entries), LENGTH), dtype=np.float32)
        for row, entry in enumerate(self.entries):
            self.matrix[row] = parse(entry.text)  # checked when the list was read

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes) + sum(len(e.text) + len(e.label) for e in self.entries)

    def search(self, queries: np.ndarray, bound: int) -> list[tuple[int, int, int]]:
        """(row, query number, distance) of each entry within `bound` of its nearest query,
        distance as bot.hashing.smoothsig.distance: 1000 x (1 - correlation), rounded."""
        if not len(self.entries) or not len(queries):
            return []
        distances = np.rint(1000 * (1 - np.asarray(queries, dtype=np.float32) @ self.matrix.T))  # (q, n)
        nearest = distances.argmin(axis=0)
        best = distances[nearest, np.arange(len(self.entries))]
        rows = np.flatnonzero(best <= bound)
        return [(int(r), int(nearest[r]), int(best[r])) for r in rows]

"""A list's low-frequency signature entries, indexed for matching smooth images. PURE (numpy).

The entries (`lowfreq` rows, bot/hashing/smoothsig.py) are unit vectors of 36 numbers
compared by correlation, not by Hamming distance, so the PDQ indexes of bot.lists.index do
not apply. Only `hashes add-image` and chat `hash add` write them (one per listed image),
so lists hold few: the index is one (n, 36) float32 matrix (144 bytes an entry) and a
lookup is one product of the query's 8 or 16 turned and flipped signatures with it, then a
look at the few columns near enough. Measured (16 queries, one core, load ~3.7 on two):
1.9 ms of CPU at 10,000 entries, 9 ms at 100,000; built from the file's text in 10 / 285 ms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.hashing.smoothsig import LENGTH


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
        # Each text was checked when the list was read (bot.lists.format): 36 signed bytes.
        raw = np.frombuffer(bytes.fromhex("".join(e.text for e in self.entries)), dtype=np.int8)
        matrix = raw.reshape(len(self.entries), LENGTH).astype(np.float32)
        self.matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)

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
        correlations = np.asarray(queries, dtype=np.float32) @ self.matrix.T  # (q, n)
        # Only the few entries near some query are looked at one by one.
        candidates = np.flatnonzero(correlations.max(axis=0) >= 1 - (bound + 1) / 1000)
        found = []
        for row in candidates:
            query = int(correlations[:, row].argmax())
            distance = int(np.rint(1000 * (1 - float(correlations[query, row]))))
            if distance <= bound:
                found.append((int(row), query, distance))
        return found

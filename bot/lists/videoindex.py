"""A list's vPDQ entries, indexed for matching whole videos. PURE (numpy).

Built as python-threatexchange's VPDQIndex is: each entry's frames are quality-filtered and
deduplicated (`bot.lists.vpdq.prepared`); every distinct frame hash of every entry is one
row of a Hamming index (`bot.lists.index`), which remembers the entries holding it. A query
video's frames, prepared the same way, are searched at the frame distance; for each entry
hit, the query frames that found one of its rows and its rows found give the two shares.
The same answer as comparing the query with each entry (`bot.lists.vpdq.compare`), without
comparing with every entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.lists.index import BruteForceIndex, MultiIndexHash, build_hamming_index
from bot.lists.vpdq import (
    VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
    VPDQ_QUALITY_THRESHOLD,
    VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
    VpdqComparison,
    VpdqFrame,
    codes,
    parse_vpdq,
    prepared,
)


@dataclass(frozen=True)
class VideoEntry:
    """One vPDQ list entry: its canonical text (`bot.lists.vpdq.canonical`) and label."""

    text: str
    label: str


@dataclass(frozen=True)
class VideoMatch:
    """A list entry a video matched, with the comparison that made it a match."""

    entry: VideoEntry
    comparison: VpdqComparison


class VideoIndex:
    """The vPDQ entries of one list; see the module docstring."""

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        distance: int,
        *,
        query_percent: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
        compared_percent: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT,
        min_quality: int = VPDQ_QUALITY_THRESHOLD,
    ) -> None:
        self.entries = tuple(dict.fromkeys(entries))  # an entry listed twice is one entry
        self.distance = distance
        self.query_percent = query_percent
        self.compared_percent = compared_percent
        self.min_quality = min_quality
        rows: dict[str, int] = {}
        frames: list[VpdqFrame] = []
        owners: list[list[int]] = []
        self.sizes = np.zeros(len(self.entries), dtype=np.int64)  # distinct usable frames per entry
        for number, entry in enumerate(self.entries):
            kept = prepared(parse_vpdq(entry.text, max_frames=1 << 30), min_quality)
            self.sizes[number] = len(kept)
            for frame in kept:
                row = rows.setdefault(frame.pdq, len(rows))
                if row == len(frames):
                    frames.append(frame)
                    owners.append([])
                owners[row].append(number)
        self.frames = tuple(frames)
        # CSR: the entries holding row r are owner_ids[starts[r]:starts[r + 1]].
        self.starts = np.cumsum([0] + [len(o) for o in owners], dtype=np.int64)
        self.owner_ids = np.array([e for o in owners for e in o], dtype=np.int64)
        self.index: BruteForceIndex | MultiIndexHash = build_hamming_index(
            codes(frames) if frames else np.zeros((0, 4), dtype=np.uint64), 256, distance
        )

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.owner_ids.nbytes + self.starts.nbytes + sum(len(e.text) for e in self.entries)

    def search(self, query: Sequence[VpdqFrame]) -> list[VideoMatch]:
        """The entries the video of frames `query` matches, in list order."""
        q = prepared(query, self.min_quality)
        if not q or not len(self.index):
            return []
        found = self.index.search(codes(q), self.distance)
        if not len(found):
            return []
        # Expand (query, row) pairs to (query, entry, row) through the owners of each row.
        counts = self.starts[found.row + 1] - self.starts[found.row]
        pair = np.repeat(np.arange(len(found)), counts)
        offsets = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        entry = self.owner_ids[self.starts[found.row[pair]] + offsets]
        matches: list[VideoMatch] = []
        for number in np.unique(entry):
            mine = pair[entry == number]
            query_ids, row_ids, dist = found.query[mine], found.row[mine], found.distance[mine]
            query_share = 100.0 * len(np.unique(query_ids)) / len(q)
            compared_share = 100.0 * len(np.unique(row_ids)) / int(self.sizes[number])
            if query_share < self.query_percent or compared_share < self.compared_percent:
                continue
            order = np.lexsort((row_ids, dist, query_ids))  # per query frame, its nearest row first
            first = np.ones(len(order), dtype=bool)
            first[1:] = query_ids[order][1:] != query_ids[order][:-1]
            pairs = tuple(
                (q[int(query_ids[i])], self.frames[int(row_ids[i])], int(dist[i])) for i in order[first]
            )
            matches.append(VideoMatch(self.entries[int(number)], VpdqComparison(query_share, compared_share, pairs)))
        return matches


def video_frames(frame_pdqs: Sequence[tuple[int, str, int]]) -> tuple[VpdqFrame, ...]:
    """A hashed video's `Hashes.frame_pdqs` (second, PDQ, quality) as vPDQ frames."""
    return tuple(VpdqFrame(pdq.lower(), quality, float(second)) for second, pdq, quality in frame_pdqs)

"""Rows that agree with a query on chosen bits: the scan behind matching a smooth image's
most reliable PDQ bits (bot/classify/reliablematch.py). PURE (numpy).

Unlike a Hamming range search (bot/lists/index.py), each query brings its own masks of
bits that count, so no substring index applies: a linear scan, first on one word of the
rows (contiguous in a brute-force index, which keeps columns), then in full on the few
rows left. About 2 ms per query and million rows on one core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rows compared at once by `agreeing_rows`.
_AGREE_BLOCK = 1 << 16


def agreeing_rows(
    codes: np.ndarray, queries: np.ndarray, masks: np.ndarray, limits: Sequence[int]
) -> list[tuple[int, int, tuple[int, ...]]]:
    """(row, query number, mismatches per mask) of each row of `codes` that differs from some
    query in at most limits[t] of the bits set in masks[t] of that query, for every t.

    codes (n, words) and queries (q, words) are uint64 rows; masks (t, q, words). A linear
    scan: the first mask (the one whose limit is 0, if any, should come first) is checked on
    the word where it holds most bits, which leaves few rows to check in full.
    """
    found: list[tuple[int, int, tuple[int, ...]]] = []
    if not len(codes) or not len(queries):
        return found
    columns = codes.T  # contiguous for a brute-force index (it keeps columns), strided otherwise
    for query_no in range(len(queries)):
        query = queries[query_no]
        first = masks[0, query_no]
        word = int(np.argmax(np.bitwise_count(first)))
        for start in range(0, len(codes), _AGREE_BLOCK):
            column = columns[word, start : start + _AGREE_BLOCK]
            if limits[0] == 0:
                rows = np.flatnonzero((column & first[word]) == (query[word] & first[word])) + start
            else:
                rows = np.arange(start, start + len(column))
            if not len(rows):
                continue
            diff = np.take(codes, rows, axis=0) ^ query
            counts = np.stack([np.bitwise_count(diff & masks[t, query_no]).sum(axis=1) for t in range(len(limits))])
            keep = np.all(counts <= np.asarray(limits)[:, None], axis=0)
            for i in np.flatnonzero(keep):
                found.append((int(rows[i]), query_no, tuple(int(c) for c in counts[:, i])))
    return found

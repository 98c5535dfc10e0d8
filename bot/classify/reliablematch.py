"""Verdicts for smooth images by their most reliable PDQ bits (the rule of bot/classify/pdqrule.py).

The hash-list classifier (bot/classify/hashlist.py) calls this for every still image; only
a query under PDQ quality 50 with coefficients (bot/hashing/pdqcoef.py) is matched. From
the coefficients of the image as decoded (not of its border-trimmed image: see
bot/hashing/media.py) come its eight turns and flips (pdq.dihedral_coefficients), each one's bits (above the median or not, as
PDQ's) and its tiers of most reliable bits (those whose coefficient lies farthest from the
median). A list's PDQ entry matches when it disagrees with one of those queries in no more
than pdqrule.RELIABLE_TIERS allows in each tier. A verdict is a PDQ near match whose
distance is the full Hamming distance of that query to the entry (a policy's `max_distance`
applies to it), with `details.signal` "reliable bits", the mismatches per tier, and the
transformation that matched. Only the listed images' own hashes: rows derived from them
(crops and brightened copies that `hashes add-image` lists) share their layout, which is
what these bits trust, and an unrelated dark photo matched a crop row this way
(bench/README.md, "Most reliable bits").

Pure: hashes in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from bot.classify.nearverdict import near_verdict
from bot.classify.pdqrule import RELIABLE_MAX_ROWS, RELIABLE_TIERS, uses_reliable_bits
from bot.hashing import pdqtiers
from bot.hashing.pdq import DIHEDRAL, dihedral_coefficients
from bot.hashing.pdqcoef import parse
from bot.lists.agree import agreeing_rows
from bot.lists.index import bytes_to_codes
from bot.lists.loaded import LoadedList
from bot.model import Hashes, Verdict

SIGNAL = "reliable bits"
_HALF = 128  # PDQ's median is the 128th smallest of 256 coefficients


def reliable_queries(hashes: Hashes, min_quality: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(queries, masks) for `hashes`, or None when the rule does not apply: queries (n, 4)
    uint64 PDQ bits, masks (tiers, n, 4) each query's most reliable bits per tier."""
    if not uses_reliable_bits(hashes.pdq_quality, min_quality) or not hashes.pdq_coefficients:
        return None
    try:
        coefficients = parse(hashes.pdq_coefficients[0].lower())
    except ValueError:
        return None  # checked by the sandbox's parent already; nothing to match with
    variants = dihedral_coefficients(coefficients)
    # In PDQ's bit order: coefficient [i, j] is bit 16i + j counted from the least significant.
    flat = variants.reshape(-1, 256)[:, ::-1]
    median = np.partition(flat, _HALF - 1, axis=1)[:, _HALF - 1 : _HALF]
    bits = flat > median
    masks = [bytes_to_codes(np.packbits(m, axis=1)) for m in pdqtiers.masks(pdqtiers.of_coefficients(variants))]
    return bytes_to_codes(np.packbits(bits, axis=1)), np.stack(masks)


def reliable_verdicts(
    classifier: str, lst: LoadedList, hashes: Hashes, found: tuple[np.ndarray, np.ndarray] | None
) -> Iterator[Verdict]:
    """A verdict per PDQ entry of `lst` whose reliable bits agree with the image's, the
    nearest query's for each entry; `found` is reliable_queries(hashes, ...) (None: no rule)."""
    index = lst.index.near.get("pdq")
    if found is None or index is None or not len(index) or len(index) > RELIABLE_MAX_ROWS:
        return
    queries, masks = found
    codes = index.index.codes
    best: dict[int, tuple[int, int, tuple[int, ...]]] = {}
    own = index.own_rows()
    for row, query_no, mismatches in agreeing_rows(codes, queries, masks, [limit for _, limit in RELIABLE_TIERS]):
        if own is not None and not own[row]:
            continue  # a crop's or a brightened copy's hash: see the module's docstring
        distance = int(np.bitwise_count(codes[row] ^ queries[query_no]).sum())
        if row not in best or distance < best[row][0]:
            best[row] = (distance, query_no, mismatches)
    for row, (distance, query_no, mismatches) in sorted(best.items()):
        transform = DIHEDRAL[query_no]
        details: dict[str, Any] = {
            "signal": SIGNAL,
            "query": "original" if query_no == 0 else "variant",
            "transform": transform,
            "pdq_quality": hashes.pdq_quality,
            "reliable_mismatches": {str(count): m for (count, _), m in zip(RELIABLE_TIERS, mismatches)},
        }
        yield near_verdict(classifier, lst, index, row, distance, details)

"""Verdicts for cropped copies: the image padded back by each crop guess against a list's PDQ.

The hash-list classifier (bot/classify/hashlist.py) calls this for every still image that
has `Hashes.pdq_uncropped` (bot/hashing/uncrop.py: PDQ of the image padded back to the
extent its original had if up to 5% of a side was cut: centred, from one side, or 5% of
each axis off-centre; 44 guesses). Each guess is matched like the image's other derived
queries (turns, flips, the trimmed image): within the derived bound pdqrule.pdq_bounds
gives the image's quality, so a smooth image's guesses are held to the low-quality bound.
A verdict is a PDQ near match at the guess's distance, with `details.crop` naming the guess
(the notice says it).

A guess a few bits over its bound (up to pdqrule.CROP_CONFIRM_MARGIN) also matches a listed
image's own hash when its mismatches keep to pdqrule.RELIABLE_TIERS: where the guess is
right, what differs from the original is the padding, and it flips the bits whose
coefficients sat next to the median; an unrelated image differs anywhere. The guess's own
coefficients say which bits those are (`Hashes.pdq_uncropped_tiers`, bot/hashing/pdqtiers.py);
the verdict then has `details.signal` "reliable bits" and the mismatches per tier. Not against
rows derived from a listed image (its crops and brightened copy): images of one template
share their layout and flat clipped areas, which is what those bits trust, and an unrelated
brightened screenshot matched a listed screenshot's brightened row this way (bench/README.md,
"Robustness"). Only in lists searched by brute force (up to index.BRUTE_FORCE_MAX_ROWS PDQ
rows), whose search costs the same at any threshold; a multi-index hash's grows steeply.

Pure: hashes in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bot.classify.pdqrule import RELIABLE_TIERS, crop_confirm_bound, pdq_bounds
from bot.classify.nearverdict import near_verdict
from bot.hashing import pdqtiers
from bot.hashing.uncrop import HYPOTHESES
from bot.lists.loaded import LoadedList, hex_matrix
from bot.model import Hashes, Verdict


# Whether the guesses are matched against derived rows too (a list's crops and brightened
# copies, bot/lists/format.py). They are: a copy cut 5% off-centre, padded back by 2.5%,
# lies near a crop of its original, and the guesses and add-image's crops together found
# 96.7% of such copies where the crops alone found 90.2%, with no unrelated image matched
# among 5,600 and the nearest 4 bits beyond the bound (bench/offset_crop_study.py).
# Within the bound only: see the module's docstring.
GUESSES_MATCH_DERIVED = True
_LIMITS = np.array([limit for _count, limit in RELIABLE_TIERS])


def crop_verdicts(classifier: str, lst: LoadedList, hashes: Hashes, min_quality: int) -> Iterator[Verdict]:
    """A verdict per PDQ entry of `lst` one of the image's crop guesses matches: the
    nearest guess within the bound, or else one over it whose reliable bits agree."""
    index = lst.index.near.get("pdq")
    guesses = hashes.pdq_uncropped
    # All the guesses or none: a verdict names its guess by its place among them.
    if index is None or len(guesses) != len(HYPOTHESES) or hashes.pdq is None:
        return
    bound = pdq_bounds(lst.thresholds.pdq, hashes.pdq_quality, min_quality).derived
    if bound is None:
        return
    try:
        matrix = hex_matrix(tuple(map(str.lower, guesses)), "pdq")
    except ValueError:
        return  # checked by the sandbox's parent already; nothing to match with
    confirmable = index.searched_whole and len(hashes.pdq_uncropped_tiers) == len(HYPOTHESES)
    wider = crop_confirm_bound(bound, hashes.pdq_quality, min_quality) if confirmable else None
    own = index.own_rows()
    tiers: np.ndarray | None = None
    best: dict[int, tuple[int, int, dict[str, int] | None]] = {}
    for row, query_no, distance in index.pairs(matrix, wider or bound):
        if row in best:
            continue  # pairs come nearest first for each row: the nearest that passes stands
        is_own = own is None or bool(own[row])
        if distance <= bound:
            if GUESSES_MATCH_DERIVED or is_own:  # a guess pads the copy back to its original: a crop's hash is not that
                best[row] = (query_no, distance, None)
        elif is_own:  # over the bound: within `wider`, its reliable bits must agree
            tiers = _tiers(hashes) if tiers is None else tiers
            if not len(tiers):
                continue
            mismatches = _mismatches(index.index.codes[row] ^ matrix[query_no], tiers[query_no])
            if (mismatches <= _LIMITS).all():
                best[row] = (query_no, distance, {str(count): int(m) for (count, _), m in zip(RELIABLE_TIERS, mismatches)})
    for row, (query_no, distance, mismatches) in sorted(best.items()):
        details = {
            "query": "variant",
            "query_hash": guesses[query_no].lower(),
            "crop": HYPOTHESES[query_no][0],
            "pdq_quality": hashes.pdq_quality,
        }
        if mismatches is not None:
            details |= {"signal": "reliable bits", "reliable_mismatches": mismatches}
        yield near_verdict(classifier, lst, index, row, distance, details)


def _tiers(hashes: Hashes) -> np.ndarray:
    """The guesses' bit tiers (guesses x 256; none when malformed), read only when a guess
    lies over its bound: most images have none there."""
    try:
        return pdqtiers.parse(hashes.pdq_uncropped_tiers)
    except ValueError:
        return np.empty((0, 256), dtype=np.uint8)  # checked by the sandbox's parent already


def _mismatches(difference: np.ndarray, tiers: np.ndarray) -> np.ndarray:
    """Bits apart in each tier of RELIABLE_TIERS and the more reliable ones: `difference` is
    a guess XOR an entry as uint64 words, `tiers` the guess's (256, its bit order)."""
    apart = np.unpackbits(difference.astype(">u8").view(np.uint8)).astype(bool)
    return np.array([np.count_nonzero(apart & (tiers <= t)) for t in range(len(RELIABLE_TIERS))])

"""Verdicts for cropped copies: the image padded back by each crop guess against a list's PDQ.

The hash-list classifier (bot/classify/hashlist.py) calls this for every still image that
has `Hashes.pdq_uncropped` (bot/hashing/uncrop.py: PDQ of the image padded back to the
extent its original had if up to 5% of a side was cut: centred, from one side, or 5% of
each axis off-centre; 44 guesses). Each guess is matched like the image's other derived
queries (turns, flips, the trimmed image): within the derived bound pdqrule.pdq_bounds
gives the image's quality, so a smooth image's guesses are held to the low-quality bound.
A verdict is a PDQ near match at the guess's distance, with `details.crop` naming the guess
(the notice says it).

Pure: hashes in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterator

from bot.classify.pdqrule import pdq_bounds
from bot.hashing.uncrop import HYPOTHESES
from bot.classify.nearverdict import near_verdict
from bot.lists.loaded import LoadedList, hex_matrix
from bot.model import Hashes, Verdict


# Whether the guesses are matched against derived rows too (a list's crops and brightened
# copies, bot/lists/format.py). They are: a copy cut 5% off-centre, padded back by 2.5%,
# lies near a crop of its original, and the guesses and add-image's crops together found
# 96.7% of such copies where the crops alone found 90.2%, with no unrelated image matched
# among 5,600 and the nearest 4 bits beyond the bound (bench/offset_crop_study.py).
GUESSES_MATCH_DERIVED = True


def crop_verdicts(classifier: str, lst: LoadedList, hashes: Hashes, min_quality: int) -> Iterator[Verdict]:
    """A verdict per PDQ entry of `lst` one of the image's crop guesses matches."""
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
    own = None if GUESSES_MATCH_DERIVED else index.own_rows()
    for row, query_no, distance in index.search(matrix, bound):
        if own is not None and not own[row]:
            continue  # a guess pads the copy back to its original: a crop's hash is not that
        details = {
            "query": "variant",
            "query_hash": guesses[query_no].lower(),
            "crop": HYPOTHESES[query_no][0],
            "pdq_quality": hashes.pdq_quality,
        }
        yield near_verdict(classifier, lst, index, row, distance, details)

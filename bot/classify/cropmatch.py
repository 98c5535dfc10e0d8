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
    for row, query_no, distance in index.search(matrix, bound):
        details = {
            "query": "variant",
            "query_hash": guesses[query_no].lower(),
            "crop": HYPOTHESES[query_no][0],
            "pdq_quality": hashes.pdq_quality,
        }
        yield near_verdict(classifier, lst, index, row, distance, details)

"""Verdicts for smooth images: a posted image's low-frequency signature against a list's
`lowfreq` entries (the second signal of bot/classify/pdqrule.py, for add-image lists).

The hash-list classifier (bot/classify/hashlist.py) calls this for every still image; only
a query under PDQ quality 50 is matched, within pdqrule.LOWFREQ_BOUND, by its signature and
its border-trimmed image's, each turned and flipped (bot/hashing/smoothsig.dihedral), and
by the signatures of its crop guesses (bot/hashing/uncrop.py; `details.crop` names the one
that matched). A verdict says the signal (`hash_type` "lowfreq", `details.signal`), the transformation that
matched (`details.transform`, a pdq.DIHEDRAL name applied to the post, as PDQ's verdicts
say it), the distance and the entry's signature.

Pure: hashes in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from bot.classify.pdqrule import lowfreq_bound
from bot.hashing.pdq import DIHEDRAL
from bot.hashing.smoothsig import LENGTH, dihedral, parse
from bot.hashing.uncrop import HYPOTHESES
from bot.lists.loaded import LoadedList
from bot.lists.sigindex import entry_id
from bot.model import SIGNATURE_HASH_TYPE, Hashes, MatchKind, Verdict


def _crop_guesses(hashes: Hashes) -> np.ndarray:
    """The signatures of the image's crop guesses (guesses x 36), or none (0 x 36): all of
    them or none, since a verdict names a guess by its place."""
    texts = hashes.lowfreq_uncropped
    if len(texts) == len(HYPOTHESES):
        try:
            return np.stack([parse(t.lower()) for t in texts])
        except ValueError:
            pass  # checked by the sandbox's parent already
    return np.empty((0, LENGTH), dtype=np.float32)


def smooth_verdicts(classifier: str, lst: LoadedList, hashes: Hashes, min_quality: int) -> Iterator[Verdict]:
    """A verdict per `lowfreq` entry of `lst` the image matches (none above quality 50)."""
    index = lst.index.signatures
    bound = lowfreq_bound(hashes.pdq_quality, min_quality)
    if index is None or bound is None or not hashes.lowfreq or hashes.pdq is None:
        return
    queries = []
    for text in hashes.lowfreq[:2]:
        try:
            queries.append(dihedral(parse(text.lower())))
        except ValueError:
            continue  # computed by the sandbox and checked there; nothing to match with
    if not queries:
        return
    # The image's own signatures and its crop guesses' searched apart: the index reports
    # each entry's nearest query, and a guess should not hide the image's own match (a
    # verdict of its own hashes ranks first, bot/classify/hashlist.py).
    searches = [(np.concatenate(queries), False), (_crop_guesses(hashes), True)]
    for matrix, guesses in searches:
        for row, query_no, distance in index.search(matrix, bound) if len(matrix) else ():
            entry = index.entries[row]
            details: dict[str, Any] = {"signal": SIGNATURE_HASH_TYPE}
            if guesses:  # as a crop guess's PDQ (bot/classify/cropmatch.py): not turned or flipped
                details |= {"query": "variant", "crop": HYPOTHESES[query_no][0]}
            else:
                details |= {"query": "original" if query_no == 0 else "variant",
                            "transform": DIHEDRAL[query_no % 8] + (" of the trimmed image" if query_no >= 8 else "")}
            details |= {"pdq_quality": hashes.pdq_quality, "signature": entry.text}
            yield _verdict(classifier, lst, entry, distance, details)


def _verdict(classifier: str, lst: LoadedList, entry: Any, distance: int, details: dict[str, Any]) -> Verdict:
    return Verdict(
        classifier=classifier,
        label=entry.label,
        kind=MatchKind.NEAR,
        list_name=lst.name,
        hash_type=SIGNATURE_HASH_TYPE,
        distance=distance,
        matched_hash=entry_id(entry.text),
        details=details,
    )

"""A near match of a list's perceptual index entry, as every hash-list matcher reports it.

One place for the Verdict a PDQ or pHash entry of a loaded list gives (the hash-list
classifier's own queries, animation and video frames, crop guesses, most reliable bits):
the entry's label and hash from the index row, NEAR whatever the distance (different images
can hash alike), and the matcher's details. Pure.
"""

from __future__ import annotations

from typing import Any

from bot.lists.format import split_derived
from bot.lists.loaded import LoadedList, NearIndex
from bot.model import MatchKind, Verdict


def near_verdict(
    classifier: str, lst: LoadedList, index: NearIndex, row: int, distance: int, details: dict[str, Any],
    hash_type: str = "pdq",
) -> Verdict:
    """The verdict for row `row` of `lst`'s `index` of `hash_type`, matched at `distance`;
    `details.entry` says what the listed hash is of when it is derived from the listed image
    ("crop to 95%, top left"), and `details.entry_image` that image's SHA-256 when the row
    names it."""
    derived = index.derived_at(row)
    if derived:
        what, image = split_derived(derived)
        details = {**details, "entry": what, **({"entry_image": image} if image else {})}
    return Verdict(
        classifier=classifier,
        label=index.label_at(row),
        kind=MatchKind.NEAR,
        list_name=lst.name,
        hash_type=hash_type,
        distance=distance,
        matched_hash=index.hash_at(row),
        details=details,
    )

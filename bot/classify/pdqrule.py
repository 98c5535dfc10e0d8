"""How far a PDQ match may be, given the quality of the hash: the rule instead of a cliff.

PDQ's quality (0-100) measures how much gradient the 64x64 image PDQ hashes holds. In a
smooth image (a wallpaper gradient, a dark photo, a screenshot of flat panels) the DCT
coefficients are small and many lie close to their median, so its hash is less stable
under edits, and, worse, smooth images of different content hash alike: their hashes
are dominated by the same few low frequencies. A fixed floor (skip below 50) keeps those
from matching each other, but then a smooth known image is only ever found by its exact
bytes.

The rule (measured in bench/bench_robustness.py; README "Smooth images"):
- quality >= FULL_QUALITY: the list's threshold, for every query (as before);
- quality below it: the hash of the image as decoded matches within a stricter bound that
  shrinks with the quality (`low_bound`: 24 bits just under 50, down to 8 at 0); the
  derived queries (rotations, flips, the border-trimmed image) within DERIVED_LOW_BOUND
  only, the strictest: each derived query is one more chance for a smooth hash to land
  near an unrelated smooth entry;
- the operator's `pdq_min_quality` applies first: nothing below it near-matches (set it
  to 50 for the cliff modbot had before).

Why so strict, when unrelated low-quality images came no nearer than 66 bits to any
entry in the benchmark (1,385 of them among 5,040 unrelated images): copies of smooth images that survive an edit at all stay within
~12 bits of their original (dark photos re-encoded, resized, greyed), and those that do
not drift by 30-80 bits (near-flat gradients, whose DCT coefficients all sit near their
median); no bound finds the second kind, and a tight one leaves room for what the
benchmark did not draw. A flat image's hash (quality 0) is noise: two of them are ~128
bits apart, so they do not match each other even at the bound.

The list side's quality is not known (list files hold the hash only), so the query's
quality decides. pHash has no quality of its own and is as weak on smooth images: it is
only matched at FULL_QUALITY, as before.

Pure: integers in, integers out.
"""

from __future__ import annotations

from dataclasses import dataclass

# At and above this quality the list's threshold applies unchanged (the reference's
# recommended minimum for PDQ hashes).
FULL_QUALITY = 50
# The as-decoded hash's bound just under FULL_QUALITY, and at quality 0; linear between.
LOW_BOUND_TOP = 24
LOW_BOUND_BOTTOM = 8
# Derived queries of a low-quality image (rotations, flips, trims). An animation's or a
# video's frames are not derived: each is held to the as-decoded bound of its own quality.
DERIVED_LOW_BOUND = 8


def low_bound(quality: int) -> int:
    """The distance bound for the as-decoded hash of an image of quality < FULL_QUALITY."""
    share = min(1.0, max(0.0, quality / (FULL_QUALITY - 1)))
    return round(LOW_BOUND_BOTTOM + (LOW_BOUND_TOP - LOW_BOUND_BOTTOM) * share)


@dataclass(frozen=True)
class PdqBounds:
    """Largest PDQ distances a query of some quality matches at; None: not matched."""

    as_decoded: int | None
    derived: int | None


def pdq_bounds(list_threshold: int, quality: int | None, min_quality: int) -> PdqBounds:
    """The bounds for a query of `quality` against a list whose threshold is `list_threshold`."""
    if quality is None or quality < min_quality:
        return PdqBounds(None, None)
    if quality >= FULL_QUALITY:
        return PdqBounds(list_threshold, list_threshold)
    return PdqBounds(min(list_threshold, low_bound(quality)), min(list_threshold, DERIVED_LOW_BOUND))

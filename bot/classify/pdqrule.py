"""How far a PDQ match may be, given the quality of the hash, and when a pHash match stands.

PDQ's quality (0-100) measures how much gradient the 64x64 image PDQ hashes holds. In a
smooth image (a wallpaper gradient, a dark photo, a screenshot of flat panels) the DCT
coefficients are small and many lie close to their median, so its hash is less stable
under edits, and smooth images of different content may hash alike. The reference
discards hashes under quality 50; modbot matches them within a bound of their own.

The rule (measured in bench/bench_robustness.py; README "Smooth images"):
- quality >= FULL_QUALITY: the list's threshold, for every query (as before);
- quality below it: the hash of the image as decoded and its derived queries (rotations,
  flips, the border-trimmed image) within LOW_BOUND (or the list's threshold if lower);
- the operator's `pdq_min_quality` applies first: nothing below it near-matches (set it
  to 50 for the cliff modbot had before issue 14).

Why LOW_BOUND, and why one bound for every quality under 50: among 5,600 unrelated benign
images (1,813 of them hashing under quality 50: dark photos, night photos, wallpapers,
flat screenshots, plain gradients and colours), the nearest a query under 50 came to any
known image's PDQ was 48 bits (a dark photo with the head-and-shoulders layout of a listed
portrait), whatever the quality of either side (bench/smooth_study.py tabulates it by both);
at quality 50 or more unrelated queries came within 46 bits, 15 over the threshold of 31.
LOW_BOUND keeps 20 bits under 48. Smooth images did not hash nearer each other than
textured ones there; the tighter, quality-scaled bounds of the session before (24 down to
8, derived queries 8) found 67% of smooth copies in provider lists against 80% now
(edits inside issue 14's goal), and matched nothing more. What no bound fixes: near-flat
gradients, whose own re-encodes move 30-80 bits (all their coefficients sit next to the
median), and two gradients along the same direction, which PDQ cannot tell apart (their
luma differs by an affine map, to which PDQ is invariant).

pHash (64 bits, threshold 8) has no quality of its own: it is matched only at
FULL_QUALITY, and a pHash match stands only if the same list holds a PDQ entry of the
same label within PHASH_PDQ_CONFIRM bits of one of the queries, or holds no PDQ entry
of that label at all (a pHash-only list: nothing to confirm with). Among the same 5,600
unrelated images three came within 8 bits of a listed pHash (screenshots and a portrait,
whose 8x8 DCT signs agree), while their PDQ lay 72-112 bits from that image's; copies
that pHash alone finds (crops, edits that lower the quality) lie within 64 of their PDQ,
and requiring it cost no family any share of its copies in the benchmark.

The low-frequency signature (bot/hashing/smoothsig.py; add-image lists only, provider
lists carry no such entry): a query under FULL_QUALITY (and at or above `pdq_min_quality`)
also matches a list's `lowfreq` entry when one of its turns or flips lies within
LOWFREQ_BOUND of it, as 1000 x (1 - correlation). Why 20: smooth copies stayed within 3
for most edits (JPEG q20 at most 23, 320 px thumbnails 45), while the nearest of the 1,813
unrelated images under quality 50 came to 55, and no copy came within 84 of another known
image (bench/smooth_study.py). Not at quality 50 or more, where PDQ's own bits are stable
and the 36 coefficients say too little to tell textured images apart.

Reliable bits (bot/classify/reliablematch.py; both kinds of list): a query under
FULL_QUALITY (and at or above `pdq_min_quality`) also matches a PDQ entry when its most
reliable bits agree with it, by tiers: the query's bits are ranked by how far their DCT
coefficient lies from the median (bot/hashing/pdqcoef.py), and the entry may differ in
none of the 64 farthest, at most 2 of the 96 farthest, at most 8 of the 128 farthest
(RELIABLE_TIERS), for one of the query's turns or flips (of the image as decoded: a
border-trimmed image's queries against add-image lists' crop entries matched an unrelated
dark photo, whose dark margins trimmed like a border, in bench/bench_robustness.py). Why: a smooth copy's re-encode or resize flips the bits whose coefficients sit
next to the median, and leaves the others; a provider list holds only the original's
hash, but the copy's own coefficients say which of its bits to trust. Measured with
bench/smooth_study.py (80 known images, 5,600 unrelated, 1,813 of them under quality 50):
copies of known smooth images agreed in all of their 64 farthest bits in the median, and
differed in 0-7 of them at the 90th percentile (by family; section 4 of its report); the
nearest unrelated images (dark photos with the layout of a listed dark photo) came to 1
of 64, 6 of 96, 12 of 128 bits. With each tier alone, no bound kept a margin to them; the
three tiers together matched none of the unrelated images, nor with every limit one step
looser (1, 4, 12), and raised provider lists' smooth copies (in-goal edits) from 80% to
91%. Not at quality 50 or more: there the nearest unrelated image agreed in all 64.
Nor at quality 0 or 1 (RELIABLE_MIN_QUALITY): there the image is flat at PDQ's scale (a
logo on a plain ground), and its "most reliable" bits are tiny coefficients; among Debian's
wallpapers and artwork used as known images (bench/debian_images.py), a WebP copy of a
quality-0 logo matched a dark wallpaper in all 128 of them, and no copy of quality 2 or
more matched another image; in the study no copy needed a quality under 2.
Lists larger than RELIABLE_MAX_ROWS are not searched this way (a linear scan: ~2 ms per
query and million rows; README "Smooth images").

Crop guesses over their bound (bot/classify/cropmatch.py; both kinds of list, any quality
from RELIABLE_MIN_QUALITY): a guess (the image padded back as if cropped) up to
CROP_CONFIRM_MARGIN bits over its bound also matches a listed image's own hash when its
mismatches keep to RELIABLE_TIERS, ranked by the guess's own coefficients. Where the guess
is right only the padding differs from the original, and it flips bits whose coefficients
sat next to the median. Measured with bench/crop_confirm_study.py (92 known images, 5,600
unrelated): no unrelated image's guess passed the tiers within 52 bits of a provider PDQ,
and the rule found 5-10 points more cropped copies; not against rows derived from a listed
image (an unrelated brightened screenshot matched a listed screenshot's brightened row);
only in lists searched by brute force, where the wider search costs nothing more.

Pure: integers in, integers out.
"""

from __future__ import annotations

from dataclasses import dataclass

# At and above this quality the list's threshold applies unchanged (the reference's
# recommended minimum for PDQ hashes).
FULL_QUALITY = 50
# Below FULL_QUALITY: every PDQ query (as decoded, rotated, flipped, trimmed; an
# animation's or a video's frames) within this many bits.
LOW_BOUND = 28
# Below FULL_QUALITY: a low-frequency signature within this of a listed one, 1000 x (1 - r).
LOWFREQ_BOUND = 20
# Below FULL_QUALITY: (bits, mismatches allowed) over the query's most reliable bits; every
# tier must hold for one query.
RELIABLE_TIERS = ((64, 0), (96, 2), (128, 8))
# Nor under this quality: a near-flat image (a logo on a plain ground) has no reliable bits.
RELIABLE_MIN_QUALITY = 2
# Lists with more PDQ entries than this are not searched by reliable bits (linear scan).
RELIABLE_MAX_ROWS = 2_000_000
# Crop guesses up to this many bits over their bound match a listed image's own hash when
# their mismatches keep to RELIABLE_TIERS (in lists searched by brute force alone).
CROP_CONFIRM_MARGIN = 9
# A pHash match needs the same label's PDQ within this many bits (when the list has one).
PHASH_PDQ_CONFIRM = 64


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
    bound = min(list_threshold, LOW_BOUND)
    return PdqBounds(bound, bound)


def uses_reliable_bits(quality: int | None, min_quality: int) -> bool:
    """Whether a query of PDQ `quality` is also matched by its most reliable bits."""
    return quality is not None and max(min_quality, RELIABLE_MIN_QUALITY) <= quality < FULL_QUALITY


def crop_confirm_bound(bound: int | None, quality: int | None, min_quality: int) -> int | None:
    """How far a crop guess of an image of PDQ `quality` may lie from a listed image's own
    hash when its most reliable bits agree with it; None: not matched that way."""
    if bound is None or quality is None or quality < max(min_quality, RELIABLE_MIN_QUALITY):
        return None
    return bound + CROP_CONFIRM_MARGIN


def lowfreq_bound(quality: int | None, min_quality: int) -> int | None:
    """The signature bound for a query of PDQ `quality`; None: not matched by signature."""
    if quality is None or quality < min_quality or quality >= FULL_QUALITY:
        return None
    return LOWFREQ_BOUND

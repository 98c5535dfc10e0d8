"""The rows a list holds for one image an operator or moderator lists (`modbot hashes
add-image`, the chat command `hash add`), and how its derived rows name it.

Both paths list the same rows, so that a copy is found alike whichever way its original was
listed: the exact hashes, PDQ, pHash, the low-frequency signature, and PDQ of crops and of a
brightened copy as derived rows (bot/lists/format.py). Each derived row names the image it
came from by its SHA-256 (`crop to 95%, top left; of sha256:<hex>`): removing the image (by
reply, or by its SHA-256) removes them too, even once its bytes are gone (purged, or
quarantined where the bot cannot read them), where recomputing the crops is impossible.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.hashing.media import Crop
from bot.model import SIGNATURE_HASH_TYPE, Hashes
from bot.lists.format import HashEntry, derived_of

# Crops whose PDQ is listed too (media.Crop). Central ones (fraction of each side kept): a
# copy cropped by 2.5-10%, evenly at both ends, stays within 20 bits of one of them; in steps
# of 5% (0.95, 0.9) 10% of 7.5% crops are missed (bench/bench_robustness.py --sweep). Then 95%
# anchored at the four corners, (keep, across, down): a copy cropped by 5% split unevenly
# between the ends is shifted against the central crop by up to 2.5% of a side, ~60 bits. And
# the whole of one side with 95% of the other, the cut at one end, (keep_x, keep_y, across,
# down): a copy cut along one edge. With them 96.7% of off-centre copies and 100% of one-side
# ones were found, against 88.0 and 93.5%; anchored at the middles of the sides too, an
# unrelated dark photo came within the bound of a portrait's crop (bench/offset_crop_study.py).
ADD_IMAGE_CROPS: tuple[Crop, ...] = (
    0.975, 0.95, 0.925, 0.9,
    *((0.95, across, down) for down in (0.0, 1.0) for across in (0.0, 1.0)),
    (1.0, 0.95, 0.5, 0.0), (1.0, 0.95, 0.5, 1.0), (0.95, 1.0, 0.0, 0.5), (0.95, 1.0, 1.0, 0.5),
)
# The whole image brightened by these gains (highlights clipped) is listed too: the one tone
# edit PDQ does not survive (bot/hashing/media.py crop_hashes; bench/bench_robustness.py).
ADD_IMAGE_GAINS = (1.3,)
# The least PDQ quality of a crop that is listed: smooth and dark images' crops match their
# copies' crops like the whole image does (bench/bench_robustness.py); flat ones (quality 0)
# hash noise and are left out.
CROP_MIN_QUALITY = 1

def image_entries(hashes: Hashes, crops: Sequence[tuple[str, str]], label: str) -> list[HashEntry]:
    """The rows of one image: its own hashes, then `crops` ((PDQ, what it is of) pairs, as
    the sandbox's `hash_with_crops` gives them) as derived rows naming the image."""
    entries = [HashEntry("sha256", hashes.sha256, label)]
    entries += [HashEntry(t, h, label) for t, h in (("md5", hashes.md5), ("pdq", hashes.pdq), ("phash", hashes.phash)) if h]
    entries += [HashEntry("pdq", crop, label, derived=derived_of(what, hashes.sha256)) for crop, what in crops]
    # The low-frequency signature: what finds copies of smooth images PDQ cannot (pdqrule).
    entries += [HashEntry(SIGNATURE_HASH_TYPE, sig, label) for sig in hashes.lowfreq[:1]]
    return entries


def own_values(hashes: Hashes) -> set[str]:
    """The values of an image's own rows (what `image_entries` lists besides derived rows)."""
    return {x for x in (hashes.sha256, hashes.md5, hashes.pdq, hashes.phash, *hashes.lowfreq[:1]) if x}


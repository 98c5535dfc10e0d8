"""Which crop guesses to try (bot/hashing/uncrop.py): recall on cropped copies, nearness of unrelated images.

    python bench/crop_study.py [--known-per-family 8] [--unrelated-per-family 560] [--jobs 2]

The corpus is bench/bench_robustness.py's (the same generators, seeds and edits). For each
cropped copy of a known image, and for each unrelated image, PDQ of the image as decoded
padded back (edge pixels repeated, as uncrop does) by every combination of cuts of 0, 1.25,
2.5, 3.75 and 5% at each of the four sides (25 x 25 = 625), against the PDQ a provider
lists for each known image (pdqhash of the original at full resolution). Prints, for some
sets of guesses: the share of each kind of crop within the bound of a derived query
(bot/classify/pdqrule.py: 31 bits, 28 under quality 50), the unrelated images within it,
and the nearest unrelated images. More guesses find more crops and bring unrelated images
nearer by chance: the table is how HYPOTHESES was chosen.

Benign generated images only. A run of the default corpus (5,692 images) takes ~5 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_robustness as br  # noqa: E402
import pdqhash  # noqa: E402

from bot.classify.pdqrule import FULL_QUALITY, LOW_BOUND  # noqa: E402
from bot.hashing import pdq, uncrop  # noqa: E402
from bot.hashing.decode import decode, open_image  # noqa: E402
from bot.hashing.limits import MediaLimits  # noqa: E402

STEPS = (0.0, 0.0125, 0.025, 0.0375, 0.05)
AXIS = [(lo, hi) for lo in STEPS for hi in STEPS]  # (before, after) cut of one axis
CROPS = [edit for edit in br.EDITS if edit.startswith("crop")]
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def grid(data: bytes) -> tuple[np.ndarray, int]:
    """PDQ (AXIS x AXIS x 32 bytes: rows' cut, columns' cut) of the decoded image padded back by
    every combination, and its quality."""
    limits = MediaLimits()
    luma = np.asarray(decode(open_image(data, limits), data, limits).convert("RGB").convert("F"))
    rows, cols = luma.shape
    smalls = []
    for top, bottom in AXIS:
        mixed_t = np.ascontiguousarray(pdq.weighted_rows(uncrop._band(rows, *uncrop._padding(rows, top, bottom)), luma).T)
        for left, right in AXIS:
            smalls.append(pdq.weighted_rows(uncrop._band(cols, *uncrop._padding(cols, left, right)), mixed_t).T)
    dct = pdq.dct_matrix()
    hexes = pdq.hashes_from_coefficients(dct @ np.stack(smalls).astype(np.float64) @ dct.T)
    codes = np.frombuffer(bytes.fromhex("".join(hexes)), np.uint8).reshape(len(AXIS), len(AXIS), 32)
    return codes, pdq.pdq_hash(luma)[1]


def original_of(item: br.Item) -> bytes:
    """The known or unrelated image's original file, as bench_robustness makes it."""
    if item.family == "skimage":
        return br.encode(br.skimage_sample(str(item.seed)), "PNG")
    assert item.size is not None and isinstance(item.seed, int)
    return br.encode(br.GENERATORS[item.family](item.seed, item.size), "JPEG", quality=90)


def provider_pdq(original: bytes) -> bytes:
    """The PDQ a provider lists for an original (pdqhash at full resolution), 32 bytes."""
    img = Image.open(io.BytesIO(original)).convert("RGB")
    bits, _quality = pdqhash.compute(np.ascontiguousarray(np.asarray(img)))
    return np.packbits(bits.astype(np.uint8)).tobytes()


def posted(item: br.Item, original: bytes) -> dict[str, bytes]:
    """What is posted of it: an unrelated image through its edit ("unrelated"), a known one's
    copies through each crop edit (by name)."""
    img = Image.open(io.BytesIO(original)).convert("RGB")
    rng = np.random.default_rng([sum(item.name.encode()), 7])  # as bench_robustness draws its edits
    if item.role == "unrelated":
        assert item.edit is not None
        return {"unrelated": original if item.edit == br.UNCHANGED else br.EDITS[item.edit](img, rng)}
    # Every edit, so that the random ones draw what bench_robustness draws.
    copies = {name: edit(img, rng) for name, edit in br.EDITS.items()}
    return {name: data for name, data in copies.items() if name in CROPS}


def hash_item(item: br.Item) -> tuple[br.Item, bytes, dict[str, tuple[np.ndarray, int]]]:
    original = original_of(item)
    return item, provider_pdq(original), {name: grid(data) for name, data in posted(item, original).items()}


def cells(pairs: list[tuple[tuple[float, float], tuple[float, float]]]) -> tuple[np.ndarray, np.ndarray]:
    where = {a: i for i, a in enumerate(AXIS)}
    unique = list(dict.fromkeys(pairs))
    return np.array([where[r] for r, _c in unique]), np.array([where[c] for _r, c in unique])


def guess_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    none = ((0.0, 0.0), (0.0, 0.0))
    hypotheses = [((t, b), (l, r)) for _name, (l, r, t, b) in uncrop.HYPOTHESES]
    centred = [((s, s), (s, s)) for s in STEPS]
    sides = [(a, (0.0, 0.0)) for a in AXIS if 0.0 in a] + [((0.0, 0.0), a) for a in AXIS if 0.0 in a]
    per_axis_centred = [((s, s), (t, t)) for s in STEPS for t in STEPS]
    return {
        "as decoded": cells([none]),
        "centred cuts (5)": cells(centred),
        "one side (17)": cells(sides),
        "centred and one side (21)": cells([none, *centred, *sides]),
        "+ centred per axis (37)": cells([none, *centred, *sides, *per_axis_centred]),
        f"uncrop.HYPOTHESES ({len(hypotheses)} + as decoded)": cells([none, *hypotheses]),
        "every combination (625)": cells([(r, c) for r in AXIS for c in AXIS]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-per-family", type=int, default=8)
    parser.add_argument("--unrelated-per-family", type=int, default=560)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    items = br.corpus(args.known_per_family, args.unrelated_per_family)
    with Pool(args.jobs) as pool:
        hashed = pool.map(hash_item, items, chunksize=8)
    known = [h for h in hashed if h[0].role == "known"]
    unrelated = [h for h in hashed if h[0].role == "unrelated"]
    providers = np.stack([np.frombuffer(p, np.uint8) for _i, p, _c in known])
    print(f"{len(known)} known images, {len(unrelated)} unrelated; bound 31 bits, {LOW_BOUND} under quality {FULL_QUALITY}\n")
    print("| guesses | " + " | ".join(c.replace("crop ", "") for c in CROPS) + " | unrelated within | nearest unrelated |")
    print("|---|" + "--:|" * (len(CROPS) + 2))
    for name, (r, c) in guess_sets().items():
        shares = []
        for crop in CROPS:
            found = 0
            for _item, provider, copies in known:
                codes, quality = copies[crop]
                distance = _POPCOUNT[codes[r, c] ^ np.frombuffer(provider, np.uint8)].sum(-1, dtype=np.int32).min()
                found += distance <= _bound(quality)
            shares.append(f"{100 * found / len(known):.1f}")
        nearest, within = [], 0
        for _item, _provider, copies in unrelated:
            codes, quality = copies["unrelated"]
            distance = int(_POPCOUNT[codes[r, c][:, None, :] ^ providers[None]].sum(-1, dtype=np.int32).min())
            nearest.append(distance)
            within += distance <= _bound(quality)
        print(f"| {name} | " + " | ".join(shares) + f" | {within} | {', '.join(map(str, sorted(nearest)[:3]))} |")


def _bound(quality: int) -> int:
    return 31 if quality >= FULL_QUALITY else LOW_BOUND


if __name__ == "__main__":
    main()

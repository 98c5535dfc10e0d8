"""How to pad a cropped copy back (bot/hashing/uncrop.py): which padding brings copies nearest.

    python bench/crop_padding_study.py [--known-per-family 8] [--unrelated-per-family 560] [--jobs 2]
                                       [--paddings edge,mean,linear,reflect]

The crop guesses pad the posted image back to its original's extent, and only the padding
differs from the original's margin where the guess is right; how the padding is made
decides how far the padded copy lands from its original's PDQ. Each padding here is a
linear map of the image's edge pixels (so uncrop can fold it into PDQ's blur-and-decimate
bands, as it folds the repeated edge pixels in now):
- edge: the edge pixel repeated (what uncrop does);
- mean: the mean of the `pad` pixels nearest the edge, repeated (a texture's noise averaged out);
- linear: the same mean, continued along the slope between it and the mean of the next
  `pad` pixels (a gradient goes on as it went);
- reflect: the pixels nearest the edge, mirrored.
The corpus, edits and bounds are bench/crop_study.py's: for each padding, with the guesses
of uncrop.HYPOTHESES (and the image as decoded), the share of each kind of crop whose
nearest guess lies within the bound of a derived query, the unrelated images within it, and
the nearest three. Dense operators, computed here for the study; not the bot's code path.
"""

from __future__ import annotations

import argparse
import functools
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_robustness as br  # noqa: E402
import crop_study  # noqa: E402

from bot.classify.pdqrule import FULL_QUALITY, LOW_BOUND  # noqa: E402
from bot.hashing import pdq, uncrop  # noqa: E402
from bot.hashing.decode import decode, open_image  # noqa: E402
from bot.hashing.limits import MediaLimits  # noqa: E402

CROPS = [edit for edit in br.EDITS if edit.startswith("crop")]
PADDINGS = ("edge", "mean", "linear", "reflect")
GUESSES = [(0.0, 0.0, 0.0, 0.0), *(cut for _name, cut in uncrop.HYPOTHESES)]  # left, right, top, bottom
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def padding_matrix(n: int, before: int, after: int, how: str) -> np.ndarray:
    """(n + before + after) x n: the padded side as a linear map of the side's n pixels."""
    out = np.zeros((n + before + after, n))
    out[before:before + n] = np.eye(n)
    for pad, rows, mirror in ((before, range(before - 1, -1, -1), False), (after, range(before + n, before + n + after), True)):
        if not pad:
            continue
        window = max(1, min(pad, n // 2))
        for k, row in enumerate(rows, start=1):  # k: how far outside the edge
            if how == "edge":
                weights = {0: 1.0}
            elif how == "reflect":
                weights = {min(k - 1, n - 1): 1.0}
            else:
                weights = {i: 1.0 / window for i in range(window)}
                if how == "linear":
                    # mean(first window) + slope * distance, slope = (near - far) / window.
                    reach = (k + (window - 1) / 2) / window
                    for i in range(window):
                        weights[i] += reach / window
                        weights[window + i] = weights.get(window + i, 0.0) - reach / window
            for i, w in weights.items():
                out[row, (n - 1 - i) if mirror else i] += w
    return out


@functools.lru_cache(maxsize=4096)
def operator(n: int, cut_before: float, cut_after: float, how: str) -> np.ndarray:
    """64 x n: PDQ's blur-and-decimate of the side padded back as `how` says."""
    before, after = uncrop._padding(n, cut_before, cut_after)
    indices, weights = pdq._band(n + before + after)
    band = np.zeros((64, n + before + after))
    np.add.at(band, (np.arange(64)[:, None], indices), weights)
    return band @ padding_matrix(n, before, after, how)


def hashes(data: bytes, paddings: tuple[str, ...]) -> tuple[dict[str, np.ndarray], int]:
    """Per padding, PDQ of each guess (guesses x 32 bytes), and the image's quality."""
    limits = MediaLimits()
    luma = np.asarray(decode(open_image(data, limits), data, limits).convert("RGB").convert("F"), dtype=np.float64)
    rows, cols = luma.shape
    dct = pdq.dct_matrix()
    out = {}
    for how in paddings:
        by_rows: dict[tuple[float, float], np.ndarray] = {}
        smalls = []
        for left, right, top, bottom in GUESSES:
            mixed = by_rows.get((top, bottom))
            if mixed is None:
                mixed = by_rows[(top, bottom)] = operator(rows, top, bottom, how) @ luma
            smalls.append(mixed @ operator(cols, left, right, how).T)
        hexes = pdq.hashes_from_coefficients(dct @ np.stack(smalls) @ dct.T)
        out[how] = np.frombuffer(bytes.fromhex("".join(hexes)), np.uint8).reshape(len(GUESSES), 32)
    return out, pdq.pdq_hash(luma.astype(np.float32))[1]


def hash_item(args: tuple[br.Item, tuple[str, ...]]) -> tuple[br.Item, bytes, dict[str, tuple[dict[str, np.ndarray], int]]]:
    item, paddings = args
    original = crop_study.original_of(item)
    copies = {name: hashes(data, paddings) for name, data in crop_study.posted(item, original).items()}
    return item, crop_study.provider_pdq(original), copies


def _bound(quality: int) -> int:
    return 31 if quality >= FULL_QUALITY else LOW_BOUND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-per-family", type=int, default=8)
    parser.add_argument("--unrelated-per-family", type=int, default=560)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--paddings", default=",".join(PADDINGS))
    args = parser.parse_args()
    paddings = tuple(args.paddings.split(","))
    items = br.corpus(args.known_per_family, args.unrelated_per_family)
    with Pool(args.jobs) as pool:
        hashed = pool.map(hash_item, [(item, paddings) for item in items], chunksize=8)
    known = [h for h in hashed if h[0].role == "known"]
    unrelated = [h for h in hashed if h[0].role == "unrelated"]
    providers = np.stack([np.frombuffer(p, np.uint8) for _i, p, _c in known])
    smooth = [(c["crop 5% centred"][1] < FULL_QUALITY) for _i, _p, c in known]
    print(f"{len(known)} known images ({sum(smooth)} smooth), {len(unrelated)} unrelated; "
          f"bound 31 bits, {LOW_BOUND} under quality {FULL_QUALITY}; guesses: uncrop.HYPOTHESES and as decoded\n")
    print("| padding | " + " | ".join(c.replace("crop ", "") for c in CROPS) + " | smooth / textured, 5% crops | unrelated within | nearest unrelated |")
    print("|---|" + "--:|" * (len(CROPS) + 3))
    for how in paddings:
        shares = []
        found_by = {True: [0, 0], False: [0, 0]}
        for crop in CROPS:
            found = 0
            for (_item, provider, copies), is_smooth in zip(known, smooth):
                codes, quality = copies[crop][0][how], copies[crop][1]
                distance = _POPCOUNT[codes ^ np.frombuffer(provider, np.uint8)].sum(-1, dtype=np.int32).min()
                hit = distance <= _bound(quality)
                found += hit
                if crop.startswith("crop 5%"):
                    found_by[is_smooth][0] += hit
                    found_by[is_smooth][1] += 1
            shares.append(f"{100 * found / len(known):.1f}")
        split = " / ".join(f"{100 * a / max(1, b):.1f}" for a, b in (found_by[True], found_by[False]))
        nearest, within = [], 0
        for _item, _provider, copies in unrelated:
            codes, quality = copies["unrelated"][0][how], copies["unrelated"][1]
            distance = int(_POPCOUNT[codes[:, None, :] ^ providers[None]].sum(-1, dtype=np.int32).min())
            nearest.append(distance)
            within += distance <= _bound(quality)
        print(f"| {how} | " + " | ".join(shares) + f" | {split} | {within} | {', '.join(map(str, sorted(nearest)[:3]))} |")


if __name__ == "__main__":
    main()

"""Crop guesses just over the bound: do their most reliable bits tell copies from unrelated images?

    python bench/crop_confirm_study.py [--known-per-family 8] [--unrelated-per-family 560] [--jobs 2]

Most cropped copies the crop guesses (bot/hashing/uncrop.py) miss in provider lists land
32-44 bits from their original with the right guess: over the bound of a derived query
(31), and under the nearest unrelated image (42). Where the guess is right, what differs is
the padding: it moves coefficients near the median most, so a copy's mismatches should fall
in its least reliable bits, and an unrelated image's anywhere. For each guess (and the image
as decoded) of each cropped copy and each unrelated image, against each provider PDQ of the
corpus (bench/crop_study.py's), this counts the mismatches in the query's K most reliable
bits (those whose coefficient lies farthest from the median, as bot/classify/reliablematch.py
ranks them), and prints, for rules "within the bound, or a guess within D bits with at most
so many of each tier apart": the share of each kind of crop found and the unrelated images
matched, and the nearest unrelated pairs by both measures.

Against provider PDQ alone the rule looked safe; tried in the bot it matched an unrelated
image to an add-image list's brightened entry. The bot has it since, against listed images'
own hashes only (derived rows skipped): pdqrule.CROP_CONFIRM_MARGIN, bot/classify/cropmatch.py.
"""

from __future__ import annotations

import argparse
import pickle
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
TIERS = (32, 64, 96, 128)
NEAR = 56  # pairs nearer than this are kept for the tables
_PROVIDERS: np.ndarray | None = None  # (known, 256) bool, set in each worker


def queries(data: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Bits (45 x 256, PDQ's order) of the image as decoded and its 44 crop guesses, each
    bit's reliability rank (0 = most reliable), and the quality."""
    limits = MediaLimits()
    luma = np.asarray(decode(open_image(data, limits), data, limits).convert("RGB").convert("F"), dtype=np.float32)
    own, quality = pdq._dct16(luma)
    guessed = uncrop.coefficients_of(luma)
    assert own is not None and guessed is not None
    flat = np.concatenate([own[None], guessed]).reshape(-1, 256)[:, ::-1]  # most significant bit first
    median = np.partition(flat, 127, axis=1)[:, 127:128]
    order = np.argsort(-np.abs(flat - median), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(256)[None, :].repeat(len(flat), 0), axis=1)
    return flat > median, rank, quality


def pairs(data: bytes, providers: np.ndarray) -> tuple[np.ndarray, int]:
    """Per (query, provider) pair nearer than NEAR: query number, provider number, distance and
    mismatches in each tier of TIERS."""
    bits, rank, quality = queries(data)
    apart = bits[:, None, :] != providers[None, :, :]  # queries x providers x 256
    distance = apart.sum(-1)
    q, p = np.nonzero(distance < NEAR)
    rows = [q, p, distance[q, p]]
    for k in TIERS:
        rows.append((apart[q, p] & (rank[q] < k)).sum(-1))
    return np.stack(rows, axis=1).astype(np.int16), quality


def _init(providers: np.ndarray) -> None:
    global _PROVIDERS
    _PROVIDERS = providers


def hash_item(args: tuple[int, br.Item]) -> tuple[int, br.Item, dict[str, tuple[np.ndarray, int]]]:
    number, item = args
    assert _PROVIDERS is not None
    copies = {}
    for name, data in crop_study.posted(item, crop_study.original_of(item)).items():
        found, quality = pairs(data, _PROVIDERS)
        copies[name] = (found if name == "unrelated" else found[found[:, 1] == number], quality)
    return number, item, copies


def _bound(quality: int) -> int:
    return 31 if quality >= FULL_QUALITY else LOW_BOUND


Rule = tuple[int, tuple[tuple[int, int], ...]]  # D, and (tier, most apart) each


def matched(found: np.ndarray, quality: int, rule: Rule | None) -> bool:
    """Whether any pair of `found` passes: within the bound, or (rule) a guess (not the
    image as decoded) within D bits with at most so many of each tier's bits apart."""
    if not len(found):
        return False
    if (found[:, 2] <= _bound(quality)).any():
        return True
    if rule is None:
        return False
    limit, tiers = rule
    guesses = found[found[:, 0] > 0]
    ok = guesses[:, 2] <= limit
    for tier, most in tiers:
        ok &= guesses[:, 3 + TIERS.index(tier)] <= most
    return bool(ok.any())


def _describe(rule: Rule | None) -> str:
    if rule is None:
        return "within the bound"
    return f"or a guess within {rule[0]}, " + ", ".join(f"<= {m} of top {t}" for t, m in rule[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-per-family", type=int, default=8)
    parser.add_argument("--unrelated-per-family", type=int, default=560)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the pairs in this file, and read them from it when it exists")
    args = parser.parse_args()
    items = br.corpus(args.known_per_family, args.unrelated_per_family)
    known_items = [i for i in items if i.role == "known"]
    providers = np.stack([np.unpackbits(np.frombuffer(crop_study.provider_pdq(crop_study.original_of(i)), np.uint8)).astype(bool)
                          for i in known_items])
    numbered = [(known_items.index(i) if i.role == "known" else -1, i) for i in items]
    if args.cache is not None and args.cache.exists():
        hashed = pickle.loads(args.cache.read_bytes())
    else:
        with Pool(args.jobs, initializer=_init, initargs=(providers,)) as pool:
            hashed = pool.map(hash_item, numbered, chunksize=8)
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps(hashed))
    known = [h for h in hashed if h[1].role == "known"]
    unrelated = [h for h in hashed if h[1].role == "unrelated"]
    print(f"{len(known)} known images, {len(unrelated)} unrelated; bound 31 bits, {LOW_BOUND} under quality {FULL_QUALITY}\n")
    rules: list[Rule | None] = [None]
    for limit in (36, 40, 44, 48, 52):
        rules += [(limit, ((64, 0), (96, 2), (128, 8))), (limit, ((64, 1), (96, 4), (128, 12))),
                  (limit, ((64, 2), (96, 6), (128, 16))), (limit, ((32, 0), (64, 1), (96, 3), (128, 8)))]
    print("| rule | " + " | ".join(c.replace("crop ", "") for c in CROPS) + " | unrelated matched |")
    print("|---|" + "--:|" * (len(CROPS) + 1))
    for rule in rules:
        shares = [100 * sum(matched(*c[crop], rule) for _n, _i, c in known) / len(known) for crop in CROPS]
        false = sum(matched(*c["unrelated"], rule) for _n, _i, c in unrelated)
        name = _describe(rule)
        print(f"| {name} | " + " | ".join(f"{s:.1f}" for s in shares) + f" | {false} |")
    print("\nNearest unrelated pairs (guesses), by mismatches in each tier at distance <= 48:")
    near = np.concatenate([c["unrelated"][0] for _n, _i, c in unrelated])
    near = near[(near[:, 0] > 0) & (near[:, 2] <= 48)]
    for t, tier in enumerate(TIERS):
        column = np.sort(near[:, 3 + t])[:8] if len(near) else []
        print(f"  top {tier}: fewest apart {list(map(int, column))}")
    print(f"  distances: {sorted(map(int, near[:, 2]))[:8] if len(near) else []}")
    print("\nCopies missed within the bound whose right-ish guess lies within 44 (distance, apart per tier):")
    for crop in CROPS:
        rows = []
        for _n, _i, c in known:
            found, quality = c[crop]
            if len(found) and not (found[:, 2] <= _bound(quality)).any():
                g = found[(found[:, 0] > 0) & (found[:, 2] <= 44)]
                if len(g):
                    best = g[np.lexsort((g[:, 4], g[:, 2]))][0]
                    rows.append(tuple(int(v) for v in best[2:]))
        print(f"  {crop}: {sorted(rows)}")


if __name__ == "__main__":
    main()

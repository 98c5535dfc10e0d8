"""What separates copies of smooth images from unrelated smooth images: the measurements
behind bot/classify/pdqrule.py's bounds, and a candidate signal for add-image lists.

    python bench/smooth_study.py hash CACHE [--known-per-family 8] [--unrelated-per-family 560] [--jobs 2]
    python bench/smooth_study.py report CACHE

`hash` generates bench_robustness.py's corpus (the same known images, edits and unrelated
images, by the same seeds) and keeps, per copy and per unrelated image, modbot's hashes
and PDQ's 64x64 intermediate image of the reduced decode (and of the border-trimmed
image): tens of MB for the default run, a few minutes of CPU per thousand images.
`report` reads it back and prints, all from those intermediates:

1. by the query's PDQ quality and the listed image's (provider lists: pdqhash of the
   original at full resolution), the nearest an unrelated image's PDQ queries come to
   any listed PDQ, as decoded and derived (rotations/flips/trimmed);
2. the share of copies matched per family, over the edits inside the issue's goal, with
   one bound under quality 50 from 16 to 42 bits (and the rule of the session before);
3. a low-frequency signature for add-image lists: the 6x6 lowest PDQ DCT coefficients
   (frequencies 1-6, DC excluded), normalised, compared by correlation with the query's
   eight turns and flips (sign changes and transposition of those coefficients); as
   1000 x (1 - correlation). The measurement behind modbot's `lowfreq` entries
   (bot/hashing/smoothsig.py, bot/classify/smoothmatch.py), built since;
4. the most reliable bits (bot/classify/reliablematch.py): per tier of pdqrule.RELIABLE_TIERS,
   the nearest unrelated query under quality 50, the unrelated images matched at the limits
   and one step looser, copies' own mismatches, and the share of copies matched with and
   without the rule, in both kinds of list.

Rotations here are of the 64x64 intermediate, not of the pixels (a few bits from what
modbot computes on textured images; the same on smooth ones). add-image lists are
modelled by their PDQ entry only (no crop entries), so "crop 5% centred" is not
representative in (2). Uses bot.hashing.decode's decoder: a study, not a test.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_robustness as br  # noqa: E402
from bot.demo.samples import encode  # noqa: E402
from bot.hashing import decode, media, pdq  # noqa: E402
from bot.hashing.border import trim_box  # noqa: E402
from bot.hashing.limits import MediaLimits  # noqa: E402
from bot.classify.pdqrule import RELIABLE_MIN_QUALITY, RELIABLE_TIERS  # noqa: E402

QUALITY_BANDS = ((0, 20), (20, 35), (35, 50), (50, 101))
BOUNDS = (16, 20, 24, 28, 31, 34, 38, 42)
LOW = 6  # coefficients per axis in the low-frequency signature


# --- hashing --------------------------------------------------------------------------------

def _intermediates(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    limits = MediaLimits()
    img = decode.open_image(data, limits)
    rgb = decode.decode(img, data, limits)
    luma = media._luma(rgb)
    left, top, right, bottom = trim_box(rgb)
    trimmed = None
    if (left, top, right, bottom) != (0, 0, *rgb.size):
        trimmed = pdq.downsample(luma[top:bottom, left:right]).astype(np.float32)
    return pdq.downsample(luma).astype(np.float32), trimmed


def _work(item: br.Item) -> tuple[br.Hashed, dict[str, tuple[np.ndarray, np.ndarray | None]]]:
    hashed = br._hash_item((item, False))
    if item.family == "skimage":
        original = encode(br.skimage_sample(str(item.seed)), "PNG")
    else:
        assert item.size is not None and isinstance(item.seed, int)
        original = encode(br.GENERATORS[item.family](item.seed, item.size), "JPEG", quality=90)
    img = Image.open(io.BytesIO(original)).convert("RGB")
    rng = np.random.default_rng([sum(item.name.encode()), 7])  # the edits' draws, as in _hash_item
    found = {}
    if item.role == "unrelated":
        assert item.edit is not None
        found[item.edit] = _intermediates(original if item.edit == br.UNCHANGED else br.EDITS[item.edit](img, rng))
        hashed.original = b""
    else:
        found[br.UNCHANGED] = _intermediates(original)
        for name, edit in br.EDITS.items():
            found[name] = _intermediates(edit(img, rng))
    return hashed, found


# --- features -------------------------------------------------------------------------------

def _coefficients(small: np.ndarray) -> np.ndarray:
    dct = pdq._dct_matrix()
    return dct @ small.astype(np.float64) @ dct.T


def _bits(c: np.ndarray) -> np.ndarray:
    flat = c.reshape(-1)
    return (flat > np.partition(flat, 127)[127])[::-1]  # pdq._to_hex's order


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    return [a, np.rot90(a), np.rot90(a, 2), np.rot90(a, 3), np.flipud(a), np.fliplr(a), a.T, np.rot90(a, 2).T]


def _signature(c: np.ndarray) -> np.ndarray:
    v = c[:LOW, :LOW].reshape(-1)
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else v


class Query:
    """A posted image's queries: as decoded first, then its turns and flips (and the
    trimmed image's)."""

    def __init__(self, small: np.ndarray, trimmed: np.ndarray | None) -> None:
        images = _dihedral(small) + (_dihedral(trimmed) if trimmed is not None else [])
        coefficients = [_coefficients(i) for i in images]
        self.quality = pdq._quality(small)
        self.bits = np.array([_bits(c) for c in coefficients])
        self.signatures = np.array([_signature(c) for c in coefficients])
        # Tiers of most reliable bits (bot/classify/reliablematch.py), in _bits' order.
        flat = np.array([c.reshape(-1)[::-1] for c in coefficients])
        distance = np.abs(flat - np.partition(flat, 127, axis=1)[:, 127:128])
        order = np.argsort(-distance, axis=1, kind="stable")
        self.tiers = np.zeros((len(RELIABLE_TIERS), len(flat), 256), dtype=bool)
        for t, (count, _limit) in enumerate(RELIABLE_TIERS):
            np.put_along_axis(self.tiers[t], order[:, :count], True, axis=1)


def _hexbits(hex_hash: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8)).astype(bool)


def _nearest(q: Query, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per listed image: Hamming distance of the as-decoded query, and of the best derived one."""
    d = (q.bits[:, None, :] != bits[None]).sum(axis=2)
    return d[0], d[1:].min(axis=0)


def _reliable(q: Query, bits: np.ndarray, limits: tuple[int, ...]) -> np.ndarray:
    """Per listed image: whether one of the as-decoded image's eight queries (not the
    trimmed image's, as modbot) has its mismatches in every tier within `limits`."""
    differ = q.bits[:8, None, :] != bits[None]  # as-decoded queries x listed x 256
    counts = np.einsum("tqb,qlb->tql", q.tiers[:, :8].astype(np.int32), differ.astype(np.int32))
    return np.all(counts <= np.asarray(limits)[:, None, None], axis=0).any(axis=0)


def _tier_counts(q: Query, bits: np.ndarray) -> np.ndarray:
    """Per tier and listed image: the fewest mismatches over the queries (tiers x listed)."""
    differ = q.bits[:8, None, :] != bits[None]
    return np.einsum("tqb,qlb->tql", q.tiers[:, :8].astype(np.int32), differ.astype(np.int32)).min(axis=1)


def _nearest_signature(q: Query, signatures: np.ndarray) -> np.ndarray:
    return np.round(1000 * (1 - q.signatures @ signatures.T)).min(axis=0)


# --- report ---------------------------------------------------------------------------------

def _band(quality: int) -> int:
    return next(i for i, (lo, hi) in enumerate(QUALITY_BANDS) if lo <= quality < hi)


def report(cache: Path) -> None:
    data = pickle.loads(cache.read_bytes())
    known = [(h, f) for h, f in data if h.item.role == "known"]
    unrelated = [(h, f) for h, f in data if h.item.role == "unrelated"]
    family = np.array([h.item.family for h, _ in known])
    smooth = np.array([h.provider_quality < br.FULL_QUALITY for h, _ in known])
    listed_quality = np.array([h.provider_quality for h, _ in known])
    lists = {
        "provider": np.array([_hexbits(h.provider_pdq) for h, _ in known]),
        "add-image": np.array([_bits(_coefficients(f[br.UNCHANGED][0])) for _, f in known]),
    }
    signatures = np.array([_signature(_coefficients(f[br.UNCHANGED][0])) for _, f in known])
    edits = list(known[0][1])
    copies = {e: [Query(*f[e]) for _, f in known] for e in edits}
    others = [Query(*next(iter(f.values()))) for _, f in unrelated]
    low_others = np.array([q.quality < br.FULL_QUALITY for q in others])
    print(f"# Smooth-image study ({len(known)} known, {int(smooth.sum())} under quality 50; "
          f"{len(unrelated)} unrelated, {int(low_others.sum())} under 50)\n")
    fams = sorted(set(family))
    print("Known under quality 50 per family: " + ", ".join(f"{f} {int((smooth & (family == f)).sum())}/{int((family == f).sum())}" for f in fams) + "\n")

    print("## 1. Nearest unrelated query to any listed PDQ, provider list (as decoded / derived)\n")
    heads = [f"listed q {lo}-{hi - 1}" for lo, hi in QUALITY_BANDS]
    print("| query quality | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    nearest = np.full((4, 4, 2), 999)
    for q in others:
        a, d = _nearest(q, lists["provider"])
        for j in range(len(known)):
            cell = nearest[_band(q.quality), _band(int(listed_quality[j]))]
            cell[0], cell[1] = min(cell[0], a[j]), min(cell[1], d[j])
    for i, (lo, hi) in enumerate(QUALITY_BANDS):
        print(f"| {lo}-{hi - 1} | " + " | ".join(f"{a} / {d}" for a, d in nearest[i]) + " |")
    closest = sorted(
        (int(min(_nearest(q, lists["provider"])[0].min(), _nearest(q, lists["provider"])[1].min())), h.item.name, h.item.edit or "", q.quality)
        for q, (h, _) in zip(others, unrelated) if q.quality < br.FULL_QUALITY
    )[:5]
    print("\nClosest under quality 50: " + ", ".join(f"{n} ({e}, q {ql}) at {d}" for d, n, e, ql in closest) + "\n")

    print("## 2. Copies matched with one bound under quality 50 (in-goal edits; threshold 31 at 50+)\n")
    for mode, bits in lists.items():
        goal = [e for e in edits if e not in br.OUTSIDE_GOAL[mode]]
        own = {e: [_nearest(q, bits) for q in copies[e]] for e in goal}
        un = [_nearest(q, bits) for q in others]
        print(f"{mode}:\n")
        print("| bound under 50 | smooth | textured | " + " | ".join(fams) + " | unrelated under 50 within the bound |")
        print("|---|" + "---:|" * (len(fams) + 3))
        for bound in ("before", *BOUNDS):
            ok = []
            for e in goal:
                row = []
                for i, (q, (a, d)) in enumerate(zip(copies[e], own[e])):
                    if q.quality >= br.FULL_QUALITY:
                        row.append(a[i] <= 31 or d[i] <= 31)
                    elif bound == "before":  # the rule of the session before: 24 -> 8, derived 8
                        row.append(a[i] <= round(8 + 16 * min(1, q.quality / 49)) or d[i] <= 8)
                    else:
                        row.append(min(a[i], d[i]) <= bound)
                ok.append(row)
            m = np.array(ok)
            limit = 8 if bound == "before" else bound
            false = sum(1 for q, (a, d) in zip(others, un) if q.quality < br.FULL_QUALITY and min(a.min(), d.min()) <= max(limit, 24))
            print(f"| {bound} | {100 * m[:, smooth].mean():.1f} | {100 * m[:, ~smooth].mean():.1f} | "
                  + " | ".join(f"{100 * m[:, family == f].mean():.0f}" for f in fams) + f" | {false} |")  # "before": counted within 24, its largest bound
        print()

    print("## 3. Low-frequency signature (add-image lists), 1000 x (1 - correlation)\n")
    sig_own = {e: np.array([_nearest_signature(q, signatures)[i] for i, q in enumerate(copies[e])]) for e in edits}
    sig_un = np.array([_nearest_signature(q, signatures).min() for q in others])
    sig_cross = min(float(np.delete(_nearest_signature(q, signatures), i).min()) for e in edits for i, q in enumerate(copies[e]))
    print(f"Unrelated nearest: {sig_un[low_others].min():.0f} under quality 50, {sig_un[~low_others].min():.0f} at 50+; "
          f"a copy to another known image: {sig_cross:.0f}.\n")
    print("| edit | smooth copies: median / 90th pct / max |")
    print("|---|---|")
    for e in edits:
        v = sig_own[e][smooth]
        print(f"| {e} | {np.median(v):.0f} / {np.percentile(v, 90):.0f} / {v.max():.0f} |")
    goal = [e for e in edits if e not in br.OUTSIDE_GOAL["add-image"]]
    bits = lists["add-image"]
    for limit in (20, 30):
        ok = []
        for e in goal:
            row = []
            for i, q in enumerate(copies[e]):
                a, d = _nearest(q, bits)
                bound = 31 if q.quality >= br.FULL_QUALITY else 28
                row.append(min(a[i], d[i]) <= bound or (q.quality < br.FULL_QUALITY and sig_own[e][i] <= limit))
            ok.append(row)
        m = np.array(ok)
        false = int(((sig_un <= limit) & low_others).sum())
        print(f"\nPDQ (28 under 50) or, under 50, the signature within {limit}: smooth {100 * m[:, smooth].mean():.1f}%, "
              + ", ".join(f"{f} {100 * m[:, family == f].mean():.0f}" for f in fams) + f"; unrelated matched {false}.")
    _report_reliable(known, others, copies, lists, smooth, family, fams, edits)


def _report_reliable(known: list, others: list, copies: dict, lists: dict, smooth: np.ndarray,
                     family: np.ndarray, fams: list, edits: list) -> None:
    limits = tuple(limit for _, limit in RELIABLE_TIERS)
    looser = (limits[0] + 1, limits[1] + 2, limits[2] + 4)
    print("\n## 4. Most reliable bits (bot/classify/pdqrule.py RELIABLE_TIERS), queries under quality 50\n")
    low = [q for q in others if q.quality < br.FULL_QUALITY]
    for mode, bits in lists.items():
        nearest = np.min([_tier_counts(q, bits).min(axis=1) for q in low], axis=0)
        near_un = [sum(bool(_reliable(q, bits, lim).any()) for q in low) for lim in (limits, looser)]
        own = {e: np.array([_tier_counts(q, bits)[:, i] for i, q in enumerate(copies[e])]) for e in edits}
        print(f"{mode}: nearest unrelated per tier (each tier alone) {tuple(int(n) for n in nearest)}; "
              f"unrelated matched at {limits}: {near_un[0]}, at {looser}: {near_un[1]}")
        per_family = []
        for f in fams:
            v = np.concatenate([own[e][[i for i, q in enumerate(copies[e]) if q.quality < br.FULL_QUALITY and family[i] == f], 0]
                                for e in edits])
            if len(v):
                per_family.append(f"{f} {np.median(v):.0f}/{np.percentile(v, 90):.0f}/{v.max()}")
        print("  own copies under quality 50, mismatches in the first tier (median / 90th pct / max): " + ", ".join(per_family))
        goal = [e for e in edits if e not in br.OUTSIDE_GOAL[mode]]
        rows = []
        for e in goal:
            row = []
            for i, q in enumerate(copies[e]):
                a, d = _nearest(q, bits)
                pdq_ok = min(a[i], d[i]) <= (31 if q.quality >= br.FULL_QUALITY else 28)
                rule = RELIABLE_MIN_QUALITY <= q.quality < br.FULL_QUALITY
                row.append((pdq_ok, pdq_ok or (rule and bool(_reliable(q, bits, limits)[i]))))
            rows.append(row)
        m = np.array(rows)
        cross = sum(int(np.delete(_reliable(q, bits, limits), i).any()) for e in goal for i, q in enumerate(copies[e]) if q.quality < br.FULL_QUALITY)
        print(f"  in-goal copies matched, PDQ bounds alone -> with reliable bits: smooth {100 * m[:, smooth, 0].mean():.1f} -> "
              f"{100 * m[:, smooth, 1].mean():.1f}, textured {100 * m[:, ~smooth, 0].mean():.1f} -> {100 * m[:, ~smooth, 1].mean():.1f}; "
              + ", ".join(f"{f} {100 * m[:, family == f, 1].mean():.0f}" for f in fams) + f"; copies matching another known image: {cross}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("hash", "report"))
    parser.add_argument("cache", type=Path)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--known-per-family", type=int, default=8)
    parser.add_argument("--unrelated-per-family", type=int, default=560)
    args = parser.parse_args()
    if args.stage == "hash":
        items = br.corpus(args.known_per_family, args.unrelated_per_family)
        with ProcessPoolExecutor(args.jobs) as pool:
            args.cache.write_bytes(pickle.dumps(list(pool.map(_work, items, chunksize=4))))
    else:
        report(args.cache)


if __name__ == "__main__":
    main()

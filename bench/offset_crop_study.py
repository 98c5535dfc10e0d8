"""Which off-centre crops of a known image `hashes add-image` should list (bot/cli/scan.py).

    python bench/offset_crop_study.py [--known-per-family 20] [--unrelated-per-family 90] [--extra 4] [--jobs 2]

add-image listed PDQ of the whole image and of central crops (ADD_IMAGE_CROPS' fractions). A copy cropped
by 5% of each side split unevenly between the two ends ("crop 5% off-centre" in
bench/bench_robustness.py) is shifted against the central crop by up to 2.5% of a side, and
PDQ moves ~25 bits per 1% of shift; the query's own crop guesses (bot/hashing/uncrop.py) find
some of the rest. This study lists, besides add-image's entries, PDQ of crops that keep 95% of
each side anchored elsewhere (the cut split `across` : 1 - `across` between left and right,
`down` : 1 - `down` between top and bottom), for several sets of anchors, and matches through
the real classifier: the bench's own off-centre and one-side copies and `--extra` more
off-centre copies of each known image, and the unrelated images as the bench posts them.
Crops and the brightened image are listed as derived rows (bot/lists/format.py), as
add-image writes them: the rules that lean on an image's own hash skip them.

Benign generated images only (the corpus is bench_robustness's).
"""

from __future__ import annotations

import argparse
import io
import itertools
import pickle
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_robustness as br  # noqa: E402
import crop_study  # noqa: E402

import bot.classify.cropmatch as cropmatch  # noqa: E402
from bot.classify.hashlist import HashListClassifier  # noqa: E402
from bot.lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS, CROP_MIN_QUALITY  # noqa: E402
from bot.hashing import compute_hashes, named_crop_hashes, pdq  # noqa: E402
from bot.hashing.decode import decode, open_image  # noqa: E402
from bot.hashing.limits import MediaLimits  # noqa: E402
from bot.lists.format import HashEntry  # noqa: E402
from bot.lists.loaded import LoadedList  # noqa: E402
from bot.model import SIGNATURE_HASH_TYPE  # noqa: E402

KEEP = 0.95
CENTRED = tuple(c for c in ADD_IMAGE_CROPS if isinstance(c, float))  # add-image's central crops
POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
COPIES = ("crop 5% off-centre", "crop 5% one side", "crop 5% centred", "crop 7.5% centred")
# Crops that keep the whole of one side and 95% of the other, the cut all at one end
# (keep_x, keep_y, across, down): what a copy cut along one edge shows ("crop 5% one side").
STRIPS = [(1.0, KEEP, 0.5, 0.0), (1.0, KEEP, 0.5, 1.0), (KEEP, 1.0, 0.0, 0.5), (KEEP, 1.0, 1.0, 0.5)]
CORNERS = [(a, d) for a in (0.0, 1.0) for d in (0.0, 1.0)]
SETS = {
    "add-image as now": [],
    "+ 4 corners": CORNERS,
    "+ 4 corners and 4 one-side strips": CORNERS + STRIPS,
    "+ 4 sides' middles": [(0.0, 0.5), (1.0, 0.5), (0.5, 0.0), (0.5, 1.0)],
    "+ corners and sides' middles (8)": [(a, d) for a in (0.0, 0.5, 1.0) for d in (0.0, 0.5, 1.0) if (a, d) != (0.5, 0.5)],
    "+ every quarter step (24)": [(a, d) for a in POSITIONS for d in POSITIONS if (a, d) != (0.5, 0.5)],
}


def anchored(data: bytes) -> dict[tuple[float, ...], tuple[str, int]]:
    """PDQ and quality of the crop keeping KEEP of each side at each anchor (keyed (across,
    down)), and of each of STRIPS (keyed by itself), from the image as compute_hashes decodes it."""
    limits = MediaLimits()
    image = decode(open_image(data, limits), data, limits).convert("RGB")
    luma = np.asarray(image.convert("F"))
    h, w = luma.shape
    specs = {(a, d): (KEEP, KEEP, a, d) for a in POSITIONS for d in POSITIONS}
    specs.update({strip: strip for strip in STRIPS})
    out = {}
    for key, (kx, ky, a, d) in specs.items():
        cw, ch = max(1, round(w * kx)), max(1, round(h * ky))
        left, top = int((w - cw) * a), int((h - ch) * d)
        out[key] = pdq.pdq_hash(luma[top : top + ch, left : left + cw])
    return out


def hash_item(args: tuple[br.Item, int]) -> dict:
    item, extra = args
    original = crop_study.original_of(item)
    if item.role == "unrelated":
        [(edit, data)] = crop_study.posted(item, original).items()
        return {"item": item, "copies": {"unrelated": compute_hashes(data)}}
    img = Image.open(io.BytesIO(original)).convert("RGB")
    rng = np.random.default_rng([sum(item.name.encode()), 7])
    bench_copies = {name: edit(img, rng) for name, edit in br.EDITS.items()}  # as the bench draws them
    copies = {name: compute_hashes(bench_copies[name]) for name in COPIES}
    more = np.random.default_rng([sum(item.name.encode()), 11])
    for i in range(extra):
        copies[f"off-centre #{i + 2}"] = compute_hashes(br._crop(img, 0.05, "off-centre", more))
    return {
        "item": item,
        "hashes": compute_hashes(original),
        "crops": named_crop_hashes(original, CENTRED, min_quality=CROP_MIN_QUALITY, gains=ADD_IMAGE_GAINS),
        "anchored": anchored(original),
        "copies": copies,
    }


def entries(known: list[dict], anchors: list[tuple[float, float]]) -> list[HashEntry]:
    out = []
    for k in known:
        h, label = k["hashes"], k["item"].name
        out += [HashEntry("sha256", h.sha256, label), HashEntry("md5", h.md5, label)]
        out += [HashEntry("pdq", h.pdq, label)] if h.pdq else []
        out += [HashEntry("phash", h.phash, label)] if h.phash else []
        out += [HashEntry("pdq", c, label, derived=what) for c, what in k["crops"]]
        out += [HashEntry(SIGNATURE_HASH_TYPE, s, label) for s in h.lowfreq[:1]]
        out += [HashEntry("pdq", k["anchored"][a][0], label, derived=f"anchored {a}")
                for a in anchors if k["anchored"][a][1] >= CROP_MIN_QUALITY]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-per-family", type=int, default=20)
    parser.add_argument("--unrelated-per-family", type=int, default=90)
    parser.add_argument("--extra", type=int, default=4, help="more off-centre copies of each known image")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="keep the hashes here (pickle) and reuse them")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        hashed = pickle.loads(args.cache.read_bytes())
    else:
        items = br.corpus(args.known_per_family, args.unrelated_per_family)
        with Pool(args.jobs) as pool:
            hashed = pool.map(hash_item, [(i, args.extra) for i in items], chunksize=8)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(hashed))
    for h in hashed:  # recomputed (cheap): a cache from before a crop was studied lacks it
        if h["item"].role == "known":
            h["anchored"] = anchored(crop_study.original_of(h["item"]))
    known = [h for h in hashed if h["item"].role == "known"]
    unrelated = [h for h in hashed if h["item"].role == "unrelated"]
    kinds = [*COPIES, "more off-centre"]
    print(f"{len(known)} known images, {len(unrelated)} unrelated; {args.extra} more off-centre copies each\n")
    print("| entries | PDQ rows | " + " | ".join(k.replace("crop ", "") for k in kinds) + " | unrelated matched | cross |")
    print("|---|--:|" + "--:|" * (len(kinds) + 2))
    for (name, anchors), derived_guesses in itertools.product(SETS.items(), (False, True)):
        cropmatch.GUESSES_MATCH_DERIVED = derived_guesses
        name += ", guesses against crops too" if derived_guesses else ""
        listed = entries(known, anchors)
        lst = LoadedList.from_entries("known", listed, label="known")
        classifier = HashListClassifier([lst])
        found = {k: [] for k in kinds}
        cross = 0
        for k in known:
            for copy, hashes in k["copies"].items():
                labels = {v.label for v in classifier.match(hashes).verdicts}
                found[copy if copy in COPIES else "more off-centre"].append(k["item"].name in labels)
                cross += len(labels - {k["item"].name})
        false = [(u["item"].name, v.label, v.hash_type, v.distance) for u in unrelated
                 for v in classifier.match(u["copies"]["unrelated"]).verdicts]
        rows = sum(e.type == "pdq" for e in listed)
        shares = " | ".join(f"{100 * np.mean(found[k]):.1f}" for k in kinds)
        print(f"| {name} | {rows} | {shares} | {len(false)} | {cross} |")
        for f in false:
            print(f"  false: {f}")
    # How near unrelated images come to the anchored entries alone: the posted image's own
    # queries, and its crop guesses.
    listed = np.stack([np.frombuffer(bytes.fromhex(k["anchored"][a][0]), np.uint8)
                       for k in known for a in SETS["+ every quarter step (24)"]])
    for what in ("pdq_queries", "pdq_uncropped"):
        nearest = []
        for u in unrelated:
            queries = [q for q in getattr(u["copies"]["unrelated"], what) if q]
            if queries:
                q = np.stack([np.frombuffer(bytes.fromhex(x), np.uint8) for x in queries])
                nearest.append(int(crop_study._POPCOUNT[q[:, None, :] ^ listed[None]].sum(-1).min()))
        print(f"\nnearest unrelated {what} to an anchored entry (24 anchors): {sorted(nearest)[:5]}")

if __name__ == "__main__":
    main()

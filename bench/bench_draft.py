"""How far PDQ moves when the JPEG is decoded at a reduced scale, for each candidate scale.

    python bench/bench_draft.py [--per-family 3]

modbot decodes a JPEG with libjpeg's DCT scaling (Image.draft: 1/2, 1/4 or 1/8) to the
smallest scale whose long side is at least 3/4 of REDUCED_SIDE (bot/hashing/decode.py,
draft_size), because PDQ reduces the image to 64x64 anyway. A smaller scale decodes
faster, but PDQ's blur and sampling then see other pixels. This bench hashes generated
images (bench/bench_robustness.py's families, JPEG quality 90, at 1 MP, 3 MP and 12 MP,
both orientations) with REDUCED_SIDE set to each candidate, and prints the distribution
of the PDQ distance to the full-size decode (pdqhash on the whole image: what a hash
provider lists) and the decode time of each scale. The smallest scale whose distances
stay well inside the matching threshold (31 bits) is the one to use.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import bench_robustness as robustness  # noqa: E402
from bench_hashing import naive_pdq  # noqa: E402
from bot.demo.samples import encode  # noqa: E402
from bot.hashing import decode, hamming, media  # noqa: E402

FULL = 1 << 30  # a REDUCED_SIDE no image reaches: no draft, no reduction
SIDES = (FULL, 1024, 512, 256, 128)  # 512 is today's
SIZES = ((1152, 864), (864, 1152), (2048, 1536), (4000, 3000))


def images(per_family: int) -> list[bytes]:
    out = []
    families = [f for f in robustness.GENERATORS if f not in robustness.UNRELATED_ONLY]
    for number, family in enumerate(families):
        for seed in range(per_family):
            size = SIZES[(seed + number) % len(SIZES)]
            w, h = size
            if w * h > 4_000_000:  # drawn at 1/4 and enlarged, as bench_hashing's 12 MP
                img = robustness.GENERATORS[family](seed, (w // 4, h // 4)).resize(size, Image.Resampling.BICUBIC)
            else:
                img = robustness.GENERATORS[family](seed, size)
            out.append(encode(img, "JPEG", quality=90))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-family", type=int, default=3, help="images per generator family")
    args = parser.parse_args()
    corpus = images(args.per_family)
    reference = [naive_pdq(data) for data in corpus]
    print(f"{len(corpus)} JPEGs (q90; 1 MP, 3 MP, 12 MP). PDQ distance to the full-size decode's "
          "(pdqhash), in bits, and decode time of the drafted JPEG:\n")
    print("| REDUCED_SIDE | decoded long side (1 MP / 12 MP) | mean | p50 | p90 | max | decode ms (mean) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    default = decode.REDUCED_SIDE
    try:
        for side in SIDES:
            decode.REDUCED_SIDE = side
            d = np.array([hamming(media.compute_hashes(data, max_pixels=1 << 40).pdq or "", ref)
                          for data, ref in zip(corpus, reference, strict=True)])
            longs, t0 = [], time.process_time()
            for data in corpus:
                img = Image.open(io.BytesIO(data))
                img.draft("RGB", media.draft_size(*img.size))
                img.load()
                longs.append((max(Image.open(io.BytesIO(data)).size), max(img.size)))
            decode_ms = (time.process_time() - t0) * 1000 / len(corpus)
            one = max(s for full, s in longs if full == 1152)
            twelve = max(s for full, s in longs if full == 4000)
            label = "full size" if side == FULL else f"{side}{' (today)' if side == default else ''}"
            print(f"| {label} | {one} / {twelve} | {d.mean():.1f} | {np.percentile(d, 50):.0f} "
                  f"| {np.percentile(d, 90):.0f} | {d.max()} | {decode_ms:.1f} |")
    finally:
        decode.REDUCED_SIDE = default


if __name__ == "__main__":
    main()

"""How fast modbot hashes images, against the naive full-decode PDQ, on one core.

    python bench/bench_hashing.py [--seconds N]

Generates benign photo-like JPEGs (quality 90) in memory, then times each (mode, kind) in
its own single-core subprocess — the images reach it through a pipe — so
that each peak RSS figure belongs to one mode. Kinds:

- 1 MP 1152x864, camera-like: drawn at half size, upscaled, sensor-like noise added
- 12 MP 4000x3000, camera-like: drawn at 1/4 size, upscaled, sensor-like noise added (the
  noise makes the file as large as a camera's, ~3.4 MB, and its entropy decode slow)
- 12 MP 4000x3000, smooth: the same drawing upscaled without added noise (a smaller file,
  as from a phone's denoising or a re-encoded picture): the entropy decode costs less

Modes:

- modbot: bot.hashing.compute_hashes (sha256, md5, sha1, PDQ through bot.hashing.pdq with its 8
  dihedral transforms, of the trimmed image too when it has a border, pHash; reduced decode)
- naive:  Image.open(...).convert("RGB") -> numpy -> pdqhash.compute (PDQ only, full decode)
- decode: only the reduced JPEG decode modbot starts with (draft to ~384-768 px, load):
  the floor, as libjpeg still entropy-decodes every coefficient

Rates are per CPU-second of the worker (user + system time), which stays meaningful on
a shared machine; wall-clock rates are shown too. Peak RSS is the worker's VmHWM: its
ru_maxrss would start from the parent's size, which Linux carries across fork and exec.

Prints a Markdown table, and how far the fast PDQ lands from the full-decode PDQ.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported, here and in the workers

import argparse
import io
import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# label -> (size, sensor-like noise added)
KINDS = {
    "1 MP 1152x864": ((1152, 864), True),
    "12 MP 4000x3000 camera-like": ((4000, 3000), True),
    "12 MP 4000x3000 smooth": ((4000, 3000), False),
}
IMAGES_PER_KIND = 4
MODES = ("modbot", "naive", "decode")


def make_jpeg(seed: int, size: tuple[int, int], noise: bool = True) -> bytes:
    """A photo-like JPEG: detail drawn at 1/4 (12 MP) or 1/2 (1 MP) scale, upscaled, then
    (with `noise`) sensor-like noise at full size so the file is as large as a camera's
    (quality 90)."""
    import numpy as np
    from PIL import Image

    from bot.demo.samples import encode, make_photo

    w, h = size
    shrink = 4 if w * h > 4_000_000 else 2
    img = make_photo(seed, (w // shrink, h // shrink)).resize(size, Image.Resampling.BICUBIC)
    if not noise:
        return encode(img, "JPEG", quality=90)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * 5
    pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=90)


def naive_pdq(data: bytes) -> str:
    import numpy as np
    import pdqhash
    from PIL import Image

    bits, _quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def reduced_decode(data: bytes) -> object:
    from PIL import Image

    from bot.hashing import REDUCED_SIDE

    img = Image.open(io.BytesIO(data))
    w, h = img.size
    wanted = REDUCED_SIDE * 3 // 4
    img.draft("RGB", (w * wanted // max(w, h), h * wanted // max(w, h)))
    img.load()
    return img


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(mode: str, seconds: float) -> None:
    """Time `mode` over the images on stdin; print one JSON line."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    images: list[bytes] = pickle.load(sys.stdin.buffer)
    if mode == "modbot":
        from bot.hashing import compute_hashes

        def run(data: bytes) -> object:
            return compute_hashes(data)
    elif mode == "naive":
        run = naive_pdq
    else:
        run = reduced_decode

    run(images[0])  # warm up: imports, lazy plugin registration
    done, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        run(images[done % len(images)])
        done += 1
        wall = time.perf_counter() - wall0
        if wall >= seconds and done >= len(images):
            break
    cpu = time.process_time() - cpu0
    print(json.dumps({"images": done, "wall": wall, "cpu": cpu, "peak_rss_mb": peak_rss_mb()}))


def measure(mode: str, images: list[bytes], seconds: float) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--seconds", str(seconds)],
        input=pickle.dumps(images),
        capture_output=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per mode and size")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.seconds)
        return

    sys.path.insert(0, str(REPO))
    from bot.hashing import compute_hashes, hamming

    rows, distances = [], []
    for label, (size, noise) in KINDS.items():
        images = [make_jpeg(seed, size, noise) for seed in range(IMAGES_PER_KIND)]
        mean_mb = sum(map(len, images)) / len(images) / 1e6
        for mode in MODES:
            r = measure(mode, images, args.seconds)
            rate = r["images"] / r["cpu"]
            rows.append(
                f"| {mode} | {label} ({mean_mb:.2f} MB) | {rate:.1f} "
                f"| {1000 / rate:.1f} | {r['images'] / r['wall']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
        d = [hamming(compute_hashes(data).pdq or "", naive_pdq(data)) for data in images]
        distances.append(
            f"- {label}: PDQ distance fast vs naive over {len(d)} images: "
            f"mean {sum(d) / len(d):.1f}, max {max(d)} bits"
        )

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    ) if Path("/proc/cpuinfo").exists() else "unknown CPU"
    print(f"One core of {cpu}; JPEG quality 90; {args.seconds:g} s per row.\n")
    print("| mode | JPEG | images/s (CPU) | ms/image (CPU) | images/s (wall) | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()
    print("\n".join(distances))


if __name__ == "__main__":
    main()

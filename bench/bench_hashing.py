"""What hashing an image costs through the hashing sandbox, against the floor, in one run.

    python bench/bench_hashing.py [--seconds 4] [--rounds 2] [--scan-files 12]

The floor is the work no implementation can skip: decoding the image at the scale PDQ
needs (a JPEG drafted as bot/hashing/decode.py drafts it, by libjpeg's DCT scaling; other
formats in full) plus SHA-256, MD5 and SHA-1 of the bytes, decoded to RGB as modbot
decodes. A second column, the luma floor, decodes a JPEG to its luma plane alone (libjpeg
then skips the chroma planes): less work, but not what modbot does, because 8-bit luma
bands smooth gradients and the border search needs colours (bot/hashing/decode.py).
Against them, in the same run:

- sandbox: `HashSandbox.hash` (bot/hashing/pool.py, one worker), every hash modbot
  computes (sha256, md5, sha1, PDQ with its 8 exact rotations/flips, those of the trimmed
  image when it has a border, pHash, the low-frequency signature). CPU of this process and
  the worker together: what the sandbox costs the machine, the hand-over of the bytes
  (shared memory, bot/hashing/channel.py) and the JSON answer included.
- in-process: `compute_hashes` called here, to show what the sandbox adds.
- repeated: the same bytes hashed again under another mxc, as the pipeline hashes them
  (bot/hashing/repeats.py: the SHA-256 of the bytes, then the hashes from memory).
- `modbot scan` per file, start-up excluded: the CPU of `python -m bot scan` (its whole
  process tree) on --scan-files copies minus the same on one file, divided by the
  difference.

Images (benign, generated in memory; bench/bench_hashing.py's make_jpeg): 1 MP 1152x864
and 12 MP 4000x3000 JPEGs (quality 90), camera-like (sensor-like noise: large files, a
slow entropy decode) and smooth (no noise), and a 1 MP PNG for reference. Modes alternate
by round (A B C, C B A, ...) so that a shared machine's drifting speed weighs on all
alike; ratios are within the run. Prints Markdown tables and the machine's load.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported, here and in the workers

import argparse
import asyncio
import ctypes
import hashlib
import io
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

MB = 1024 * 1024
_PR_SET_CHILD_SUBREAPER = 36
IMAGES_PER_KIND = 4
# label -> (size, sensor-like noise added, format)
KINDS = {
    "1 MP camera-like JPEG": ((1152, 864), True, "JPEG"),
    "1 MP smooth JPEG": ((1152, 864), False, "JPEG"),
    "12 MP camera-like JPEG": ((4000, 3000), True, "JPEG"),
    "12 MP smooth JPEG": ((4000, 3000), False, "JPEG"),
    "1 MP PNG (reference)": ((1152, 864), False, "PNG"),
}
MODES = ("floor", "luma floor", "sandbox", "in-process", "repeated")


def make_jpeg(seed: int, size: tuple[int, int], noise: bool = True, fmt: str = "JPEG") -> bytes:
    """A photo-like image: detail drawn at 1/4 (12 MP) or 1/2 (1 MP) scale, upscaled, then
    (with `noise`) sensor-like noise at full size so the file is as large as a camera's
    (JPEG quality 90)."""
    import numpy as np
    from PIL import Image

    from bot.demo.samples import encode, make_photo

    w, h = size
    shrink = 4 if w * h > 4_000_000 else 2
    img = make_photo(seed, (w // shrink, h // shrink)).resize(size, Image.Resampling.BICUBIC)
    if noise:
        rng = np.random.default_rng(seed)
        grain = rng.standard_normal((h, w, 1), dtype=np.float32) * 5
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8), "RGB")
    return encode(img, fmt, quality=90) if fmt == "JPEG" else encode(img, fmt)


def floor(data: bytes, mode: str = "RGB") -> object:
    """Decode at the scale perceptual hashing decodes at, and the three cryptographic hashes."""
    from PIL import Image

    from bot.hashing.decode import draft_size

    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft(mode, draft_size(*img.size))
    img.load()
    return img, hashlib.sha256(data).digest(), hashlib.md5(data).digest(), hashlib.sha1(data).digest()


def luma_floor(data: bytes) -> object:
    """The floor, a JPEG decoded to its luma plane alone."""
    return floor(data, "L")


def naive_pdq(data: bytes) -> str:
    """PDQ of the full-size decode by the reference implementation (pdqhash)."""
    import numpy as np
    import pdqhash
    from PIL import Image

    bits, _quality = pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


async def rates(seconds: float, rounds: int, crop_guesses: bool = True) -> dict[tuple[str, str], float]:
    """CPU ms per image for each (kind, mode); without the crop guesses (processing.crop_guesses)
    when told."""
    from functools import partial

    from bot.hashing import compute_hashes as compute
    from bot.hashing.limits import MediaLimits
    from bot.hashing.pool import HashSandbox
    from bot.hashing.repeats import RepeatedContent

    limits = MediaLimits(crop_guesses=crop_guesses)
    compute_hashes = partial(compute, limits=limits)
    totals: dict[tuple[str, str], list[float]] = {}
    async with HashSandbox(workers=1, memory_bytes=256 * MB, cpu_seconds=10, nice=0, limits=limits) as sandbox:
        for label, (size, noise, fmt) in KINDS.items():
            images = [make_jpeg(seed, size, noise, fmt) for seed in range(IMAGES_PER_KIND)]
            runs: dict[str, Callable[[bytes], object]] = {
                "floor": floor, "luma floor": luma_floor, "in-process": compute_hashes}
            # The same bytes again under another mxc, as the pipeline hashes them (bot/hashing/repeats.py).
            repeated = RepeatedContent(sandbox)
            hashers = {"sandbox": sandbox.hash, "repeated": repeated.hash}
            for data in images:
                await repeated.hash(data)
            for r in range(rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    pids = [os.getpid(), *sandbox.pids]
                    await hashers[mode](images[0]) if mode in hashers else runs[mode](images[0])  # warm
                    done, cpu0, stop = 0, _cpu_seconds(pids), time.perf_counter() + seconds / rounds
                    while time.perf_counter() < stop or done < len(images):
                        data = images[done % len(images)]
                        await hashers[mode](data) if mode in hashers else runs[mode](data)
                        done += 1
                    total = totals.setdefault((label, mode), [0, 0.0])
                    total[0] += done
                    total[1] += _cpu_seconds(pids) - cpu0
            totals[(label, "MB")] = [1, sum(map(len, images)) / len(images) / 1e6]
            from bot.hashing import hamming

            d = [hamming(compute_hashes(data).pdq or "", naive_pdq(data)) for data in images]
            totals[(label, "pdq distance")] = [1, sum(d) / len(d)]
            totals[(label, "pdq max")] = [1, max(d)]
    return {key: 1000 * cpu / n if key[1] in MODES else cpu for key, (n, cpu) in totals.items()}


def scan_per_file(count: int, rounds: int) -> dict[str, float]:
    """CPU ms per file of `python -m bot scan`, start-up excluded, for each kind: the CPU of
    the whole process tree (the command, its fork server and hashing worker) on `count`
    files, minus the same on one file, divided by the difference. This process makes itself
    the subreaper of that tree, so the fork server and worker, which outlive the command by
    a moment, are reaped here and their CPU time counted (RUSAGE_CHILDREN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        for label, (size, noise, fmt) in KINDS.items():
            images = [make_jpeg(seed, size, noise, fmt) for seed in range(IMAGES_PER_KIND)]
            files = []
            for i in range(count):
                path = Path(tmp) / f"{len(out)}-{i}.{fmt.lower()}"
                path.write_bytes(images[i % len(images)])
                files.append(str(path))
            cpu = {1: 0.0, count: 0.0}
            for r in range(rounds):
                for n in (1, count) if r % 2 == 0 else (count, 1):
                    cpu[n] += _tree_cpu([sys.executable, "-m", "bot", "scan", *files[:n]])
            out[label] = 1000 * (cpu[count] - cpu[1]) / rounds / (count - 1)
    return out


def _tree_cpu(command: list[str]) -> float:
    """User + system CPU seconds of `command` and every process it started."""
    ours = _children()  # this process's own sandbox: not to be waited for
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    while orphans := _children() - ours:  # the command's fork server and resource tracker,
        for pid in orphans:  # which exit once it has
            os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _children() -> set[int]:
    """The ids of this process's children (orphans adopted as their subreaper included)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="CPU-bound seconds per kind and mode")
    parser.add_argument("--rounds", type=int, default=2, help="rounds each mode is split into")
    parser.add_argument("--scan-files", type=int, default=40, help="files per `modbot scan` run (0: skip)")
    parser.add_argument("--no-crop-guesses", action="store_true",
                        help="sandbox and in-process without the 44 crop guesses (processing.crop_guesses: false; "
                             "`modbot scan` keeps them)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    ms = asyncio.run(rates(args.seconds, args.rounds, crop_guesses=not args.no_crop_guesses))
    scan = scan_per_file(args.scan_files, args.rounds) if args.scan_files > 1 else {}
    load_after = os.getloadavg()

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    ) if Path("/proc/cpuinfo").exists() else "unknown CPU"
    guesses = "without" if args.no_crop_guesses else "with"
    print(f"{cpu}; {args.seconds:g} s per kind and mode in {args.rounds} rounds; {guesses} crop guesses; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.\n")
    print("CPU ms per image (sandbox: this process and the worker together); ratios to the floor:\n")
    print("| image | MB | floor | luma floor | sandbox | in-process | sandbox / floor | sandbox / luma floor "
          "| in-process / floor | `modbot scan` per file | scan / floor | repeated bytes | repeated / floor "
          "| PDQ vs full decode: mean / max bits |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in KINDS:
        f, lf = ms[(label, "floor")], ms[(label, "luma floor")]
        s, i = ms[(label, "sandbox")], ms[(label, "in-process")]
        sc = scan.get(label)
        scan_cells = f"{sc:.1f} | {sc / f:.2f}x" if sc is not None else "- | -"
        print(f"| {label} | {ms[(label, 'MB')]:.2f} | {f:.1f} | {lf:.1f} | {s:.1f} | {i:.1f} | **{s / f:.2f}x** "
              f"| {s / lf:.2f}x | {i / f:.2f}x "
              f"| {scan_cells} | {ms[(label, 'repeated')]:.2f} | {ms[(label, 'repeated')] / f:.3f}x "
              f"| {ms[(label, 'pdq distance')]:.1f} / {ms[(label, 'pdq max')]:.0f} |")


if __name__ == "__main__":
    main()

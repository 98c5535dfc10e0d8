"""Pre-send benchmark: the latency the check adds to sending an m.image (send -> 200).

    python bench/bench_presend.py [--events 100] [--rate 5] [--sizes 1,12]

Two throwaway Synapses (the stage of bot/demo/stage.py), each with a real `modbot run`
process protecting a room: one without the pre-send check (Synapse does not load
synapse-http-antispam), one with it (`presend.enabled`, the module in homeserver.yaml).
Distinct photo-like JPEGs (unknown to the lists: the common case, an allowed post) are
uploaded before the clock starts (a few pictures drawn per size, each upload a variant with
its own bytes; the Synapses make no thumbnails at upload, which would cost seconds of CPU
per 12 MP upload outside what is measured); then one user sends them as m.image at a
steady rate, each send timed from the PUT to its 200. Progress goes to stderr. Phases alternate without / with / with / without
so that the machine's drift weighs on both alike. Prints a Markdown table: p50 and p99 per
size and setting, and what the check adds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from bot.demo.matrix import MatrixUser
from bot.demo.samples import encode, make_photo
from bot.demo.stage import Stage, build_stage
from bot.demo.waiting import wait_for

SIZES = {1: 1152, 12: 4000}  # megapixels -> width (4:3)
BASES = 4  # pictures drawn per size; every upload is a distinct variant of one


def make_jpeg(seed: int, width: int) -> bytes:
    """A photo-like JPEG, width x 3/4 width (drawn at half size, upscaled, fresh noise)."""
    height = width * 3 // 4
    img = make_photo(seed, (width // 2, height // 2)).resize((width, height), Image.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (height, width, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=85)


def variant(jpeg: bytes, n: int) -> bytes:
    """`jpeg` with a comment segment (COM) carrying `n` after its SOI: other bytes (another
    SHA-256, another upload), the same pixels and the same decoding cost."""
    comment = f"bench-presend {n}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def upload_all(user: MatrixUser, blobs: list[bytes], what: str, parallel: int = 4) -> list[str]:
    """Upload every blob (a few at a time); the mxc URIs in order, progress on stderr."""
    mxcs: list[str] = [""] * len(blobs)
    gate = asyncio.Semaphore(parallel)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with gate:
            mxcs[i] = await user.upload(blobs[i], "image/jpeg", "photo.jpg")
        done += 1
        if done % max(1, len(blobs) // 4) == 0 or done == len(blobs):
            progress(f"  uploaded {done}/{len(blobs)} {what}")

    await asyncio.gather(*(one(i) for i in range(len(blobs))))
    return mxcs


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


class Bot:
    """`python -m bot run` for a stage, stopped with SIGTERM."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        cwd = self.stage.workdir / "botcwd"
        cwd.mkdir(exist_ok=True)
        log = (self.stage.workdir / "modbot.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "-c", str(self.stage.config_path)], cwd=cwd, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{self.stage.config_data['appservice']['port']}/health"

        async def healthy() -> bool:
            try:
                async with aiohttp.ClientSession() as s, s.get(url) as r:
                    return (await r.json()).get("status") == "ok"
            except aiohttp.ClientError:
                return False

        await wait_for(healthy, timeout=60, description="modbot ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)


async def phase(user: MatrixUser, room: str, mxcs: list[str], rate: float) -> list[float]:
    """Send one m.image per mxc at `rate` a second; each send's seconds from PUT to 200."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def one(i: int, mxc: str) -> float:
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        began = time.perf_counter()
        await user.send_image(room, mxc, mimetype="image/jpeg", body="photo.jpg")
        return time.perf_counter() - began

    latencies = await asyncio.gather(*(one(i, m) for i, m in enumerate(mxcs)))
    await asyncio.sleep(2)  # let both paths finish with this phase's media before the next
    return list(latencies)


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-presend-"))
    stages: dict[str, Stage] = {}
    bots: list[Bot] = []
    began = time.perf_counter()
    load_before = os.getloadavg()
    try:
        progress(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; starting two Synapses and modbots")
        for name, presend in (("without", None), ("with", {"deadline": 2.0})):
            # No thumbnails made at upload: a 12 MP one costs Synapse about a second of CPU
            # per upload, work that belongs to the upload, not to the send measured here.
            stage = await build_stage(workdir / name, presend=presend, homeserver={"thumbnail_sizes": []})
            stages[name] = stage
            bot = Bot(stage)
            bots.append(bot)
            await bot.start()
        posters = {name: await s.new_user("poster", join=s.room) for name, s in stages.items()}
        progress(f"ready after {time.perf_counter() - began:.0f} s")
        half = max(1, args.events // 2)
        # Without and with, twice, in mirrored order (A B B A), so that drift weighs on both.
        order = ["without", "with", "with", "without"]
        rows = []
        for mp in args.sizes:
            width = SIZES[mp]
            t0 = time.perf_counter()
            with ProcessPoolExecutor(2) as pool:
                bases = list(pool.map(make_jpeg, range(mp * 100, mp * 100 + BASES), [width] * BASES))
            # Every send refers to its own upload (the scan of a media is shared by mxc, so a
            # reused mxc would not be checked again): distinct bytes of a few drawn pictures.
            blobs = {name: [variant(bases[i % BASES], mp * 100_000 + k * half * 2 + i) for i in range(half * 2)]
                     for k, name in enumerate(("without", "with"))}
            progress(f"{mp} MP: {BASES} pictures drawn in {time.perf_counter() - t0:.1f} s; uploading {half * 4}")
            t1 = time.perf_counter()
            mxcs = {name: await upload_all(posters[name], blobs[name], f"{mp} MP to the Synapse {name} the check")
                    for name in stages}
            progress(f"{mp} MP: uploads took {time.perf_counter() - t1:.1f} s")
            results: dict[str, list[float]] = {"without": [], "with": []}
            used = {"without": 0, "with": 0}
            for i, name in enumerate(order):
                batch = mxcs[name][used[name]:used[name] + half]
                used[name] += half
                progress(f"{mp} MP: phase {i + 1}/4 ({name} the check): {half} sends at {args.rate:g}/s")
                results[name] += await phase(posters[name], stages[name].room, batch, args.rate)
            size = sum(len(b) for b in bases) / len(bases) / 1e6
            p = {name: (percentile(v, 50) * 1000, percentile(v, 99) * 1000) for name, v in results.items()}
            rows.append((mp, width, size, len(results["with"]), p))
        load_after = os.getloadavg()
        print(f"\nSend -> 200 of an m.image, {args.rate:g} media events/s, distinct unknown JPEGs (ms):\n")
        print("| JPEG | events each | without p50 / p99 | with p50 / p99 | added p50 / p99 |")
        print("|---|---:|---:|---:|---:|")
        for mp, width, size, n, p in rows:
            (a50, a99), (b50, b99) = p["without"], p["with"]
            print(
                f"| {mp} MP {width}x{width * 3 // 4} ({size:.2f} MB) | {n} | {a50:.1f} / {a99:.1f} | "
                f"{b50:.1f} / {b99:.1f} | **{b50 - a50:.1f} / {b99 - a99:.1f}** |"
            )
        print(
            f"\nLoad average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
            f"{os.cpu_count()} cores; {time.perf_counter() - began:.0f} s in all."
        )
    finally:
        for bot in bots:
            bot.stop()
        for stage in stages.values():
            await stage.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100, help="events per size and setting (two phases of half)")
    parser.add_argument("--rate", type=float, default=5.0, help="media events a second")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 12])
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))

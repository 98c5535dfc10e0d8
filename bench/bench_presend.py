"""Pre-send benchmark: the latency the check adds to sending an m.image (send -> 200).

    python bench/bench_presend.py [--events 60] [--rate 5] [--sizes 1,12]

Two throwaway Synapses (the stage of bot/demo/stage.py), each with a real `modbot run`
process protecting a room: one without the pre-send check (Synapse does not load
synapse-http-antispam), one with it (`presend.enabled`, the module in homeserver.yaml).
Distinct photo-like JPEGs (unknown to the lists: the common case, an allowed post) are
uploaded before the clock starts; then one user sends them as m.image at a steady rate,
each send timed from the PUT to its 200. Phases alternate without / with / with / without
so that the machine's drift weighs on both alike. Prints a Markdown table: p50 and p99 per
size and setting, and what the check adds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
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


def make_jpeg(seed: int, width: int) -> bytes:
    """A distinct photo-like JPEG, width x 3/4 width (drawn at half size, upscaled, fresh noise)."""
    height = width * 3 // 4
    img = make_photo(seed, (width // 2, height // 2)).resize((width, height), Image.BICUBIC)
    noise = np.random.default_rng(seed).integers(-6, 7, (height, width, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "JPEG", quality=85)


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
    try:
        for name, presend in (("without", None), ("with", {"deadline": 2.0})):
            stage = await build_stage(workdir / name, presend=presend)
            stages[name] = stage
            bot = Bot(stage)
            bots.append(bot)
            await bot.start()
        posters = {name: await s.new_user("poster", join=s.room) for name, s in stages.items()}
        rows = []
        seed = 0
        for mp in args.sizes:
            width = SIZES[mp]
            half = args.events // 2
            # Without and with, twice, in mirrored order: A B B A.
            order = ["without", "with", "with", "without"]
            with ProcessPoolExecutor(2) as pool:
                images = list(pool.map(make_jpeg, range(seed, seed + half * 4), [width] * half * 4))
            seed += half * 4
            results: dict[str, list[float]] = {"without": [], "with": []}
            for i, name in enumerate(order):
                batch = images[i * half:(i + 1) * half]
                mxcs = [await posters[name].upload(data, "image/jpeg", "photo.jpg") for data in batch]
                results[name] += await phase(posters[name], stages[name].room, mxcs, args.rate)
            size = sum(len(b) for b in images) / len(images) / 1e6
            p = {name: (percentile(v, 50) * 1000, percentile(v, 99) * 1000) for name, v in results.items()}
            rows.append((mp, width, size, len(results["with"]), p))
        print(f"\nSend -> 200 of an m.image, {args.rate:g} media events/s, distinct unknown JPEGs (ms):\n")
        print("| JPEG | events each | without p50 / p99 | with p50 / p99 | added p50 / p99 |")
        print("|---|---:|---:|---:|---:|")
        for mp, width, size, n, p in rows:
            (a50, a99), (b50, b99) = p["without"], p["with"]
            print(
                f"| {mp} MP {width}x{width * 3 // 4} ({size:.2f} MB) | {n} | {a50:.1f} / {a99:.1f} | "
                f"{b50:.1f} / {b99:.1f} | **{b50 - a50:.1f} / {b99 - a99:.1f}** |"
            )
    finally:
        for bot in bots:
            bot.stop()
        for stage in stages.values():
            await stage.stop()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60, help="events per size and setting (two phases of half)")
    parser.add_argument("--rate", type=float, default=5.0, help="media events a second")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 12])
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))

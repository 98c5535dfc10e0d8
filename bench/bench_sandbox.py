"""The hashing sandbox: memory under hostile media, and its cost on ordinary photos.

    python bench/bench_sandbox.py [--seconds 4] [--rounds 2] [--concurrency 4] [--hostile-rounds 3]

1. **Peak memory under the hostile suite.** This process builds the sandbox exactly as the
   bot does (`HashSandbox.from_config`, the default `processing:` limits, `--concurrency`
   workers) and sends it every file of tests/hostile.py, `--concurrency` at a time, for
   `--hostile-rounds` rounds, twice: with the default limits (the checks before decoding
   refuse what they must), and with those checks lifted (`max_decoded_bytes` and
   `max_jpeg_scans` unbounded), so that the workers really run into their memory and CPU
   limits and are killed and replaced. A sampler reads the RSS (and PSS: shared pages
   counted once) of the process tree every 10 ms: this process, the fork server and every
   worker. Goal: peak under concurrency x the memory limit + 200 MB.
2. **Rate on ordinary JPEGs** (1 MP and 12 MP camera-like, bench/bench_hashing.py's
   images): today's in-process hashing (compute_hashes in a thread pool, as the bot did
   before the sandbox) against the sandbox, one at a time and `--concurrency` at a time,
   alternating in-process and sandbox rounds (A B B A ...) so that a shared machine's
   drifting speed weighs on both alike. Both at niceness 0. Wall-clock images/s, and
   images per CPU-second of the whole tree (this process and the workers: what the
   sandbox costs the machine, whatever else runs on it); the ratios sandbox / in-process
   are computed within the same run. Goal: at least 0.9.
3. **Start cost**: the first start (fork server + workers), and replacing one worker.

Prints Markdown tables.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

MB = 1024 * 1024


# --- memory of the process tree ---------------------------------------------------------

def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[-1:] == ["kB"]}
        return fields.get("Rss", 0), fields.get("Pss", 0)
    except (OSError, ValueError):
        return 0, 0


class TreeSampler:
    """Peak RSS and PSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(os.getpid())
            rss = pss = 0
            for pid in pids:
                r, p = _memory(pid)
                rss, pss = rss + r, pss + p
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.interval)


async def hostile_memory(concurrency: int, rounds: int, lifted: bool) -> dict[str, float]:
    from dataclasses import replace

    from hostile import HOSTILE, hostile_bytes

    from bot.config import ProcessingConfig
    from bot.hashing.pool import HashSandbox

    processing = ProcessingConfig(concurrency=concurrency)
    if lifted:
        processing = processing.model_copy(update={"max_decoded_bytes": 1 << 40, "max_jpeg_scans": 1 << 30})
    files = [hostile_bytes(h.name) for h in HOSTILE]
    sandbox = HashSandbox.from_config(processing)
    if lifted:  # a shorter CPU limit: the heavy JPEG would otherwise hold a worker 10 s a round
        sandbox.settings = replace(sandbox.settings, cpu_seconds=3)
    await sandbox.start()
    outcomes: dict[str, int] = {}
    idle_rss = sum(_memory(pid)[0] for pid in _tree(os.getpid()))
    started = time.monotonic()
    with TreeSampler() as sampler:
        slots = asyncio.Semaphore(concurrency)

        async def one(data: bytes) -> None:
            async with slots:
                hashes = await sandbox.hash(data)
            key = "hashed" if hashes.perceptual_error is None else hashes.perceptual_error.split(":")[0]
            if key == "not scanned":
                key = hashes.perceptual_error or key
            outcomes[key] = outcomes.get(key, 0) + 1

        for _ in range(rounds):
            await asyncio.gather(*(one(data) for data in files))
    elapsed = time.monotonic() - started
    await sandbox.stop()
    return {
        "files": len(files) * rounds,
        "seconds": elapsed,
        "idle_mb": idle_rss / MB,
        "peak_rss_mb": sampler.peak_rss / MB,
        "peak_pss_mb": sampler.peak_pss / MB,
        "processes": sampler.peak_processes,
        "restarts": sandbox.restarts,
        "reasons": dict(sandbox.restart_reasons),
        "outcomes": outcomes,
        "memory_limit_mb": processing.hash_memory_mb,
    }


# --- rate -----------------------------------------------------------------------------------

async def rates(seconds: float, rounds: int, concurrency: int) -> list[tuple[str, int, float, float]]:
    from bench_hashing import make_jpeg

    from bot.hashing import compute_hashes
    from bot.hashing.pool import HashSandbox

    kinds = {
        "1 MP 1152x864": [make_jpeg(seed, (1152, 864)) for seed in range(4)],
        "12 MP 4000x3000 camera-like": [make_jpeg(seed, (4000, 3000)) for seed in range(4)],
    }
    loop = asyncio.get_running_loop()
    results = []
    for parallel in (1, concurrency):
        threads = ThreadPoolExecutor(parallel)
        sandbox = HashSandbox(workers=parallel, memory_bytes=256 * MB, cpu_seconds=10, nice=0)
        await sandbox.start()
        for label, images in kinds.items():
            async def in_process(data: bytes) -> object:
                return await loop.run_in_executor(threads, compute_hashes, data)

            totals = {"in-process": [0, 0.0, 0.0], "sandbox": [0, 0.0, 0.0]}
            order = ["in-process", "sandbox"]
            for r in range(rounds * 2):
                mode = order[(r + r // 2) % 2]  # A B B A A B ...
                run = in_process if mode == "in-process" else sandbox.hash
                await run(images[0])  # warm
                cpu0 = _cpu_seconds([os.getpid(), *sandbox.pids])
                done, elapsed = await _stream(run, images, parallel, seconds / 2)
                totals[mode][0] += done
                totals[mode][1] += elapsed
                totals[mode][2] += _cpu_seconds([os.getpid(), *sandbox.pids]) - cpu0
            base = totals["in-process"][0] / totals["in-process"][1]
            sand = totals["sandbox"][0] / totals["sandbox"][1]
            base_cpu = totals["in-process"][0] / totals["in-process"][2]
            sand_cpu = totals["sandbox"][0] / totals["sandbox"][2]
            results.append((label, parallel, base, sand, base_cpu, sand_cpu))
        await sandbox.stop()
        threads.shutdown()
    return results


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


async def _stream(run: Callable[[bytes], Awaitable[object]], images: list[bytes], parallel: int, seconds: float) -> tuple[int, float]:
    """`parallel` lanes, each hashing one image after another for `seconds`: jobs stay in
    flight continuously, as the bot's queue workers keep them."""
    done = 0
    t0 = time.perf_counter()
    stop = t0 + seconds

    async def lane(k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < stop:
            await run(images[i % len(images)])
            i += parallel
            done += 1

    await asyncio.gather(*(lane(k) for k in range(parallel)))
    return done, time.perf_counter() - t0


async def start_cost() -> dict[str, float]:
    from bot.hashing.pool import HashSandbox

    sandbox = HashSandbox(workers=4, memory_bytes=256 * MB, cpu_seconds=10)
    t0 = time.perf_counter()
    await sandbox.start()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        worker = await asyncio.to_thread(sandbox._spawn)
        worker.process.kill()
        await asyncio.to_thread(worker.process.join)
        worker.channel.close()
    spawn = (time.perf_counter() - t0) / 10
    await sandbox.stop()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import bot.hashing.worker as w; w.warm_up()", env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    await proc.wait()
    fresh = time.perf_counter() - t0
    return {"first_start_s": first, "respawn_ms": spawn * 1000, "fresh_interpreter_s": fresh}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="time per mode, kind and concurrency")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of in-process and sandbox")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--hostile-rounds", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], choices=["memory", "rate", "start"])
    args = parser.parse_args()

    if "start" not in args.skip:
        cost = await start_cost()
        print("### Start cost\n")
        print(f"- first start (fork server + 4 workers, each ready): {cost['first_start_s']:.2f} s")
        print(f"- one more worker (fork from the fork server, confined, ready): {cost['respawn_ms']:.0f} ms")
        print(f"- for comparison, a fresh interpreter importing the hashing modules: {cost['fresh_interpreter_s']:.2f} s\n")

    if "memory" not in args.skip:
        print(f"### Hostile suite at concurrency {args.concurrency}\n")
        print("| limits | files | seconds | idle tree RSS MB | peak tree RSS MB | peak tree PSS MB | goal MB | restarts | outcomes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for lifted in (False, True):
            r = await hostile_memory(args.concurrency, args.hostile_rounds, lifted)
            goal = args.concurrency * r["memory_limit_mb"] + 200
            outcomes = "; ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
            name = "checks lifted, sandbox limits only" if lifted else "defaults"
            print(
                f"| {name} | {r['files']} | {r['seconds']:.1f} | {r['idle_mb']:.0f} | {r['peak_rss_mb']:.0f} "
                f"| {r['peak_pss_mb']:.0f} | {goal} | {r['restarts']} {r['reasons'] or ''} | {outcomes} |"
            )
        print()

    if "rate" not in args.skip:
        print("### Rate on ordinary JPEGs (wall clock, same run)\n")
        print("| JPEG | at once | in-process images/s | sandbox images/s | sandbox / in-process | in-process images/CPU-s | sandbox images/CPU-s | sandbox / in-process (CPU) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for label, parallel, base, sand, base_cpu, sand_cpu in await rates(args.seconds, args.rounds, args.concurrency):
            print(
                f"| {label} | {parallel} | {base:.1f} | {sand:.1f} | **{sand / base:.2f}** "
                f"| {base_cpu:.1f} | {sand_cpu:.1f} | {sand_cpu / base_cpu:.2f} |"
            )


if __name__ == "__main__":
    asyncio.run(main())

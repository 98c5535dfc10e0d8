"""PDQ index benchmark: modbot's index against brute force and python-threatexchange.

    python bench/bench_index.py                 # 10M hashes, ~5-10 minutes on 2 cores
    python bench/bench_index.py --n 1000000     # scaled down
    pip install threatexchange                  # (or: pip install -e '.[bench]') for its row

n random PDQ hashes, and one query per planted neighbour: a listed hash with d bits
flipped, d cycling through 0..31 (all must be found), plus queries at distance 32 (none
may be). Each index is built and queried in a process of its own, with the same data:

- modbot: `bot.lists.index.build_hamming_index` (multi-index hashing at this size);
- brute force: `bot.lists.index.BruteForceIndex`, numpy XOR and popcount over every row;
- python-threatexchange: `PDQIndex` (faiss IndexBinaryMultiHash, 16 substrings of 16
  bits, nflip = 31 // 16), queried one hash at a time through its public `query`.

Memory is what the process holds for the index and the hashes it keeps (private RSS after
the build minus before the hashes were created); "peak" adds what the build used on the
way. Lookups are single hashes at threshold 31; "16 at once" is one media's PDQ variants
(8 rotations/flips of the image and 8 of it trimmed) searched in one call, as the
classifier does. Prints a Markdown table (and JSON with --json).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.lists.index import BruteForceIndex, build_hamming_index, code_to_hex  # noqa: E402

THRESHOLD = 31


def private_mb() -> float:
    """Memory private to this process (not shared with the parent), in MB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Private_Clean:", "Private_Dirty:", "Anonymous:"):
                fields[parts[0]] = int(parts[1])
    return (fields.get("Private_Clean:", 0) + fields.get("Private_Dirty:", 0)) / 1024


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_data(n: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(codes, query codes, planted row per query, planted distance per query)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, size=(n, 4), dtype=np.uint64, endpoint=True)
    rows = rng.choice(n, size=queries, replace=False)
    # 0..31 in turn, and every 8th query at 32, just beyond the threshold.
    distances = np.array([32 if i % 8 == 7 else i % 32 for i in range(queries)])
    out = codes[rows].copy()
    for q, d in enumerate(distances):
        bits = rng.choice(256, size=int(d), replace=False)
        for bit in bits:
            out[q, bit // 64] ^= np.uint64(1 << (63 - int(bit) % 64))
    return codes, out, rows, distances


def variants(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """16 unrelated hashes standing in for one image's PDQ variants (the first is `base`)."""
    batch = rng.integers(0, 2**64 - 1, size=(16, 4), dtype=np.uint64, endpoint=True)
    batch[0] = base
    return batch


def summarise(name: str, build: float, memory: float, peak: float, times: list[float], found: list[bool],
              distances: np.ndarray, batch_times: list[float] | None, extra: dict[str, Any]) -> dict[str, Any]:
    within = distances <= THRESHOLD
    found_arr = np.array(found)
    ms = np.array(times) * 1000
    return {
        "index": name,
        "build_s": round(build, 1),
        "memory_mb": round(memory),
        "peak_mb": round(peak),
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "queries": len(times),
        "recall": float(found_arr[within[: len(found)]].mean()) if within[: len(found)].any() else None,
        "beyond_found": int(found_arr[~within[: len(found)]].sum()),
        "batch16_median_ms": round(float(np.median(batch_times)) * 1000, 3) if batch_times else None,
        **extra,
    }


def run_modbot(n: int, queries: int, seed: int, brute: bool, max_queries: int) -> dict[str, Any]:
    base = private_mb()
    codes, query_codes, rows, distances = make_data(n, queries, seed)
    hwm_before = peak_mb() - rss_mb()
    started = time.perf_counter()
    index = BruteForceIndex(codes, 256) if brute else build_hamming_index(codes, 256, THRESHOLD)
    build = time.perf_counter() - started
    if brute:
        del codes  # the index holds its own (column-major) copy
    else:
        del codes  # the index holds this very array
    gc.collect()
    memory = private_mb() - base
    peak = peak_mb() - hwm_before - base
    times, found = [], []
    for q in range(min(queries, max_queries)):
        t0 = time.perf_counter()
        result = index.search(query_codes[q : q + 1], THRESHOLD)
        times.append(time.perf_counter() - t0)
        found.append(bool((result.row == rows[q]).any()))
    rng = np.random.default_rng(seed + 1)
    batch_times = []
    for q in range(min(queries, max_queries // 4 or 1)):
        batch = variants(rng, query_codes[q])
        t0 = time.perf_counter()
        index.search(batch, THRESHOLD)
        batch_times.append(time.perf_counter() - t0)
    name = "brute force (numpy)" if brute else "modbot"
    extra = {} if brute else {"plan": f"{len(index.plan.widths)} substrings of {min(index.plan.widths)}-{max(index.plan.widths)} bits"}
    return summarise(name, build, memory, peak, times, found, distances, batch_times, extra)


def run_threatexchange(n: int, queries: int, seed: int, max_queries: int) -> dict[str, Any]:
    try:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex
    except ImportError:
        return {"index": "python-threatexchange PDQIndex", "error": "not installed (pip install threatexchange)"}
    base = private_mb()
    codes, query_codes, rows, distances = make_data(n, queries, seed)
    hexes = [code_to_hex(c, 64) for c in codes]  # what its API takes
    del codes
    gc.collect()
    hwm_before = peak_mb() - rss_mb()
    started = time.perf_counter()
    index = PDQIndex(zip(hexes, range(n)))
    build = time.perf_counter() - started
    gc.collect()
    memory = private_mb() - base
    peak = peak_mb() - hwm_before - base
    query_hexes = [code_to_hex(c, 64) for c in query_codes]
    times, found = [], []
    for q in range(min(queries, max_queries)):
        t0 = time.perf_counter()
        matches = index.query(query_hexes[q])
        times.append(time.perf_counter() - t0)
        found.append(any(m.metadata == rows[q] for m in matches))
    return summarise("python-threatexchange PDQIndex", build, memory, peak, times, found, distances, None,
                     {"plan": "faiss IndexBinaryMultiHash, 16 substrings of 16 bits"})


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        return pool.apply(target, args)


def table(rows: list[dict[str, Any]], n: int) -> str:
    lines = [
        f"PDQ, {n:,} random hashes, threshold {THRESHOLD}; single-hash lookups unless noted.",
        "",
        "| index | build (s) | memory (MB) | peak in build (MB) | median lookup (ms) | p99 lookup (ms) | 16 at once, median (ms) | recall (planted 0-31) | found at 32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['index']} | {r['error']} | | | | | | | |")
            continue
        recall = "-" if r["recall"] is None else f"{r['recall']:.1%}"
        batch = "-" if r["batch16_median_ms"] is None else f"{r['batch16_median_ms']:.2f}"
        lines.append(
            f"| {r['index']} | {r['build_s']:.1f} | {r['memory_mb']:,} | {r['peak_mb']:,} | {r['median_ms']:.3f} | "
            f"{r['p99_ms']:.3f} | {batch} | {recall} ({r['queries']} queries) | {r['beyond_found']} |"
        )
    plans = [f"- {r['index']}: {r['plan']}" for r in rows if r.get("plan")]
    return "\n".join(lines + [""] + plans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000, help="hashes in the index (default 10M)")
    parser.add_argument("--queries", type=int, default=1000, help="planted queries (default 1000)")
    parser.add_argument("--brute-queries", type=int, default=100, help="queries for brute force (slow at 10M)")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--skip", action="append", default=[], choices=["brute", "threatexchange"])
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; building each index in its own process...", file=sys.stderr)
    rows = [in_child(run_modbot, args.n, args.queries, args.seed, False, args.queries)]
    print(f"  modbot done: {rows[-1]}", file=sys.stderr)
    if "brute" not in args.skip:
        rows.append(in_child(run_modbot, args.n, args.queries, args.seed, True, args.brute_queries))
        print(f"  brute force done: {rows[-1]}", file=sys.stderr)
    if "threatexchange" not in args.skip:
        rows.append(in_child(run_threatexchange, args.n, args.queries, args.seed, args.queries))
        print(f"  threatexchange done: {rows[-1]}", file=sys.stderr)
    print(table(rows, args.n))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`modbot hashes import|export|stats|check|retro`: hash lists from the command line.

Their arguments are declared in bot/cli/__init__.py; `hashes accept` is in bot/cli/accept.py and
`hashes add-image` in bot/cli/scan.py. Anything that may take
over a second shows a progress bar on stderr (a line every few seconds when stderr is not
a terminal). A running bot picks up list files these commands change on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from typing import TYPE_CHECKING

from ..classify.pdqrule import FULL_QUALITY, LOW_BOUND
from ..config import Config, HashListConfig
from ..lists.format import describe_entry, split_derived
from ..model import HASH_HEX_LENGTH, Hashes
from .common import configured_list, load

if TYPE_CHECKING:
    from ..lists.loaded import LoadedList

# The matching and hashing modules load numpy, Pillow and pdqhash: imported by the
# commands that use them, so that `modbot --help` stays quick.

# How far beyond a list's threshold `check` still shows entries, as near misses.
CHECK_MARGIN = {"pdq": 16, "phash": 6}


class ProgressBar:
    """A progress bar on stderr, shown only once the work has taken over a second."""

    def __init__(self, label: str, stream: TextIO | None = None, *, delay: float = 1.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.delay = delay
        self.shown = False
        self._last = 0.0
        self._tty = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.started < self.delay or (not self._tty and now - self._last < 5 and done < total):
            return
        self._last = now
        self.shown = True
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * 30)
        text = f"{self.label} [{bar:<30}] {fraction:4.0%} {done}/{total} {now - self.started:.0f}s"
        self.stream.write(("\r" + text) if self._tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.shown and self._tty:
            self.stream.write("\n")
            self.stream.flush()


def list_config(config: Config, name: str) -> HashListConfig:
    try:
        return configured_list(config, name)
    except KeyError as e:
        raise SystemExit(f"modbot: {e.args[0]}") from None


# --- import / export -----------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from ..lists.loaded import resolve_list_path
    from ..lists.fingerprints import columns_difference
    from ..lists.importers import read_import, write_list_file
    from ..lists.columns import HashColumns, read_hash_columns

    config = load(args.config)
    target = list_config(config, args.list)
    label = args.label or target.label
    path = resolve_list_path(target, Path.cwd())
    bar = ProgressBar(f"reading {args.file}")
    try:
        result = read_import(
            args.file, args.format, label, hash_type=args.type, progress=bar, max_vpdq_frames=target.max_vpdq_frames
        )
    except (OSError, ValueError) as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    bar = ProgressBar(f"reading {path}")
    existing = (
        read_hash_columns(path, target.label, bar, target.max_vpdq_frames) if path.exists() and not args.replace else None
    )
    bar.close()
    # Each entry once, and only those the list does not hold yet.
    added = columns_difference(result.columns, existing or HashColumns({}, ()))
    print(f"read {result.lines} lines of {args.file} ({args.format}): {len(result.columns)} entries, {result.rejected} lines rejected")
    for reason, count in result.problem_counts.most_common():
        print(f"  {count} x {reason}")
    for line, reason in result.problems[:10]:
        print(f"  line {line}: {reason}")
    if args.dry_run:
        print(f"dry run: would {'replace list with' if args.replace else 'add'} {len(added)} entries ({path})")
        return 0
    if not len(added) and not args.replace:
        print(f"list {args.list} already holds every entry; {path} unchanged")
        return 0
    written = write_list_file(path, existing, added, default_label=target.label, replace=args.replace)
    counts = ", ".join(f"{n} {t}" for t, n in added.counts.items() if n)
    print(f"{'replaced list' if args.replace else 'added'} {written} entries ({counts or 'none'}) to list {args.list} ({path})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..lists.loaded import resolve_list_path
    from ..lists.importers import format_entries
    from ..lists.columns import read_hash_columns

    config = load(args.config)
    target = list_config(config, args.list)
    path = resolve_list_path(target, Path.cwd())
    bar = ProgressBar(f"reading {path}")
    columns = read_hash_columns(path, target.label, bar, target.max_vpdq_frames)
    bar.close()
    if any(line == 0 for line, _ in columns.errors):
        print(f"modbot: {columns.errors[0][1]}", file=sys.stderr)
        return 2
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        out.writelines(format_entries(columns, args.format))
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"exported {len(columns)} entries of list {args.list} to {args.output}", file=sys.stderr)
    return 0


# --- stats -------------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    import numpy as np

    from ..lists.loaded import load_list

    config = load(args.config)
    report: dict[str, Any] = {"lists": []}
    for list_config in config.hash_lists:
        bar = ProgressBar(f"loading {list_config.name}")
        started = time.monotonic()
        loaded, load_report, columns = load_list(list_config, Path.cwd(), bar)
        bar.close()
        labels: Counter[str] = Counter()
        for typed in columns.by_type.values():
            for label_id, n in zip(*np.unique(typed.labels, return_counts=True)):
                labels[columns.labels[int(label_id)]] += int(n)
        report["lists"].append(
            {
                "name": list_config.name,
                "path": str(load_report.path),
                "enabled": list_config.enabled,
                "label": list_config.label,
                "thresholds": {"pdq": loaded.thresholds.pdq, "phash": loaded.thresholds.phash},
                "entries": {t: n for t, n in loaded.index.counts.items()},
                "lines_listed": dict(load_report.counts),
                "labels": dict(labels),
                "rejected_lines": sum(1 for line, _ in load_report.errors if line),
                "error": next((r for line, r in load_report.errors if line == 0), None),
                "load_seconds": round(time.monotonic() - started, 2),
                "memory_mb": round(loaded.index.nbytes / 1e6, 1),
                "index": {t: type(i.index).__name__ for t, i in loaded.index.near.items()},
            }
        )
    report["history"] = asyncio.run(_history_stats(config))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    for item in report["lists"]:
        state = "enabled" if item["enabled"] else "disabled"
        print(f"list {item['name']} ({state}, label {item['label']}): {item['path']}")
        if item["error"]:
            print(f"  cannot load: {item['error']}")
            continue
        entries = ", ".join(f"{n} {t}" for t, n in item["entries"].items() if n) or "no entries"
        print(f"  {entries}; {item['rejected_lines']} lines rejected")
        print(f"  labels: {', '.join(f'{k} {v}' for k, v in sorted(item['labels'].items())) or '-'}")
        print(f"  thresholds: pdq {item['thresholds']['pdq']}, phash {item['thresholds']['phash']}; "
              f"loaded in {item['load_seconds']} s, {item['memory_mb']} MB"
              + (f"; index {', '.join(f'{t} {k}' for t, k in item['index'].items())}" if item["index"] else ""))
    history = report["history"]
    if "error" in history:
        print(f"history: {history['error']}")
    else:
        print(f"history: {history['media']} media with hashes kept")
        for run in history["retro_runs"]:
            print(f"  retro run {run['id']}: list {run['list']} {run['status']}, {run['new_entries']} new entries, "
                  f"{run['media_matched']} media matched, {run['events_acted']} events acted on")
    return 0


async def _history_stats(config: Config) -> dict[str, Any]:
    from ..record.db import create_engine, current_revision, head_revision
    from ..record.store import Store

    engine = create_engine(config.database.url)
    try:
        if await current_revision(engine) != head_revision():
            return {"error": "the database is not at the current schema (start the bot once to migrate it)"}
        store = Store(engine)
        runs = await store.retro_runs(10)
        return {
            "media": await store.count_hashed_media(),
            "retro_runs": [
                {"id": r.id, "list": r.list_name, "status": r.status, "new_entries": r.new_entries,
                 "media_matched": r.media_matched, "events_acted": r.events_acted, "started_at": r.started_at}
                for r in runs
            ],
        }
    except Exception as e:  # stats of the lists are still worth printing
        return {"error": f"cannot read the database: {type(e).__name__}: {e}"}
    finally:
        await engine.dispose()


# --- check -------------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from ..lists.loaded import load_list
    from .scan import run_with_sandbox

    config = load(args.config)
    lists: list[LoadedList] = []
    for list_config in config.hash_lists:
        bar = ProgressBar(f"loading {list_config.name}")
        loaded, report, _ = load_list(list_config, Path.cwd(), bar)
        bar.close()
        if report.failed:
            print(f"list {list_config.name}: cannot load: {report.errors[0][1]}")
        lists.append(loaded)
    async def check_all(sandbox: Any) -> int:  # decoded in the hashing sandbox, like posted media
        status = 0
        for image in args.images:
            try:
                hashes = await sandbox.hash(Path(image).read_bytes())
            except OSError as e:
                print(f"{image}: {e}")
                status = 2
                continue
            for line in explain(image, hashes, lists, config.hashlist.pdq_min_quality, margin=args.margin):
                print(line)
        return status

    return run_with_sandbox(config, check_all)


def explain(name: str, hashes: Hashes, lists: list[LoadedList], pdq_min_quality: int, margin: int | None = None) -> list[str]:
    """Why an image matches or not: its hashes, and each list's entries near them."""
    from ..classify.hashlist import HashListClassifier

    lines = [f"{name}: sha256 {hashes.sha256}"]
    lines.append(f"  md5 {hashes.md5}, sha1 {hashes.sha1}")
    if hashes.pdq:
        quality = hashes.pdq_quality
        note = "" if quality is not None and quality >= pdq_min_quality else f" (below {pdq_min_quality}: perceptual hashes not matched)"
        if not note and quality is not None and quality < FULL_QUALITY:
            note = (f" (under {FULL_QUALITY}: pdq and its rotations/flips/trims matched within {LOW_BOUND} bits,"
                    f" phash not matched)")
        lines.append(f"  pdq {hashes.pdq} quality {quality}{note}; {len(hashes.pdq_queries)} rotations/flips/trims and "
                     f"{len(hashes.pdq_uncropped)} crop guesses tried")
        lines.append(f"  phash {hashes.phash}")
    else:
        lines.append(f"  no perceptual hash: {hashes.perceptual_error}")
    verdicts = HashListClassifier(lists, pdq_min_quality).match(hashes).verdicts
    matched = {(v.list_name, v.hash_type, v.matched_hash): v for v in verdicts}
    for lst in lists:
        if not lst.enabled:
            lines.append(f"  list {lst.name}: disabled")
            continue
        found = _near_entries(lst, hashes, margin)
        if not found:
            lines.append(f"  list {lst.name}: nothing near")
            continue
        lines.append(f"  list {lst.name}:")
        for hash_type, entry, label, distance, query, derived in found:
            threshold = getattr(lst.thresholds, hash_type, 0)
            verdict = matched.get((lst.name, hash_type, entry))
            if verdict is not None:
                # Over the threshold: a smooth image's or a crop guess's most reliable bits agree.
                what = "MATCH" if distance <= threshold else "MATCH, its most reliable bits agreeing"
            elif distance <= threshold:
                what = "within threshold, not matched (low PDQ quality)"
            else:
                what = f"near miss ({distance - threshold} over)"
            where = "" if hash_type not in ("pdq", "phash") else f" distance {distance}/{threshold} via {query}"
            lines.append(f"    {what}: {hash_type} {entry} label {label}{where}{_of_image(derived)}")
    if not verdicts:
        lines.append("  no match")
    return lines


def _of_image(derived: str) -> str:
    """What a derived entry is of (bot/lists/format.py), for an operator tracing a match back
    to the listed image: `hash remove <list> sha256:<hex>` removes that image's rows."""
    return f"; the entry is {describe_entry(*split_derived(derived))}" if derived else ""


def _near_entries(lst: LoadedList, hashes: Hashes, margin: int | None) -> list[tuple[str, str, str, int, str, str]]:
    from ..hashing.uncrop import HYPOTHESES
    from ..lists.index import hex_to_codes

    found: list[tuple[str, str, str, int, str, str]] = []
    for hash_type in ("sha256", "md5", "sha1"):
        value = getattr(hashes, hash_type)
        exact = lst.index.exact.get(hash_type)
        if value and exact is not None:
            found.extend((hash_type, value, label, 0, "exact", "") for label in exact.get(value))
    pdqs = ([hashes.pdq] if hashes.pdq else []) + [q for q in hashes.pdq_queries if q != hashes.pdq]
    queries = {"pdq": pdqs + list(hashes.pdq_uncropped), "phash": [hashes.phash] if hashes.phash else []}
    crops = dict(zip(range(len(pdqs), len(queries["pdq"])), (name for name, _cut in HYPOTHESES)))
    for hash_type, hexes in queries.items():
        index = lst.index.near.get(hash_type)
        if index is None or not hexes:
            continue
        radius = getattr(lst.thresholds, hash_type) + (CHECK_MARGIN[hash_type] if margin is None else margin)
        radius = min(radius, HASH_HEX_LENGTH[hash_type] * 4)
        for row, query_no, distance in index.search(hex_to_codes(hexes, HASH_HEX_LENGTH[hash_type]), radius):
            query = "the image as decoded" if query_no == 0 else f"variant {hexes[query_no]}"
            if hash_type == "pdq" and query_no in crops:
                query = f"crop guess ({crops[query_no]}) {hexes[query_no]}"
            found.append((hash_type, index.hash_at(row), index.label_at(row), distance, query, index.derived_at(row)))
    found.sort(key=lambda f: (f[3], f[0]))
    return found


# --- retro ---------------------------------------------------------------------------------------------


def cmd_retro(args: argparse.Namespace) -> int:
    """What retroactive matching would find now: new entries per list and the media they match."""
    config = load(args.config)
    return asyncio.run(_retro_report(config, args.list))


async def _retro_report(config: Config, only: str | None) -> int:
    from ..lists.loaded import load_list
    from ..lists.fingerprints import new_entries
    from ..record.db import create_engine, current_revision, head_revision
    from ..record.store import Store
    from ..retro import decode_digests, live_classifiers, matchers_for

    engine = create_engine(config.database.url)
    try:
        if await current_revision(engine) != head_revision():
            print("modbot: the database is not at the current schema; start the bot once to migrate it", file=sys.stderr)
            return 2
        store = Store(engine)
        total = await store.count_hashed_media()
        live = live_classifiers(config)
        for list_config in config.hash_lists:
            if only and list_config.name != only or not list_config.enabled:
                continue
            loaded, report, _ = load_list(list_config, Path.cwd())
            if report.failed:
                print(f"list {list_config.name}: cannot load: {report.errors[0][1]}")
                continue
            if not any(c.names is None or list_config.name in c.names for c in live):
                print(f"list {list_config.name}: no enabled hash-list classifier matches it: not matched, "
                      "live or against the history (the bot matches it in full once one does)")
                continue
            chunks = await store.seen_list_digests(list_config.name)
            delta = new_entries(loaded, decode_digests(chunks) if chunks is not None else None)
            count = sum(delta.index.counts.values())
            print(f"list {list_config.name}: {count} entries not yet matched against the history"
                  + (" (never matched: the whole list)" if chunks is None else ""))
            if not count:
                continue
            matchers = matchers_for(delta, live)  # each list as the bot's classifiers match it
            bar = ProgressBar(f"matching {list_config.name}")
            after, checked, hits = None, 0, []
            while True:
                page = await store.hashed_media_page(after, 2000)
                if not page:
                    break
                for media in page:
                    if media.hashes is not None and (verdicts := [v for m in matchers for v in m.match(media.hashes).verdicts]):
                        hits.append((media.mxc, verdicts))
                checked += len(page)
                after = page[-1].mxc
                bar(checked, total)
            bar.close()
            events = await store.events_with_media([mxc for mxc, _ in hits])
            by_mxc: dict[str, list[str]] = {}
            for e in events:
                by_mxc.setdefault(e.mxc, []).append(f"{e.event_id} in {e.room_id} by {e.sender}")
            print(f"  {checked} media checked, {len(hits)} match")
            for mxc, verdicts in hits:
                best = verdicts[0]
                print(f"  {mxc}: {best.hash_type} distance {best.distance}, label {best.label}; events: "
                      + ("; ".join(by_mxc.get(mxc, [])) or "none"))
        print("The running bot acts on these by itself when it loads the lists; this command changes nothing.")
        return 0
    finally:
        await engine.dispose()

"""Offline use of the pipeline's pure core: `modbot scan` and `modbot hashes add-image`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..classify.base import MediaInput
from ..classify.hashlist import HashListClassifier
from ..config import Config, ProcessingConfig
from ..configdetect import DEFAULT_PDQ_MIN_QUALITY
from ..hashing.pool import HashSandbox
from ..lists.loaded import build_lists
from ..lists.format import HashEntry, append_entries
from ..lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS, CROP_MIN_QUALITY, image_entries
from ..model import EventContext, hashes_summary, verdict_json
from ..policy import DEFAULT_POLICY, decide
from .common import configured_list, load

T = TypeVar("T")


def run_with_sandbox(config: Config | None, work: Callable[[HashSandbox], Awaitable[T]]) -> T:
    """Run `work` with a one-worker hashing sandbox: local files are decoded under the same
    limits as posted media. Callable from synchronous code, and from a coroutine (the demo,
    tests), which it blocks as the hashing it replaces did."""

    async def run() -> T:
        async with HashSandbox.from_config(config.processing if config else ProcessingConfig(), workers=1) as sandbox:
            return await work(sandbox)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with ThreadPoolExecutor(1, thread_name_prefix="modbot-local-hash") as pool:
        return pool.submit(asyncio.run, run()).result()


def scan_files(files: list[Path], config: Config | None) -> list[dict[str, Any]]:
    """Hash, classify and decide for each file as if an ordinary user had posted it."""
    lists = build_lists(config.hash_lists, base_dir=Path.cwd())[0] if config else ()
    classifier = HashListClassifier(lists, pdq_min_quality=config.hashlist.pdq_min_quality if config else DEFAULT_PDQ_MIN_QUALITY)
    policy = config.policy if config else DEFAULT_POLICY
    max_bytes = config.processing.max_media_bytes if config else 50 * 1024 * 1024
    ctx = EventContext(event_id="$local", room_id="!local:localhost", sender="@someone:localhost", sender_power=0)

    async def scan(sandbox: HashSandbox) -> list[dict[str, Any]]:
        results = []
        for path in files:
            entry: dict[str, Any] = {"file": str(path)}
            try:
                size = path.stat().st_size
                if size > max_bytes:
                    raise ValueError(f"file over the size cap ({size} > {max_bytes} bytes), not scanned")
                data = path.read_bytes()
            except (OSError, ValueError) as e:
                entry["error"] = str(e)
                results.append(entry)
                continue
            hashes = await sandbox.hash(data)
            del data
            classification = await classifier.classify(MediaInput(hashes=hashes))
            decision = decide(classification.verdicts, ctx, policy)
            entry["hashes"] = hashes_summary(hashes)
            entry["verdicts"] = [verdict_json(v) for v in classification.verdicts]
            entry["decision"] = {
                "rule": decision.rule,
                "actions": [a.kind.value + (":all" if a.scope == "all" else "") for a in decision.actions],
                "dry_run": decision.dry_run,
            }
            if classification.error:
                entry["error"] = classification.error
            results.append(entry)
        return results

    return run_with_sandbox(config, scan)


def add_images(images: list[Path], config: Config, list_name: str, label: str | None) -> tuple[int, Path]:
    """Hash local images into a configured list file; returns (entries added, file)."""
    target = configured_list(config, list_name)
    label = label or target.label

    async def hash_all(sandbox: HashSandbox) -> list[HashEntry]:
        entries: list[HashEntry] = []
        for image in images:
            # PDQ does not survive cropping; the crops' hashes find copies trimmed about as much.
            hashes, crops = await sandbox.hash_with_crops(
                image.read_bytes(), ADD_IMAGE_CROPS, min_quality=CROP_MIN_QUALITY, gains=ADD_IMAGE_GAINS
            )
            entries += image_entries(hashes, crops, label)
        return entries

    entries = run_with_sandbox(config, hash_all)
    added = append_entries(target.path, entries)
    return added, Path(target.path)


def cmd_scan(args: argparse.Namespace) -> int:
    config = load(args.config) if args.config else None
    results = scan_files([Path(f) for f in args.files], config)
    failed = 0
    for result in results:
        failed += bool(result.get("error"))
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            print(_describe_scan(result))
    return 1 if failed else 0


def _describe_scan(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"{result['file']}: error: {result['error']}"
    verdicts = result["verdicts"]
    head = f"{result['file']}: sha256 {result['hashes']['sha256']}"
    if result["hashes"].get("perceptual_error"):
        head += f" (no perceptual hash: {result['hashes']['perceptual_error']})"
    if not verdicts:
        return head + "\n  no match"
    lines = [head]
    for v in verdicts:
        where = v.get("list") or v["classifier"]
        lines.append(f"  match: {where} label {v['label']} {v['kind']} {v.get('hash_type') or ''} distance {v.get('distance')}")
    decision = result["decision"]
    lines.append(f"  rule {decision['rule']}: would {', '.join(decision['actions']) or 'do nothing'}"
                 + (" [dry run]" if decision["dry_run"] else ""))
    return "\n".join(lines)


def cmd_hashes_add_image(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        added, path = add_images([Path(p) for p in args.images], config, args.list, args.label)
    except KeyError as e:
        # str() of a KeyError is the repr of its argument: quotes around the message.
        print(f"modbot: {e.args[0]}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    print(f"added {added} hashes to list {args.list} ({path})")
    return 0

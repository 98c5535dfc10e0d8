"""Offline use of the pipeline's pure core: `modbot scan` and `modbot hashes add-image`."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..classify.base import MediaInput
from ..classify.hashlist import HashListClassifier
from ..lists.loaded import build_lists
from ..config import Config
from ..hashing import compute_hashes, crop_hashes
from ..lists.format import HashEntry, append_entries
from ..model import EventContext, verdict_json
from ..policy import DEFAULT_POLICY, decide

DEFAULT_MAX_PIXELS = 64_000_000
# Central crops (fraction of each side kept) whose PDQ add-image also lists. A copy cropped
# by 2.5-10%, evenly at both ends, stays within 20 bits of one of them; in steps of 5% (0.95,
# 0.9) 10% of 7.5% crops are missed (bench/bench_robustness.py --sweep).
ADD_IMAGE_CROPS = (0.975, 0.95, 0.925, 0.9)


def scan_files(files: list[Path], config: Config | None) -> list[dict[str, Any]]:
    """Hash, classify and decide for each file as if an ordinary user had posted it."""
    lists = build_lists(config.hash_lists, base_dir=Path.cwd())[0] if config else ()
    classifier = HashListClassifier(lists, pdq_min_quality=config.hashlist.pdq_min_quality if config else 50)
    policy = config.policy if config else DEFAULT_POLICY
    max_pixels = config.processing.max_image_pixels if config else DEFAULT_MAX_PIXELS
    max_bytes = config.processing.max_media_bytes if config else 50 * 1024 * 1024
    ctx = EventContext(event_id="$local", room_id="!local:localhost", sender="@someone:localhost", sender_power=0)
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
        hashes = compute_hashes(data, max_pixels=max_pixels)
        del data
        classification = asyncio.run(classifier.classify(MediaInput(hashes=hashes)))
        decision = decide(classification.verdicts, ctx, policy)
        entry["hashes"] = {k: v for k, v in asdict(hashes).items() if k != "pdq_queries"}
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


def add_images(images: list[Path], config: Config, list_name: str, label: str | None) -> tuple[int, Path]:
    """Hash local images into a configured list file; returns (entries added, file)."""
    lists = {lst.name: lst for lst in config.hash_lists}
    if list_name not in lists:
        raise KeyError(f"no hash list named {list_name!r} in the config (have: {', '.join(lists) or 'none'})")
    target = lists[list_name]
    label = label or target.label
    entries: list[HashEntry] = []
    for image in images:
        data = image.read_bytes()
        hashes = compute_hashes(data, max_pixels=config.processing.max_image_pixels)
        entries.append(HashEntry("sha256", hashes.sha256, label))
        if hashes.md5:
            entries.append(HashEntry("md5", hashes.md5, label))
        if hashes.pdq:
            entries.append(HashEntry("pdq", hashes.pdq, label))
        if hashes.phash:
            entries.append(HashEntry("phash", hashes.phash, label))
        if hashes.pdq:
            # PDQ does not survive cropping; the crops' hashes find copies trimmed about as much.
            crops = crop_hashes(data, ADD_IMAGE_CROPS, max_pixels=config.processing.max_image_pixels)
            entries.extend(HashEntry("pdq", crop, label) for crop in crops)
    added = append_entries(target.path, entries)
    return added, Path(target.path)

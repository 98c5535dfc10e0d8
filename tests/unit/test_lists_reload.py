"""ListRegistry: loading, atomic reloads, the file watcher, new-entry detection, the allowlist hook."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.classify.hashlist import HashListClassifier
from bot.lists.loaded import LoadedList, Thresholds
from bot.lists.format import HashEntry
from bot.lists.fingerprints import entry_fingerprints, new_entries
from bot.lists.registry import ListRegistry, ReloadResult
from bot.model import Hashes, MatchKind

RNG = random.Random(99)


def hexdigits(n: int) -> str:
    return f"{RNG.getrandbits(n * 4):0{n}x}"


@dataclass
class ListConfig:
    name: str
    path: Path
    label: str = "csam"
    enabled: bool = True
    thresholds: Any = field(default_factory=dict)


def write_list(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Replace the file atomically, as the docs tell operators to, with a new mtime."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("type,hash,label\n" + "".join(f"{t},{h},{lab}\n" for t, h, lab in rows), encoding="utf-8")
    os.replace(tmp, path)


def hashes(sha256: str | None = None, pdq: str | None = None) -> Hashes:
    pdq = pdq or hexdigits(64)
    return Hashes(sha256=sha256 or hexdigits(64), md5=hexdigits(32), size=1, pdq=pdq, pdq_quality=100, pdq_queries=(pdq,))


def test_load_reports_entries_and_rejected_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(f"type,hash,label\nsha256,{hexdigits(64)},\nmd5,zz,x\n", encoding="utf-8")
    registry = ListRegistry([ListConfig("a", path)], tmp_path)
    result = registry.load()
    (change,) = result.changes
    assert change.outcome == "loaded"
    assert change.report.counts["sha256"] == 1
    assert change.report.errors == ((3, "md5 hash must be 32 hex digits, got 2"),)
    assert "1 lines rejected (first: line 3" in change.describe()
    assert [lst.name for lst in registry.lists] == ["a"]


async def test_reload_picks_up_a_changed_file_and_leaves_the_others(tmp_path: Path) -> None:
    sha_a, sha_b, sha_new = hexdigits(64), hexdigits(64), hexdigits(64)
    write_list(tmp_path / "a.csv", [("sha256", sha_a, "csam")])
    write_list(tmp_path / "b.csv", [("sha256", sha_b, "spam")])
    seen: list[ReloadResult] = []

    async def on_reload(result: ReloadResult) -> None:
        seen.append(result)

    registry = ListRegistry([ListConfig("a", tmp_path / "a.csv"), ListConfig("b", tmp_path / "b.csv")], tmp_path, on_reload=on_reload)
    await registry.reload()
    untouched = registry.snapshot.get("b")
    classifier = HashListClassifier(registry)
    assert classifier.match(hashes(sha256=sha_new)).verdicts == ()

    assert (await registry.reload()).changes == ()  # nothing changed: nothing reloaded
    write_list(tmp_path / "a.csv", [("sha256", sha_a, "csam"), ("sha256", sha_new, "csam")])
    os.utime(tmp_path / "a.csv", ns=(1, 1))  # a different mtime even on coarse clocks
    assert registry.changed() == ["a"]
    result = await registry.reload()

    assert result.reloaded == ("a",)
    assert registry.snapshot.get("b") is untouched
    assert [v.matched_hash for v in classifier.match(hashes(sha256=sha_new)).verdicts] == [sha_new]
    assert [r.reloaded for r in seen] == [("a", "b"), ("a",)]


async def test_a_list_that_fails_to_load_keeps_its_previous_version(tmp_path: Path) -> None:
    sha = hexdigits(64)
    path = tmp_path / "a.csv"
    write_list(path, [("sha256", sha, "csam")])
    registry = ListRegistry([ListConfig("a", path)], tmp_path)
    await registry.reload()
    before = registry.lists

    path.unlink()
    result = await registry.reload()
    (change,) = result.changes
    assert change.outcome == "kept"
    assert change.error == f"file not found: {path}"
    assert "previous version kept (1 entries)" in change.describe()
    assert registry.lists[0] is before[0]
    assert HashListClassifier(registry).match(hashes(sha256=sha)).verdicts != ()
    # Not retried until the file changes again.
    assert registry.changed() == [] and (await registry.reload()).changes == ()

    write_list(path, [("sha256", sha, "csam")])
    assert (await registry.reload()).reloaded == ("a",)


async def test_lists_are_built_off_the_event_loop(tmp_path: Path) -> None:
    write_list(tmp_path / "a.csv", [("sha256", hexdigits(64), "csam")])
    threads: set[str] = set()
    registry = ListRegistry([ListConfig("a", tmp_path / "a.csv")], tmp_path)
    await registry.reload(progress=lambda done, total: threads.add(threading.current_thread().name))
    assert threads and threading.main_thread().name not in threads


async def test_a_concurrent_matcher_never_sees_a_partial_list(tmp_path: Path) -> None:
    # Version 1 lists the media's sha256 only; version 2 its PDQ only, among many other
    # entries. Any consistent snapshot gives exactly one verdict; a mix of the two would
    # give two or none.
    media = hashes()
    v1 = [("sha256", media.sha256, "csam")] + [("md5", hexdigits(32), "csam") for _ in range(2000)]
    v2 = [("pdq", media.pdq or "", "csam")] + [("pdq", hexdigits(64), "csam") for _ in range(2000)]
    path = tmp_path / "a.csv"
    write_list(path, v1)
    registry = ListRegistry([ListConfig("a", path)], tmp_path)
    await registry.reload()
    classifier = HashListClassifier(registry)
    stop = threading.Event()
    results: list[int] = []

    def match_forever() -> None:
        while not stop.is_set():
            results.append(len(classifier.match(media).verdicts))

    matcher = threading.Thread(target=match_forever)
    matcher.start()
    try:
        for round_no in range(12):
            write_list(path, v2 if round_no % 2 == 0 else v1)
            os.utime(path, ns=(round_no + 10, round_no + 10))
            assert (await registry.reload()).reloaded == ("a",)
    finally:
        stop.set()
        matcher.join()
    assert results and set(results) == {1}


async def test_the_watcher_reloads_a_changed_file(tmp_path: Path) -> None:
    sha = hexdigits(64)
    path = tmp_path / "a.csv"
    write_list(path, [])
    reloaded = asyncio.Event()

    async def on_reload(result: ReloadResult) -> None:
        reloaded.set()

    registry = ListRegistry([ListConfig("a", path)], tmp_path)
    await registry.reload()
    registry.on_reload = on_reload
    registry.start_watching(interval=0.05)
    try:
        write_list(path, [("sha256", sha, "csam")])
        os.utime(path, ns=(5, 5))
        await asyncio.wait_for(reloaded.wait(), timeout=10)
    finally:
        await registry.stop_watching()
    assert HashListClassifier(registry).match(hashes(sha256=sha)).verdicts != ()


def test_new_entries_are_those_not_seen_before_including_relabelled_ones() -> None:
    pdq, sha, phash = hexdigits(64), hexdigits(64), hexdigits(16)
    old = LoadedList.from_entries(
        "l", [HashEntry("pdq", pdq, "spam"), HashEntry("sha256", sha, "csam")], label="csam"
    )
    added_pdq = hexdigits(64)
    new = LoadedList.from_entries(
        "l",
        [
            HashEntry("pdq", pdq, "spam"),
            HashEntry("sha256", sha, "csam"),
            HashEntry("pdq", added_pdq, "csam"),
            HashEntry("phash", phash, "csam"),
            HashEntry("sha256", sha, "terror"),  # same hash, new label: new to the policy
        ],
        label="csam",
        thresholds=Thresholds(pdq=20),
    )
    delta = new_entries(new, entry_fingerprints(old))
    assert delta.index.counts == {"sha256": 1, "md5": 0, "sha1": 0, "pdq": 1, "phash": 1}
    assert delta.thresholds == Thresholds(pdq=20)
    assert delta.index.exact["sha256"].get(sha) == ("terror",)
    assert delta.index.near["pdq"].hash_at(0) == added_pdq
    assert new_entries(new, entry_fingerprints(new)).index.counts == dict.fromkeys(delta.index.counts, 0)
    assert new_entries(new, None).index.counts == new.index.counts


class SmallAllowlist:
    """What the allowlist gives the classifier: a reason, or None."""

    def __init__(self, sha256: set[str]) -> None:
        self.sha256 = sha256

    def reason(self, hashes: Hashes) -> str | None:
        return f"allowlisted sha256 {hashes.sha256}" if hashes.sha256 in self.sha256 else None


@pytest.mark.parametrize("as_callable", [False, True])
def test_the_allowlist_always_wins(as_callable: bool) -> None:
    media = hashes()
    lst = LoadedList.from_entries(
        "l", [HashEntry("sha256", media.sha256, "csam"), HashEntry("pdq", media.pdq or "", "csam")], label="csam"
    )
    allowlist = SmallAllowlist({media.sha256})
    classifier = HashListClassifier([lst], allowlist=(lambda: allowlist) if as_callable else allowlist)
    assert classifier.match(media).verdicts == ()
    assert classifier.allowlisted(media) == f"allowlisted sha256 {media.sha256}"
    other = hashes(pdq=media.pdq)
    assert [v.kind for v in classifier.match(other).verdicts] == [MatchKind.NEAR]

"""The configured hash lists, loaded, and reloaded without a restart.

A `ListRegistry` holds an immutable `ListSnapshot`. Matching reads `registry.lists` once
per scan; a reload builds the new lists in a worker thread, off the event loop, then
swaps the snapshot in one assignment, so a scan sees the old lists or the new ones, never
a list half loaded. A list whose file cannot be read keeps its previous version, and the
reload says why. `watch()` polls the files' (inode, size, mtime) and reloads what changed;
`reload()` is the method a command calls.

Entry fingerprints (a 64-bit digest of type, hash and label per entry) tell which entries
of a list are new since some earlier set of them: what retroactive matching works from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.classify.hashlist import LoadedList, ListLoadReport, load_list, resolve_list_path
from bot.listcolumns import HashColumns, Progress, TypedHashes, file_signature
from bot.model import HASH_TYPES

log = logging.getLogger("modbot.lists")

Signature = tuple[int, int, int] | None


@dataclass(frozen=True)
class ListState:
    """One configured list as matching sees it."""

    config: Any  # HashListConfig: name, path, label, enabled, thresholds
    loaded: LoadedList
    report: ListLoadReport
    signature: Signature  # of the file the entries came from; None if not read
    loaded_at: float

    @property
    def name(self) -> str:
        return self.loaded.name


@dataclass(frozen=True)
class ListSnapshot:
    """Every configured list, as one immutable value."""

    version: int
    states: tuple[ListState, ...] = ()

    @property
    def lists(self) -> tuple[LoadedList, ...]:
        return tuple(s.loaded for s in self.states)

    def get(self, name: str) -> ListState | None:
        return next((s for s in self.states if s.name == name), None)


@dataclass(frozen=True)
class ListChange:
    """What a reload did with one list."""

    name: str
    outcome: str  # "loaded" | "unchanged" | "kept" (load failed, previous version kept) | "disabled"
    report: ListLoadReport
    previous_entries: int = 0
    seconds: float = 0.0

    @property
    def error(self) -> str | None:
        """Why the file could not be read, when it could not."""
        return next((reason for line, reason in self.report.errors if line == 0), None)

    def describe(self) -> str:
        r = self.report
        text = f"hash list {self.name}: "
        if self.outcome == "kept":
            return text + f"not reloaded, previous version kept ({self.previous_entries} entries): {self.error}"
        if self.outcome == "disabled":
            return text + "disabled"
        text += f"{r.entries} entries from {r.path}"
        if self.outcome == "loaded" and self.seconds:
            text += f" in {self.seconds:.1f} s"
        rejected = [(line, reason) for line, reason in r.errors if line]
        if rejected:
            text += f", {len(rejected)} lines rejected (first: line {rejected[0][0]}: {rejected[0][1]})"
        return text


@dataclass(frozen=True)
class ReloadResult:
    snapshot: ListSnapshot
    changes: tuple[ListChange, ...] = ()

    @property
    def reloaded(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.changes if c.outcome == "loaded")


OnReload = Callable[[ReloadResult], Awaitable[None]]


class ListRegistry:
    """The loaded lists; see the module docstring."""

    def __init__(
        self,
        configs: Iterable[Any],
        base_dir: Path,
        *,
        on_reload: OnReload | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.configs = tuple(configs)
        self.base_dir = Path(base_dir)
        self.on_reload = on_reload
        self._clock = clock
        self._snapshot = ListSnapshot(0)
        self._lock: asyncio.Lock | None = None  # created in the loop that first reloads
        self._watcher: asyncio.Task[None] | None = None

    # --- what matching reads ------------------------------------------------------------

    @property
    def snapshot(self) -> ListSnapshot:
        return self._snapshot

    @property
    def lists(self) -> tuple[LoadedList, ...]:
        return self._snapshot.lists

    @property
    def reports(self) -> tuple[ListLoadReport, ...]:
        return tuple(s.report for s in self._snapshot.states)

    # --- loading --------------------------------------------------------------------------

    def load(self, *, force: bool = False, names: Sequence[str] | None = None, progress: Progress | None = None) -> ReloadResult:
        """Load the lists whose file changed (all with `force`, or only `names`); blocking.

        Call it from a worker thread when an event loop is running (`reload` does).
        """
        old = self._snapshot
        states: list[ListState] = []
        changes: list[ListChange] = []
        for config in self.configs:
            previous = old.get(config.name)
            wanted = names is None or config.name in names
            state, change = self._load_one(config, previous, force=force or previous is None, wanted=wanted, progress=progress)
            states.append(state)
            if change is not None:
                changes.append(change)
        if changes:
            # The one assignment that makes the new lists visible.
            self._snapshot = ListSnapshot(old.version + 1, tuple(states))
        return ReloadResult(self._snapshot, tuple(changes))

    def _load_one(
        self, config: Any, previous: ListState | None, *, force: bool, wanted: bool, progress: Progress | None
    ) -> tuple[ListState, ListChange | None]:
        path = resolve_list_path(config, self.base_dir)
        signature = file_signature(path) if config.enabled else None
        if previous is not None and (not wanted or (not force and previous.config == config and previous.signature == signature)):
            return previous, None
        if not config.enabled:
            loaded, report, _ = load_list(config, self.base_dir)
            return ListState(config, loaded, report, None, self._clock()), ListChange(config.name, "disabled", report)
        started = time.monotonic()
        loaded, report, columns = load_list(config, self.base_dir, progress)
        seconds = time.monotonic() - started
        if report.failed and previous is not None and previous.loaded.enabled:
            # Keep what matching had; try again when the file changes.
            kept = ListState(previous.config, previous.loaded, previous.report, signature, previous.loaded_at)
            return kept, ListChange(config.name, "kept", report, previous.report.entries)
        state = ListState(config, loaded, report, columns.signature, self._clock())
        return state, ListChange(
            config.name, "loaded", report, previous.report.entries if previous else 0, seconds
        )

    def changed(self) -> list[str]:
        """Names of enabled lists whose file is not the one loaded."""
        return [
            s.name
            for s in self._snapshot.states
            if s.config.enabled and file_signature(resolve_list_path(s.config, self.base_dir)) != s.signature
        ]

    async def reload(
        self, *, force: bool = False, names: Sequence[str] | None = None, progress: Progress | None = None
    ) -> ReloadResult:
        """Reload (changed lists, or all with `force`) in a worker thread; then tell `on_reload`.

        Reloads are serialised: two callers never build the same list at once.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            result = await asyncio.to_thread(self.load, force=force, names=names, progress=progress)
        for change in result.changes:
            (log.warning if change.outcome == "kept" else log.info)("%s", change.describe())
        if self.on_reload is not None and result.changes:
            await self.on_reload(result)
        return result

    # --- watching the files ---------------------------------------------------------------

    async def watch(self, interval: float = 5.0, settle: float = 0.5) -> None:
        """Poll the list files every `interval` seconds and reload those that changed.

        A file seen changing is read once its signature has held still for `settle`
        seconds, so a list being written is not loaded half written (writers should still
        replace files atomically: write a temporary file, then rename it).
        """
        while True:
            await asyncio.sleep(interval)
            try:
                changed = await asyncio.to_thread(self.changed)
                if not changed:
                    continue
                before = await asyncio.to_thread(self._signatures, changed)
                await asyncio.sleep(settle)
                if await asyncio.to_thread(self._signatures, changed) != before:
                    continue  # still being written: look again next time
                await self.reload(names=changed)
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("hash list reload failed")

    def _signatures(self, names: Sequence[str]) -> list[Signature]:
        by_name = {c.name: c for c in self.configs}
        return [file_signature(resolve_list_path(by_name[n], self.base_dir)) for n in names]

    def start_watching(self, interval: float = 5.0) -> asyncio.Task[None]:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self.watch(interval), name="hash-list-watcher")
        return self._watcher

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
            self._watcher = None


# --- which entries are new -------------------------------------------------------------------

_TYPE_SALT = {t: np.uint64(0x632BE59BD9B4E019 * (i + 1) & 0xFFFFFFFFFFFFFFFF) for i, t in enumerate(HASH_TYPES)}


def _fingerprints(hash_type: str, codes: np.ndarray, labels: Sequence[str], label_ids: np.ndarray) -> np.ndarray:
    """A 64-bit digest of (type, hash, label) per row; labels enter by their text, not id."""
    label_digest = np.array([_text_digest(name) for name in labels], dtype=np.uint64)
    with np.errstate(over="ignore"):
        fp = _TYPE_SALT[hash_type] ^ (label_digest[label_ids] if len(labels) else np.zeros(len(codes), np.uint64))
        for word in range(codes.shape[1]):
            fp = fp * np.uint64(0x9E3779B97F4A7C15) + codes[:, word]
            fp ^= fp >> np.uint64(31)
        fp *= np.uint64(0xBF58476D1CE4E5B9)
        fp ^= fp >> np.uint64(29)
    return fp


def _text_digest(text: str) -> int:
    digest = 0xCBF29CE484222325
    for byte in text.encode():
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return digest


def _typed_parts(lst: LoadedList) -> Iterable[tuple[str, np.ndarray, np.ndarray, tuple[str, ...]]]:
    for hash_type, exact in lst.index.exact.items():
        yield hash_type, exact.index.codes, exact.label_ids[exact.index.order], exact.label_names
    for hash_type, near in lst.index.near.items():
        yield hash_type, near.index.codes, near.label_ids, near.label_names


def entry_fingerprints(lst: LoadedList) -> np.ndarray:
    """Sorted, distinct fingerprints of every entry of `lst`."""
    parts = [_fingerprints(t, codes, names, ids) for t, codes, ids, names in _typed_parts(lst)]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)


def new_entries(lst: LoadedList, known: np.ndarray | None) -> LoadedList:
    """The entries of `lst` whose fingerprint is not in `known` (sorted), as a list of their own.

    With `known` None (never seen), every entry is new.
    """
    by_type: dict[str, TypedHashes] = {}
    labels: dict[str, int] = {}
    for hash_type, codes, ids, names in _typed_parts(lst):
        if known is not None and len(known):
            fp = _fingerprints(hash_type, codes, names, ids)
            pos = np.minimum(np.searchsorted(known, fp), len(known) - 1)
            fresh = known[pos] != fp
            codes, ids = codes[fresh], ids[fresh]
        if not len(codes):
            continue
        remap = np.array([labels.setdefault(n, len(labels)) for n in names], dtype=np.int32)
        by_type[hash_type] = TypedHashes(np.ascontiguousarray(codes), remap[ids] if len(ids) else ids.astype(np.int32))
    return LoadedList.from_columns(
        lst.name, HashColumns(by_type, tuple(labels)), label=lst.label, enabled=True, thresholds=lst.thresholds
    )

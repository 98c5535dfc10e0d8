"""The configured hash lists, loaded, and reloaded without a restart.

A `ListRegistry` holds an immutable `ListSnapshot`. Matching reads `registry.lists` once
per scan; a reload builds the new lists in a worker thread, off the event loop, then
swaps the snapshot in one assignment, so a scan sees the old lists or the new ones, never
a list half loaded. A list whose file cannot be read keeps its previous version, and the
reload says why. So does a file that would empty the list, is mostly rejected lines or
drops too many entries (bot/lists/guard.py): that version is *held* until the file is fixed
or `modbot hashes accept NAME` accepts it, which the watcher learns from the `history`
(the database) it reads while something is held. `watch()` polls the files' (inode, size,
mtime) and reloads what changed; `reload()` is the method a command calls.

Entry fingerprints (a 64-bit digest of type, hash and label per entry) tell which entries
of a list are new since some earlier set of them: what retroactive matching works from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.lists.loaded import LoadedList, ListLoadReport, load_list, resolve_list_path
from bot.lists.columns import Progress, file_signature
from bot.lists.guard import ListHistory, ListHold, ListRecord, judge

log = logging.getLogger("modbot.lists")

Signature = tuple[int, int, int] | None


@dataclass(frozen=True)
class ListState:
    """One configured list as matching sees it."""

    config: Any  # HashListConfig: name, path, label, enabled, thresholds
    loaded: LoadedList
    report: ListLoadReport
    signature: Signature  # of the file last read (the held one, if held); None if not read
    loaded_at: float
    digest: str | None = None  # SHA-256 of the file the entries came from
    hold: ListHold | None = None  # a version read but not put in use (bot/lists/guard.py)

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

    @property
    def held(self) -> tuple[ListState, ...]:
        return tuple(s for s in self.states if s.hold is not None)


@dataclass(frozen=True)
class ListChange:
    """What a reload did with one list."""

    name: str
    # "loaded" | "kept" (unreadable, previous version kept) | "held" (see bot/lists/guard.py) | "disabled"
    outcome: str
    report: ListLoadReport
    previous_entries: int = 0
    seconds: float = 0.0
    reason: str | None = None  # why held
    digest: str | None = None  # of the file read
    previous_kept: bool = False  # held: whether an earlier version stays in use
    accepted_by: str | None = None  # loaded because an operator accepted this version

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
        if self.outcome == "held":
            kept = (
                f"the previous version stays in use ({self.previous_entries} entries)"
                if self.previous_kept
                else f"no earlier version to keep: matching uses the {r.entries} entries that could be read"
            )
            return (
                text + f"new version of {r.path} NOT loaded: {self.reason}; {kept}. Restore the file, "
                f"or run `modbot hashes accept {self.name}` to load it as it is"
            )
        text += f"{r.entries} entries from {r.path}"
        if self.outcome == "loaded" and self.seconds:
            text += f" in {self.seconds:.1f} s"
        if self.accepted_by:
            text += f" (accepted by {self.accepted_by})"
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
        history: ListHistory | None = None,
        max_drop_share: float = 0.25,
    ) -> None:
        self.configs = tuple(configs)
        self.base_dir = Path(base_dir)
        self.on_reload = on_reload
        self._clock = clock
        self.history = history
        self.max_drop_share = max_drop_share
        # What each list last loaded and what was accepted: from `history` when there is one.
        self._records: dict[str, ListRecord] = {}
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

    def _judge(self, report: ListLoadReport, digest: str | None) -> ListHold | None:
        return judge(report, digest, self._records.get(report.name), self.max_drop_share)

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
        usable = previous is not None and previous.loaded.enabled
        if report.failed and usable:
            # Keep what matching had; try again when the file changes.
            kept = replace(previous, signature=signature)  # type: ignore[arg-type]
            return kept, ListChange(config.name, "kept", report, previous.report.entries)  # type: ignore[union-attr]
        hold = self._judge(report, columns.digest)
        if hold is not None:
            change = ListChange(
                config.name, "held", report, reason=hold.reason, digest=columns.digest, previous_kept=usable,
                previous_entries=previous.report.entries if usable else self._last_entries(config.name),  # type: ignore[union-attr]
            )
            if usable:
                # Keep what matching had, remember what was held; look again when the file
                # changes or an operator accepts this version. The same content held again
                # (a file touched or rewritten alike) is not news: no second notice.
                if previous.hold is not None and previous.hold.digest == columns.digest:  # type: ignore[union-attr]
                    return replace(previous, signature=columns.signature or signature), None  # type: ignore[arg-type]
                return replace(previous, signature=columns.signature or signature, hold=hold), change  # type: ignore[arg-type]
            # Nothing earlier in memory (start): what could be read is better than nothing.
            return ListState(config, loaded, report, columns.signature, self._clock(), columns.digest, hold), change
        record = self._records.get(config.name)
        accepted = record is not None and record.digest != columns.digest and record.accepted_digest == columns.digest
        accepted_by = record.accepted_by if accepted else None  # type: ignore[union-attr]
        state = ListState(config, loaded, report, columns.signature, self._clock(), columns.digest)
        return state, ListChange(
            config.name, "loaded", report, previous.report.entries if previous else 0, seconds,
            digest=columns.digest, accepted_by=accepted_by,
        )

    def _last_entries(self, name: str) -> int:
        record = self._records.get(name)
        return record.entries or 0 if record is not None else 0

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
            await self._read_history()  # acceptances made since
            result = await asyncio.to_thread(self.load, force=force, names=names, progress=progress)
            await self._remember(result.changes)
        await self._report(result)
        return result

    async def check_history(self) -> ReloadResult:
        """Judge the lists loaded before the database was open against what they last loaded.

        Called once at start: a list garbled while the bot was down is held (what could be
        read stays in use: there is no earlier version in memory), and the others are
        recorded as the versions in use. Tells `on_reload` about the held ones.
        """
        if self.history is None:
            return ReloadResult(self._snapshot)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self._read_history()
            old = self._snapshot
            states: list[ListState] = []
            changes: list[ListChange] = []
            for state in old.states:
                hold = self._judge(state.report, state.digest) if state.loaded.enabled else None
                states.append(replace(state, hold=hold))
                if hold is not None:
                    changes.append(ListChange(
                        state.name, "held", state.report, self._last_entries(state.name),
                        reason=hold.reason, digest=state.digest,
                    ))
                elif state.loaded.enabled:
                    changes.append(ListChange(state.name, "loaded", state.report, digest=state.digest))
            self._snapshot = ListSnapshot(old.version + 1, tuple(states))
            await self._remember(changes)
        result = ReloadResult(self._snapshot, tuple(c for c in changes if c.outcome == "held"))
        await self._report(result)
        return result

    async def _remember(self, changes: Iterable[ListChange]) -> None:
        """Record the versions put in use as the ones the next reload (or start) compares with."""
        for change in changes:
            if change.outcome == "loaded" and change.digest is not None:
                self._records[change.name] = replace(
                    self._records.get(change.name) or ListRecord(change.name),
                    entries=change.report.entries, digest=change.digest,
                )
                if self.history is not None:
                    try:
                        await self.history.record_loaded(change.name, change.report.entries, change.digest)
                    except Exception:  # the lists in use must not depend on the database being up
                        log.exception("could not record the version of hash list %s loaded", change.name)

    async def _read_history(self) -> None:
        """Refresh what each list last loaded and what was accepted; on failure keep what is known."""
        if self.history is None:
            return
        try:
            self._records = await self.history.records()
        except Exception:  # a reload goes on with what this process knows: still judged
            log.exception("could not read the hash list history; judging reloads by what this process knows")

    async def _report(self, result: ReloadResult) -> None:
        for change in result.changes:
            (log.warning if change.outcome in ("kept", "held") else log.info)("%s", change.describe())
        if self.on_reload is not None and result.changes:
            await self.on_reload(result)

    async def newly_accepted(self) -> list[str]:
        """Held lists whose held version an operator has accepted since (read from `history`)."""
        held = [s for s in self._snapshot.held if s.hold is not None and s.hold.digest is not None]
        if not held or self.history is None:
            return []
        try:
            records = await self.history.records()
        except Exception:  # file changes are still watched meanwhile
            log.exception("could not read hash list acceptances")
            return []
        return [s.name for s in held if (r := records.get(s.name)) is not None and r.accepted_digest == s.hold.digest]  # type: ignore[union-attr]

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
                accepted = await self.newly_accepted()
                if accepted:
                    await self.reload(names=accepted, force=True)
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

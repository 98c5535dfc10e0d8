"""Retroactive matching: when a list gains entries, find them in the media already scanned.

modbot keeps the hashes of every piece of media it scanned (never the bytes). After a list
loads with entries it has not matched the history against — new lines in its file, a new
label on a known hash, or a list seen for the first time — `RetroMatcher.run_list`:

1. takes the new entries as a list of their own (`bot.lists.fingerprints.new_entries`), with the list's
   name, labels and thresholds;
2. finds them in the history: cryptographic hashes through the media table's indexes,
   perceptual ones by matching every hashed piece of media, page by page, in a thread;
   matched as live matching does, by each hash-list classifier that matches the list (its
   `lists`), with that classifier's PDQ quality floor and name (`matchers_for`);
3. for each event that carried matching media and was not already matched for that
   (list, label) when it was scanned, builds the event's context (the sender's power now),
   lets the policy decide and hands the decision to the same action path as the pipeline:
   quarantine, redaction, ban, notice, incident. Actions are idempotent by key, and the
   verdicts are recorded after acting, so a run interrupted and run again does each
   thing once;
4. only then records the list's entries as seen (table hash_list_seen), so a crash before
   that point means the run is repeated, not lost.

"Seen" means more than matched against the history once: the live classifiers go on
matching those entries against every media since. So only a list that is matched live has
entries recorded as seen. A list no enabled hash-list classifier matches (none has it in
its `lists`), a disabled list and one no longer configured have none: a run finds nothing
to match them with, records nothing, and forgets what was recorded before (audited), since
the media that arrives meanwhile is matched against none of its entries. When a classifier
matches the list again (the classifiers are built at start: a restart with the new
config), every entry is new, and the whole list is matched against the whole history,
media of the uncovered time included. Nothing is acted on twice: what was matched before,
live or retroactively, is left alone by the recorded verdicts (step 3), and actions are
idempotent by key. Coverage is kept per list, not per classifier: a classifier enabled
beside one that already matches a list does not make the list's entries new again.

Every audit row it writes says "retroactive"; so do those of the executor it acts through,
whose Store is built with `audit_source=RETRO`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .act.executor import media_acted_on
from .act.homeserver import HomeserverError
from .act.notices import MatchedMedia, describe_verdict
from .classify.hashlist import HashListClassifier
from .classify.registry import HASHLIST, effective_classifier_configs
from .lists.loaded import LoadedList
from .extract import parse_mxc
from .lists.index import code_to_hex
from .lists.fingerprints import entry_fingerprints, new_entries
from .lists.registry import ListSnapshot, ReloadResult
from .model import CRYPTOGRAPHIC, HASH_HEX_LENGTH, Decision, EventContext, MediaRef, Verdict
from .policy import Policy, decide
from .policy import describe as describe_decision, outcome as decision_outcome
from .record.store import MediaEvent, Store, StoredMedia
from .senders import server_of

log = logging.getLogger("modbot.retro")

RETRO = "retroactive"
# Digests per row of hash_list_seen.
_CHUNK = 100_000
_PAGE = 2_000

Act = Callable[[Decision, EventContext, Sequence[MatchedMedia]], Awaitable[Any]]
Power = Callable[[str, str], Awaitable[int]]  # (room_id, user_id) -> power level now
Progress = Callable[[str, int, int], None]  # (list name, media checked, media in all)


@dataclass(frozen=True)
class RetroHit:
    """One event found to have carried media that a new entry matches."""

    event_id: str
    room_id: str
    sender: str
    mxcs: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    outcome: str  # act | dry_run | exempt | no_rule | skipped
    detail: str = ""


@dataclass(frozen=True)
class RetroReport:
    list_name: str
    new_entries: int
    media_checked: int = 0
    media_matched: int = 0
    hits: tuple[RetroHit, ...] = ()
    error: str | None = None
    complete: bool = True  # False: some events could not be decided; the run repeats
    covered: bool = True  # False: no live classifier matches the list; nothing matched or seen

    @property
    def events_acted(self) -> int:
        return sum(h.outcome in ("act", "dry_run") for h in self.hits)

    def describe(self) -> str:
        if self.error:
            return f"retroactive matching of list {self.list_name} failed: {self.error}"
        if not self.covered:
            return f"list {self.list_name}: no enabled hash-list classifier matches it; not matched against the history"
        if not self.new_entries:
            return f"list {self.list_name}: no new entries"
        return (
            f"retroactive matching of list {self.list_name}: {self.new_entries} new entries, "
            f"{self.media_checked} media checked, {self.media_matched} matched, "
            f"{self.events_acted} events acted on" + ("" if self.complete else " (incomplete: will run again)")
        )


def encode_digests(digests: np.ndarray) -> list[tuple[str, int]]:
    """Sorted uint64 digests -> chunks of 16-hex-digit text, as table hash_list_seen holds them."""
    big = digests.astype(">u8")
    return [(big[i : i + _CHUNK].tobytes().hex(), len(big[i : i + _CHUNK])) for i in range(0, len(big), _CHUNK)]


def decode_digests(chunks: Iterable[str]) -> np.ndarray:
    raw = b"".join(bytes.fromhex(c) for c in chunks)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def live_classifiers(config: Any) -> list[HashListClassifier]:
    """The hash-list classifiers the bot builds from the config (each enabled one's name,
    `lists` and floor: its own `pdq_min_quality`, else `hashlist.pdq_min_quality`), holding no
    lists: for reports of what retroactive matching would find (`modbot hashes retro`); the
    bot itself hands RetroMatcher the classifiers it built. None when no hash-list
    classifier is enabled: then no list is matched live, nor retroactively."""
    built: list[HashListClassifier] = []
    for classifier in effective_classifier_configs(config):
        if classifier.type == HASHLIST and classifier.enabled:
            settings = HashListClassifier.Settings.model_validate(classifier.settings)
            own = settings.pdq_min_quality
            live = HashListClassifier((), config.hashlist.pdq_min_quality if own is None else own, names=settings.lists)
            live.name = classifier.name
            built.append(live)
    return built


def matchers_for(
    delta: LoadedList, classifiers: Sequence[HashListClassifier], allowlist: Any = None
) -> list[HashListClassifier]:
    """For each of the live `classifiers` that matches the list `delta` was taken from (its
    `lists` name it, or it has none), one matching `delta` alone with that classifier's floor
    and name: what each would have found had the entries been there when the media came."""
    matchers: list[HashListClassifier] = []
    for live in classifiers:
        if live.names is None or delta.name in live.names:
            matcher = HashListClassifier([delta], live.pdq_min_quality, allowlist=allowlist)
            matcher.name = live.name
            matchers.append(matcher)
    return matchers


class RetroMatcher:
    """Matches new list entries against the media history and acts on what it finds."""

    def __init__(
        self,
        *,
        store: Store,
        policy: Callable[[], Policy],
        power: Power,
        act: Act,
        is_protected: Callable[[str], bool],
        bot_user_id: str,
        classifiers: Sequence[HashListClassifier] | None = None,
        allowlist: Any = None,
        progress: Progress | None = None,
        page_size: int = _PAGE,
    ) -> None:
        self.store = store
        self._policy = policy
        self._power = power
        self._act = act
        self._is_protected = is_protected
        self.bot_user_id = bot_user_id
        # The live hash-list classifiers (the bot's: each with its lists, floor and name);
        # not given: the one implicit classifier, every list at the default floor; an empty
        # sequence (every hash-list classifier disabled): no list is matched.
        self.classifiers = (HashListClassifier(()),) if classifiers is None else tuple(classifiers)
        self._allowlist = allowlist
        self.progress = progress
        self.page_size = page_size
        self._lock = asyncio.Lock()

    def covers(self, list_name: str) -> bool:
        """Whether a live classifier matches the list (its `lists` name it, or it has none)."""
        return any(live.names is None or list_name in live.names for live in self.classifiers)

    async def after_reload(self, result: ReloadResult | ListSnapshot, names: Sequence[str] | None = None) -> list[RetroReport]:
        """Run for the lists a reload (re)loaded, or for `names`, or for every enabled list;
        first forget the entries seen of the lists not matched live (see the module doc)."""
        snapshot = result.snapshot if isinstance(result, ReloadResult) else result
        if names is None and isinstance(result, ReloadResult):
            names = result.reloaded
        await self._forget_unmatched(snapshot)
        reports = []
        for state in snapshot.states:
            if state.loaded.enabled and (names is None or state.name in names):
                reports.append(await self.run_list(state.loaded))
        return reports

    async def run_list(self, lst: LoadedList) -> RetroReport:
        """Match the entries of `lst` not matched against the history before; see the module doc."""
        async with self._lock:  # one run at a time: two would race on hash_list_seen
            try:
                return await self._run_list(lst)
            except Exception as e:  # a failed run is logged and audited, and repeats next time
                log.exception("retroactive matching of list %s failed", lst.name)
                report = RetroReport(lst.name, 0, error=f"{type(e).__name__}: {e}")
                await self.store.audit("retro", "failed", f"{RETRO}: {report.describe()}")
                return report

    async def _forget_unmatched(self, snapshot: ListSnapshot) -> None:
        states = {s.name: s for s in snapshot.states}
        async with self._lock:
            try:
                for name in await self.store.seen_lists():
                    state = states.get(name)
                    if state is None:
                        await self._forget(name, "it is no longer configured")
                    elif not state.loaded.enabled:
                        await self._forget(name, "it is disabled")
                    elif not self.covers(name):
                        await self._forget(name, "no enabled hash-list classifier matches it")
            except Exception:  # the lists stay as recorded; the next reload or start tries again
                log.exception("could not forget the entries seen of the lists not matched live")

    async def _forget(self, list_name: str, why: str) -> None:
        """A list not matched live: its entries count as new again (see the module doc)."""
        if await self.store.forget_list_digests(list_name):
            message = (
                f"{RETRO} matching: list {list_name}: {why}, so the media coming now is not matched against it; "
                "when it is matched again, all its entries are matched against the whole media history"
            )
            log.info("%s", message)
            await self.store.audit("retro", "forgotten", message)

    async def _run_list(self, lst: LoadedList) -> RetroReport:
        if not self.covers(lst.name):
            # Nothing would match it, now or live: recording its entries as seen would keep
            # them from the history once a classifier matches it.
            await self._forget(lst.name, "no enabled hash-list classifier matches it")
            report = RetroReport(lst.name, 0, covered=False)
            log.warning("%s", report.describe())  # a list loaded for nothing: likely a config mistake
            return report
        chunks = await self.store.seen_list_digests(lst.name)
        known = decode_digests(chunks) if chunks is not None else None
        current = await asyncio.to_thread(entry_fingerprints, lst)
        delta = await asyncio.to_thread(new_entries, lst, known)
        count = sum(delta.index.counts.values())
        if not count:
            if known is None or not np.array_equal(known, current):
                # Entries were removed: forget them, so that re-adding one counts as new.
                await self.store.replace_list_digests(lst.name, encode_digests(current))
            return RetroReport(lst.name, 0)

        run_id = await self.store.start_retro_run(lst.name, count)
        await self.store.audit(
            "retro", "started", f"{RETRO} matching: list {lst.name} has {count} new entries; matching them against the media history"
        )
        started = time.monotonic()
        try:
            checked, matched = await self._match_history(delta)
            hits, complete = await self._act_on(matched)
        except Exception as e:
            await self.store.finish_retro_run(run_id, status="failed", media_checked=0, media_matched=0, events_acted=0, detail=str(e))
            raise
        report = RetroReport(lst.name, count, checked, len(matched), tuple(hits), complete=complete)
        if complete:
            await self.store.replace_list_digests(lst.name, encode_digests(current))
        await self.store.finish_retro_run(
            run_id,
            status="done" if complete else "incomplete",
            media_checked=checked,
            media_matched=len(matched),
            events_acted=report.events_acted,
        )
        await self.store.audit("retro", "finished", f"{report.describe()} in {time.monotonic() - started:.1f} s")
        log.info("%s", report.describe())
        return report

    # --- finding the new entries in the history -----------------------------------------------

    async def _match_history(self, delta: LoadedList) -> tuple[int, dict[str, tuple[StoredMedia, tuple[Verdict, ...]]]]:
        matchers = matchers_for(delta, self.classifiers, self._allowlist)  # some: `covers` said so
        matched: dict[str, tuple[StoredMedia, tuple[Verdict, ...]]] = {}

        def keep(media: Iterable[StoredMedia]) -> None:
            for m in media:
                if m.hashes is None or m.mxc in matched:
                    continue
                verdicts = tuple(v for matcher in matchers for v in matcher.match(m.hashes).verdicts)
                if verdicts:
                    matched[m.mxc] = (m, verdicts)

        # Exact entries: the media table's hash indexes find them without reading it all.
        for hash_type in CRYPTOGRAPHIC:
            exact = delta.index.exact.get(hash_type)
            if exact is None or not len(exact):
                continue
            values = [code_to_hex(code, HASH_HEX_LENGTH[hash_type]) for code in exact.index.codes]
            keep(await self.store.media_with_hashes(hash_type, values))

        checked = 0
        # Perceptual entries, vPDQ entries (matched by the stored frames of each video) and
        # low-frequency signatures (by the stored signatures of smooth images).
        texts = delta.index.videos is not None or delta.index.signatures is not None
        if any(len(i) for i in delta.index.near.values()) or texts:
            total = await self.store.count_hashed_media()
            after: str | None = None
            last_report = time.monotonic()
            while True:
                page = await self.store.hashed_media_page(after, self.page_size)
                if not page:
                    break
                await asyncio.to_thread(keep, page)
                checked += len(page)
                after = page[-1].mxc
                if self.progress is not None:
                    self.progress(delta.name, checked, total)
                if time.monotonic() - last_report > 10:
                    last_report = time.monotonic()
                    log.info("%s matching of list %s: %d/%d media checked, %d matched", RETRO, delta.name, checked, total, len(matched))
        else:
            checked = len(matched)
        return checked, matched

    # --- acting on what was found ---------------------------------------------------------------

    async def _act_on(self, matched: dict[str, tuple[StoredMedia, tuple[Verdict, ...]]]) -> tuple[list[RetroHit], bool]:
        if not matched:
            return [], True
        events = await self.store.events_with_media(list(matched))
        already = await self.store.matched_verdicts(sorted({e.event_id for e in events}))
        by_event: dict[str, list[MediaEvent]] = {}
        for e in events:
            by_event.setdefault(e.event_id, []).append(e)
        hits: list[RetroHit] = []
        complete = True
        for event_id, carried in by_event.items():
            first = carried[0]
            found: list[tuple[MediaEvent, StoredMedia, tuple[Verdict, ...]]] = []
            for e in carried:
                media, verdicts = matched[e.mxc]
                fresh = tuple(
                    v for v in verdicts
                    if (e.event_id, e.mxc, v.classifier, v.list_name or "", v.label) not in already
                )
                if fresh:
                    found.append((e, media, fresh))
            if not found:
                continue  # matched for these entries when it was scanned
            hit = await self._act_on_event(first, found)
            if hit is None:
                complete = False
                continue
            hits.append(hit)
        return hits, complete

    async def _act_on_event(
        self, event: MediaEvent, found: list[tuple[MediaEvent, StoredMedia, tuple[Verdict, ...]]]
    ) -> RetroHit | None:
        """Decide and act for one event; None when it could not be decided (retry later)."""
        mxcs = tuple(e.mxc for e, _, _ in found)
        verdicts = tuple(v for _, _, vs in found for v in vs)

        async def audit(category: str, outcome: str, message: str, mxc: str | None = None) -> None:
            await self.store.audit(
                category, outcome, f"{RETRO}: {message}",
                event_id=event.event_id, room_id=event.room_id, sender=event.sender, mxc=mxc,
            )

        def skipped(why: str) -> RetroHit:
            return RetroHit(event.event_id, event.room_id, event.sender, mxcs, verdicts, "skipped", why)

        for e, _, vs in found:
            await audit("verdict", "match", "; ".join(describe_verdict(v) for v in vs), e.mxc)
        if event.sender == self.bot_user_id:
            return skipped("sent by the bot")
        if not self._is_protected(event.room_id):
            await audit("retro", "skipped", f"room {event.room_id} is no longer protected; nothing done")
            await self._record(found)
            return skipped("room not protected")
        try:
            power = await self._power(event.room_id, event.sender)
        except HomeserverError as e:
            # Exemptions depend on power: guessing could punish a moderator. Next run retries.
            await audit("retro", "retry", f"could not read power levels of {event.room_id}: {e}")
            return None
        ctx = EventContext(event.event_id, event.room_id, event.sender, power, event.origin_server_ts)
        decision = decide(verdicts, ctx, self._policy(), home_server=server_of(self.bot_user_id))
        outcome = decision_outcome(decision)
        await audit("decision", outcome, describe_decision(decision))
        if decision.acts:
            matched = [MatchedMedia(_ref(e, media), vs, media.hashes) for e, media, vs in found]
            await self._act(decision, ctx, media_acted_on(decision, matched))
        # After acting: a run interrupted before this line acts again (idempotently) next time.
        await self._record(found)
        return RetroHit(event.event_id, event.room_id, event.sender, mxcs, verdicts, outcome, decision.rule or "")

    async def _record(self, found: list[tuple[MediaEvent, StoredMedia, tuple[Verdict, ...]]]) -> None:
        for e, _, vs in found:
            by_classifier: dict[str, list[Verdict]] = {}
            for v in vs:  # each under the classifier that found it, as live verdicts are
                by_classifier.setdefault(v.classifier, []).append(v)
            for name, verdicts in by_classifier.items():
                await self.store.record_verdicts(e.event_id, e.mxc, name, verdicts)


def _ref(event: MediaEvent, media: StoredMedia) -> MediaRef:
    server, media_id = parse_mxc(event.mxc) or ("", "")
    return MediaRef(event.mxc, server, media_id, event.source, media.mimetype)


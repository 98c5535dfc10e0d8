"""The hash-list classifier: exact and near matching against the loaded hash lists.

The plugin only; the lists it matches are `bot.lists.loaded.LoadedList`s. sha256, md5 and
sha1 match exactly (binary search over sorted arrays). PDQ and pHash match by Hamming
distance through `bot.lists.index`: brute force for small lists, multi-index hashing for
large ones, both exact. A list of ten million PDQ hashes holds ~1.2 GB and answers a query
in well under a millisecond.

The classifier reads its lists from a `ListSource` at each call, so a `bot.lists.registry.ListRegistry`
can swap in reloaded lists while scans go on: a scan sees the old lists or the new ones,
never a mix. Smooth images (PDQ quality under 50) are also matched by their low-frequency
signature against a list's `lowfreq` entries (bot/classify/smoothmatch.py) and by their most reliable
PDQ bits against its PDQ entries (bot/classify/reliablematch.py); cropped copies by PDQ of the
image padded back by each crop guess (bot/classify/cropmatch.py). An allowlist, when given, always wins: a verdict for allowlisted media, or
for an allowlisted list entry, is never returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bot.classify.base import Classifier, ClassifierContext, ClassifierSetupError, MediaInput
from bot.classify.cropmatch import crop_verdicts
from bot.classify.nearverdict import near_verdict
from bot.classify.pdqrule import FULL_QUALITY, PHASH_PDQ_CONFIRM, pdq_bounds
from bot.classify.reliablematch import reliable_queries, reliable_verdicts
from bot.classify.smoothmatch import smooth_verdicts
from bot.classify.videomatch import video_verdicts
from bot.configdetect import DEFAULT_PDQ_MIN_QUALITY
from bot.hashing.pdq import DIHEDRAL
from bot.lists.loaded import LoadedList, NearIndex, hex_matrix
from bot.model import CRYPTOGRAPHIC, SIGNATURE_HASH_TYPE, Classification, Hashes, MatchKind, Verdict

_EXACT_TYPES = CRYPTOGRAPHIC
# Above this many perceptual entries a search takes over ~1 ms: it moves off the event loop.
_OFFLOAD_ROWS = 250_000
# The same for low-frequency signatures (bot/lists/sigindex.py: ~2 ms at 10,000).
_OFFLOAD_SIGNATURES = 5_000


class ListSource(Protocol):
    """Where a classifier finds the lists to match: read once per scan."""

    @property
    def lists(self) -> tuple[LoadedList, ...]: ...


class AllowlistLike(Protocol):
    """Known false positives (see bot.allowlist): why media is allowlisted, or None."""

    def reason(self, hashes: Hashes) -> str | None: ...


@dataclass(frozen=True)
class _FixedLists:
    lists: tuple[LoadedList, ...]


@dataclass(frozen=True)
class _Queries:
    hash_type: str
    hexes: tuple[str, ...]
    matrix: np.ndarray
    original: bool  # whether hexes[0] is the hash of the media exactly as decoded


class HashListSettings(BaseModel):
    """Settings of a `type: hashlist` classifier; by default it matches every `hash_lists:` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lists: tuple[str, ...] | None = Field(default=None, min_length=1)  # names from hash_lists
    pdq_min_quality: int | None = Field(default=None, ge=0, le=100)  # default: hashlist.pdq_min_quality


class HashListClassifier(Classifier):
    """Matches media hashes against hash lists.

    - sha256/md5/sha1: exact matches.
    - PDQ: the nearest of `Hashes.pdq_queries` (rotations, flips, trimmed borders; falling
      back to `Hashes.pdq`) within the list's threshold, or within the stricter bounds
      `bot.classify.pdqrule` gives a hash of low quality (smooth images hash alike).
      Skipped when the PDQ quality is unknown or below `pdq_min_quality`.
    - Animations and videos: each of `Hashes.frame_pdqs` (an animation's frames after the
      first, a video's frames once a second) within the bound of its own quality; the
      verdict's details name the frame (or the second).
    - Videos against vPDQ entries: the share of frames matched both ways, as HMA does
      (bot/classify/videomatch.py); the verdict names the entry, both shares and the frames.
    - Crops: each of `Hashes.pdq_uncropped` (the image padded back as if up to 5% had been
      cut from its sides, 44 guesses) within the bound of a derived query; the
      verdict's details name the guess (bot/classify/cropmatch.py).
    - pHash: `Hashes.phash` within the list's threshold; skipped when PDQ reported a
      quality under pdqrule.FULL_QUALITY or `pdq_min_quality`: pHash has no quality of its
      own and near-uniform images match each other. A pHash match of a label the list also
      has PDQ entries for needs one of them within pdqrule.PHASH_PDQ_CONFIRM.

    EXACT is kept for cryptographic hashes (the same bytes); a perceptual match is NEAR even
    at distance 0, since different images can hash alike. Each (list, label) gives at most
    one verdict: the best, exact before near, then the nearest.
    """

    Settings = HashListSettings

    def __init__(
        self,
        lists: Sequence[LoadedList] | ListSource,
        pdq_min_quality: int = DEFAULT_PDQ_MIN_QUALITY,
        *,
        names: Sequence[str] | None = None,
        allowlist: AllowlistLike | Callable[[], AllowlistLike | None] | None = None,
    ) -> None:
        """`lists`: fixed lists, or a source (a ListRegistry) read at each scan.

        `names` restricts matching to those lists of the source. `allowlist` (or a callable
        giving the current one) suppresses every verdict for media it allows.
        """
        self.source: ListSource = lists if hasattr(lists, "lists") else _FixedLists(tuple(lists))  # type: ignore[arg-type]
        self.names = tuple(names) if names is not None else None
        self.pdq_min_quality = pdq_min_quality
        self._allowlist = allowlist

    @property
    def lists(self) -> tuple[LoadedList, ...]:
        """The lists a scan starting now matches against."""
        lists = self.source.lists
        if self.names is None:
            return lists
        by_name = {lst.name: lst for lst in lists}
        return tuple(by_name[n] for n in self.names if n in by_name)

    @lists.setter
    def lists(self, lists: Sequence[LoadedList]) -> None:
        # One assignment: a scan in progress keeps the lists it started with.
        self.source = _FixedLists(tuple(lists))

    def allowlisted(self, hashes: Hashes) -> str | None:
        """Why the allowlist exempts this media, or None."""
        allowlist = self._allowlist
        if allowlist is not None and not hasattr(allowlist, "reason"):
            allowlist = allowlist()  # the current one, from whoever keeps it up to date
        return allowlist.reason(hashes) if allowlist is not None else None

    @classmethod
    def from_settings(cls, settings: HashListSettings, context: ClassifierContext) -> HashListClassifier:
        source = context.list_source if context.list_source is not None else _FixedLists(tuple(context.hash_lists))
        if settings.lists is not None:
            known = [lst.name for lst in source.lists]
            missing = [name for name in settings.lists if name not in known]
            if missing:
                raise ClassifierSetupError(
                    f"lists: no hash list named {', '.join(map(repr, missing))} in hash_lists"
                    f" (have: {', '.join(known) or 'none'})"
                )
        quality = settings.pdq_min_quality
        instance = cls(
            source,
            pdq_min_quality=context.pdq_min_quality if quality is None else quality,
            names=settings.lists,
            allowlist=context.allowlist,
        )
        instance.name = context.name
        return instance

    async def classify(self, media: MediaInput) -> Classification:
        lists = self.lists
        rows = sum(len(i) for lst in lists if lst.enabled for i in lst.index.near.values())
        signatures = sum(len(lst.index.signatures or ()) for lst in lists if lst.enabled)
        if rows > _OFFLOAD_ROWS or signatures > _OFFLOAD_SIGNATURES:
            return await asyncio.to_thread(self.match, media.hashes, lists)
        return self.match(media.hashes, lists)

    def match(self, hashes: Hashes, lists: Sequence[LoadedList] | None = None) -> Classification:
        """The synchronous matching `classify` runs (against `lists`, by default the current)."""
        if self.allowlisted(hashes):
            return Classification(self.name)
        queries, errors = self._queries(hashes)
        frames = _frames(hashes)
        reliable_query = reliable_queries(hashes, self.pdq_min_quality)
        best: dict[tuple[int, str], Verdict] = {}
        for list_no, lst in enumerate(self.lists if lists is None else lists):
            if not lst.enabled:
                continue
            frame_verdicts = self._frame_verdicts(lst, frames, "second" if hashes.pdq is None else "frame")
            video = video_verdicts(self.name, lst, hashes)
            smooth = smooth_verdicts(self.name, lst, hashes, self.pdq_min_quality)
            reliable = reliable_verdicts(self.name, lst, hashes, reliable_query)
            crops = crop_verdicts(self.name, lst, hashes, self.pdq_min_quality)
            for verdict in (*self._list_verdicts(lst, hashes, queries), *frame_verdicts, *video, *smooth, *reliable, *crops):
                key = (list_no, verdict.label)
                if key not in best or _rank(verdict) < _rank(best[key]):
                    best[key] = verdict
        verdicts = tuple(best[key] for key in sorted(best))
        return Classification(self.name, verdicts, "; ".join(errors) or None)

    def _queries(self, hashes: Hashes) -> tuple[list[_Queries], list[str]]:
        quality = hashes.pdq_quality
        wanted: list[tuple[str, tuple[str, ...], bool]] = []
        pdqs = ((hashes.pdq,) if hashes.pdq else ()) + hashes.pdq_queries
        if pdqs and quality is not None and quality >= self.pdq_min_quality:
            # The as-decoded hash goes first so that it wins ties ("original" over "variant").
            wanted.append(("pdq", tuple(dict.fromkeys(h.lower() for h in pdqs)), bool(hashes.pdq)))
        if hashes.phash and (quality is None or quality >= max(self.pdq_min_quality, FULL_QUALITY)):
            wanted.append(("phash", (hashes.phash.lower(),), True))
        queries: list[_Queries] = []
        errors: list[str] = []
        for hash_type, hexes, original in wanted:
            try:
                queries.append(_Queries(hash_type, hexes, hex_matrix(hexes, hash_type), original))
            except ValueError as e:
                errors.append(f"{hash_type} query skipped: {e}")
        return queries, errors

    def _list_verdicts(
        self, lst: LoadedList, hashes: Hashes, queries: list[_Queries]
    ) -> Iterator[Verdict]:
        for hash_type in _EXACT_TYPES:
            value = getattr(hashes, hash_type, None)
            exact = lst.index.exact.get(hash_type)
            if not value or exact is None:
                continue
            value = value.lower()
            for label in exact.get(value):
                yield Verdict(
                    classifier=self.name,
                    label=label,
                    kind=MatchKind.EXACT,
                    list_name=lst.name,
                    hash_type=hash_type,
                    distance=0,
                    matched_hash=value,
                )
        pdq_query = next((q for q in queries if q.hash_type == "pdq"), None)
        for query in queries:
            index = lst.index.near.get(query.hash_type)
            if index is None:
                continue
            found = list(self._search(index, query, lst, hashes.pdq_quality))
            if query.hash_type == "phash" and found:
                found = _confirmed_by_pdq(found, index, lst, pdq_query)
            for row, query_no, distance in found:
                as_decoded = query.original and query_no == 0
                details: dict[str, Any] = {"query": "original" if as_decoded else "variant"}
                if not as_decoded:
                    details["query_hash"] = query.hexes[query_no]
                    transform = _transform(hashes, query, query_no)
                    if transform is not None:
                        details["transform"] = transform
                if query.hash_type == "pdq":
                    details["pdq_quality"] = hashes.pdq_quality
                yield near_verdict(self.name, lst, index, row, distance, details, query.hash_type)

    def _frame_verdicts(
        self, lst: LoadedList, frames: list[tuple[int, str, int, np.ndarray]], unit: str
    ) -> Iterator[Verdict]:
        """Matches of an animation's later frames or a video's frames (numbered by `unit`:
        "frame", or "second" for a video, which has no `pdq` of its own), each within the
        bound of its own quality."""
        index = lst.index.near.get("pdq")
        if index is None:
            return
        for number, frame_hash, quality, matrix in frames:
            bound = pdq_bounds(lst.thresholds.pdq, quality, self.pdq_min_quality).as_decoded
            if bound is None:
                continue
            for row, _, distance in index.search(matrix, bound):
                details = {"query": "frame", unit: number, "query_hash": frame_hash, "pdq_quality": quality}
                yield near_verdict(self.name, lst, index, row, distance, details)

    def _search(self, index: NearIndex, query: _Queries, lst: LoadedList, quality: int | None) -> Iterator[tuple[int, int, int]]:
        """(row, query number, distance) of the entries within the bound of each query."""
        threshold = getattr(lst.thresholds, query.hash_type)
        if query.hash_type != "pdq":
            yield from index.search(query.matrix, threshold)
            return
        bounds = pdq_bounds(threshold, quality, self.pdq_min_quality)
        if bounds.as_decoded == bounds.derived or not query.original:
            bound = bounds.derived
            groups = [(0, query.matrix, bound)] if bound is not None else []
        else:  # the as-decoded hash and the derived ones searched each within its own bound
            groups = [(0, query.matrix[:1], bounds.as_decoded), (1, query.matrix[1:], bounds.derived)]
        for first, matrix, bound in groups:
            if bound is not None and len(matrix):
                for row, query_no, distance in index.search(matrix, bound):
                    yield row, first + query_no, distance


def _confirmed_by_pdq(
    found: list[tuple[int, int, int]], index: NearIndex, lst: LoadedList, pdq_query: _Queries | None
) -> list[tuple[int, int, int]]:
    """The pHash matches that stand: those whose label has a PDQ entry in `lst` within
    pdqrule.PHASH_PDQ_CONFIRM of a PDQ query, or no PDQ entry at all (see pdqrule). Only the
    listed images' own PDQ confirms: a crop's or a brightened copy's (derived rows) would give
    an unrelated image more chances to come within the bound."""
    pdq_index = lst.index.near.get("pdq")
    if pdq_index is None or not len(pdq_index):
        return found
    own = pdq_index.own_rows()
    ids = {name: i for i, name in enumerate(pdq_index.label_names)}
    labels = {index.label_at(row) for row, _, _ in found}
    with_pdq = {label for label in labels if label in ids and bool(np.any(pdq_index.label_ids == ids[label]))}
    near: set[str] = set()
    if with_pdq and pdq_query is not None:
        near = {
            pdq_index.label_at(row) for row, _, _ in pdq_index.search(pdq_query.matrix, PHASH_PDQ_CONFIRM)
            if own is None or own[row]
        }
    return [m for m in found if index.label_at(m[0]) not in with_pdq or index.label_at(m[0]) in near]


def _transform(hashes: Hashes, query: _Queries, query_no: int) -> str | None:
    """The name of the transformation (pdq.DIHEDRAL, "... of the trimmed image") of the
    posted image whose hash matched: it undoes the poster's edit (a copy turned a quarter
    anticlockwise matches by "rotate270"). Known when the queries are bot.hashing's full set in its order: 8 hashes,
    or 16 with the trimmed image's. None when duplicates were dropped (a symmetric image)
    or the hashes came from elsewhere."""
    pdqs = hashes.pdq_queries
    if query.hash_type != "pdq" or len(pdqs) not in (8, 16) or not hashes.pdq or pdqs[0] != hashes.pdq:
        return None
    if len(query.hexes) != len(pdqs):
        return None
    name = DIHEDRAL[query_no % 8]
    return name if query_no < 8 else f"{name} of the trimmed image"


def _frames(hashes: Hashes) -> list[tuple[int, str, int, np.ndarray]]:
    """An animation's later frames as (number, hash, quality, query matrix); bad hashes skipped."""
    frames = []
    for number, frame_hash, quality in hashes.frame_pdqs:
        try:
            frames.append((number, frame_hash.lower(), quality, hex_matrix((frame_hash.lower(),), "pdq")))
        except ValueError:
            continue
    return frames


def _rank(verdict: Verdict) -> tuple[int, int, int]:
    """Exact first, then hashes by distance, a crop guess's after any other (the posted image's
    own hashes are the stronger evidence); a signature (another unit) only when nothing else matched."""
    kind = 0 if verdict.kind is MatchKind.EXACT else 2 if verdict.hash_type == SIGNATURE_HASH_TYPE else 1
    return (kind, "crop" in verdict.details, verdict.distance or 0)

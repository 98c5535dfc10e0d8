"""The hash-list classifier: exact and near matching against configured hash list files.

sha256 and md5 match exactly through dicts. PDQ and pHash match by brute-force Hamming
distance over a numpy uint64 matrix (PDQ: 4 words per hash, pHash: 1): vectorised XOR and
`np.bitwise_count`, first over the leading 128 bits of every entry (a lower bound of the
full distance), then in full over the few entries that bound leaves in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bot.classify.base import Classifier, ClassifierContext, ClassifierSetupError, MediaInput
from bot.hashlists import HashEntry, read_hash_list
from bot.model import HASH_HEX_LENGTH, HASH_TYPES, Classification, Hashes, MatchKind, Verdict

_EXACT_TYPES = ("sha256", "md5")
_NEAR_TYPES = ("pdq", "phash")
# Above this many perceptual entries a search takes over ~10 ms: it moves off the event loop.
_OFFLOAD_ROWS = 250_000
# Words compared in the first pass: their distance is at most 128, so uint8 holds it.
_PREFIX_WORDS = 2


@dataclass(frozen=True)
class Thresholds:
    """Largest Hamming distance that still counts as a match, per perceptual hash type."""

    pdq: int = 31
    phash: int = 8

    def __post_init__(self) -> None:
        for hash_type in _NEAR_TYPES:
            value = getattr(self, hash_type)
            bits = HASH_HEX_LENGTH[hash_type] * 4
            if not 0 <= value <= bits:
                raise ValueError(f"{hash_type} threshold must be within 0..{bits}, got {value}")

    @classmethod
    def from_config(cls, value: object) -> Thresholds:
        """Accept None, a Thresholds, a mapping or any object with `pdq`/`phash` attributes."""
        if value is None or isinstance(value, Thresholds):
            return value or cls()
        if isinstance(value, Mapping):
            return cls(**{k: int(value[k]) for k in _NEAR_TYPES if value.get(k) is not None})
        found = {k: getattr(value, k, None) for k in _NEAR_TYPES}
        return cls(**{k: int(v) for k, v in found.items() if v is not None})


def _hex_matrix(hexes: Sequence[str], hash_type: str) -> np.ndarray:
    """Hex hashes -> (n, words) uint64 matrix; ValueError if any is not `hash_type`-shaped."""
    length = HASH_HEX_LENGTH[hash_type]
    if any(len(h) != length for h in hexes):
        raise ValueError(f"{hash_type} hashes must be {length} hex digits")
    raw = bytes.fromhex("".join(hexes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), length // 16)


class NearIndex:
    """Brute-force Hamming search over fixed-width hashes, with a label per row."""

    def __init__(self, hash_type: str, hashes: Sequence[str], labels: Sequence[str]) -> None:
        self.hash_type = hash_type
        self.hashes = tuple(hashes)
        self.labels = tuple(labels)
        # Word-major, so each pass streams one contiguous array.
        self._columns = np.ascontiguousarray(_hex_matrix(self.hashes, hash_type).T)

    def __len__(self) -> int:
        return len(self.hashes)

    def search(self, queries: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
        """Rows within `threshold` of any query, as (row, best query index, distance).

        The best query is the nearest one; ties go to the lowest index.
        """
        n = len(self.hashes)
        if n == 0 or len(queries) == 0:
            return []
        prefix = min(_PREFIX_WORDS, self._columns.shape[0])
        xored = np.empty(n, dtype=np.uint64)
        count = np.empty(n, dtype=np.uint8)
        partial = np.empty(n, dtype=np.uint8)
        nearest = np.full(n, 255, dtype=np.uint8)
        for query in queries:
            for word in range(prefix):
                np.bitwise_xor(self._columns[word], query[word], out=xored)
                np.bitwise_count(xored, out=partial if word == 0 else count)
                if word:
                    np.add(partial, count, out=partial)
            np.minimum(nearest, partial, out=nearest)
        rows = np.flatnonzero(nearest <= threshold)
        if len(rows) == 0:
            return []
        # Full distances of the candidates: (queries, k), small unless the threshold is huge.
        candidates = self._columns[:, rows]
        distances = np.zeros((len(queries), len(rows)), dtype=np.uint16)
        for query_no, query in enumerate(queries):
            for word, column in enumerate(candidates):
                distances[query_no] += np.bitwise_count(column ^ query[word])
        best_query = distances.argmin(axis=0)
        best = distances[best_query, np.arange(len(rows))]
        return [
            (int(row), int(q), int(d))
            for row, q, d in zip(rows, best_query, best)
            if d <= threshold
        ]


@dataclass(frozen=True)
class HashIndex:
    """One list's entries, arranged for matching."""

    exact: Mapping[str, Mapping[str, tuple[str, ...]]]  # type -> hash -> labels
    near: Mapping[str, NearIndex]  # "pdq"/"phash" -> index

    @classmethod
    def from_entries(cls, entries: Iterable[HashEntry]) -> HashIndex:
        # A (type, hash, label) listed twice is one entry; one hash under two labels is two.
        unique = dict.fromkeys((e.type, e.hash.lower(), e.label) for e in entries)
        exact: dict[str, dict[str, tuple[str, ...]]] = {t: {} for t in _EXACT_TYPES}
        near_rows: dict[str, list[tuple[str, str]]] = {t: [] for t in _NEAR_TYPES}
        for hash_type, hex_hash, label in unique:
            if hash_type in exact:
                exact[hash_type][hex_hash] = exact[hash_type].get(hex_hash, ()) + (label,)
            else:
                near_rows[hash_type].append((hex_hash, label))
        near = {
            t: NearIndex(t, [h for h, _ in rows], [label for _, label in rows])
            for t, rows in near_rows.items()
            if rows
        }
        return cls(exact=exact, near=near)

    @property
    def counts(self) -> dict[str, int]:
        counts = {t: sum(len(labels) for labels in self.exact[t].values()) for t in _EXACT_TYPES}
        counts.update({t: len(self.near[t]) if t in self.near else 0 for t in _NEAR_TYPES})
        return counts


@dataclass(frozen=True)
class LoadedList:
    """A hash list ready for matching."""

    name: str
    label: str  # the default label its entries were given
    index: HashIndex = field(repr=False)
    enabled: bool = True
    thresholds: Thresholds = Thresholds()

    @classmethod
    def from_entries(
        cls,
        name: str,
        entries: Iterable[HashEntry],
        *,
        label: str,
        enabled: bool = True,
        thresholds: Thresholds = Thresholds(),
    ) -> LoadedList:
        return cls(name, label, HashIndex.from_entries(entries), enabled, thresholds)


@dataclass(frozen=True)
class ListLoadReport:
    """What loading one configured list found: entries per type and the lines rejected."""

    name: str
    path: Path
    enabled: bool
    counts: Mapping[str, int]
    errors: tuple[tuple[int, str], ...] = ()

    @property
    def entries(self) -> int:
        return sum(self.counts.values())


def build_lists(
    configs: Iterable[Any], base_dir: Path
) -> tuple[tuple[LoadedList, ...], tuple[ListLoadReport, ...]]:
    """Load the configured lists (objects with name, path, label, enabled, thresholds).

    Relative paths are resolved against `base_dir`. Disabled lists are not read: a list is
    often disabled because its file is missing or being replaced.
    """
    lists: list[LoadedList] = []
    reports: list[ListLoadReport] = []
    for config in configs:
        path = Path(config.path)
        if not path.is_absolute():
            path = Path(base_dir) / path
        thresholds = Thresholds.from_config(getattr(config, "thresholds", None))
        if config.enabled:
            parsed = read_hash_list(path, config.label)
            entries, errors = parsed.entries, parsed.errors
        else:
            entries, errors = (), ()
        counts = {t: 0 for t in HASH_TYPES}
        for entry in entries:
            counts[entry.type] += 1
        lists.append(
            LoadedList.from_entries(
                config.name,
                entries,
                label=config.label,
                enabled=config.enabled,
                thresholds=thresholds,
            )
        )
        reports.append(ListLoadReport(config.name, path, config.enabled, counts, errors))
    return tuple(lists), tuple(reports)


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

    - sha256/md5: exact matches.
    - PDQ: the nearest of `Hashes.pdq_queries` (rotations, flips, trimmed borders; falling
      back to `Hashes.pdq`) within the list's threshold. Skipped when the PDQ quality is
      unknown or below `pdq_min_quality`: such images (blank, near-uniform) match each other.
    - pHash: `Hashes.phash` within the list's threshold; skipped too when PDQ reported a low
      quality, for the same reason.

    EXACT is kept for cryptographic hashes (the same bytes); a perceptual match is NEAR even
    at distance 0, since different images can hash alike. Each (list, label) gives at most
    one verdict: the best, exact before near, then the nearest.
    """

    Settings = HashListSettings

    def __init__(self, lists: Sequence[LoadedList], pdq_min_quality: int = 50) -> None:
        self.lists = tuple(lists)
        self.pdq_min_quality = pdq_min_quality
        self._near_rows = sum(len(i) for lst in self.lists for i in lst.index.near.values())

    @classmethod
    def from_settings(cls, settings: HashListSettings, context: ClassifierContext) -> HashListClassifier:
        lists = context.hash_lists
        if settings.lists is not None:
            known = {lst.name: lst for lst in lists}
            missing = [name for name in settings.lists if name not in known]
            if missing:
                raise ClassifierSetupError(
                    f"lists: no hash list named {', '.join(map(repr, missing))} in hash_lists"
                    f" (have: {', '.join(known) or 'none'})"
                )
            lists = tuple(known[name] for name in settings.lists)
        quality = settings.pdq_min_quality
        instance = cls(lists, pdq_min_quality=context.pdq_min_quality if quality is None else quality)
        instance.name = context.name
        return instance

    async def classify(self, media: MediaInput) -> Classification:
        if self._near_rows > _OFFLOAD_ROWS:
            return await asyncio.to_thread(self.match, media.hashes)
        return self.match(media.hashes)

    def match(self, hashes: Hashes) -> Classification:
        """The synchronous matching `classify` runs."""
        queries, errors = self._queries(hashes)
        best: dict[tuple[int, str], Verdict] = {}
        for list_no, lst in enumerate(self.lists):
            if not lst.enabled:
                continue
            for verdict in self._list_verdicts(lst, hashes, queries):
                key = (list_no, verdict.label)
                if key not in best or _rank(verdict) < _rank(best[key]):
                    best[key] = verdict
        verdicts = tuple(best[key] for key in sorted(best))
        return Classification(self.name, verdicts, "; ".join(errors) or None)

    def _queries(self, hashes: Hashes) -> tuple[list[_Queries], list[str]]:
        quality = hashes.pdq_quality
        low_quality = quality is not None and quality < self.pdq_min_quality
        wanted: list[tuple[str, tuple[str, ...], bool]] = []
        pdqs = ((hashes.pdq,) if hashes.pdq else ()) + hashes.pdq_queries
        if pdqs and quality is not None and not low_quality:
            # The as-decoded hash goes first so that it wins ties ("original" over "variant").
            wanted.append(("pdq", tuple(dict.fromkeys(h.lower() for h in pdqs)), bool(hashes.pdq)))
        if hashes.phash and not low_quality:
            wanted.append(("phash", (hashes.phash.lower(),), True))
        queries: list[_Queries] = []
        errors: list[str] = []
        for hash_type, hexes, original in wanted:
            try:
                queries.append(_Queries(hash_type, hexes, _hex_matrix(hexes, hash_type), original))
            except ValueError as e:
                errors.append(f"{hash_type} query skipped: {e}")
        return queries, errors

    def _list_verdicts(
        self, lst: LoadedList, hashes: Hashes, queries: list[_Queries]
    ) -> Iterator[Verdict]:
        for hash_type in _EXACT_TYPES:
            value = getattr(hashes, hash_type).lower()
            for label in lst.index.exact[hash_type].get(value, ()):
                yield Verdict(
                    classifier=self.name,
                    label=label,
                    kind=MatchKind.EXACT,
                    list_name=lst.name,
                    hash_type=hash_type,
                    distance=0,
                    matched_hash=value,
                )
        for query in queries:
            index = lst.index.near.get(query.hash_type)
            if index is None:
                continue
            threshold = getattr(lst.thresholds, query.hash_type)
            for row, query_no, distance in index.search(query.matrix, threshold):
                as_decoded = query.original and query_no == 0
                details: dict[str, Any] = {"query": "original" if as_decoded else "variant"}
                if not as_decoded:
                    details["query_hash"] = query.hexes[query_no]
                if query.hash_type == "pdq":
                    details["pdq_quality"] = hashes.pdq_quality
                yield Verdict(
                    classifier=self.name,
                    label=index.labels[row],
                    kind=MatchKind.NEAR,
                    list_name=lst.name,
                    hash_type=query.hash_type,
                    distance=distance,
                    matched_hash=index.hashes[row],
                    details=details,
                )


def _rank(verdict: Verdict) -> tuple[int, int]:
    return (0 if verdict.kind is MatchKind.EXACT else 1, verdict.distance or 0)

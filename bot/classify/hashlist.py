"""The hash-list classifier: exact and near matching against configured hash list files.

sha256, md5 and sha1 match exactly (binary search over sorted arrays). PDQ and pHash match
by Hamming distance through `bot.lists.index`: brute force for small lists, multi-index hashing
for large ones, both exact. A list of ten million PDQ hashes holds ~1.2 GB and answers a
query in well under a millisecond; entries are arrays, never Python objects per hash.

The classifier reads its lists from a `ListSource` at each call, so a `bot.lists.registry.ListRegistry`
can swap in reloaded lists while scans go on: a scan sees the old lists or the new ones,
never a mix. An allowlist, when given, always wins: a verdict for allowlisted media, or
for an allowlisted list entry, is never returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bot.classify.base import Classifier, ClassifierContext, ClassifierSetupError, MediaInput
from bot.lists.format import HashEntry
from bot.lists.index import (
    BruteForceIndex,
    ExactIndex,
    MultiIndexHash,
    build_hamming_index,
    code_to_hex,
    hex_to_codes,
)
from bot.lists.columns import HashColumns, Progress, read_hash_columns
from bot.model import (
    CRYPTOGRAPHIC,
    HASH_HEX_LENGTH,
    Classification,
    Hashes,
    MatchKind,
    Verdict,
)

_EXACT_TYPES = CRYPTOGRAPHIC
_NEAR_TYPES = ("pdq", "phash")
# Above this many perceptual entries a search takes over ~1 ms: it moves off the event loop.
_OFFLOAD_ROWS = 250_000


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
    return hex_to_codes(hexes, length)


def _dedupe(codes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows without repeats of the same (hash, label), in their first order.

    Rows are grouped by a 64-bit fingerprint; only rows found equal in full are dropped.
    """
    if len(codes) < 2:
        return codes, labels
    fingerprint = labels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for word in range(codes.shape[1]):
        fingerprint ^= codes[:, word] * np.uint64(0xBF58476D1CE4E5B9 + 2 * word)
        fingerprint = (fingerprint << np.uint64(27)) | (fingerprint >> np.uint64(37))
    order = np.argsort(fingerprint, kind="stable")
    ordered = fingerprint[order]
    pairs = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(pairs):
        return codes, labels
    first, second = order[pairs], order[pairs + 1]
    equal = (codes[first] == codes[second]).all(axis=1) & (labels[first] == labels[second])
    keep = np.ones(len(codes), dtype=bool)
    keep[second[equal]] = False
    return codes[keep], labels[keep]


class NearIndex:
    """One perceptual hash type's entries of a list, with a label per row."""

    def __init__(self, hash_type: str, codes: np.ndarray, label_ids: np.ndarray, label_names: Sequence[str], threshold: int) -> None:
        self.hash_type = hash_type
        self.label_ids = label_ids
        self.label_names = tuple(label_names)
        self.index: BruteForceIndex | MultiIndexHash = build_hamming_index(
            codes, HASH_HEX_LENGTH[hash_type] * 4, threshold
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.label_ids.nbytes

    def hash_at(self, row: int) -> str:
        return code_to_hex(self.index.codes[row], HASH_HEX_LENGTH[self.hash_type])

    def label_at(self, row: int) -> str:
        return self.label_names[int(self.label_ids[row])]

    def search(self, queries: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
        """Rows within `threshold` of any query, as (row, best query index, distance).

        The best query is the nearest one; ties go to the lowest index.
        """
        found = self.index.search(queries, threshold).nearest_per_row()
        return sorted(zip(found.row.tolist(), found.query.tolist(), found.distance.tolist()))


class ExactLabels:
    """One cryptographic hash type's entries of a list: hash -> labels."""

    def __init__(self, hash_type: str, codes: np.ndarray, label_ids: np.ndarray, label_names: Sequence[str]) -> None:
        self.hash_type = hash_type
        self.index = ExactIndex(codes)
        self.label_ids = label_ids
        self.label_names = tuple(label_names)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes + self.label_ids.nbytes

    def get(self, hex_hash: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The labels listed for `hex_hash` (lower-case hex), in first-listed order."""
        try:
            code = hex_to_codes([hex_hash], HASH_HEX_LENGTH[self.hash_type])[0]
        except ValueError:
            return default
        rows = np.sort(self.index.find(code))
        if not len(rows):
            return default
        return tuple(dict.fromkeys(self.label_names[int(i)] for i in self.label_ids[rows]))


@dataclass(frozen=True)
class HashIndex:
    """One list's entries, arranged for matching."""

    exact: Mapping[str, ExactLabels]  # "sha256"/"md5"/"sha1" -> index
    near: Mapping[str, NearIndex]  # "pdq"/"phash" -> index

    @classmethod
    def from_entries(cls, entries: Iterable[HashEntry], thresholds: Thresholds | None = None) -> HashIndex:
        return cls.from_columns(HashColumns.from_entries(list(entries)), thresholds)

    @classmethod
    def from_columns(cls, columns: HashColumns, thresholds: Thresholds | None = None) -> HashIndex:
        # A (type, hash, label) listed twice is one entry; one hash under two labels is two.
        thresholds = thresholds or Thresholds()
        exact: dict[str, ExactLabels] = {}
        near: dict[str, NearIndex] = {}
        for hash_type, typed in columns.by_type.items():
            codes, labels = _dedupe(typed.codes, typed.labels)
            if hash_type in _NEAR_TYPES:
                near[hash_type] = NearIndex(hash_type, codes, labels, columns.labels, getattr(thresholds, hash_type))
            else:
                exact[hash_type] = ExactLabels(hash_type, codes, labels, columns.labels)
        return cls(exact=exact, near=near)

    @property
    def counts(self) -> dict[str, int]:
        counts = {t: len(self.exact[t]) if t in self.exact else 0 for t in _EXACT_TYPES}
        counts.update({t: len(self.near[t]) if t in self.near else 0 for t in _NEAR_TYPES})
        return counts

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.exact.values()) + sum(i.nbytes for i in self.near.values())


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
        return cls(name, label, HashIndex.from_entries(entries, thresholds), enabled, thresholds)

    @classmethod
    def from_columns(
        cls,
        name: str,
        columns: HashColumns,
        *,
        label: str,
        enabled: bool = True,
        thresholds: Thresholds = Thresholds(),
    ) -> LoadedList:
        return cls(name, label, HashIndex.from_columns(columns, thresholds), enabled, thresholds)


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

    @property
    def failed(self) -> bool:
        """Whether the file itself could not be read (not just some of its lines)."""
        return any(line == 0 for line, _ in self.errors)


def resolve_list_path(config: Any, base_dir: Path) -> Path:
    path = Path(config.path)
    return path if path.is_absolute() else Path(base_dir) / path


def load_list(
    config: Any, base_dir: Path, progress: Progress | None = None
) -> tuple[LoadedList, ListLoadReport, HashColumns]:
    """Load one configured list (an object with name, path, label, enabled, thresholds).

    A disabled list is not read: a list is often disabled because its file is missing or
    being replaced. Also returns the parsed columns, for what changed since the last load.
    """
    path = resolve_list_path(config, base_dir)
    thresholds = Thresholds.from_config(getattr(config, "thresholds", None))
    if config.enabled:
        columns = read_hash_columns(path, config.label, progress)
    else:
        columns = HashColumns({}, ())
    loaded = LoadedList.from_columns(
        config.name, columns, label=config.label, enabled=config.enabled, thresholds=thresholds
    )
    report = ListLoadReport(config.name, path, config.enabled, columns.counts, columns.errors)
    return loaded, report, columns


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
        loaded, report, _ = load_list(config, base_dir)
        lists.append(loaded)
        reports.append(report)
    return tuple(lists), tuple(reports)


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
      back to `Hashes.pdq`) within the list's threshold. Skipped when the PDQ quality is
      unknown or below `pdq_min_quality`: such images (blank, near-uniform) match each other.
    - pHash: `Hashes.phash` within the list's threshold; skipped too when PDQ reported a low
      quality, for the same reason.

    EXACT is kept for cryptographic hashes (the same bytes); a perceptual match is NEAR even
    at distance 0, since different images can hash alike. Each (list, label) gives at most
    one verdict: the best, exact before near, then the nearest.
    """

    Settings = HashListSettings

    def __init__(
        self,
        lists: Sequence[LoadedList] | ListSource,
        pdq_min_quality: int = 50,
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
        if sum(len(i) for lst in lists if lst.enabled for i in lst.index.near.values()) > _OFFLOAD_ROWS:
            return await asyncio.to_thread(self.match, media.hashes, lists)
        return self.match(media.hashes, lists)

    def match(self, hashes: Hashes, lists: Sequence[LoadedList] | None = None) -> Classification:
        """The synchronous matching `classify` runs (against `lists`, by default the current)."""
        if self.allowlisted(hashes):
            return Classification(self.name)
        queries, errors = self._queries(hashes)
        best: dict[tuple[int, str], Verdict] = {}
        for list_no, lst in enumerate(self.lists if lists is None else lists):
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
                    label=index.label_at(row),
                    kind=MatchKind.NEAR,
                    list_name=lst.name,
                    hash_type=query.hash_type,
                    distance=distance,
                    matched_hash=index.hash_at(row),
                    details=details,
                )


def _rank(verdict: Verdict) -> tuple[int, int]:
    return (0 if verdict.kind is MatchKind.EXACT else 1, verdict.distance or 0)

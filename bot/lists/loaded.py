"""The list model: a configured hash list loaded into arrays, ready for matching.

`load_list` reads one configured list file into a `LoadedList` (its `HashIndex`: an exact
index per cryptographic hash type, a Hamming index per perceptual one) and a
`ListLoadReport` (entries per type, rejected lines); `build_lists` loads them all. PDQ and
pHash match by Hamming distance through `bot.lists.index`: brute force for small lists,
multi-index hashing for large ones, both exact. Entries are arrays, never Python objects
per hash. A list's vPDQ entries (whole videos) are a `VideoIndex` of their own
(bot/lists/videoindex.py), matched at the list's PDQ threshold per frame and its `vpdq_*`
shares per video; its low-frequency signatures (smooth images) a `SignatureIndex`
(bot/lists/sigindex.py). The hash-list classifier (bot/classify/hashlist.py) matches against these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.lists.columns import HashColumns, Progress, read_hash_columns
from bot.lists.format import HashEntry
from bot.lists.index import (
    BruteForceIndex,
    ExactIndex,
    MultiIndexHash,
    build_hamming_index,
    code_to_hex,
    hex_to_codes,
)
from bot.lists.sigindex import SignatureIndex
from bot.lists.videoindex import VideoIndex
from bot.lists.vpdq import DEFAULT_MAX_FRAMES, VPDQ_INDEX_MATCH_THRESHOLD_PERCENT, VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
from bot.model import CRYPTOGRAPHIC, HASH_HEX_LENGTH, SIGNATURE_HASH_TYPE, VIDEO_HASH_TYPE

__all__ = [
    "ExactLabels",
    "HashIndex",
    "ListLoadReport",
    "LoadedList",
    "NearIndex",
    "Thresholds",
    "build_lists",
    "hex_matrix",
    "load_list",
    "resolve_list_path",
]

_EXACT_TYPES = CRYPTOGRAPHIC
_NEAR_TYPES = ("pdq", "phash")
_SHARES = ("vpdq_query_percent", "vpdq_compared_percent")


@dataclass(frozen=True)
class Thresholds:
    """Largest Hamming distance that still counts as a match, per perceptual hash type, and
    the shares of frames (percent) a video must match of a vPDQ entry (HMA's defaults)."""

    pdq: int = 31
    phash: int = 8
    vpdq_query_percent: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
    vpdq_compared_percent: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT

    def __post_init__(self) -> None:
        for hash_type in _NEAR_TYPES:
            value = getattr(self, hash_type)
            bits = HASH_HEX_LENGTH[hash_type] * 4
            if not 0 <= value <= bits:
                raise ValueError(f"{hash_type} threshold must be within 0..{bits}, got {value}")
        for name in _SHARES:
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be within 0..100, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, value: object) -> Thresholds:
        """Accept None, a Thresholds, a mapping or any object with `pdq`/`phash` attributes."""
        if value is None or isinstance(value, Thresholds):
            return value or cls()
        get = value.get if isinstance(value, Mapping) else lambda k: getattr(value, k, None)
        found: dict[str, Any] = {k: int(get(k)) for k in _NEAR_TYPES if get(k) is not None}
        found.update({k: float(get(k)) for k in _SHARES if get(k) is not None})
        return cls(**found)


def hex_matrix(hexes: Sequence[str], hash_type: str) -> np.ndarray:
    """Hex hashes -> (n, words) uint64 matrix; ValueError if any is not `hash_type`-shaped."""
    return hex_to_codes(hexes, HASH_HEX_LENGTH[hash_type], f"{hash_type} hashes")


def _dedupe(
    codes: np.ndarray, labels: np.ndarray, derived: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows without repeats of the same (hash, label), in their first order, and their
    derivation ids: a hash listed both as an image's own and as derived counts as its own.

    Rows are grouped by a 64-bit fingerprint; only rows found equal in full are dropped.
    """
    if len(codes) < 2:
        return codes, labels, derived
    fingerprint = labels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for word in range(codes.shape[1]):
        fingerprint ^= codes[:, word] * np.uint64(0xBF58476D1CE4E5B9 + 2 * word)
        fingerprint = (fingerprint << np.uint64(27)) | (fingerprint >> np.uint64(37))
    order = np.argsort(fingerprint, kind="stable")
    ordered = fingerprint[order]
    repeat = np.zeros(len(codes), dtype=bool)  # in `order`: the same row as the one before
    pairs = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if not len(pairs):
        return codes, labels, derived
    first, second = order[pairs - 1], order[pairs]
    repeat[pairs] = (codes[first] == codes[second]).all(axis=1) & (labels[first] == labels[second])
    if derived is not None:
        # Each run of repeats keeps its first row, with the least derivation id of the run (0: own).
        starts = np.flatnonzero(~repeat)
        derived = derived.copy()
        derived[order[starts]] = np.minimum.reduceat(derived[order], starts)
    keep = np.ones(len(codes), dtype=bool)
    keep[order[repeat]] = False
    return codes[keep], labels[keep], derived[keep] if derived is not None else None


class NearIndex:
    """One perceptual hash type's entries of a list, with a label per row."""

    def __init__(
        self, hash_type: str, codes: np.ndarray, label_ids: np.ndarray, label_names: Sequence[str], threshold: int,
        derived_ids: np.ndarray | None = None, derivations: Sequence[str] = ("",),
    ) -> None:
        self.hash_type = hash_type
        self.label_ids = label_ids
        self.label_names = tuple(label_names)
        # Rows derived from a listed image (a crop, a brightened copy; bot.lists.format) and
        # what they are of; None when the list has none.
        self.derived_ids = derived_ids if derived_ids is not None and derived_ids.any() else None
        self.derivations = tuple(derivations)
        self._own = None if self.derived_ids is None else self.derived_ids == 0  # once, not per match
        self.index: BruteForceIndex | MultiIndexHash = build_hamming_index(
            codes, HASH_HEX_LENGTH[hash_type] * 4, threshold
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        derived = 0 if self.derived_ids is None or self._own is None else self.derived_ids.nbytes + self._own.nbytes
        return self.index.nbytes + self.label_ids.nbytes + derived

    def hash_at(self, row: int) -> str:
        return code_to_hex(self.index.codes[row], HASH_HEX_LENGTH[self.hash_type])

    def label_at(self, row: int) -> str:
        return self.label_names[int(self.label_ids[row])]

    def derived_at(self, row: int) -> str:
        """What row `row`'s hash is of when derived from the listed image, "" for its own."""
        return "" if self.derived_ids is None else self.derivations[int(self.derived_ids[row])]

    def own_rows(self) -> np.ndarray | None:
        """Which rows are listed images' own hashes (a bool per row); None when all are."""
        return self._own

    def search(self, queries: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
        """Rows within `threshold` of any query, as (row, best query index, distance).

        The best query is the nearest one; ties go to the lowest index.
        """
        found = self.index.search(queries, threshold).nearest_per_row()
        return sorted(zip(found.row.tolist(), found.query.tolist(), found.distance.tolist()))

    def pairs(self, queries: np.ndarray, threshold: int) -> list[tuple[int, int, int]]:
        """Every (row, query index, distance) within `threshold`, by row, then distance."""
        found = self.index.search(queries, threshold)
        ordered = sorted(zip(found.row.tolist(), found.distance.tolist(), found.query.tolist()))
        return [(row, query, distance) for row, distance, query in ordered]

    @property
    def searched_whole(self) -> bool:
        """Whether a search compares every row (brute force): its cost then does not grow
        with the threshold, as a multi-index hash's does."""
        return isinstance(self.index, BruteForceIndex)


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
    videos: VideoIndex | None = None  # vPDQ entries, if the list has any
    signatures: SignatureIndex | None = None  # low-frequency signatures, if it has any

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
            codes, labels, derived = _dedupe(typed.codes, typed.labels, typed.derived)
            if hash_type in _NEAR_TYPES:
                near[hash_type] = NearIndex(
                    hash_type, codes, labels, columns.labels, getattr(thresholds, hash_type), derived, columns.derivations
                )
            else:
                exact[hash_type] = ExactLabels(hash_type, codes, labels, columns.labels)
        videos = None
        if columns.videos:
            videos = VideoIndex(
                columns.videos, thresholds.pdq,
                query_percent=thresholds.vpdq_query_percent, compared_percent=thresholds.vpdq_compared_percent,
            )  # fmt: skip
        signatures = SignatureIndex(columns.signatures) if columns.signatures else None
        return cls(exact=exact, near=near, videos=videos, signatures=signatures)

    @property
    def counts(self) -> dict[str, int]:
        counts = {t: len(self.exact[t]) if t in self.exact else 0 for t in _EXACT_TYPES}
        counts.update({t: len(self.near[t]) if t in self.near else 0 for t in _NEAR_TYPES})
        if self.videos is not None:
            counts[VIDEO_HASH_TYPE] = len(self.videos)
        if self.signatures is not None:
            counts[SIGNATURE_HASH_TYPE] = len(self.signatures)
        return counts

    @property
    def nbytes(self) -> int:
        videos = self.videos.nbytes if self.videos is not None else 0
        videos += self.signatures.nbytes if self.signatures is not None else 0
        return sum(i.nbytes for i in self.exact.values()) + sum(i.nbytes for i in self.near.values()) + videos


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
        max_frames = getattr(config, "max_vpdq_frames", DEFAULT_MAX_FRAMES)
        columns = read_hash_columns(path, config.label, progress, max_frames)
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

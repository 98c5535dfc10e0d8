"""Which entries of a list are new: 64-bit fingerprints of every kind of entry. PURE (numpy).

Retroactive matching (bot/retro.py) remembers the fingerprints of the entries it has matched
against the media history and, after a reload, matches only the others (`new_entries`); a
list import adds only what the list does not hold (bot/lists/importers.py). Hash entries are
fixed-width codes fingerprinted from their bits, type and label; a vPDQ entry (a whole
video's frames) or a `lowfreq` signature is a text matched by its own index, fingerprinted
from (kind, text, label).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

from bot.lists.columns import HashColumns, TypedHashes
from bot.lists.loaded import LoadedList
from bot.model import HASH_TYPES, SIGNATURE_HASH_TYPE, VIDEO_HASH_TYPE


class TextEntry(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def label(self) -> str: ...


E = TypeVar("E", bound=TextEntry)


def text_fingerprints(kind: str, entries: Sequence[TextEntry]) -> np.ndarray:
    """A 64-bit digest of (kind, text, label) per entry, in order."""
    digests = (hashlib.sha256(f"{kind}\0{e.text}\0{e.label}".encode()).digest()[:8] for e in entries)
    return np.fromiter((int.from_bytes(d, "big") for d in digests), dtype=np.uint64, count=len(entries))


def new_text_entries(kind: str, entries: Sequence[E], known: np.ndarray | None) -> tuple[E, ...]:
    """The entries whose fingerprint is not in `known` (sorted); all of them when None."""
    if not entries or known is None or not len(known):
        return tuple(entries)
    fp = text_fingerprints(kind, entries)
    pos = np.minimum(np.searchsorted(known, fp), len(known) - 1)
    return tuple(e for e, fresh in zip(entries, known[pos] != fp) if fresh)


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


class _Rows(NamedTuple):
    """One hash type's rows of a loaded list: codes, label ids and names, derivation ids
    (None: all own) and names."""

    hash_type: str
    codes: np.ndarray
    ids: np.ndarray
    names: tuple[str, ...]
    derived: np.ndarray | None = None
    derivations: tuple[str, ...] = ("",)


def _typed_rows(lst: LoadedList) -> Iterable[_Rows]:
    for hash_type, exact in lst.index.exact.items():
        yield _Rows(hash_type, exact.index.codes, exact.label_ids[exact.index.order], exact.label_names)
    for hash_type, near in lst.index.near.items():
        yield _Rows(hash_type, near.index.codes, near.label_ids, near.label_names, near.derived_ids, near.derivations)


def _typed(rows: _Rows, keep: np.ndarray | None, labels: dict[str, int], derivations: dict[str, int]) -> TypedHashes:
    """`rows` (those of `keep`, if given) as TypedHashes whose label and derivation ids index
    `labels` and `derivations` (extended): names are remapped, one entry per name, not per row."""
    codes, ids, derived = rows.codes, rows.ids, rows.derived
    if keep is not None:
        codes, ids = codes[keep], ids[keep]
        derived = derived[keep] if derived is not None else None
    remap = np.array([labels.setdefault(n, len(labels)) for n in rows.names], dtype=np.int32)
    ids = remap[ids] if len(ids) else ids.astype(np.int32)
    if derived is not None and derived.any():
        table = np.array([derivations.setdefault(n, len(derivations)) for n in rows.derivations], dtype=np.int32)
        return TypedHashes(np.ascontiguousarray(codes), ids, table[derived])
    return TypedHashes(np.ascontiguousarray(codes), ids)


def entry_fingerprints(lst: LoadedList) -> np.ndarray:
    """Sorted, distinct fingerprints of every entry of `lst`."""
    parts = [_fingerprints(r.hash_type, r.codes, r.names, r.ids) for r in _typed_rows(lst)]
    if lst.index.videos is not None:
        parts.append(text_fingerprints(VIDEO_HASH_TYPE, lst.index.videos.entries))
    if lst.index.signatures is not None:
        parts.append(text_fingerprints(SIGNATURE_HASH_TYPE, lst.index.signatures.entries))
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)


def new_entries(lst: LoadedList, known: np.ndarray | None) -> LoadedList:
    """The entries of `lst` whose fingerprint is not in `known` (sorted), as a list of their own.

    With `known` None (never seen), every entry is new.
    """
    by_type: dict[str, TypedHashes] = {}
    labels: dict[str, int] = {}
    derivations: dict[str, int] = {"": 0}
    for rows in _typed_rows(lst):
        fresh = None
        if known is not None and len(known):
            fp = _fingerprints(rows.hash_type, rows.codes, rows.names, rows.ids)
            pos = np.minimum(np.searchsorted(known, fp), len(known) - 1)
            fresh = known[pos] != fp
        if len(rows.codes) if fresh is None else fresh.any():
            by_type[rows.hash_type] = _typed(rows, fresh, labels, derivations)
    videos = new_text_entries(VIDEO_HASH_TYPE, lst.index.videos.entries if lst.index.videos else (), known)
    signatures = new_text_entries(SIGNATURE_HASH_TYPE, lst.index.signatures.entries if lst.index.signatures else (), known)
    names = dict.fromkeys([*labels, *(v.label for v in videos), *(s.label for s in signatures)])
    columns = HashColumns(by_type, tuple(names), videos=videos, signatures=signatures, derivations=tuple(derivations))
    return LoadedList.from_columns(lst.name, columns, label=lst.label, enabled=True, thresholds=lst.thresholds)


def columns_difference(new: HashColumns, old: HashColumns) -> HashColumns:
    """The entries of `new` (type, hash, label) that `old` does not hold, each once."""
    known = entry_fingerprints(LoadedList.from_columns("old", old, label=""))
    fresh = new_entries(LoadedList.from_columns("new", new, label=""), known)
    by_type: dict[str, TypedHashes] = {}
    labels: dict[str, int] = {}
    derivations: dict[str, int] = {"": 0}
    for rows in _typed_rows(fresh):
        by_type[rows.hash_type] = _typed(rows, None, labels, derivations)
    videos = fresh.index.videos.entries if fresh.index.videos is not None else ()
    signatures = fresh.index.signatures.entries if fresh.index.signatures is not None else ()
    for entry in (*videos, *signatures):
        labels.setdefault(entry.label, len(labels))
    return HashColumns(
        {t: v for t, v in by_type.items() if len(v)}, tuple(labels), videos=videos, signatures=signatures,
        derivations=tuple(derivations),
    )

"""Indexes over fixed-width hashes: Hamming range search and exact lookup. PURE (numpy).

Hashes are held as rows of big-endian uint64 words (`hex_to_codes`): a PDQ hash is 4 words,
a pHash 1, an MD5 2, a SHA-1 3 (the last one zero-padded), a SHA-256 4. A row never holds
a Python object, so ten million hashes cost 8 bytes a word and nothing more.

- `BruteForceIndex` compares a query with every row (vectorised XOR and popcount), first on
  the leading 128 bits, a lower bound of the distance, then in full on the few rows left.
  For small lists nothing is faster.
- `MultiIndexHash` cuts each hash into m substrings and keeps, for each substring, the rows
  bucketed by its value (a CSR table: bucket offsets and row ids). Two hashes within
  distance t differ, by the pigeonhole principle, in at most f_i bits of some substring i
  when sum(f_i + 1) > t, so a search looks only into the buckets within f_i bit flips of
  each of the query's substrings, then checks the full distance of the rows it finds there.
  The result is exact: the same rows as brute force. Substrings of about log2(n) bits keep
  the buckets small (python-threatexchange uses 16 fixed substrings of 16 bits, whose
  buckets hold ~150 rows each at 10M and must all be checked); `plan_substrings` picks m
  from a cost model under a memory budget.
- `ExactIndex` finds cryptographic hashes by binary search on their first word.

`build_hamming_index` picks brute force or multi-index hashing by list size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

# Below this many rows brute force beats multi-index hashing (measured in bench/).
BRUTE_FORCE_MAX_ROWS = 50_000
# Words compared in brute force's first pass: their distance is at most 128, so uint8 holds it.
_PREFIX_WORDS = 2
# Elements of the (queries x rows) temporaries brute force compares at once.
_BLOCK_ELEMENTS = 1 << 16
# Substring widths: wide enough to keep buckets small, narrow enough for the bucket table
# (4 bytes x 2^width) to stay modest and for probe masks (C(width, f)) to stay few.
_MIN_WIDTH, _MAX_WIDTH = 8, 24
# Flips probed per substring beyond which brute force is cheaper whatever the list size.
_MAX_FLIPS = 4
# Relative cost of probing one bucket against checking one candidate row (measured).
_PROBE_COST = 1.5
# Rows scanned at once by the fallback scan of a multi-index hash.
_SCAN_BLOCK = 1 << 20


def words_for(hex_length: int) -> int:
    """uint64 words per hash of `hex_length` hex digits."""
    return (hex_length + 15) // 16


def hex_to_codes(hexes: Sequence[str], hex_length: int, what: str = "hashes") -> np.ndarray:
    """Hex hashes -> (n, words) uint64 rows; ValueError if one is not `hex_length` hex digits
    (the message names them as `what`)."""
    # Lengths and digits checked in C (map, bytes.fromhex): ~50 queries per image, each match.
    if not set(map(len, hexes)) <= {hex_length}:
        raise ValueError(f"{what} must be {hex_length} hex digits")
    pad = words_for(hex_length) * 16 - hex_length
    try:
        raw = bytes.fromhex("".join(hexes) if not pad else "".join(h + "0" * pad for h in hexes))
    except ValueError:
        raise ValueError("hashes must be hexadecimal") from None
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), words_for(hex_length))


def bytes_to_codes(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 digests -> (n, words) uint64 rows, zero-padded to whole words."""
    n, k = raw.shape
    words = (k + 7) // 8
    if k != words * 8:
        raw = np.concatenate([raw, np.zeros((n, words * 8 - k), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(raw).view(">u8").astype(np.uint64).reshape(n, words)


def code_to_hex(code: np.ndarray, hex_length: int) -> str:
    """One row of words -> its hex hash."""
    return code.astype(">u8").tobytes().hex()[:hex_length]


@dataclass(frozen=True)
class Matches:
    """Rows within a threshold of some query: parallel arrays, one element per (query, row)."""

    query: np.ndarray  # int64, index into the queries
    row: np.ndarray  # int64, index into the indexed hashes
    distance: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def empty(cls) -> Matches:
        none = np.empty(0, dtype=np.int64)
        return cls(none, none, none)

    def nearest_per_row(self) -> Matches:
        """One match per row: the nearest query, ties to the lowest query index."""
        if len(self.row) == 0:
            return self
        order = np.lexsort((self.query, self.distance, self.row))
        rows = self.row[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        keep = order[first]
        return Matches(self.query[keep], self.row[keep], self.distance[keep])


class HammingIndex(Protocol):
    bits: int

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, threshold: int) -> Matches:
        """Every (query, row) pair within Hamming distance `threshold`; queries as (q, words)."""
        ...


class BruteForceIndex:
    """Compares every query with every row; best below ~50k rows."""

    def __init__(self, codes: np.ndarray, bits: int) -> None:
        self.bits = bits
        # Word-major, so each pass streams one contiguous array; rows are a view of it.
        self._columns = np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).T)
        self.codes = self._columns.T

    def __len__(self) -> int:
        return self._columns.shape[1]

    @property
    def nbytes(self) -> int:
        return self._columns.nbytes

    def search(self, queries: np.ndarray, threshold: int) -> Matches:
        n = len(self)
        if n == 0 or len(queries) == 0:
            return Matches.empty()
        prefix = min(_PREFIX_WORDS, self._columns.shape[0])
        # An image brings ~50 queries (turns, flips, crop guesses): compared in blocks, a few
        # numpy calls each, not ~7 per query (30 rows: 0.6-1.2 -> 0.06-0.08 ms; bench/README.md).
        block = max(1, _BLOCK_ELEMENTS // n)
        nearest = np.full(n, 255, dtype=np.uint8)
        for start in range(0, len(queries), block):
            chunk = queries[start : start + block]
            partial = np.bitwise_count(self._columns[0] ^ chunk[:, :1])
            for word in range(1, prefix):
                partial += np.bitwise_count(self._columns[word] ^ chunk[:, word : word + 1])
            np.minimum(nearest, partial[0] if len(chunk) == 1 else partial.min(axis=0), out=nearest)
        rows = np.flatnonzero(nearest <= threshold)
        if len(rows) == 0:
            return Matches.empty()
        # Full distances of the candidates: (queries, k), small unless the threshold is huge.
        candidates = self._columns[:, rows]
        words = len(candidates)
        block = max(1, _BLOCK_ELEMENTS // (words * len(rows)))
        distances = np.empty((len(queries), len(rows)), dtype=np.int64)
        for start in range(0, len(queries), block):
            chunk = queries[start : start + block, :, None]  # queries x words x 1
            counts = np.bitwise_count(candidates ^ chunk)
            np.sum(counts, axis=1, dtype=np.int64, out=distances[start : start + block])
        query_no, col = np.nonzero(distances <= threshold)
        return Matches(query_no.astype(np.int64), rows[col].astype(np.int64), distances[query_no, col])


@dataclass(frozen=True)
class SubstringPlan:
    """How a multi-index hash cuts hashes: substring widths, in bit order."""

    widths: tuple[int, ...]
    planned_threshold: int

    def flips(self, threshold: int) -> tuple[int, ...]:
        """Bit flips probed per substring so that sum(f_i + 1) = threshold + 1; -1: skip it.

        The narrowest substrings take the extra flip: their probes are fewest.
        """
        m = len(self.widths)
        base, extra = divmod(threshold + 1, m)
        by_width = sorted(range(m), key=lambda i: (self.widths[i], i))
        flips = [base - 1] * m
        for i in by_width[:extra]:
            flips[i] = base
        return tuple(flips)


def _split(bits: int, m: int) -> tuple[int, ...]:
    base, extra = divmod(bits, m)
    return tuple(base + 1 if i < extra else base for i in range(m))


def _probes(width: int, flips: int) -> int:
    return sum(math.comb(width, k) for k in range(flips + 1)) if flips >= 0 else 0


def estimate_cost(widths: Sequence[int], flips: Sequence[int], n: int) -> tuple[int, float]:
    """(buckets probed, rows expected in them) per query, for random hashes."""
    probes = [_probes(w, f) for w, f in zip(widths, flips)]
    return sum(probes), sum(p * n / 2.0**w for p, w in zip(probes, widths))


def plan_substrings(n: int, bits: int, threshold: int, memory_budget: int | None = None) -> SubstringPlan | None:
    """The cheapest substring split for `n` random hashes, or None if brute force is cheaper.

    `memory_budget` caps the tables (row ids and bucket offsets, 4 bytes each); by default
    three times the hashes themselves.
    """
    budget = memory_budget if memory_budget is not None else max(3 * n * bits // 8, 1 << 24)
    best: tuple[float, SubstringPlan] | None = None
    for m in range(1, bits + 1):
        widths = _split(bits, m)
        if widths[0] > _MAX_WIDTH:
            continue
        if widths[-1] < _MIN_WIDTH:
            break
        plan = SubstringPlan(widths, threshold)
        flips = plan.flips(threshold)
        if max(flips) > _MAX_FLIPS:
            continue
        memory = 4 * (m * n + sum(2**w for w in widths))
        if memory > budget:
            continue
        probes, candidates = estimate_cost(widths, flips, n)
        cost = _PROBE_COST * probes + candidates
        if best is None or cost < best[0]:
            best = (cost, plan)
    if best is None or best[0] > n / 4:
        return None
    return best[1]


@lru_cache(maxsize=64)
def _flip_masks(width: int, flips: int) -> np.ndarray:
    """Every value with at most `flips` of the low `width` bits set, 0 first."""
    masks = [0]
    for k in range(1, flips + 1):
        masks.extend(sum(1 << b for b in combo) for combo in itertools.combinations(range(width), k))
    return np.array(masks, dtype=np.int64)


class _Substrings:
    """Extracts substrings (bit ranges, MSB first) from rows of big-endian words."""

    def __init__(self, widths: Sequence[int]) -> None:
        first, shift_in, shift_out, second, shift_second, mask_second = [], [], [], [], [], []
        start = 0
        for width in widths:
            word, offset = divmod(start, 64)
            first.append(word)
            shift_in.append(offset)
            shift_out.append(64 - width)
            spill = width - (64 - offset)  # bits that continue into the next word
            if spill > 0:
                second.append(word + 1)
                shift_second.append(64 - spill)
                mask_second.append((1 << spill) - 1)
            else:
                second.append(word)
                shift_second.append(0)
                mask_second.append(0)
            start += width
        u64 = np.uint64
        self.first = np.array(first)
        self.second = np.array(second)
        self.shift_in = np.array(shift_in, dtype=u64)
        self.shift_out = np.array(shift_out, dtype=u64)
        self.shift_second = np.array(shift_second, dtype=u64)
        self.mask_second = np.array(mask_second, dtype=u64)

    def of(self, codes: np.ndarray, which: slice = slice(None)) -> np.ndarray:
        """(n, substrings) int64 values of the substrings `which` of each row."""
        head = (codes[:, self.first[which]] << self.shift_in[which]) >> self.shift_out[which]
        tail = (codes[:, self.second[which]] >> self.shift_second[which]) & self.mask_second[which]
        return (head | tail).astype(np.int64)


class MultiIndexHash:
    """Exact Hamming range search by multi-index hashing; see the module docstring."""

    def __init__(self, codes: np.ndarray, bits: int, plan: SubstringPlan) -> None:
        self.bits = bits
        self.plan = plan
        self.codes = np.ascontiguousarray(codes, dtype=np.uint64)
        n = len(self.codes)
        m = len(plan.widths)
        self._substrings = _Substrings(plan.widths)
        index_dtype = np.int32 if m * n < 2**31 else np.int64
        self._bases = np.zeros(m, dtype=np.int64)  # where each substring's buckets start
        self._bases[1:] = np.cumsum([2**w for w in plan.widths])[:-1]
        # Offsets of every bucket of every substring, then one end marker: bucket b of
        # substring i holds ids[offsets[base_i + b]:offsets[base_i + b + 1]].
        self._offsets = np.empty(int(sum(2**w for w in plan.widths)) + 1, dtype=index_dtype)
        self._ids = np.empty(m * n, dtype=index_dtype)
        rows = np.arange(n, dtype=np.uint64)
        for i, width in enumerate(plan.widths):
            keys = self._substrings.of(self.codes, slice(i, i + 1))[:, 0]
            counts = np.bincount(keys, minlength=2**width)
            start = int(self._bases[i])
            table = self._offsets[start : start + 2**width]
            table[0] = i * n
            np.cumsum(counts[:-1], out=table[1:])
            table[1:] += i * n
            # One sort of (key, row) pairs packed in 64 bits: rows in a bucket stay in order.
            packed = (keys.astype(np.uint64) << np.uint64(32)) | rows
            del keys, counts
            packed.sort()
            self._ids[i * n : (i + 1) * n] = packed & np.uint64(0xFFFFFFFF)
            del packed
        self._offsets[-1] = m * n
        self._probe_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self._offsets.nbytes + self._ids.nbytes

    def _probe_plan(self, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(substring, mask, bucket base) per probe for `threshold`; None: scan instead."""
        if threshold in self._probe_cache:
            return self._probe_cache[threshold]
        flips = self.plan.flips(threshold)
        probes, candidates = estimate_cost(self.plan.widths, flips, len(self))
        plan = None
        if max(flips) <= _MAX_FLIPS and _PROBE_COST * probes + candidates <= len(self) / 4:
            which, masks, bases = [], [], []
            for i, (width, f) in enumerate(zip(self.plan.widths, flips)):
                if f < 0:
                    continue
                mask = _flip_masks(width, f)
                which.append(np.full(len(mask), i))
                masks.append(mask)
                bases.append(np.full(len(mask), self._bases[i]))
            plan = (np.concatenate(which), np.concatenate(masks), np.concatenate(bases))
        self._probe_cache[threshold] = plan
        return plan

    def search(self, queries: np.ndarray, threshold: int) -> Matches:
        if len(self) == 0 or len(queries) == 0 or threshold < 0:
            return Matches.empty()
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        plan = self._probe_plan(threshold)
        if plan is None:
            return self._scan(queries, threshold)
        which, masks, bases = plan
        keys = self._substrings.of(queries)  # (q, m)
        buckets = (keys[:, which] ^ masks) + bases  # (q, probes)
        lo = self._offsets[buckets].ravel().astype(np.int64)
        hi = self._offsets[buckets + 1].ravel().astype(np.int64)
        sizes = hi - lo
        hit = np.flatnonzero(sizes)
        sizes, lo = sizes[hit], lo[hit]
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if len(ends) else 0
        if total == 0:
            return Matches.empty()
        # Positions of every row id in the probed buckets, without a Python loop.
        positions = np.repeat(lo - (ends - sizes), sizes) + np.arange(total)
        query_no = np.repeat(hit // buckets.shape[1], sizes)
        rows = self._ids[positions].astype(np.int64)
        distances = _distances(np.take(self.codes, rows, axis=0), np.take(queries, query_no, axis=0))
        keep = np.flatnonzero(distances <= threshold)
        query_no, rows, distances = query_no[keep], rows[keep], distances[keep]
        # A row near a query in several substrings was found several times.
        if len(rows) > 1:
            pair = query_no * len(self) + rows
            _, first = np.unique(pair, return_index=True)
            query_no, rows, distances = query_no[first], rows[first], distances[first]
        return Matches(query_no, rows, distances)

    def _scan(self, queries: np.ndarray, threshold: int) -> Matches:
        """Brute force in blocks, for thresholds too large to probe."""
        found: list[Matches] = []
        for start in range(0, len(self), _SCAN_BLOCK):
            block = self.codes[start : start + _SCAN_BLOCK]
            for query_no, query in enumerate(queries):
                distances = _distances(block, query[None, :])
                rows = np.flatnonzero(distances <= threshold)
                if len(rows):
                    found.append(
                        Matches(np.full(len(rows), query_no, dtype=np.int64), rows + start, distances[rows])
                    )
        if not found:
            return Matches.empty()
        return Matches(*(np.concatenate([getattr(f, k) for f in found]) for k in ("query", "row", "distance")))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distances of (n, words) arrays (b may broadcast)."""
    counts = np.bitwise_count(a ^ b)
    total = counts[:, 0].astype(np.int64)
    for word in range(1, counts.shape[1]):
        total += counts[:, word]
    return total


def build_hamming_index(
    codes: np.ndarray, bits: int, threshold: int, *, brute_force_max_rows: int = BRUTE_FORCE_MAX_ROWS
) -> BruteForceIndex | MultiIndexHash:
    """The faster index for `codes` searched at `threshold` (the usual one: others work too)."""
    if len(codes) > brute_force_max_rows:
        plan = plan_substrings(len(codes), bits, threshold)
        if plan is not None:
            return MultiIndexHash(codes, bits, plan)
    return BruteForceIndex(codes, bits)


class ExactIndex:
    """Sorted fixed-width hashes, looked up by binary search on the first word."""

    def __init__(self, codes: np.ndarray) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint64)
        self.order = np.argsort(codes[:, 0], kind="stable") if len(codes) else np.empty(0, dtype=np.int64)
        self.codes = codes[self.order]
        self._keys = np.ascontiguousarray(self.codes[:, 0]) if len(codes) else np.empty(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self._keys.nbytes + self.order.nbytes

    def find(self, code: np.ndarray) -> np.ndarray:
        """Original row numbers equal to `code` (one row of words)."""
        lo = int(np.searchsorted(self._keys, code[0], side="left"))
        hi = int(np.searchsorted(self._keys, code[0], side="right"))
        if lo == hi:
            return np.empty(0, dtype=np.int64)
        same = np.flatnonzero((self.codes[lo:hi] == code).all(axis=1))
        return self.order[lo + same]

    def contains_many(self, codes: np.ndarray) -> np.ndarray:
        """Boolean per row of `codes`: whether the index holds it."""
        if len(self) == 0 or len(codes) == 0:
            return np.zeros(len(codes), dtype=bool)
        codes = np.ascontiguousarray(codes, dtype=np.uint64)
        lo = np.searchsorted(self._keys, codes[:, 0], side="left")
        hi = np.searchsorted(self._keys, codes[:, 0], side="right")
        found = np.zeros(len(codes), dtype=bool)
        single = np.flatnonzero(hi - lo == 1)
        found[single] = (self.codes[lo[single]] == codes[single]).all(axis=1)
        for i in np.flatnonzero(hi - lo > 1):  # first words shared: rare
            found[i] = bool((self.codes[lo[i] : hi[i]] == codes[i]).all(axis=1).any())
        return found

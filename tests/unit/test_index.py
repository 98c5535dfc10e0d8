"""bot.lists.index: Hamming range search (brute force, multi-index hashing) and exact lookup.

Speed is measured in bench/bench_index.py; these tests pin what is found.
"""

from __future__ import annotations

import numpy as np
import pytest

from bot.lists.index import (
    BruteForceIndex,
    ExactIndex,
    Matches,
    MultiIndexHash,
    SubstringPlan,
    build_hamming_index,
    code_to_hex,
    hex_to_codes,
    plan_substrings,
)
from bot.lists.loaded import hex_matrix

RNG = np.random.default_rng(20240501)


def random_codes(n: int, words: int) -> np.ndarray:
    return RNG.integers(0, 2**64 - 1, size=(n, words), dtype=np.uint64, endpoint=True)


def flipped(code: np.ndarray, n_bits: int) -> np.ndarray:
    """`code` with `n_bits` distinct bits inverted: Hamming distance exactly n_bits."""
    out = code.copy()
    for bit in RNG.choice(64 * len(code), size=n_bits, replace=False):
        out[bit // 64] ^= np.uint64(1 << (63 - bit % 64))
    return out


def as_set(m: Matches) -> set[tuple[int, int, int]]:
    return set(zip(m.query.tolist(), m.row.tolist(), m.distance.tolist()))


def planted(n: int, words: int, distances: list[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """n random hashes, and one query per distance, each that far from a chosen row."""
    codes = random_codes(n, words)
    rows = [int(r) for r in RNG.choice(n, size=len(distances), replace=False)]
    queries = np.stack([flipped(codes[r], d) for r, d in zip(rows, distances)])
    return codes, queries, rows


@pytest.mark.parametrize(
    ("bits", "threshold", "plan"),
    [
        (256, 31, None),  # what plan_substrings picks for this size
        (256, 31, (16,) * 16),  # python-threatexchange's split
        (256, 31, (24, 24, 24) + (23,) * 8),  # the split picked at 10M
        (64, 8, None),
        (64, 8, (22, 21, 21)),
    ],
)
def test_multi_index_hash_finds_every_planted_neighbour_and_nothing_beyond(
    bits: int, threshold: int, plan: tuple[int, ...] | None
) -> None:
    words = bits // 64
    distances = list(range(threshold + 1)) + [threshold + 1]
    codes, queries, rows = planted(60_000, words, distances)
    substrings = SubstringPlan(plan, threshold) if plan else plan_substrings(len(codes), bits, threshold)
    assert substrings is not None
    index = MultiIndexHash(codes, bits, substrings)

    found = index.search(queries, threshold)
    by_query = {(q, r): d for q, r, d in as_set(found)}
    for q, (row, distance) in enumerate(zip(rows, distances)):
        if distance <= threshold:
            assert by_query.get((q, row)) == distance, f"planted neighbour at {distance} missed"
        else:
            assert (q, row) not in by_query, "a neighbour beyond the threshold matched"
    # Exactly what brute force finds (random rows that happen to be near count too).
    assert as_set(found) == as_set(BruteForceIndex(codes, bits).search(queries, threshold))


@pytest.mark.parametrize("threshold", [0, 5, 40, 90, 256])
def test_other_thresholds_than_planned_give_brute_force_results(threshold: int) -> None:
    codes, queries, _ = planted(20_000, 4, [0, 3, 17, 31, 45, 80])
    index = MultiIndexHash(codes, 256, SubstringPlan((16,) * 16, 31))
    assert as_set(index.search(queries, threshold)) == as_set(
        BruteForceIndex(codes, 256).search(queries, threshold)
    )


def reference_search(codes: np.ndarray, queries: np.ndarray, threshold: int) -> set[tuple[int, int, int]]:
    """Every (query, row, distance) within `threshold`, a query at a time over all 256 bits."""
    found = set()
    for q, query in enumerate(queries):
        distances = np.bitwise_count(codes ^ query).sum(axis=1)
        found |= {(q, int(r), int(distances[r])) for r in np.flatnonzero(distances <= threshold)}
    return found


@pytest.mark.parametrize(
    ("rows", "threshold"),
    [
        (40, 31),  # every query in one block
        (3000, 31),  # blocks of 21 queries
        (70_000, 31),  # a block per query
        (2000, 140),  # most rows candidates: the full distances in blocks of 8 queries too
    ],
)
def test_brute_force_compares_queries_in_blocks_with_the_same_result(rows: int, threshold: int) -> None:
    codes = random_codes(rows, 4)
    planted_rows = range(0, rows, rows // 30)
    near = [flipped(codes[r], (2 * i) % 32) for i, r in enumerate(planted_rows)]  # each within 31
    queries = np.stack([*near, *random_codes(22, 4)])  # ~50, as an image with its crop guesses
    found = BruteForceIndex(codes, 256).search(queries, threshold)
    assert as_set(found) == reference_search(codes, queries, threshold)
    assert {(q, r) for q, r, _d in as_set(found)} >= set(enumerate(planted_rows))
    assert list(found.query) == sorted(found.query)  # in query order, as before


def test_duplicate_rows_are_each_found_once_per_query() -> None:
    codes = random_codes(30_000, 4)
    codes[10] = codes[20] = codes[5]
    index = MultiIndexHash(codes, 256, SubstringPlan((16,) * 16, 31))
    found = index.search(np.stack([codes[5], flipped(codes[5], 7)]), 31)
    assert sorted(zip(found.query.tolist(), found.row.tolist())) == [
        (0, 5), (0, 10), (0, 20), (1, 5), (1, 10), (1, 20)
    ]


def test_nearest_per_row_keeps_the_nearest_query_and_the_first_on_ties() -> None:
    m = Matches(np.array([0, 1, 2, 0, 1]), np.array([7, 7, 7, 3, 3]), np.array([9, 4, 4, 2, 2]))
    best = m.nearest_per_row()
    assert sorted(zip(best.row.tolist(), best.query.tolist(), best.distance.tolist())) == [
        (3, 0, 2), (7, 1, 4)
    ]


def test_empty_index_and_no_queries() -> None:
    empty = np.empty((0, 4), dtype=np.uint64)
    assert len(BruteForceIndex(empty, 256).search(random_codes(2, 4), 31)) == 0
    assert len(build_hamming_index(random_codes(10, 4), 256, 31).search(empty, 31)) == 0


def test_small_lists_use_brute_force_and_large_ones_multi_index_hashing() -> None:
    assert isinstance(build_hamming_index(random_codes(1000, 4), 256, 31), BruteForceIndex)
    big = build_hamming_index(random_codes(2000, 4), 256, 31, brute_force_max_rows=1000)
    assert isinstance(big, MultiIndexHash)


def test_plans_follow_list_size_and_stay_within_memory() -> None:
    small = plan_substrings(100_000, 256, 31)
    large = plan_substrings(10_000_000, 256, 31)
    assert small is not None and large is not None
    # Substrings of about log2(n) bits: wider for more rows, and always covering every bit.
    assert max(small.widths) < min(large.widths)
    assert sum(small.widths) == sum(large.widths) == 256
    tables = 4 * (len(large.widths) * 10_000_000 + sum(2**w for w in large.widths))
    assert tables <= 3 * 10_000_000 * 32
    # The pigeonhole condition: sum(f_i + 1) > threshold, so nothing within it is missed.
    assert sum(f + 1 for f in large.flips(31)) == 32


def test_hex_round_trip_pads_sha1_to_whole_words() -> None:
    sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d"
    codes = hex_to_codes([sha1], 40)
    assert codes.shape == (1, 3)
    assert code_to_hex(codes[0], 40) == sha1
    with pytest.raises(ValueError):
        hex_to_codes(["xyz"], 3)


def test_a_query_of_the_wrong_length_is_refused_and_named_by_its_type() -> None:
    good = "ab" * 32
    assert hex_matrix([good, good], "pdq").shape == (2, 4)
    with pytest.raises(ValueError, match="pdq hashes must be 64 hex digits"):
        hex_matrix([good, good[:-1]], "pdq")
    with pytest.raises(ValueError, match="hexadecimal"):
        hex_matrix([good[:-1] + "g"], "pdq")


def test_exact_index_finds_equal_rows_only() -> None:
    codes = random_codes(5000, 3)
    codes[100, 1:] += np.uint64(1)  # same first word as another row, different rest
    codes[100, 0] = codes[200, 0]
    index = ExactIndex(codes)
    assert index.find(codes[200]).tolist() == [200]
    assert index.find(codes[100]).tolist() == [100]
    assert index.find(random_codes(1, 3)[0]).tolist() == []
    probe = np.stack([codes[7], random_codes(1, 3)[0], codes[100]])
    assert index.contains_many(probe).tolist() == [True, False, True]

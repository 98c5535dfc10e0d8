"""HashListClassifier: exact and near matching against loaded hash lists."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.classify import (
    Classifier,
    HashListClassifier,
    LoadedList,
    MediaInput,
    Thresholds,
    build_lists,
)
from bot.lists.format import HashEntry
from bot.model import Classification, Hashes, MatchKind, Verdict

RNG = random.Random(20240501)


def random_hex(digits: int) -> str:
    return f"{RNG.getrandbits(digits * 4):0{digits}x}"


def flip_bits(hex_hash: str, n: int) -> str:
    """`hex_hash` with `n` distinct bits inverted: Hamming distance exactly n."""
    bits = len(hex_hash) * 4
    mask = sum(1 << b for b in RNG.sample(range(bits), n))
    return f"{int(hex_hash, 16) ^ mask:0{len(hex_hash)}x}"


def media(**fields: Any) -> MediaInput:
    """Hashes of an image: random unless given; good PDQ quality unless given."""
    pdq = fields.pop("pdq", random_hex(64))
    defaults: dict[str, Any] = {
        "sha256": random_hex(64),
        "md5": random_hex(32),
        "size": 1234,
        "pdq": pdq,
        "pdq_quality": 100,
        "phash": random_hex(16),
        "pdq_queries": (pdq,),
    }
    return MediaInput(hashes=Hashes(**{**defaults, **fields}))


def hash_list(name: str, *entries: tuple[str, str], label: str = "csam", **kw: Any) -> LoadedList:
    listed = [HashEntry(t, h, label) for t, h in entries]  # type: ignore[arg-type]
    return LoadedList.from_entries(name, listed, label=label, **kw)


async def classify(lists: list[LoadedList], m: MediaInput, **kw: Any) -> Classification:
    result = await HashListClassifier(lists, **kw).classify(m)
    assert result.classifier == "hashlist"
    assert result.error is None
    return result


def test_name_is_derived_from_the_class() -> None:
    assert HashListClassifier.name == "hashlist"
    assert isinstance(HashListClassifier([]), Classifier)

    class RemoteScannerClassifier(Classifier):
        async def classify(self, media: MediaInput) -> Classification:
            return Classification(self.name)

    assert RemoteScannerClassifier.name == "remotescanner"


def test_media_input_repr_shows_no_bytes() -> None:
    m = replace(media(), data=b"\xff\xd8secret-bytes")
    assert "secret" not in repr(m) and "14 bytes" in repr(m)


@pytest.mark.parametrize("hash_type", ["sha256", "md5"])
async def test_exact_cryptographic_match(hash_type: str) -> None:
    m = media()
    value = getattr(m.hashes, hash_type)
    result = await classify([hash_list("ncmec", (hash_type, value))], m)
    assert result.verdicts == (
        Verdict(
            classifier="hashlist",
            label="csam",
            kind=MatchKind.EXACT,
            list_name="ncmec",
            hash_type=hash_type,
            distance=0,
            matched_hash=value,
        ),
    )


async def test_no_match() -> None:
    lists = [hash_list("l", ("sha256", random_hex(64)), ("pdq", random_hex(64)))]
    assert (await classify(lists, media())).verdicts == ()


@pytest.mark.parametrize(
    ("flipped", "threshold", "matches"),
    [(0, 31, True), (1, 31, True), (31, 31, True), (32, 31, False), (10, 8, False), (8, 8, True)],
)
async def test_pdq_near_match_within_threshold(flipped: int, threshold: int, matches: bool) -> None:
    m = media()
    listed = flip_bits(m.hashes.pdq or "", flipped)
    lst = hash_list("l", ("pdq", listed), thresholds=Thresholds(pdq=threshold))
    verdicts = (await classify([lst], m)).verdicts
    if not matches:
        assert verdicts == ()
        return
    (verdict,) = verdicts
    assert verdict.kind is MatchKind.NEAR  # even at distance 0: different images can hash alike
    assert (verdict.hash_type, verdict.distance, verdict.matched_hash) == ("pdq", flipped, listed)
    assert verdict.details == {"query": "original", "pdq_quality": 100}


async def test_pdq_match_through_a_transformed_query() -> None:
    rotated = random_hex(64)  # what the list holds: the image as first seen, rotated
    m = media(pdq_queries=(random_hex(64), random_hex(64), rotated))
    m = replace(m, hashes=replace(m.hashes, pdq=m.hashes.pdq_queries[0]))
    (verdict,) = (await classify([hash_list("l", ("pdq", flip_bits(rotated, 3)))], m)).verdicts
    assert (verdict.kind, verdict.distance) == (MatchKind.NEAR, 3)
    assert verdict.details == {"query": "variant", "query_hash": rotated, "pdq_quality": 100}
    (verdict,) = (await classify([hash_list("l", ("pdq", rotated))], m)).verdicts
    assert (verdict.distance, verdict.details["query"]) == (0, "variant")


async def test_the_nearest_query_wins() -> None:
    listed = random_hex(64)
    original = flip_bits(listed, 20)
    m = media(pdq=original, pdq_queries=(original, flip_bits(listed, 5), flip_bits(listed, 12)))
    (verdict,) = (await classify([hash_list("l", ("pdq", listed))], m)).verdicts
    assert verdict.distance == 5
    assert verdict.details["query_hash"] == m.hashes.pdq_queries[1]


async def test_pdq_without_queries_falls_back_to_pdq() -> None:
    m = media(pdq_queries=())
    (verdict,) = (await classify([hash_list("l", ("pdq", m.hashes.pdq or ""))], m)).verdicts
    assert (verdict.kind, verdict.distance) == (MatchKind.NEAR, 0)
    assert verdict.details["query"] == "original"


async def test_below_pdq_min_quality_perceptual_matching_is_skipped_but_not_exact() -> None:
    # pdq_min_quality: 50 is the operator's way back to the cliff before issue 14.
    m = media(pdq_quality=49)
    lst = hash_list(
        "l",
        ("pdq", m.hashes.pdq or ""),
        ("phash", m.hashes.phash or ""),
        ("md5", m.hashes.md5),
    )
    (verdict,) = (await classify([lst], m, pdq_min_quality=50)).verdicts
    assert verdict.hash_type == "md5"
    # At the threshold it is good enough.
    m = replace(m, hashes=replace(m.hashes, pdq_quality=50))
    result = await classify([hash_list("l", ("pdq", m.hashes.pdq or ""))], m, pdq_min_quality=50)
    assert [v.hash_type for v in result.verdicts] == ["pdq"]
    # The minimum is configurable.
    lst = hash_list("l", ("pdq", m.hashes.pdq or ""))
    assert (await classify([lst], m, pdq_min_quality=80)).verdicts == ()


@pytest.mark.parametrize(
    ("quality", "distance", "matches"),
    [(49, 28, True), (49, 29, False), (30, 28, True), (30, 29, False), (0, 28, True), (0, 29, False), (50, 31, True)],
)
async def test_a_low_quality_hash_matches_within_the_low_quality_bound(quality: int, distance: int, matches: bool) -> None:
    # Below quality 50 the list's threshold (31) gives way to bot.classify.pdqrule's
    # LOW_BOUND (28), whatever the quality; from 50 on the threshold applies.
    m = media(pdq_quality=quality)
    lst = hash_list("l", ("pdq", flip_bits(m.hashes.pdq or "", distance)))
    verdicts = (await classify([lst], m)).verdicts
    assert [(v.hash_type, v.distance, v.details["pdq_quality"]) for v in verdicts] == (
        [("pdq", distance, quality)] if matches else []
    )


@pytest.mark.parametrize(("distance", "matches"), [(28, True), (29, False)])
async def test_derived_queries_of_a_low_quality_hash_are_held_to_the_same_bound(distance: int, matches: bool) -> None:
    rotated = random_hex(64)
    m = media(pdq_quality=40, pdq_queries=(random_hex(64), rotated))
    lst = hash_list("l", ("pdq", flip_bits(rotated, distance)))
    verdicts = (await classify([lst], m)).verdicts
    assert [(v.distance, v.details["query"]) for v in verdicts] == ([(distance, "variant")] if matches else [])


async def test_a_stricter_list_threshold_wins_over_the_low_quality_bound() -> None:
    m = media(pdq_quality=20)
    listed = flip_bits(m.hashes.pdq or "", 21)
    strict = hash_list("strict", ("pdq", listed), thresholds=Thresholds(pdq=20))
    loose = hash_list("loose", ("pdq", listed))
    assert [v.list_name for v in (await classify([strict, loose], m)).verdicts] == ["loose"]


async def test_phash_is_not_matched_below_quality_50() -> None:
    m = media(pdq_quality=49)
    assert (await classify([hash_list("l", ("phash", m.hashes.phash or ""))], m)).verdicts == ()


async def test_a_later_frame_of_an_animation_matches_and_the_verdict_names_it() -> None:
    frame = random_hex(64)
    m = media(frame_pdqs=((3, random_hex(64), 90), (6, frame, 90)))
    (verdict,) = (await classify([hash_list("l", ("pdq", flip_bits(frame, 31)))], m)).verdicts
    assert (verdict.distance, verdict.details) == (31, {"query": "frame", "frame": 6, "query_hash": frame, "pdq_quality": 90})


@pytest.mark.parametrize(("quality", "distance", "matches"), [(90, 31, True), (90, 32, False), (20, 28, True), (20, 29, False)])
async def test_each_frame_is_held_to_the_bound_of_its_own_quality(quality: int, distance: int, matches: bool) -> None:
    frame = random_hex(64)
    m = media(pdq_quality=100, frame_pdqs=((1, frame, quality),))
    verdicts = (await classify([hash_list("l", ("pdq", flip_bits(frame, distance)))], m)).verdicts
    assert [v.details["frame"] for v in verdicts] == ([1] if matches else [])


@pytest.mark.parametrize(("position", "transform"), [(5, "flip_y"), (1, "rotate90"), (12, "flip_x of the trimmed image")])
async def test_a_variant_match_names_its_transformation(position: int, transform: str) -> None:
    queries = tuple(random_hex(64) for _ in range(16))  # bot.hashing's order: pdq.DIHEDRAL, twice
    m = media(pdq=queries[0], pdq_queries=queries)
    (verdict,) = (await classify([hash_list("l", ("pdq", queries[position]))], m)).verdicts
    assert verdict.details["transform"] == transform


async def test_pdq_of_unknown_quality_is_not_matched() -> None:
    m = media(pdq_quality=None)
    assert (await classify([hash_list("l", ("pdq", m.hashes.pdq or ""))], m)).verdicts == ()


@pytest.mark.parametrize(("flipped", "matches"), [(0, True), (8, True), (9, False)])
async def test_phash_near_match(flipped: int, matches: bool) -> None:
    m = media()
    listed = flip_bits(m.hashes.phash or "", flipped)
    verdicts = (await classify([hash_list("l", ("phash", listed))], m)).verdicts
    assert [(v.hash_type, v.distance, v.kind) for v in verdicts] == (
        [("phash", flipped, MatchKind.NEAR)] if matches else []
    )


@pytest.mark.parametrize(("pdq_distance", "matches"), [(64, True), (65, False)])
async def test_a_phash_match_needs_the_same_labels_pdq_nearby_when_the_list_has_one(
    pdq_distance: int, matches: bool
) -> None:
    # Unrelated screenshots came within 8 bits of a listed pHash while their PDQ was
    # 72+ bits away (bot.classify.pdqrule): the list's PDQ of that image must agree.
    m = media()
    lst = hash_list("l", ("phash", flip_bits(m.hashes.phash or "", 8)), ("pdq", flip_bits(m.hashes.pdq or "", pdq_distance)))
    verdicts = (await classify([lst], m)).verdicts
    assert [v.hash_type for v in verdicts] == (["phash"] if matches else [])


async def test_a_phash_match_is_confirmed_by_its_own_label_only() -> None:
    m = media()
    other = HashEntry("pdq", m.hashes.pdq or "", "other")
    lst = LoadedList.from_entries(
        "l", [HashEntry("phash", m.hashes.phash or "", "csam"), HashEntry("pdq", flip_bits(m.hashes.pdq or "", 100), "csam"), other],
        label="csam",
    )
    verdicts = (await classify([lst], m)).verdicts
    assert [(v.label, v.hash_type) for v in verdicts] == [("other", "pdq")]


async def test_phash_threshold_is_per_list() -> None:
    m = media()
    listed = flip_bits(m.hashes.phash or "", 12)
    strict = hash_list("strict", ("phash", listed))
    loose = hash_list("loose", ("phash", listed), thresholds=Thresholds(phash=12))
    verdicts = (await classify([strict, loose], m)).verdicts
    assert [v.list_name for v in verdicts] == ["loose"]


async def test_media_without_perceptual_hashes() -> None:
    m = media(pdq=None, pdq_quality=None, phash=None, pdq_queries=())
    lst = hash_list("l", ("sha256", m.hashes.sha256), ("pdq", random_hex(64)))
    assert [v.hash_type for v in (await classify([lst], m)).verdicts] == ["sha256"]


async def test_disabled_list_does_not_match() -> None:
    m = media()
    off = hash_list("off", ("sha256", m.hashes.sha256), ("pdq", m.hashes.pdq or ""), enabled=False)
    assert (await classify([off], m)).verdicts == ()


async def test_one_verdict_per_list_and_label_the_best_one() -> None:
    m = media()
    pdq = m.hashes.pdq or ""
    ncmec = LoadedList.from_entries(
        "ncmec",
        [
            HashEntry("pdq", flip_bits(pdq, 20), "csam"),
            HashEntry("pdq", flip_bits(pdq, 4), "csam"),  # nearer: this one is reported
            HashEntry("pdq", pdq, "sexual"),
            HashEntry("sha256", m.hashes.sha256, "sexual"),  # exact beats any near
        ],
        label="csam",
    )
    local = hash_list("local", ("md5", m.hashes.md5), ("pdq", pdq), label="spam")
    other = hash_list("other", ("pdq", flip_bits(pdq, 2)), label="csam")
    verdicts = (await classify([ncmec, local, other], m)).verdicts
    summary = [(v.list_name, v.label, v.kind, v.hash_type, v.distance) for v in verdicts]
    assert summary == [
        ("ncmec", "csam", MatchKind.NEAR, "pdq", 4),
        ("ncmec", "sexual", MatchKind.EXACT, "sha256", 0),
        ("local", "spam", MatchKind.EXACT, "md5", 0),  # md5 is tried before pdq
        ("other", "csam", MatchKind.NEAR, "pdq", 2),
    ]


async def test_one_hash_under_two_labels_gives_two_verdicts() -> None:
    m = media()
    lst = LoadedList.from_entries(
        "l",
        [HashEntry("sha256", m.hashes.sha256, "csam"), HashEntry("sha256", m.hashes.sha256, "gore")]
        * 2,  # duplicates are one entry
        label="csam",
    )
    assert [v.label for v in (await classify([lst], m)).verdicts] == ["csam", "gore"]
    assert lst.index.counts["sha256"] == 2


async def test_malformed_query_hash_is_an_error_not_an_exception() -> None:
    m = media(pdq_queries=("not hex",))
    lst = hash_list("l", ("md5", m.hashes.md5))
    result = await HashListClassifier([lst]).classify(m)
    assert [v.hash_type for v in result.verdicts] == ["md5"]
    assert result.error is not None and result.error.startswith("pdq query skipped")


async def test_no_distance_overflows_into_a_match() -> None:
    # 256 differing bits must not wrap around to 0 in a narrow integer type.
    m = media(pdq="0" * 64, pdq_queries=())
    lst = hash_list("l", ("pdq", "f" * 64), thresholds=Thresholds(pdq=256))
    (verdict,) = (await classify([lst], m)).verdicts
    assert (verdict.kind, verdict.distance) == (MatchKind.NEAR, 256)


# --- build_lists: from config objects to loaded lists ---------------------------------------


@dataclass
class ThresholdsModel:  # what the pydantic config gives: attributes, not a dict
    pdq: int = 31
    phash: int = 8


@dataclass
class ListConfig:
    name: str
    path: Path
    label: str
    enabled: bool = True
    thresholds: Any = field(default_factory=ThresholdsModel)


def test_build_lists(tmp_path: Path) -> None:
    sha = random_hex(64)
    pdq = random_hex(64)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.csv").write_text(
        f"type,hash,label\nsha256,{sha},\npdq,{pdq},gore\nmd5,nothex,x\n", encoding="utf-8"
    )
    configs = [
        ListConfig("a", Path("lists/a.csv"), "csam", thresholds=ThresholdsModel(pdq=20)),
        ListConfig("b", tmp_path / "missing.txt", "spam", thresholds={"phash": 4}),
        ListConfig("c", Path("also-missing.csv"), "x", enabled=False),
    ]
    lists, reports = build_lists(configs, tmp_path)

    assert [(x.name, x.label, x.enabled, x.thresholds) for x in lists] == [
        ("a", "csam", True, Thresholds(pdq=20, phash=8)),
        ("b", "spam", True, Thresholds(pdq=31, phash=4)),
        ("c", "x", False, Thresholds()),
    ]
    a, b, c = reports
    assert a.path == tmp_path / "lists" / "a.csv"
    assert (a.entries, a.counts["sha256"], a.counts["pdq"]) == (2, 1, 1)
    assert a.errors == ((4, "md5 hash must be 32 hex digits, got 6"),)
    assert b.entries == 0 and b.errors == ((0, f"file not found: {tmp_path / 'missing.txt'}"),)
    assert c.errors == ()  # a disabled list's file is not read

    m = media(sha256=sha)
    verdicts = HashListClassifier(lists).match(m.hashes).verdicts
    assert [(v.list_name, v.label, v.hash_type) for v in verdicts] == [("a", "csam", "sha256")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Thresholds()),
        ({}, Thresholds()),
        ({"pdq": 10}, Thresholds(pdq=10)),
        (ThresholdsModel(pdq=1, phash=2), Thresholds(pdq=1, phash=2)),
        (Thresholds(phash=3), Thresholds(phash=3)),
    ],
)
def test_thresholds_from_config(value: object, expected: Thresholds) -> None:
    assert Thresholds.from_config(value) == expected


@pytest.mark.parametrize("bad", [{"pdq": -1}, {"pdq": 257}, {"phash": 65}])
def test_thresholds_out_of_range(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**bad)


# --- at scale ----------------------------------------------------------------------------------


def test_a_planted_neighbour_is_found_among_100k_pdq_entries() -> None:
    # Speed is measured in bench/, not asserted here; this checks that the two-pass search
    # (prefix bound, then full distance) loses nothing on a list of realistic size.
    entries = [HashEntry("pdq", random_hex(64), "csam") for _ in range(100_000)]
    target = entries[77_777].hash
    classifier = HashListClassifier([LoadedList.from_entries("big", entries, label="csam")])
    # 16 queries: 8 rotations/flips of the image and 8 of the image with borders trimmed.
    queries = tuple(random_hex(64) for _ in range(15)) + (flip_bits(target, 30),)
    result = classifier.match(media(pdq=queries[0], pdq_queries=queries).hashes)
    assert [(v.distance, v.matched_hash) for v in result.verdicts] == [(30, target)]


# --- with real hashes ------------------------------------------------------------------------


async def test_rotated_copy_of_a_listed_image_matches_through_its_dihedral_queries() -> None:
    hashing = pytest.importorskip("bot.hashing")

    def png(img: Image.Image) -> bytes:
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()

    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    original = Image.fromarray(small, "RGB").resize((320, 240), Image.Resampling.BICUBIC)
    listed = hashing.compute_hashes(png(original))
    lst = hash_list("l", ("pdq", listed.pdq))

    rotated = hashing.compute_hashes(png(original.transpose(Image.Transpose.ROTATE_90)))
    assert hashing.hamming(rotated.pdq, listed.pdq) > 31  # the rotated hash alone would miss
    (verdict,) = (await classify([lst], MediaInput(hashes=rotated))).verdicts
    assert verdict.kind is MatchKind.NEAR
    assert verdict.distance is not None and verdict.distance <= 31
    assert verdict.details["query"] == "variant"

"""Matching a smooth image by its most reliable PDQ bits (bot/classify/reliablematch.py, the
rule in bot/classify/pdqrule.py): an entry matches when it agrees with one of the query's
turns or flips in every one of its 64 most reliable bits, in all but 2 of its 96 and all
but 8 of its 128, whatever the other bits say; never at quality 50 or more.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bot.act.notices import describe_verdict
from bot.classify import reliablematch
from bot.classify.hashlist import HashListClassifier
from bot.classify.pdqrule import FULL_QUALITY, LOW_BOUND
from bot.classify.reliablematch import reliable_queries
from bot.demo.samples import encode, make_photo
from bot.hashing import compute_hashes, hamming, pdqcoef
from bot.hashing.answers import parse as _parse
from bot.hashing.pool import HashSandbox
from bot.lists.format import HashEntry
from bot.lists.agree import agreeing_rows
from bot.lists.index import code_to_hex
from bot.lists.loaded import LoadedList
from bot.model import Hashes, Verdict
from bot.record.journal import hashes_from_columns, media_hash_columns
from smooth_kit import dark_room, entry_with, flips, smooth_hashes, tiers_of


def verdicts(listed: list[str], hashes: Hashes, **settings: int) -> tuple[Verdict, ...]:
    entries = [HashEntry("pdq", h, "csam") for h in listed]
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")], **settings)
    return classifier.match(hashes).verdicts


def test_an_entry_far_in_pdq_bits_matches_when_the_reliable_bits_agree() -> None:
    hashes = smooth_hashes()
    bits, (top64, top96, top128) = tiers_of(hashes)
    # Flip 60 of the 128 least reliable bits: too far for PDQ's bound, nothing the rule trusts.
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    assert min(hamming(q, entry) for q in hashes.pdq_queries) > LOW_BOUND
    (verdict,) = verdicts([entry], hashes)
    assert verdict.hash_type == "pdq" and verdict.kind == "near" and verdict.label == "csam"
    assert verdict.details["signal"] == "reliable bits" and verdict.details["transform"] == "original"
    assert verdict.details["reliable_mismatches"] == {"64": 0, "96": 0, "128": 0}
    assert verdict.distance == 60 and verdict.matched_hash == entry


@pytest.mark.parametrize(
    ("tier_flips", "matched"),
    [
        ({"top64": 1}, False),  # one of the 64 most reliable bits: no match
        ({"96-only": 2}, True),
        ({"96-only": 3}, False),
        ({"96-only": 2, "128-only": 6}, True),  # 8 of the 128
        ({"96-only": 2, "128-only": 7}, False),
    ],
)
def test_each_tier_allows_only_its_own_mismatches(tier_flips: dict[str, int], matched: bool) -> None:
    hashes = smooth_hashes()
    bits, (top64, top96, top128) = tiers_of(hashes)
    pools = {"top64": top64, "96-only": top96 & ~top64, "128-only": top128 & ~top96}
    chosen = np.concatenate([np.flatnonzero(pools[name])[:count] for name, count in tier_flips.items()])
    entry = entry_with(bits, flips(chosen) | flips(np.flatnonzero(~top128)[:50]))
    found = [v for v in verdicts([entry], hashes) if v.details.get("signal") == "reliable bits"]
    assert bool(found) is matched


def test_a_turned_copy_matches_through_the_turned_query() -> None:
    hashes = smooth_hashes()
    found = reliable_queries(hashes, 0)
    assert found is not None
    # The entry is the query turned a quarter (DIHEDRAL's rotate90) with its unreliable bits changed.
    turned_bits = np.unpackbits(np.frombuffer(bytes.fromhex(code_to_hex(found[0][1], 64)), dtype=np.uint8)).astype(bool)
    turned_mask = np.unpackbits(np.frombuffer(bytes.fromhex(code_to_hex(found[1][2, 1], 64)), dtype=np.uint8)).astype(bool)
    entry = entry_with(turned_bits, flips(np.flatnonzero(~turned_mask)[:40]))
    (verdict,) = verdicts([entry], hashes)
    assert verdict.details["transform"] == "rotate90"


def test_a_quality_50_query_is_never_matched_by_reliable_bits() -> None:
    photo = compute_hashes(encode(make_photo(7), "JPEG", quality=90))
    assert (photo.pdq_quality or 0) >= FULL_QUALITY and photo.pdq_coefficients == ()
    # Even given coefficients (a hostile or stale record), the rule does not apply above 49.
    smooth = smooth_hashes()
    bits, (_, _, top128) = tiers_of(smooth)
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    lifted = replace(smooth, pdq_quality=FULL_QUALITY)
    assert verdicts([entry], lifted) == ()


def test_the_operators_pdq_min_quality_applies() -> None:
    hashes = smooth_hashes()
    bits, (_, _, top128) = tiers_of(hashes)
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    assert verdicts([entry], hashes)
    assert verdicts([entry], hashes, pdq_min_quality=(hashes.pdq_quality or 0) + 1) == ()


def test_lists_past_the_row_limit_are_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = smooth_hashes()
    bits, (_, _, top128) = tiers_of(hashes)
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    filler = [np.random.default_rng(i).bytes(32).hex() for i in range(3)]
    monkeypatch.setattr(reliablematch, "RELIABLE_MAX_ROWS", 3)
    assert verdicts([entry, *filler], hashes) == ()
    monkeypatch.setattr(reliablematch, "RELIABLE_MAX_ROWS", 4)
    assert len(verdicts([entry, *filler], hashes)) == 1


def test_copies_of_dark_images_are_found_and_other_dark_images_are_not() -> None:
    """Real edits: a dark image's listed PDQ (the original's), its copies and unrelated dark images."""
    listed = [compute_hashes(encode(dark_room(seed), "PNG")).pdq for seed in range(1, 4)]
    assert all(listed)
    for seed in range(1, 4):
        img = dark_room(seed)
        for copy in (
            encode(img, "JPEG", quality=50),
            encode(img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS), "JPEG", quality=60),
            encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "WEBP", quality=60),
        ):
            labels = verdicts([listed[seed - 1]], compute_hashes(copy))  # type: ignore[list-item]
            assert labels, f"copy of dark image {seed} not found"
    for seed in range(10, 40):
        other = compute_hashes(encode(dark_room(seed), "JPEG", quality=75))
        assert verdicts(listed, other) == (), f"unrelated dark image {seed} matched"  # type: ignore[arg-type]


def test_only_images_under_quality_50_carry_coefficients_and_they_round_trip() -> None:
    hashes = smooth_hashes()
    text = hashes.pdq_coefficients[0]
    assert len(text) == pdqcoef.TEXT_LENGTH and pdqcoef.checked(list(hashes.pdq_coefficients)) == hashes.pdq_coefficients
    parsed = pdqcoef.parse(text)
    assert np.abs(parsed).max() == 32767
    # The bits from the coefficients are PDQ's, but for coefficients within rounding of the median.
    bits, (top64, _, top128) = tiers_of(hashes)
    pdq_bits = np.unpackbits(np.frombuffer(bytes.fromhex(hashes.pdq or ""), dtype=np.uint8)).astype(bool)
    assert np.array_equal(bits[top128], pdq_bits[top128]) and np.count_nonzero(bits != pdq_bits) <= 8
    assert pdqcoef.BELOW_QUALITY == FULL_QUALITY


def test_the_journal_keeps_the_coefficients() -> None:
    hashes = smooth_hashes()
    back = hashes_from_columns(media_hash_columns(hashes).get)
    assert back is not None and back.pdq_coefficients == hashes.pdq_coefficients
    assert back == replace(hashes, image_format=None)  # the media table keeps no format


@pytest.mark.parametrize(
    "hostile",
    [
        "00" * 512,  # not a list
        ["7fff" + "00" * 500],  # short
        [("7fff" + "00" * 510 + "00").upper()],
        ["0100" * 256],  # not normalised: largest is 256
        ["8000" + "7fff" + "00" * 508],  # -32768
        ["7fff" + "00" * 510 + "01"] * 2,  # two texts
        [7],
    ],
)
def test_the_sandbox_answer_is_checked(hostile: object) -> None:
    with pytest.raises(ValueError):
        pdqcoef.checked(hostile)


def test_a_flat_image_has_no_coefficients() -> None:
    assert pdqcoef.of_downsampled(np.full((64, 64), 80.0)) is None
    flat = compute_hashes(encode(Image.new("RGB", (300, 200), (40, 40, 40)), "PNG"))
    assert flat.pdq_coefficients == ()


def test_agreeing_rows_finds_what_checking_every_row_finds() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 2**63, size=(3000, 4), dtype=np.uint64) * 2 + rng.integers(0, 2, size=(3000, 4), dtype=np.uint64)
    masks = rng.integers(0, 2**63, size=(3, 2, 4), dtype=np.uint64) & rng.integers(0, 2**63, size=(3, 2, 4), dtype=np.uint64)
    masks[1] |= masks[0]
    masks[2] |= masks[1]
    # Rows 7 and 2500 differ from the two queries only outside every mask: found at any limits.
    noise = rng.integers(0, 2**63, size=(2, 4), dtype=np.uint64)
    queries = codes[[7, 2500]] ^ (noise & ~masks[2])
    # Other rows: copies of the first query with a few bits flipped inside the masks.
    for row in range(100, 140):
        codes[row] = queries[0] ^ (masks[2, 0] & rng.integers(0, 2**63, size=4, dtype=np.uint64) & rng.integers(0, 2**63, size=4, dtype=np.uint64) & rng.integers(0, 2**63, size=4, dtype=np.uint64))
    for limits in ([0, 2, 8], [1, 3, 40], [0, 0, 0], [3, 6, 12]):
        found = {(r, q): counts for r, q, counts in agreeing_rows(codes, queries, masks, limits)}
        expected = {}
        for q in range(2):
            for r in range(len(codes)):
                counts = tuple(int(np.bitwise_count((codes[r] ^ queries[q]) & masks[t, q]).sum()) for t in range(3))
                if all(c <= lim for c, lim in zip(counts, limits)):
                    expected[r, q] = counts
        assert found == expected and {(7, 0), (2500, 1)} <= set(found)
    assert len(agreeing_rows(codes, queries, masks, [3, 6, 12])) > 2  # the flipped copies were in reach


def test_the_moderators_notice_says_which_signal_matched() -> None:
    hashes = smooth_hashes()
    bits, (_, _, top128) = tiers_of(hashes)
    (verdict,) = verdicts([entry_with(bits, flips(np.flatnonzero(~top128)[:60]))], hashes)
    text = describe_verdict(verdict)
    assert "near, pdq distance 60" in text
    assert f"smooth image, PDQ quality {hashes.pdq_quality}: most reliable bits apart in 0 of its 64, 0 of its 96, 0 of its 128" in text


async def test_the_sandbox_gives_the_coefficients_and_checks_them() -> None:
    data = encode(dark_room(1), "JPEG", quality=90)
    async with HashSandbox(workers=1, memory_bytes=256 * 1024 * 1024, cpu_seconds=10) as sandbox:
        hashed = await sandbox.hash(data)
    assert hashed == compute_hashes(data) and hashed.pdq_coefficients
    good = {"sha256": "x", "md5": None, "size": 1, "pdq_coefficients": list(hashed.pdq_coefficients)}
    assert _parse({"hashes": good})[0].pdq_coefficients == hashed.pdq_coefficients
    for hostile in (["0001" * 256], [hashed.pdq_coefficients[0][:-4]], "not a list"):
        with pytest.raises(ValueError):
            _parse({"hashes": {**good, "pdq_coefficients": hostile}})


@pytest.mark.parametrize("quality", [0, 1])
def test_a_near_flat_query_has_no_reliable_bits(quality: int) -> None:
    # Quality 0-1: flat at PDQ's scale (a logo on a plain ground); its largest coefficients
    # are tiny, and a copy of such a logo matched an unrelated dark wallpaper by them.
    hashes = smooth_hashes()
    bits, (_, _, top128) = tiers_of(hashes)
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))
    assert verdicts([entry], replace(hashes, pdq_quality=2))
    assert verdicts([entry], replace(hashes, pdq_quality=quality)) == ()

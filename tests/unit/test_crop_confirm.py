"""Crop guesses a few bits over their bound (bot/classify/cropmatch.py, bot/hashing/pdqtiers.py):
where the guess is right, the padding flips the bits whose coefficients sat next to the
median, so a guess up to pdqrule.CROP_CONFIRM_MARGIN bits over its bound still matches a
listed image's own hash when it differs from it only in bits its coefficients call
unreliable (at most pdqrule.RELIABLE_TIERS in each tier). Not against derived rows, not in
lists searched by a multi-index hash, not for near-flat images.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bot.act.notices import describe_verdict
from bot.classify.hashlist import HashListClassifier
from bot.classify.pdqrule import CROP_CONFIRM_MARGIN, FULL_QUALITY, LOW_BOUND, RELIABLE_MIN_QUALITY, RELIABLE_TIERS
from bot.demo.samples import make_photo
from bot.hashing import compute_hashes, hamming, pdqtiers, uncrop
from bot.hashing.answers import parse as parse_answer
from bot.lists import index as hamming_index
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList
from bot.model import Hashes, Verdict
from bot.record.journal import hashes_from_columns, media_hash_columns

from crop_kit import cut, jpeg, original_pdq

GUESS = 4  # the guess that comes near the entry; every other one is far
ENTRY = "0" * 64
FAR = "f" * 64
# A guess's tiers: bits 0-63 (the hash's most significant) tier 0, 64-95 tier 1, 96-127
# tier 2, the rest tier 3.
TIERS = np.repeat(np.arange(4, dtype=np.uint8), [64, 32, 32, 128])


def verdicts(entries: list[HashEntry], hashes: Hashes, **settings: int) -> tuple[Verdict, ...]:
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")], **settings)
    return classifier.match(hashes).verdicts


def listed(hex_hash: str = ENTRY, derived: str = "") -> list[HashEntry]:
    return [HashEntry("pdq", hex_hash, "csam", derived=derived)]


def guessed(apart: list[int], quality: int = FULL_QUALITY) -> Hashes:
    """An image whose guess GUESS differs from ENTRY in the bits `apart` (0: the most
    significant) and whose other hashes are far from it, with TIERS for every guess."""
    bits = np.zeros(256, dtype=bool)
    bits[apart] = True
    guesses = [FAR] * len(uncrop.HYPOTHESES)
    guesses[GUESS] = np.packbits(bits).tobytes().hex()
    tiers = pdqtiers.to_texts(np.tile(TIERS, (len(uncrop.HYPOTHESES), 1)))
    return Hashes("ab" * 32, None, 1, pdq=FAR, pdq_quality=quality, pdq_queries=(FAR,),
                  pdq_uncropped=tuple(guesses), pdq_uncropped_tiers=tiers)


UNRELIABLE = list(range(128, 256))  # the bits of tier 3


def test_a_guess_over_its_bound_matches_when_only_its_unreliable_bits_differ() -> None:
    hashes = guessed(UNRELIABLE[: 31 + CROP_CONFIRM_MARGIN])

    (verdict,) = verdicts(listed(), hashes)

    assert verdict.distance == 31 + CROP_CONFIRM_MARGIN == 40
    assert verdict.details["crop"] == uncrop.HYPOTHESES[GUESS][0] and verdict.details["signal"] == "reliable bits"
    assert verdict.details["reliable_mismatches"] == {"64": 0, "96": 0, "128": 0}
    assert verdicts(listed(), replace(hashes, pdq_uncropped_tiers=())) == ()  # media hashed before the tiers


def test_one_bit_further_than_the_margin_does_not_match() -> None:
    assert verdicts(listed(), guessed(UNRELIABLE[: 32 + CROP_CONFIRM_MARGIN])) == ()


@pytest.mark.parametrize(("tier_bits", "allowed"), [(range(0, 64), 0), (range(64, 96), 2), (range(96, 128), 8)])
def test_each_tier_allows_at_most_its_mismatches(tier_bits: range, allowed: int) -> None:
    within = list(tier_bits)[:allowed] + UNRELIABLE[: 35 - allowed]
    over = list(tier_bits)[: allowed + 1] + UNRELIABLE[: 35 - allowed - 1]

    (verdict,) = verdicts(listed(), guessed(within))

    assert verdict.distance == 35 and verdicts(listed(), guessed(over)) == ()
    assert [limit for _bits, limit in RELIABLE_TIERS] == [0, 2, 8]


def test_the_margin_is_over_the_bound_of_the_images_quality() -> None:
    smooth = FULL_QUALITY - 1
    (verdict,) = verdicts(listed(), guessed(UNRELIABLE[: LOW_BOUND + CROP_CONFIRM_MARGIN], quality=smooth))
    assert verdict.distance == LOW_BOUND + CROP_CONFIRM_MARGIN
    assert verdicts(listed(), guessed(UNRELIABLE[: LOW_BOUND + CROP_CONFIRM_MARGIN + 1], quality=smooth)) == ()


def test_near_flat_images_and_the_operators_floor_get_no_margin() -> None:
    apart = UNRELIABLE[:35]
    assert verdicts(listed(), guessed(apart, quality=RELIABLE_MIN_QUALITY - 1)) == ()
    assert verdicts(listed(), guessed(apart), pdq_min_quality=FULL_QUALITY + 1) == ()
    assert verdicts(listed(), guessed(apart, quality=RELIABLE_MIN_QUALITY)) != ()


def test_rows_derived_from_a_listed_image_get_no_margin() -> None:
    # A crop's or a brightened copy's hash shares its image's layout and flat clipped areas,
    # which images of one template share too: only within the bound.
    derived = listed(derived="brightened x1.3")
    assert verdicts(derived, guessed(UNRELIABLE[:35])) == ()
    (verdict,) = verdicts(derived, guessed(UNRELIABLE[:31]))
    assert verdict.distance == 31 and "signal" not in verdict.details


def test_lists_searched_by_a_multi_index_hash_get_no_margin() -> None:
    # Its search costs more the wider it is: the margin is kept to lists searched whole.
    rng = np.random.default_rng(3)
    others = [HashEntry("pdq", h, "other") for h in rng.bytes(32 * hamming_index.BRUTE_FORCE_MAX_ROWS).hex(" ", 32).split()]
    lst = LoadedList.from_entries("known", listed() + others, label="csam")
    assert not lst.index.near["pdq"].searched_whole

    classifier = HashListClassifier([lst])

    assert classifier.match(guessed(UNRELIABLE[:35])).verdicts == ()
    assert [v.distance for v in classifier.match(guessed(UNRELIABLE[:31])).verdicts] == [31]


def test_a_guess_within_its_bound_outranks_one_over_it() -> None:
    hashes = guessed(UNRELIABLE[:36])
    guesses = list(hashes.pdq_uncropped)
    guesses[GUESS + 1] = format((1 << 30) - 1, "064x")  # another guess at 30 bits, its low bits apart

    (verdict,) = verdicts(listed(), replace(hashes, pdq_uncropped=tuple(guesses)))

    assert verdict.distance == 30 and "signal" not in verdict.details
    assert verdict.details["crop"] == uncrop.HYPOTHESES[GUESS + 1][0]


def test_a_photo_cut_by_more_than_the_guesses_reach_is_found_by_its_reliable_bits() -> None:
    # 3.75% off each side: the guess "3.75% cut from each side" comes 34 bits from the
    # original's PDQ, over the bound of 31, and differs in 1 of its 128 most reliable bits.
    original = make_photo(34, (800, 600))
    entry = original_pdq(original)
    copy = compute_hashes(jpeg(cut(original, 0.0375, 0.0375, 0.0375, 0.0375)))

    (verdict,) = verdicts(listed(entry), copy)

    assert 31 < verdict.distance == hamming(verdict.details["query_hash"], entry) <= 31 + CROP_CONFIRM_MARGIN
    assert verdict.details["crop"] == "3.75% cut from each side" and verdict.details["signal"] == "reliable bits"
    assert verdict.details["reliable_mismatches"]["64"] == 0
    assert verdicts(listed(entry), replace(copy, pdq_uncropped_tiers=())) == ()
    text = describe_verdict(verdict)
    assert "a cropped copy: matched when padded back as if 3.75% cut from each side, its most reliable bits apart in 0 of its 64" in text


def test_unrelated_photos_cropped_or_not_do_not_match_by_the_margin() -> None:
    entries = [e for seed in range(40, 50) for e in listed(original_pdq(make_photo(seed, (800, 600))))]
    for seed in range(60, 75):
        other = make_photo(seed, (800, 600))
        for posted in (other, cut(other, 0.0375, 0.0375, 0.0375, 0.0375), cut(other, top=0.06)):
            assert verdicts(entries, compute_hashes(jpeg(posted))) == ()


def test_the_tiers_rank_bits_by_their_coefficients_distance_from_the_median() -> None:
    rng = np.random.default_rng(5)
    coefficients = rng.standard_normal((3, 16, 16))
    tiers = pdqtiers.of_coefficients(coefficients)

    flat = coefficients.reshape(3, 256)[:, ::-1]  # the hash's bit order: most significant first
    for k in range(3):
        distance = np.abs(flat[k] - np.partition(flat[k], 127)[127])  # PDQ's median: the 128th smallest
        assert np.bincount(tiers[k], minlength=4).tolist() == [64, 32, 32, 128]
        for t in range(3):
            assert distance[tiers[k] == t].min() > distance[tiers[k] > t].max()
    assert pdqtiers.BOUNDARIES == tuple(count for count, _limit in RELIABLE_TIERS)
    assert (pdqtiers.parse(pdqtiers.to_texts(tiers)) == tiers).all()


def test_the_tiers_are_kept_with_the_media_and_read_back_in_order() -> None:
    hashes = compute_hashes(jpeg(make_photo(3, (640, 480))))
    assert len(hashes.pdq_uncropped_tiers) == len(uncrop.HYPOTHESES)
    assert all(len(t) == pdqtiers.TEXT_LENGTH for t in hashes.pdq_uncropped_tiers)

    back = hashes_from_columns(media_hash_columns(hashes).get)

    assert back is not None and back.pdq_uncropped_tiers == hashes.pdq_uncropped_tiers
    assert compute_hashes(b"not an image").pdq_uncropped_tiers == ()


def test_the_sandbox_parent_refuses_malformed_tiers_from_a_worker() -> None:
    tiers = list(compute_hashes(jpeg(make_photo(5, (400, 300)))).pdq_uncropped_tiers)
    good = {"sha256": "x", "md5": None, "size": 1, "pdq_uncropped_tiers": tiers}
    assert list(parse_answer({"hashes": good})[0].pdq_uncropped_tiers) == tiers
    assert parse_answer({"hashes": {**good, "pdq_uncropped_tiers": []}})[0].pdq_uncropped_tiers == ()
    upper = [t.upper() for t in tiers]
    spaced = [t[:-2] + " 0" for t in tiers]
    hostiles = (tiers[:-1], tiers * 2, ["zz" * 64] * len(tiers), [t + "00" for t in tiers], upper, spaced, "no", [1] * len(tiers))
    for hostile in hostiles:
        with pytest.raises(ValueError, match="tiers"):
            parse_answer({"hashes": {**good, "pdq_uncropped_tiers": hostile}})


def test_tiers_that_do_not_hold_each_tiers_share_of_bits_confirm_nothing() -> None:
    # Every bit in tier 3 would let the margin take any guess: such texts are read as none.
    all_unreliable = ("ff" * 64,) * len(uncrop.HYPOTHESES)
    with pytest.raises(ValueError, match="64, 32, 32 and 128"):
        pdqtiers.parse(all_unreliable)
    hashes = replace(guessed(UNRELIABLE[:35]), pdq_uncropped_tiers=all_unreliable)
    assert verdicts(listed(), hashes) == ()
    assert [v.distance for v in verdicts(listed(), replace(hashes, pdq_uncropped=guessed(UNRELIABLE[:31]).pdq_uncropped))] == [31]


def test_a_policy_rules_max_distance_keeps_these_matches_from_acting_under_it() -> None:
    from bot.model import EventContext
    from bot.policy import decide, parse_policy

    (verdict,) = verdicts(listed(), guessed(UNRELIABLE[:36]))
    ctx = EventContext("$ev", "!room:home.org", "@poster:home.org", 0)
    strict = parse_policy({"rules": [{"name": "strict", "match": {"max_distance": 31}, "actions": ["redact"]}]})
    loose = parse_policy({"rules": [{"name": "loose", "actions": ["redact"]}]})

    assert decide([verdict], ctx, strict).rule is None
    assert decide([verdict], ctx, loose).rule == "loose"

"""Cropped copies found by padding them back (bot/hashing/uncrop.py, bot/classify/cropmatch.py):
each guess is PDQ of the posted image padded, by repeating its edge pixels, to the size the
original had if that much was cut; a list entry within the bound of a derived query matches,
and the verdict names the guess.
"""

from __future__ import annotations

import io
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from bot.act.notices import describe_verdict
from bot.classify.hashlist import HashListClassifier
from bot.classify.pdqrule import FULL_QUALITY, LOW_BOUND
from bot.demo.samples import encode, make_photo
from bot.hashing import compute_hashes, hamming, pdq, uncrop
from bot.hashing.answers import parse as _parse
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList
from bot.model import Hashes, Verdict
from bot.record.journal import hashes_from_columns, media_hash_columns

from crop_kit import cut, jpeg, original_pdq


def verdicts(listed: list[str], hashes: Hashes, **settings: int) -> tuple[Verdict, ...]:
    entries = [HashEntry("pdq", h, "csam") for h in listed]
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")], **settings)
    return classifier.match(hashes).verdicts


@pytest.mark.parametrize("shape", [(384, 512), (512, 384), (301, 457), (500, 380), (128, 127), (6, 9)])
def test_each_guess_is_pdq_of_the_image_padded_back_with_its_edge_pixels(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    # Smooth enough that PDQ's bits are not all noise, uneven enough to tell pads apart.
    luma = np.cumsum(np.cumsum(rng.normal(size=shape), 0), 1).astype(np.float32)
    rows, cols = shape
    for (name, (left, right, top, bottom)), got in zip(uncrop.HYPOTHESES, uncrop.queries(luma), strict=True):
        width, height = cols / (1 - left - right), rows / (1 - top - bottom)
        padding = ((round(height * top), round(height * bottom)), (round(width * left), round(width * right)))
        assert got == pdq.pdq_hash(np.pad(luma, padding, mode="edge"))[0], name


def test_the_guesses_are_centred_one_sided_or_off_centre_cuts_of_at_most_5_percent_of_a_side() -> None:
    cuts = [c for _name, c in uncrop.HYPOTHESES]
    assert len(cuts) == len(set(cuts)) == 44
    kinds = {"centred": 0, "one side": 0, "off-centre": 0}
    for left, right, top, bottom in cuts:
        assert max(left, right, top, bottom) <= 0.05
        if len({left, right, top, bottom}) == 1:
            kinds["centred"] += 1
        elif sorted((left, right, top, bottom))[:3] == [0, 0, 0]:
            kinds["one side"] += 1
        else:  # 5% of the width and 5% of the height, split unevenly
            assert round(left + right, 4) == round(top + bottom, 4) == 0.05
            kinds["off-centre"] += 1
    assert kinds == {"centred": 4, "one side": 16, "off-centre": 24}
    assert uncrop.queries(np.zeros((4, 400), np.float32)) == ()  # too small to hash


@pytest.mark.parametrize(
    ("cuts", "guess"),
    [
        ({"bottom": 0.05}, "5% cut from the bottom"),
        ({"left": 0.0375}, "3.75% cut from the left"),
        ({"left": 0.025, "right": 0.025, "top": 0.025, "bottom": 0.025}, "2.5% cut from each side"),
        ({"left": 0.05, "top": 0.0125, "bottom": 0.0375}, "5% cut from the left, 1.25% from the top, 3.75% from the bottom"),
    ],
)
def test_a_cropped_copy_matches_its_originals_pdq_through_the_guess_that_undoes_the_cut(
    cuts: dict[str, float], guess: str
) -> None:
    original = make_photo(31, (800, 600))
    copy = compute_hashes(jpeg(cut(original, **cuts)))
    listed = original_pdq(original)
    assert min(hamming(q, listed) for q in copy.pdq_queries) > 31  # its own hashes are too far

    (verdict,) = verdicts([listed], copy)

    assert verdict.label == "csam" and verdict.hash_type == "pdq" and verdict.matched_hash == listed
    assert verdict.details["crop"] == guess and verdict.details["query"] == "variant"
    assert verdict.distance == hamming(verdict.details["query_hash"], listed) <= 31
    assert verdicts([listed], replace(copy, pdq_uncropped=())) == ()


def test_unrelated_images_cropped_or_not_do_not_match() -> None:
    listed = [original_pdq(make_photo(seed, (800, 600))) for seed in range(40, 50)]
    for seed in range(60, 80):
        other = make_photo(seed, (800, 600))
        for posted in (other, cut(other, bottom=0.05), cut(other, left=0.025, right=0.025, top=0.025, bottom=0.025)):
            assert verdicts(listed, compute_hashes(jpeg(posted))) == ()


def test_a_guess_is_held_to_the_bound_of_a_derived_query_of_the_images_quality() -> None:
    entry = "0" * 64
    guesses = [entry] * len(uncrop.HYPOTHESES)
    # The fifth guess 30 bits from the entry, every other one and the image's own hashes far.
    far = "f" * 64
    guesses = [far] * len(guesses)
    guesses[4] = format((1 << 30) - 1, "064x")
    hashes = Hashes("ab" * 32, None, 1, pdq=far, pdq_quality=FULL_QUALITY, pdq_queries=(far,),
                    pdq_uncropped=tuple(guesses))

    (verdict,) = verdicts([entry], hashes)
    assert verdict.distance == 30 and verdict.details["crop"] == uncrop.HYPOTHESES[4][0]
    assert 30 > LOW_BOUND and verdicts([entry], replace(hashes, pdq_quality=FULL_QUALITY - 1)) == ()
    assert verdicts([entry], hashes, pdq_min_quality=FULL_QUALITY + 1) == ()  # the operator's floor
    assert verdicts([entry], replace(hashes, pdq_uncropped=tuple(guesses[:-1]))) == ()  # not the full set


def test_the_copys_own_match_outranks_a_crop_guess_of_the_same_label() -> None:
    entry = "0" * 64
    guesses = ["0" * 64] * len(uncrop.HYPOTHESES)  # every guess at distance 0
    own = format((1 << 20) - 1, "064x")  # the image as decoded at 20 bits
    hashes = Hashes("ab" * 32, None, 1, pdq=own, pdq_quality=FULL_QUALITY, pdq_queries=(own,),
                    pdq_uncropped=tuple(guesses))

    (verdict,) = verdicts([entry], hashes)

    assert verdict.distance == 20 and "crop" not in verdict.details


def test_the_notice_says_the_copy_was_matched_padded_back() -> None:
    original = make_photo(31, (800, 600))
    (verdict,) = verdicts([original_pdq(original)], compute_hashes(jpeg(cut(original, bottom=0.05))))

    text = describe_verdict(verdict)

    assert "a cropped copy: matched when padded back as if 5% cut from the bottom" in text
    assert f"pdq distance {verdict.distance}" in text


def test_the_guesses_are_kept_with_the_media_and_read_back_in_order() -> None:
    hashes = compute_hashes(jpeg(make_photo(3, (640, 480))))
    assert len(hashes.pdq_uncropped) == len(uncrop.HYPOTHESES)

    back = hashes_from_columns(media_hash_columns(hashes).get)

    assert back is not None and back.pdq_uncropped == hashes.pdq_uncropped


def test_media_that_is_not_an_image_has_no_guesses() -> None:
    assert compute_hashes(b"not an image at all").pdq_uncropped == ()
    gif = io.BytesIO()
    Image.new("P", (3, 3)).save(gif, format="GIF")
    assert compute_hashes(gif.getvalue()).pdq_uncropped == ()  # too small to hash


def test_the_sandbox_parent_refuses_malformed_guesses_from_a_worker() -> None:
    hashes = compute_hashes(jpeg(make_photo(5, (400, 300))))
    good = {"sha256": "x", "md5": None, "size": 1, "pdq_uncropped": list(hashes.pdq_uncropped)}
    assert _parse({"hashes": good})[0].pdq_uncropped == hashes.pdq_uncropped
    assert _parse({"hashes": {**good, "pdq_uncropped": []}})[0].pdq_uncropped == ()
    one_short = list(hashes.pdq_uncropped[:-1])
    too_many = list(hashes.pdq_uncropped) * 50
    not_hex = ["z" * 64] * len(uncrop.HYPOTHESES)
    last_digit_not_hex = [*hashes.pdq_uncropped[:-1], hashes.pdq_uncropped[-1][:-1] + "g"]
    too_long = [hashes.pdq_uncropped[0] + "00"] * len(uncrop.HYPOTHESES)
    hostiles = (one_short, too_many, not_hex, last_digit_not_hex, too_long, "not a list", [1] * len(uncrop.HYPOTHESES))
    for hostile in hostiles:
        with pytest.raises(ValueError, match="malformed pdq_uncropped"):
            _parse({"hashes": {**good, "pdq_uncropped": hostile}})


def test_cropping_a_random_side_by_up_to_5_percent_is_mostly_found() -> None:
    # Not only the guesses' own fractions: cuts between them land near one of them.
    chooser = random.Random(7)
    found = 0
    trials = 24
    for seed in range(trials):
        original = make_photo(100 + seed, (800, 600))
        side = chooser.choice(("left", "right", "top", "bottom"))
        fraction = chooser.uniform(0.01, 0.05)
        copy = compute_hashes(jpeg(cut(original, **{side: fraction})))
        found += bool(verdicts([original_pdq(original)], copy))
    assert found >= trials * 3 // 4


def test_an_operator_can_turn_the_guesses_off_to_save_their_cpu() -> None:
    from bot.configmodel import ProcessingConfig
    from bot.hashing.pool import HashSandbox

    data = jpeg(make_photo(5, (400, 300)))
    assert ProcessingConfig().crop_guesses and len(compute_hashes(data).pdq_uncropped) == len(uncrop.HYPOTHESES)

    sandbox = HashSandbox.from_config(ProcessingConfig(crop_guesses=False))

    assert sandbox.settings.limits.crop_guesses is False
    off = compute_hashes(data, limits=sandbox.settings.limits)
    assert off.pdq_uncropped == () and off.pdq == compute_hashes(data).pdq


def test_a_smooth_images_cropped_copy_matches_its_signature_entry_through_a_guess() -> None:
    # An add-image list's low-frequency signature of a dim, smooth picture (PDQ quality ~10):
    # the copy's own signature moves with the cut; a guess's does not.
    from smooth_kit import dark_room

    original = dark_room(6)
    listed = compute_hashes(encode(original, "PNG"))
    assert (listed.pdq_quality or 100) < FULL_QUALITY and len(listed.lowfreq_uncropped) == len(uncrop.HYPOTHESES)
    entries = [HashEntry("lowfreq", listed.lowfreq[0], "csam")]
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")])
    copy = compute_hashes(jpeg(cut(original, left=0.05, top=0.025, bottom=0.025)))

    (verdict,) = classifier.match(copy).verdicts

    assert verdict.hash_type == "lowfreq" and verdict.details["signal"] == "lowfreq"
    assert verdict.details["crop"] == "5% cut from the left, 2.5% from the top, 2.5% from the bottom"
    assert "transform" not in verdict.details and verdict.distance <= 20
    assert classifier.match(replace(copy, lowfreq_uncropped=())).verdicts == ()
    assert "a cropped copy: matched when padded back as if 5% cut from the left" in describe_verdict(verdict)


def test_only_smooth_images_carry_signature_guesses_and_they_are_kept() -> None:
    from smooth_kit import dark_room

    textured = compute_hashes(jpeg(make_photo(3, (640, 480))))
    smooth = compute_hashes(encode(dark_room(2), "PNG"))
    assert textured.lowfreq_uncropped == () and len(smooth.lowfreq_uncropped) == len(uncrop.HYPOTHESES)

    back = hashes_from_columns(media_hash_columns(smooth).get)

    assert back is not None and back.lowfreq_uncropped == smooth.lowfreq_uncropped


def test_the_sandbox_parent_refuses_malformed_signature_guesses() -> None:
    from smooth_kit import dark_room

    hashes = compute_hashes(encode(dark_room(2), "PNG"))
    good = {"sha256": "x", "md5": None, "size": 1, "lowfreq_uncropped": list(hashes.lowfreq_uncropped)}
    assert _parse({"hashes": good})[0].lowfreq_uncropped == hashes.lowfreq_uncropped
    unnormalised = ["01" * 36] * len(uncrop.HYPOTHESES)
    for hostile in (list(hashes.lowfreq_uncropped[:-1]), unnormalised, ["zz" * 36] * len(uncrop.HYPOTHESES), "no"):
        with pytest.raises(ValueError, match="lowfreq"):
            _parse({"hashes": {**good, "lowfreq_uncropped": hostile}})

"""bot/hashing/border.py: the quick look at the four edge lines gives the box the full
scan gives, on images with and without borders."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bot.hashing.border import _fewest_near, _may_be_uniform, scanned_box, trim_box
from images import make_photo


def _bordered(seed: int) -> Image.Image:
    """A photo with bands of a random colour on a random subset of its sides (sometimes a
    single line, sometimes none), JPEG-compressed half of the time."""
    rng = np.random.default_rng(seed)
    photo = make_photo(seed, ((320, 240), (240, 320), (97, 61), (6, 5))[seed % 4])
    w, h = photo.size
    sides = rng.integers(0, 2, 4) * rng.integers(1, max(2, min(w, h) // 4), 4)
    if seed % 5 == 0:
        sides = np.array([1, 0, 0, 0])  # one uniform line, too thin to be a band
    left, top, right, bottom = (int(v) for v in sides)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    out = Image.new("RGB", (w + left + right, h + top + bottom), colour)
    out.paste(photo, (left, top))
    if seed % 2:
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=80)
        out = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return out


@pytest.mark.parametrize("seed", range(40))
def test_trim_box_equals_the_full_scan(seed: int) -> None:
    img = _bordered(seed)

    assert trim_box(img) == scanned_box(img)


@pytest.mark.parametrize("seed", range(40))
def test_trim_box_of_the_pixels_equals_that_of_the_image(seed: int) -> None:
    # The image's edge lines come out of Pillow as crops, the pixels' as slices.
    img = _bordered(seed)

    assert trim_box(np.asarray(img)) == trim_box(img)


def test_the_quick_look_answers_for_a_photo_without_border() -> None:
    img = make_photo(3, (320, 240))

    assert trim_box(img) == scanned_box(img) == (0, 0, 320, 240)


@pytest.mark.parametrize("seed", range(40))
def test_the_luma_gives_the_box_the_colours_give(seed: int) -> None:
    # The luma only rules edges out; when it cannot, the colours decide as before.
    img = _bordered(seed)

    assert trim_box(img, np.asarray(img.convert("F"))) == trim_box(img)


def test_the_luma_alone_answers_for_a_photo_without_border() -> None:
    img = make_photo(4, (320, 240))

    assert not _may_be_uniform(np.asarray(img.convert("F")))
    assert trim_box(img, np.asarray(img.convert("F"))) == (0, 0, 320, 240)


@pytest.mark.parametrize("noise", [0, 6, 12])
def test_an_edge_uniform_within_the_tolerance_is_not_ruled_out_by_its_luma(noise: int) -> None:
    # Each channel within +-12 of the colour, the worst case for the luma's span: every
    # pixel at one end of the tolerance or the other, on a uniform left column.
    # Half the pixels at 100 - noise, half at 100 + noise: the median colour is 100.
    rng = np.random.default_rng(noise)
    pixels = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    column = 100 + noise * np.where(np.arange(60) % 2, 1, -1)[:, None] * np.ones((60, 3), dtype=np.int64)
    pixels[:, :3] = column.astype(np.uint8)[:, None, :]
    img = Image.fromarray(pixels, "RGB")
    luma = np.asarray(img.convert("F"))

    assert _may_be_uniform(luma)
    assert trim_box(img, luma) == trim_box(img) == (3, 0, 80, 60)


def test_the_fewest_near_pixels_match_the_fraction_test() -> None:
    for n in range(1, 600):
        count = _fewest_near(n)
        assert count / n >= 0.9 and (count == 1 or (count - 1) / n < 0.9)

"""pHash computed with numpy (bot/hashing/phash.py) is imagehash's, bit for bit, of the
image box-reduced first (Pillow's reducing_gap=3), and near imagehash's of the image itself.

imagehash (and scipy under it) is a test dependency only: it is the reference here.
"""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from bot.hashing.phash import REDUCING_GAP, _small, phash
from images import make_photo


def reference(img: Image.Image) -> str:
    """imagehash.phash after the same box reduction: given a 32x32 image, imagehash's own
    resize is a copy, so its DCT and median decide every bit."""
    small = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return str(imagehash.phash(small))

SIZES = ((576, 432), (432, 576), (500, 375), (300, 200), (64, 48), (33, 31), (8, 8), (1, 5))


def _generated() -> list[Image.Image]:
    """Photo-like images of many sizes, their greyscale, mirrored and noisy versions."""
    images = []
    for seed in range(60):
        img = make_photo(seed, SIZES[seed % len(SIZES)])
        images.append(img)
        if seed % 3 == 0:
            images.append(img.convert("L"))
        if seed % 3 == 1:
            images.append(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        if seed % 3 == 2:
            rng = np.random.default_rng(seed)
            noise = rng.integers(0, 256, (img.height, img.width, 3), dtype=np.uint8)
            images.append(Image.fromarray(noise, "RGB"))
    return images


def _structured() -> dict[str, Image.Image]:
    """Images whose DCT has exact zeros, so that the median falls on a tie: flat, graded
    along one axis, mirror-symmetric, periodic."""
    rng = np.random.default_rng(7)
    half = rng.integers(0, 256, (60, 50), dtype=np.uint8)
    mirrored = np.hstack([half, half[:, ::-1]])
    ramp = np.add.outer(np.arange(80), np.zeros(100)).astype(np.uint8)
    return {
        "black": Image.new("RGB", (100, 80), (0, 0, 0)),
        "white": Image.new("RGB", (100, 80), (255, 255, 255)),
        "flat colour": Image.new("RGB", (64, 64), (128, 50, 30)),
        "vertical ramp": Image.fromarray(ramp, "L"),
        "horizontal ramp": Image.fromarray(np.ascontiguousarray(ramp.T), "L"),
        "mirrored left to right": Image.fromarray(mirrored, "L"),
        "mirrored upside down": Image.fromarray(np.vstack([half, half[::-1]]), "L"),
        "mirrored both ways": Image.fromarray(np.vstack([mirrored, mirrored[::-1]]), "L"),
        "checkerboard": Image.fromarray((np.indices((64, 64)).sum(0) // 8 % 2 * 255).astype(np.uint8), "L"),
    }


def test_phash_equals_imagehash_on_generated_images() -> None:
    images = _generated()

    differing = [i for i, img in enumerate(images) if phash(img) != reference(img)]

    assert len(images) == 120
    assert differing == []


def test_phash_stays_near_imagehash_of_the_image_itself() -> None:
    photos = [make_photo(seed, SIZES[seed % 3]) for seed in range(60)]  # the larger sizes

    distances = [(int(phash(img), 16) ^ int(str(imagehash.phash(img)), 16)).bit_count() for img in photos]

    # pHash lists match within 8 bits (bot/lists/loaded.py): the box step costs few of them.
    assert np.mean(distances) <= 1.5
    assert max(distances) <= 6


@pytest.mark.parametrize("name", list(_structured()))
def test_phash_equals_imagehash_where_coefficients_tie(name: str) -> None:
    img = _structured()[name]

    assert phash(img) == reference(img)


def test_phash_is_sixteen_hex_digits_of_the_8x8_bits() -> None:
    h = phash(make_photo(3, (200, 150)))

    assert len(h) == 16 and int(h, 16) >= 0


def _sizes_around_the_boundaries() -> list[tuple[int, int]]:
    """Sides on both sides of 32 (enlarged or reduced), of each box-reduction factor (96,
    192, 288...), and shapes on both sides of Pillow's choice of its vertical pass first
    (height - 32 over twice width - 32), plus random ones."""
    sides = (1, 5, 31, 32, 33, 95, 96, 97, 191, 192, 193, 287, 288, 289, 432, 577, 1153)
    sizes = [(w, h) for w in sides for h in sides]
    sizes += [(w, 2 * w - 32 + d) for w in (33, 40, 64, 100, 200) for d in (-1, 0, 1)]
    rng = np.random.default_rng(5)
    sizes += [(int(w), int(h)) for w, h in rng.integers(1, 1300, (200, 2))]
    return sizes


def test_the_32x32_pixels_are_pillows_lanczos_resize_for_every_shape() -> None:
    # bot.hashing.phash resamples in numpy, as Pillow does in integers: not a grey level off.
    rng = np.random.default_rng(11)
    differing = []
    for width, height in _sizes_around_the_boundaries():
        grey = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
        pillow = grey.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        if not np.array_equal(_small(grey), np.asarray(pillow, dtype=np.float64)):
            differing.append((width, height))

    assert differing == []

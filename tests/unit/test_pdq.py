"""bot.hashing.pdq: PDQ computed with numpy is the reference PDQ, but for rare rounding.

The reference is pdqhash, the Python binding of Facebook's C++ implementation. Every image
here is generated: photo-like drawings at many sizes and aspect ratios, random noise,
two-dimensional gradients, and images too small to hash.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pdqhash
import pytest
from PIL import Image

# tests/ is on sys.path because tests/conftest.py lives there.
from images import make_photo

from bot.hashing import hamming, media
from bot.hashing.pdq import DIHEDRAL, dihedral_hashes, downsample, exact_dihedral_hashes, luma, pdq_hash

ZERO_HASH = "0" * 64


def reference(rgb: np.ndarray) -> tuple[list[str], int]:
    """pdqhash's eight dihedral hashes of `rgb` in its hex form, and its quality."""
    bits, quality = pdqhash.compute_dihedral(np.ascontiguousarray(rgb, dtype=np.uint8))
    return [np.packbits(b.astype(np.uint8)).tobytes().hex() for b in bits], int(quality)


def noise(seed: int, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A smooth two-dimensional ramp between random colours, with a random bump."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    cx, cy = rng.uniform(0, 1, 2)
    bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 20)
    t = (ramp + bump)[..., None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return (c0 * (1 - t) + c1 * t).astype(np.uint8)


def photo(seed: int, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(make_photo(seed, size))


# width x height: square, landscape, portrait, panoramas, strips, odd and prime sides,
# sizes around the 128-pixel steps of the blur window, and the reduced decodes' sizes.
SIZES = [
    (5, 5), (7, 300), (300, 7), (64, 64), (65, 1000), (1000, 65), (100, 100), (127, 129),
    (128, 128), (129, 257), (211, 97), (320, 240), (240, 320), (384, 288), (500, 375),
    (576, 432), (432, 576), (512, 512), (640, 360), (767, 511), (800, 200), (999, 1001),
    (1280, 720),
]
GENERATORS: dict[str, Callable[[int, tuple[int, int]], np.ndarray]] = {
    "photo": photo,
    "noise": noise,
    "gradient": gradient,
}


@cache
def corpus() -> list[tuple[str, np.ndarray]]:
    return [
        (f"{kind} {w}x{h} seed {seed}", make(seed, (w, h)))
        for kind, make in GENERATORS.items()
        for i, (w, h) in enumerate(SIZES)
        for seed in (i, i + 100)
    ]


@cache
def comparison() -> list[tuple[str, list[int], int, int]]:
    """Per image: name, the bits each dihedral hash differs by, both qualities."""
    rows = []
    for name, rgb in corpus():
        expected, expected_quality = reference(rgb)
        hashes, quality = dihedral_hashes(luma(rgb))
        rows.append((name, [hamming(a, b) for a, b in zip(expected, hashes)],
                     expected_quality, quality))
    return rows


def test_nearly_every_hash_is_the_references_bit_for_bit() -> None:
    distances = [d for _, ds, _, _ in comparison() for d in ds]

    assert len(distances) == 8 * len(corpus())
    assert sum(d == 0 for d in distances) / len(distances) >= 0.98


def test_a_hash_that_differs_differs_by_a_rounding_bit_or_two() -> None:
    # A coefficient within rounding of the median lands on the other side of it.
    for name, distances, _, _ in comparison():
        assert max(distances) <= 2, name


def test_the_quality_is_the_references_within_1() -> None:
    for name, _, expected, quality in comparison():
        assert abs(quality - expected) <= 1, name


def test_the_single_hash_is_the_first_dihedral_one() -> None:
    for name, rgb in corpus()[::7]:
        hashes, quality = dihedral_hashes(luma(rgb))
        assert pdq_hash(luma(rgb)) == (hashes[0], quality), name


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (4, 4), (4, 100), (100, 4)])
def test_an_image_under_5_pixels_on_a_side_gets_the_zero_hash_and_quality_0(
    size: tuple[int, int]
) -> None:
    rgb = noise(0, size)

    assert dihedral_hashes(luma(rgb)) == ((ZERO_HASH,) * 8, 0)
    assert pdq_hash(luma(rgb)) == (ZERO_HASH, 0)
    assert reference(rgb) == ([ZERO_HASH] * 8, 0)


def test_a_flat_image_has_quality_0_and_the_zero_hash() -> None:
    # Every DCT coefficient is 0, so no bit is above the median. The reference's running
    # sums leave rounding noise in the coefficients instead, and its bits follow that
    # noise: only the quality is comparable. Quality 0 keeps such hashes from matching.
    for colour in (0, 37, 128, 255):
        rgb = np.full((300, 200, 3), colour, np.uint8)
        assert dihedral_hashes(luma(rgb)) == ((ZERO_HASH,) * 8, 0)
        assert reference(rgb)[1] == 0


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda a: a,
    "rotate90": lambda a: np.rot90(a, 1),  # a quarter turn anticlockwise
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, -1),
    "flip_x": np.flipud,
    "flip_y": np.fliplr,
    "flip_plus1": lambda a: a.transpose(1, 0, 2),
    "flip_minus1": lambda a: np.rot90(a, 2).transpose(1, 0, 2),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_dihedral_hash_is_the_hash_of_the_image_so_transformed(seed: int) -> None:
    # Exactly so at 64x64, where PDQ neither blurs nor resamples.
    rgb = photo(seed, (64, 64))
    hashes, _ = dihedral_hashes(luma(rgb))

    assert list(TRANSFORMS) == list(DIHEDRAL)
    for name, transform in TRANSFORMS.items():
        turned = np.ascontiguousarray(transform(rgb))
        assert pdq_hash(luma(turned))[0] == hashes[DIHEDRAL.index(name)], name


def test_a_larger_transformed_image_is_a_few_bits_from_its_dihedral_hash() -> None:
    rgb = photo(4, (640, 480))
    hashes, _ = dihedral_hashes(luma(rgb))

    for name, transform in TRANSFORMS.items():
        turned = np.ascontiguousarray(transform(rgb))
        assert hamming(pdq_hash(luma(turned))[0], hashes[DIHEDRAL.index(name)]) <= 16, name


def test_luma_is_pillows_float_conversion_for_every_colour() -> None:
    # bot.hashing takes PDQ's luma from Pillow's "F" conversion: it must be pdqhash's.
    green, blue = np.mgrid[0:256, 0:256].astype(np.uint8)
    for red in range(256):
        rgb = np.stack([np.full_like(green, red), green, blue], axis=-1)
        pillow = np.asarray(Image.fromarray(rgb, "RGB").convert("F"))
        assert np.array_equal(pillow, luma(rgb)), red


def test_the_64x64_buffer_is_the_blurred_image_sampled_at_pixel_centres() -> None:
    # One bright pixel at the centre of a 640-pixel side (window 5) spreads over the
    # 9-pixel tent of two box passes: only the samples that fall inside it see it.
    image = np.zeros((640, 640), np.float32)
    image[325, 325] = 1.0  # sample 32 is pixel int(32.5 * 10) = 325

    small = downsample(image)

    assert small.shape == (64, 64)
    assert small[32, 32] == pytest.approx((5 / 25) ** 2)  # the tent's peak, both ways
    assert np.count_nonzero(small) == 1


def box_pass_like_the_reference(vectors: np.ndarray, window: int) -> np.ndarray:
    """box1DFloat (downscaling.cpp) along axis 0, its four phases as the C++ has them."""
    half = (window + 2) // 2
    out = np.empty_like(vectors)
    total, size, right, left, at = np.zeros_like(vectors[0]), 0, 0, 0, 0
    for _ in range(half - 1):  # accumulate, no output yet
        total, size, right = total + vectors[right], size + 1, right + 1
    for _ in range(window - half + 1):  # growing window
        total, size, right = total + vectors[right], size + 1, right + 1
        out[at], at = total / size, at + 1
    for _ in range(len(vectors) - window):  # full window
        total, right, left = total + vectors[right] - vectors[left], right + 1, left + 1
        out[at], at = total / size, at + 1
    for _ in range(half - 1):  # shrinking window
        total, size, left = total - vectors[left], size - 1, left + 1
        out[at], at = total / size, at + 1
    return out


def downsample_like_the_reference(image: np.ndarray) -> np.ndarray:
    """jaroszFilterFloat (two passes along rows, then columns) and decimateFloat."""
    rows, cols = image.shape
    blurred = image.astype(np.float64)
    for _ in range(2):
        blurred = box_pass_like_the_reference(blurred.T, (cols + 127) // 128).T
        blurred = box_pass_like_the_reference(blurred, (rows + 127) // 128)
    picked_rows = [int((i + 0.5) * rows / 64) for i in range(64)]
    picked_cols = [int((j + 0.5) * cols / 64) for j in range(64)]
    return blurred[np.ix_(picked_rows, picked_cols)]


@pytest.mark.parametrize(
    "size", [(5, 5), (64, 64), (65, 300), (129, 257), (300, 7), (391, 400), (1100, 130)]
)
def test_the_64x64_buffer_is_the_references_blur_and_decimation(size: tuple[int, int]) -> None:
    rows, cols = size
    image = np.random.default_rng(rows).uniform(0, 255, size).astype(np.float32)

    np.testing.assert_allclose(
        downsample(image), downsample_like_the_reference(image), rtol=1e-5, atol=1e-3
    )


def test_luma_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError):
        dihedral_hashes(np.zeros((10, 10, 3), np.float32))


# Each DIHEDRAL transform as numpy does it to a two-dimensional luma array.
LUMA_TRANSFORMS = {
    "original": lambda a: a,
    "rotate90": np.rot90,
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, -1),
    "flip_x": np.flipud,
    "flip_y": np.fliplr,
    "flip_plus1": lambda a: a.T,
    "flip_minus1": lambda a: np.rot90(a, 2).T,
}


@pytest.mark.parametrize("shape", [(300, 437), (64, 64), (97, 1000), (5, 7)])
def test_exact_dihedral_hashes_are_the_hashes_of_the_transformed_pixels(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    pixels = np.cumsum(np.cumsum(rng.normal(0, 1, shape), axis=0), axis=1).astype(np.float32)
    hashes, quality = exact_dihedral_hashes(pixels)
    assert (hashes[0], quality) == pdq_hash(pixels)
    for name, got in zip(DIHEDRAL, hashes):
        assert got == pdq_hash(np.ascontiguousarray(LUMA_TRANSFORMS[name](pixels)))[0], name


def test_exact_dihedral_hashes_differ_from_the_sign_changed_ones_where_sampling_is_asymmetric() -> None:
    # Why they exist: on a textured image whose side is not a multiple of 64 the
    # reference's sign changes miss the mirrored pixels' hash by many bits.
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0, 255, (300, 437)).astype(np.float32)
    exact, _ = exact_dihedral_hashes(pixels)
    derived, _ = dihedral_hashes(pixels)
    mirrored = DIHEDRAL.index("flip_y")
    assert (int(exact[mirrored], 16) ^ int(derived[mirrored], 16)).bit_count() > 31


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (577, 431), (64, 64)])
def test_hashings_luma_is_the_float_conversion_written_in_place(size: tuple[int, int]) -> None:
    # bot.hashing.media converts straight into the array's memory: the same values as
    # numpy's copy of Pillow's "F" image, in an array of its own.
    rgb = Image.fromarray(np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))

    luma_of_image = media._luma(rgb)

    assert luma_of_image.dtype == np.float32 and luma_of_image.flags.owndata
    assert np.array_equal(luma_of_image, np.asarray(rgb.convert("F")))

"""bot.hashing: what a hash of media bytes promises.

Every image here is generated (tests/images.py); "the known image" stands for an entry of
a hash list, and its altered copies for what someone might post instead.
"""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from functools import cache
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageEnhance, ImageOps

# tests/ is on sys.path because tests/conftest.py lives there.
from images import encode, make_photo, make_png_bomb, truncated

from bot.hashing import MATRIX_IMAGE_FORMATS, MediaLimits, compute_hashes, crop_hashes, hamming, named_crop_hashes, trim_uniform_border
from bot.hashing import media
from bot.model import Hashes

PDQ_MATCH = 31  # the distance at which PDQ hashes are taken to show the same image

Transform = Callable[[Image.Image], bytes]


@cache
def photo(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    return make_photo(seed, size)


@cache
def known() -> Hashes:
    return compute_hashes(encode(photo(1), "PNG"))


def with_border(img: Image.Image, fraction: float, colour: str) -> Image.Image:
    w, h = img.size
    dw, dh = round(w * fraction), round(h * fraction)
    out = Image.new("RGB", (w + 2 * dw, h + 2 * dh), colour)
    out.paste(img, (dw, dh))
    return out


def nearest(query: Hashes, listed: str) -> int:
    return min(hamming(listed, q) for q in query.pdq_queries)


# --- altered copies of the known image are found -------------------------------------

COPIES: dict[str, Transform] = {
    "JPEG quality 50": lambda im: encode(im, "JPEG", quality=50),
    "half size": lambda im: encode(im.resize((400, 300), Image.Resampling.LANCZOS), "PNG"),
    "mirrored": lambda im: encode(ImageOps.mirror(im), "PNG"),
    "flipped upside down": lambda im: encode(ImageOps.flip(im), "JPEG", quality=85),
    "rotated 90 degrees": lambda im: encode(im.rotate(90, expand=True), "JPEG", quality=85),
    "10% white border": lambda im: encode(with_border(im, 0.1, "white"), "JPEG", quality=80),
    "20% black border": lambda im: encode(with_border(im, 0.2, "black"), "PNG"),
    "mirrored with white border": lambda im: encode(
        with_border(ImageOps.mirror(im), 0.1, "white"), "JPEG", quality=80
    ),
    "greyscale": lambda im: encode(im.convert("L"), "JPEG", quality=80),
    "WebP": lambda im: encode(im, "WEBP", quality=75),
    "GIF (256 colours)": lambda im: encode(im, "GIF"),
}


@pytest.mark.parametrize("name", COPIES)
def test_altered_copy_matches_the_known_image(name: str) -> None:
    copy = compute_hashes(COPIES[name](photo(1)))

    assert copy.perceptual_error is None
    assert nearest(copy, known().pdq) <= PDQ_MATCH


@pytest.mark.parametrize("name", ["mirrored", "rotated 90 degrees", "10% white border"])
def test_copies_that_only_the_extra_queries_find(name: str) -> None:
    # Why pdq_queries exist: the plain hash of these copies is far from the original's.
    copy = compute_hashes(COPIES[name](photo(1)))

    assert hamming(copy.pdq, known().pdq) > PDQ_MATCH
    assert nearest(copy, known().pdq) <= PDQ_MATCH


@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6, 7])
def test_unrelated_images_do_not_match(seed: int) -> None:
    img = photo(seed, (400, 300))
    for data in (encode(img, "JPEG", quality=85), encode(with_border(img, 0.1, "white"), "PNG")):
        other = compute_hashes(data)
        assert other.pdq_quality is not None and other.pdq_quality >= 50
        assert nearest(other, known().pdq) > PDQ_MATCH


def test_reduced_decode_stays_close_to_the_full_resolution_hash() -> None:
    # Hash lists are built by other tools from full-size images.
    img = photo(8, (1280, 960))
    bits, _ = pdqhash.compute(np.asarray(img))
    full = np.packbits(bits.astype(np.uint8)).tobytes().hex()

    for data in (encode(img, "JPEG", quality=90), encode(img, "PNG", compress_level=1)):
        assert hamming(compute_hashes(data).pdq, full) <= 12


# --- what is returned -----------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [b"", b"hello", bytes(range(256)) * 10, encode(Image.new("RGB", (64, 48), "red"), "PNG")],
    ids=["empty", "text", "binary", "png"],
)
def test_cryptographic_hashes_are_of_the_whole_bytes(data: bytes) -> None:
    hashes = compute_hashes(data)

    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.md5 == hashlib.md5(data).hexdigest()
    assert hashes.size == len(data)


def test_an_image_gets_every_hash_and_its_header_size() -> None:
    img = photo(9, (1152, 864))  # 1 MP, decoded at half size
    hashes = compute_hashes(encode(img, "JPEG", quality=90))

    assert (hashes.width, hashes.height, hashes.image_format) == (1152, 864, "JPEG")
    assert hashes.perceptual_error is None
    assert hashes.pdq is not None and len(hashes.pdq) == 64
    assert hashes.pdq_quality is not None and hashes.pdq_quality >= 50
    assert hashes.phash is not None and len(hashes.phash) == 16
    assert hashes.pdq_queries[0] == hashes.pdq  # the plain hash comes first
    assert len(set(hashes.pdq_queries)) == len(hashes.pdq_queries) == 8  # no border: 8 transforms
    assert all(len(q) == 64 and int(q, 16) >= 0 for q in hashes.pdq_queries)


def test_a_bordered_image_also_queries_the_trimmed_transforms() -> None:
    hashes = compute_hashes(COPIES["10% white border"](photo(1)))

    assert 8 < len(hashes.pdq_queries) <= 16
    assert len(set(hashes.pdq_queries)) == len(hashes.pdq_queries)


def test_hashes_hold_no_image_bytes() -> None:
    hashes = compute_hashes(encode(photo(9, (1152, 864)), "JPEG", quality=90))

    for f in fields(hashes):
        value = getattr(hashes, f.name)
        assert value is None or isinstance(value, (str, int, tuple)), f.name
        items = value if isinstance(value, tuple) else (value,)
        assert all(isinstance(v, (str, int)) and len(str(v)) <= 200 for v in items if v is not None)
    # 8 turned/flipped PDQs and 44 crop guesses of 64 hex digits, the guesses' bit tiers of 128
    # each: ~10 KB of text for 150 KB of JPEG.
    assert len(repr(hashes)) < 11_000


def test_a_flat_image_keeps_its_low_quality_hash() -> None:
    hashes = compute_hashes(encode(Image.new("RGB", (300, 200), (40, 90, 200)), "PNG"))

    assert hashes.pdq is not None
    assert hashes.pdq_quality is not None and hashes.pdq_quality < 50


def test_an_animation_is_hashed_by_its_first_frame() -> None:
    frames = [photo(1).resize((240, 180)), photo(2, (240, 180)), photo(3, (240, 180))]
    for fmt in ("GIF", "WEBP", "PNG"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        assert nearest(compute_hashes(data), known().pdq) <= PDQ_MATCH, fmt


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    stored = photo(1).transpose(Image.Transpose.ROTATE_90)

    hashes = compute_hashes(encode(stored, "JPEG", quality=90, exif=exif))

    assert (hashes.width, hashes.height) == (600, 800)  # as stored in the header
    assert hamming(hashes.pdq, known().pdq) <= PDQ_MATCH  # the plain hash, upright


def test_transparent_pixels_are_hashed_as_seen_not_as_stored() -> None:
    # Random colours under fully transparent pixels are invisible; hash the visible image.
    rgba = np.asarray(photo(1).convert("RGBA")).copy()
    rgba[:, :400, :3] = np.random.default_rng(0).integers(0, 256, (600, 400, 3))
    rgba[:, :400, 3] = 0
    seen = np.asarray(photo(1)).copy()
    seen[:, :400] = 255

    hashes = compute_hashes(encode(Image.fromarray(rgba, "RGBA"), "PNG"))

    assert hashes.pdq == compute_hashes(encode(Image.fromarray(seen), "PNG")).pdq


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = np.asarray(photo(1).convert("L")).astype(np.uint16) * 257
    hashes = compute_hashes(encode(Image.fromarray(grey), "PNG"))

    assert hamming(hashes.pdq, known().pdq) <= PDQ_MATCH


# --- hostile or broken input: reasons, never exceptions --------------------------------

@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello", "not an image (unrecognised format)"),
        (b"", "not an image (unrecognised format)"),
        (b"%PDF-1.4\n" + bytes(200), "not an image (unrecognised format)"),
        (truncated(encode(photo(1), "PNG")), "truncated or corrupt image: "),
        (truncated(encode(photo(1), "JPEG")), "truncated or corrupt image: "),
        (encode(photo(1), "JPEG")[:300], "truncated or corrupt image: "),
        (b"\x89PNG\r\n\x1a\n", "truncated or corrupt image: "),
        (b"GIF89a" + bytes(range(256)) * 4, "truncated or corrupt image: "),
        (encode(Image.new("RGB", (8, 8)), "EPS"), "unsupported image format EPS"),
    ],
    ids=["text", "empty", "pdf", "half-png", "half-jpeg", "jpeg-header", "png-signature",
         "gif-garbage", "eps"],
)
def test_bytes_without_perceptual_hashes_say_why(data: bytes, reason: str) -> None:
    hashes = compute_hashes(data)

    assert hashes.perceptual_error is not None and hashes.perceptual_error.startswith(reason)
    perceptual = (hashes.pdq, hashes.pdq_quality, hashes.phash, hashes.pdq_queries)
    assert perceptual == (None, None, None, ())
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()


def test_random_bytes_never_raise() -> None:
    rng = np.random.default_rng(0)
    valid = encode(photo(1, (800, 600)).resize((160, 120)), "PNG")
    for i in range(200):
        data = bytearray(valid)
        for pos in rng.integers(8, len(data), int(rng.integers(1, 20))):
            data[pos] = int(rng.integers(0, 256))
        hashes = compute_hashes(bytes(data))
        assert (hashes.pdq is None) == (hashes.perceptual_error is not None), i


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = make_png_bomb(50_000, 50_000)
    assert len(bomb) < 1_000_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    started = time.perf_counter()
    hashes = compute_hashes(bomb)
    elapsed = time.perf_counter() - started

    assert hashes.perceptual_error == (
        "decompression bomb: 50000x50000 = 2500000000 pixels exceeds the limit of 64000000"
    )
    assert (hashes.width, hashes.height, hashes.image_format) == (50_000, 50_000, "PNG")
    assert hashes.pdq is None
    assert elapsed < 2  # header only: decoding would take minutes, or fail for memory
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100 * 1024


@pytest.mark.parametrize(
    ("max_pixels", "refused"), [(640 * 480 - 1, True), (640 * 480, False)]
)
def test_the_pixel_limit_is_the_callers(max_pixels: int, refused: bool) -> None:
    data = encode(Image.new("L", (640, 480), 128), "PNG")

    hashes = compute_hashes(data, max_pixels=max_pixels)

    assert (hashes.perceptual_error is not None) == refused
    assert (hashes.pdq is None) == refused


def test_formats_decoded_in_python_get_a_smaller_limit() -> None:
    # QOI is decoded by Pillow in pure Python, ~1-2 s per megapixel. (Not a format Matrix
    # clients send, so it is accepted here only because this test asks for it.)
    with_qoi = MediaLimits(formats=MATRIX_IMAGE_FORMATS | {"QOI"})
    small = compute_hashes(encode(photo(1).resize((240, 180)), "QOI"), limits=with_qoi)
    # The header is all the check reads: 1200x900, 3 channels, then the end marker.
    large = compute_hashes(b"qoif" + struct.pack(">IIBB", 1200, 900, 3, 0) + bytes(7) + b"\x01", limits=with_qoi)

    assert nearest(small, known().pdq) <= PDQ_MATCH
    assert large.perceptual_error is not None
    assert large.perceptual_error.startswith("image too large for its slow decoder (qoi)")


# --- central crops -------------------------------------------------------------------

def centre_crop(img: Image.Image, fraction: float) -> Image.Image:
    """The centred `fraction` x width by `fraction` x height region of `img`."""
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def test_crop_hashes_gives_one_hash_per_fraction_in_order() -> None:
    data = encode(photo(1), "PNG")

    crops = crop_hashes(data, (1.0, 0.95, 0.9))

    assert len(crops) == 3 and all(len(c) == 64 for c in crops)
    assert crops[0] == compute_hashes(data).pdq  # the whole image, decoded the same way
    assert crop_hashes(data, (0.9, 0.95)) == (crops[2], crops[1])
    assert crop_hashes(data, ()) == ()


def test_a_cropped_copy_is_near_the_hash_of_the_same_crop_and_far_from_the_whole() -> None:
    # Why the crops are worth listing: PDQ of the whole image does not survive a 5% crop.
    for seed in (1, 2, 3):
        data = encode(photo(seed), "PNG")
        [whole, crop] = crop_hashes(data, (1.0, 0.95))
        copy = compute_hashes(encode(centre_crop(photo(seed), 0.95), "JPEG", quality=85))

        assert nearest(copy, crop) <= 16, seed
        assert nearest(copy, whole) > PDQ_MATCH, seed


def test_crop_hashes_of_a_transformed_copy_are_reached_through_its_queries() -> None:
    # One hash per crop is enough: the posted copy's queries undo rotations and flips.
    [crop] = crop_hashes(encode(photo(1), "PNG"), (0.95,))
    copy = ImageOps.mirror(centre_crop(photo(1), 0.95)).rotate(90, expand=True)

    assert nearest(compute_hashes(encode(copy, "JPEG", quality=85)), crop) <= PDQ_MATCH


def test_crops_of_low_quality_are_left_out() -> None:
    # A flat centre says nothing about the image; its hash would match other flat images.
    framed = with_border(Image.new("RGB", (400, 300), (90, 140, 60)), 0.02, "black")
    data = encode(framed, "PNG")

    assert crop_hashes(data, (0.9,)) == ()
    assert crop_hashes(data, (0.9,), min_quality=0) != ()


def high_key(seed: int) -> Image.Image:
    """A bright photo (mean luma ~200): brightening it by 30% clips much of it to white."""
    pixels = np.asarray(photo(seed), dtype=np.float32)
    return Image.fromarray(np.clip(pixels * 0.5 + 140, 0, 255).astype(np.uint8))


def test_a_brightened_copy_is_near_the_brightened_hash_and_far_from_the_original() -> None:
    # Why a brightened hash is worth listing: clipped highlights go flat, and PDQ moves.
    data = encode(high_key(4), "PNG")
    whole, brightened = crop_hashes(data, (1.0,), gains=(1.3,))
    copy = compute_hashes(encode(ImageEnhance.Brightness(high_key(4)).enhance(1.3), "JPEG", quality=85))

    assert nearest(copy, whole) > PDQ_MATCH
    assert nearest(copy, brightened) <= 8


def test_brightened_hashes_come_after_the_crops_and_gains_must_brighten() -> None:
    data = encode(high_key(4), "PNG")

    both = crop_hashes(data, (0.95,), gains=(1.3,))

    assert both == crop_hashes(data, (0.95,)) + crop_hashes(data, (), gains=(1.3,))
    for gain in (1.0, 0.7, 4.5):
        with pytest.raises(ValueError):
            crop_hashes(data, (0.95,), gains=(gain,))


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", truncated(encode(photo(1), "PNG")), make_png_bomb(50_000, 50_000)],
    ids=["empty", "text", "truncated", "bomb"],
)
def test_crop_hashes_of_bytes_without_a_perceptual_hash_is_empty(data: bytes) -> None:
    started = time.perf_counter()
    assert crop_hashes(data, (0.95, 0.9)) == ()
    assert time.perf_counter() - started < 2


def test_crop_hashes_respects_the_pixel_limit() -> None:
    data = encode(photo(1, (400, 300)), "PNG")

    assert crop_hashes(data, (0.95,), max_pixels=400 * 300 - 1) == ()
    assert len(crop_hashes(data, (0.95,), max_pixels=400 * 300)) == 1


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.01])
def test_crop_fractions_outside_0_1_are_refused(fraction: float) -> None:
    with pytest.raises(ValueError):
        crop_hashes(encode(photo(1), "PNG"), (0.95, fraction))


@pytest.mark.parametrize("crop", [(0.95, 1.2, 0.5), (0.95, 0.5, -0.1), (1.0, 0.0, 0.5, 0.5), (0.9, 0.9, 0.5, 2.0)])
def test_crop_anchors_outside_0_1_are_refused(crop: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        crop_hashes(encode(photo(1), "PNG"), (crop,))  # type: ignore[arg-type]


def test_an_anchored_crop_is_pdq_of_that_region_of_the_decoded_image() -> None:
    # (keep, across, down): the cut split across : 1 - across between left and right, and
    # down : 1 - down between top and bottom; (keep_x, keep_y, across, down) for unequal sides.
    img = photo(2, (400, 300))
    data = encode(img, "PNG")
    cases = {
        (0.95, 0.0, 0.0): ((0, 0, 380, 285), "crop to 95%, top left"),
        (0.95, 1.0, 1.0): ((20, 15, 400, 300), "crop to 95%, bottom right"),
        (0.95, 0.5, 0.5): ((10, 7, 390, 292), "crop to 95%, centred"),
        (1.0, 0.95, 0.5, 1.0): ((0, 15, 400, 300), "crop to 95% of the height, bottom"),
        (0.9, 1.0, 0.0, 0.5): ((0, 0, 360, 300), "crop to 90% of the width, left"),
    }
    for crop, (box, name) in cases.items():
        [(hashed, what)] = named_crop_hashes(data, (crop,))
        assert hashed == compute_hashes(encode(img.crop(box), "PNG")).pdq, crop
        assert what == name
    assert named_crop_hashes(data, (0.95,)) == named_crop_hashes(data, ((0.95, 0.5, 0.5),))


# --- warm_up -------------------------------------------------------------------------

def test_hashing_imports_neither_imagehash_nor_scipys_fft() -> None:
    # pHash is computed with numpy (bot/hashing/phash.py): imagehash and the scipy.fftpack it
    # imports on its first pHash (~0.8 s) are not loaded by the worker's modules nor by a
    # hash. scipy.sparse is (the crop guesses' banded products, bot/hashing/uncrop.py), once,
    # in the fork server, before the first job.
    # A fresh interpreter: this one has imported imagehash for other tests.
    script = (
        "import sys\n"
        "import bot.hashing.worker\n"
        "from bot.hashing import warm_up\n"
        "warm_up()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'imagehash' or m.startswith('scipy.fft')))\n"
        "print('scipy.sparse' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, check=True, timeout=60, cwd=Path(__file__).parents[2],
    )

    assert result.stdout.split() == ["[]", "True"]


# --- hamming --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("00", "00", 0),
        ("00", "01", 1),
        ("0f", "f0", 8),
        ("0" * 64, "f" * 64, 256),
        ("ABCD", "abcd", 0),
    ],
)
def test_hamming_counts_differing_bits(a: str, b: str, distance: int) -> None:
    assert hamming(a, b) == distance


@pytest.mark.parametrize(("a", "b"), [("00", "000"), ("zz", "00")])
def test_hamming_rejects_mismatched_or_non_hex(a: str, b: str) -> None:
    with pytest.raises(ValueError):
        hamming(a, b)


# --- border trimming ------------------------------------------------------------------

def _jpeg_roundtrip(img: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(encode(img, "JPEG", quality=70))).convert("RGB")


@pytest.mark.parametrize(
    ("name", "make", "expected_size"),
    [
        ("10% white border", lambda: with_border(photo(1), 0.1, "white"), (800, 600)),
        ("black letterbox", lambda: _letterbox(photo(1), 100), (800, 600)),
        ("black band on the left only", lambda: _pillarbox_left(photo(1), 120), (800, 600)),
        (
            "white frame wider at the bottom",
            lambda: _framed(photo(2), (30, 20, 30, 90), "white"),
            (800, 600),
        ),
        (
            "grey border through JPEG",
            lambda: _jpeg_roundtrip(with_border(photo(1), 0.1, "#808080")),
            (800, 600),
        ),
    ],
)
def test_uniform_borders_are_trimmed(
    name: str, make: Callable[[], Image.Image], expected_size: tuple[int, int]
) -> None:
    trimmed = trim_uniform_border(make())

    assert abs(trimmed.width - expected_size[0]) <= 4, name
    assert abs(trimmed.height - expected_size[1]) <= 4, name


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("photo without border", lambda: photo(1)),
        ("flat colour", lambda: Image.new("RGB", (300, 200), "white")),
        ("small picture on a wide border", lambda: with_border(photo(1, (200, 150)), 0.6, "white")),
        ("1-pixel frame", lambda: with_border(photo(1), 1 / 800, "white")),
    ],
)
def test_images_without_a_trimmable_border_are_returned_as_is(
    name: str, make: Callable[[], Image.Image]
) -> None:
    img = make()
    assert trim_uniform_border(img) is img, name


def _letterbox(img: Image.Image, band: int) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 2 * band), "black")
    out.paste(img, (0, band))
    return out


def _pillarbox_left(img: Image.Image, band: int) -> Image.Image:
    out = Image.new("RGB", (img.width + band, img.height), "black")
    out.paste(img, (band, 0))
    return out


def _framed(img: Image.Image, widths: tuple[int, int, int, int], colour: str) -> Image.Image:
    left, top, right, bottom = widths
    out = Image.new("RGB", (img.width + left + right, img.height + top + bottom), colour)
    out.paste(img, (left, top))
    return out


def animation(fmt: str, frames: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """An animation whose frames are distinct generated photos (seeds 100, 101, ...)."""
    images = [photo(100 + i, size) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format=fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_is_hashed_across_its_frames_not_only_the_first(fmt: str) -> None:
    hashes = compute_hashes(animation(fmt, 12))
    assert hashes.perceptual_error is None
    numbers = [number for number, _, _ in hashes.frame_pdqs]
    assert numbers == sorted(set(numbers)) and 0 not in numbers and len(numbers) == 7
    assert numbers[-1] == 11  # as far as the last frame
    for number, pdq, quality in hashes.frame_pdqs:
        still = compute_hashes(encode(photo(100 + number, (320, 240)), "PNG"))
        assert hamming(pdq, still.pdq or "") <= PDQ_MATCH  # GIF's palette moves it a little
        assert quality >= 50
    assert hamming(hashes.pdq or "", compute_hashes(encode(photo(100, (320, 240)), "PNG")).pdq or "") <= PDQ_MATCH


def test_a_still_image_has_no_frame_hashes() -> None:
    assert compute_hashes(encode(photo(1), "JPEG", quality=85)).frame_pdqs == ()
    assert compute_hashes(animation("GIF", 1)).frame_pdqs == ()


def test_frames_are_sampled_only_within_the_decoding_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reaching frame k decodes every frame before it: the budget caps how far sampling goes.
    monkeypatch.setattr(media, "ANIMATION_PIXEL_BUDGET", 10 * 320 * 240)
    numbers = [number for number, _, _ in compute_hashes(animation("GIF", 20)).frame_pdqs]
    assert max(numbers) == 9
    monkeypatch.setattr(media, "ANIMATION_MAX_FRAME_PIXELS", 320 * 240 - 1)
    assert compute_hashes(animation("GIF", 20)).frame_pdqs == ()


def test_a_truncated_animation_keeps_the_frames_before_the_damage() -> None:
    data = animation("GIF", 12)
    hashes = compute_hashes(data[: len(data) * 2 // 3])
    assert hashes.pdq is not None and hashes.perceptual_error is None
    assert 0 < len(hashes.frame_pdqs) < 7

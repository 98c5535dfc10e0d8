"""bot.hashing.limits and the hostile-media suite against compute_hashes (in process).

Every file in tests/hostile.py must finish quickly with the outcome it lists: hashed within
the limits, or a clear reason why not. The same files go through the real sandbox in
test_sandbox.py and, posted to a real Synapse, through the bot in tests/e2e.
"""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest
from hostile import HOSTILE, hostile_bytes, jpeg_with_scans
from images import encode, make_photo
from PIL import Image, ImageDraw

from bot.hashing import MATRIX_IMAGE_FORMATS, MediaLimits, compute_hashes
from bot.hashing.limits import bytes_per_pixel, decoded_bytes, identify, jpeg_scans


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_each_hostile_file_gets_its_outcome_quickly(hostile) -> None:  # type: ignore[no-untyped-def]
    data = hostile_bytes(hostile.name)

    started = time.process_time()
    hashes = compute_hashes(data)
    cpu = time.process_time() - started

    if hostile.expected is None:
        assert hashes.perceptual_error is None and hashes.pdq is not None
    else:
        assert hashes.perceptual_error is not None and hashes.perceptual_error.startswith(hostile.expected)
        assert hashes.pdq is None
    assert cpu < 5  # each is decoded reduced, or refused from its header


@pytest.mark.parametrize(
    ("fmt", "accepted"),
    [("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("WEBP", "WEBP"),
     ("TIFF", None), ("BMP", None), ("ICO", None), ("PCX", None), ("TGA", None), ("QOI", None)],
)
def test_only_the_formats_matrix_clients_send_are_opened(fmt: str, accepted: str | None) -> None:
    data = encode(make_photo(2, (64, 48)), fmt)

    found, refused = identify(data, MATRIX_IMAGE_FORMATS)

    assert found == accepted
    if accepted is None and fmt != "TGA":  # TGA has no signature: not even recognised
        assert refused == fmt


def test_the_format_comes_from_the_bytes_whatever_the_name_or_type_claims() -> None:
    # compute_hashes is given bytes only: a TIFF posted as image/png is still a TIFF.
    hashes = compute_hashes(encode(make_photo(2, (64, 48)), "TIFF"))
    assert hashes.perceptual_error == "unsupported image format TIFF"


@pytest.mark.parametrize(
    ("mode", "size"),
    [("1", 1), ("L", 1), ("P", 1), ("I;16", 2), ("I;16B", 2), ("I", 4), ("F", 4),
     ("LA", 4), ("RGB", 4), ("RGBA", 4), ("CMYK", 4)],
)
def test_bytes_per_pixel_are_what_pillow_stores(mode: str, size: int) -> None:
    assert bytes_per_pixel(mode) == size


def test_decoded_bytes_of_a_jpeg_are_counted_at_its_draft_scale() -> None:
    img = Image.open(io.BytesIO(encode(make_photo(3, (1600, 1200)), "JPEG", quality=85)))
    full = img.size
    assert decoded_bytes(img, full) == 1600 * 1200 * 4
    img.draft("RGB", (200, 150))
    assert decoded_bytes(img, full) == 200 * 150 * 4


def test_a_progressive_jpeg_also_counts_its_coefficient_buffers() -> None:
    img = Image.open(io.BytesIO(encode(make_photo(3, (1600, 1200)), "JPEG", quality=85, progressive=True)))
    img.draft("RGB", (200, 150))
    # 4:2:0: luma at full size, two chroma planes at a quarter; 2 bytes a coefficient.
    assert decoded_bytes(img, (1600, 1200)) == 200 * 150 * 4 + 2 * (1600 * 1200 + 2 * 800 * 600)


def test_the_decoded_byte_limit_is_the_callers() -> None:
    data = encode(Image.new("L", (640, 480), 100), "PNG")  # 1 byte a pixel

    assert compute_hashes(data, limits=MediaLimits(max_decoded_bytes=640 * 480)).perceptual_error is None
    refused = compute_hashes(data, limits=MediaLimits(max_decoded_bytes=640 * 480 - 1))
    assert refused.perceptual_error == (
        "decoded image too large: 640x480 L needs 307200 bytes to decode, over the limit of 307199"
    )
    assert (refused.width, refused.height) == (640, 480)


def test_jpeg_scans_are_counted_structurally() -> None:
    photo = make_photo(4, (320, 240))
    baseline = encode(photo, "JPEG", quality=85)
    progressive = encode(photo, "JPEG", quality=85, progressive=True)
    # An EXIF block full of SOS-looking bytes is skipped by its length.
    exif = Image.Exif()
    exif[0x010E] = "\xff\xda" * 200  # ImageDescription
    with_exif = encode(photo, "JPEG", quality=85, exif=exif)

    assert jpeg_scans(baseline) == 1
    assert 2 <= jpeg_scans(progressive) <= 12
    assert jpeg_scans(with_exif) == 1
    assert jpeg_scans(jpeg_with_scans(500)) == jpeg_scans(jpeg_with_scans(0)) + 500
    assert jpeg_scans(baseline[: len(baseline) // 2]) == 1  # truncated: what is there
    assert jpeg_scans(b"\xff\xd8") == 0


def test_a_baseline_jpeg_is_one_scan_for_libjpeg_whatever_follows_it() -> None:
    # Its first scan holds every component, so libjpeg decodes no other: a second SOS is an
    # error. Repeated scans after it cost nothing, and need not be counted.
    baseline = encode(make_photo(4, (640, 480)), "JPEG", quality=85)
    sos, eoi = baseline.index(b"\xff\xda"), baseline.rindex(b"\xff\xd9")
    repeated = baseline[:eoi] + baseline[sos:eoi] * 200 + baseline[eoi:]

    assert jpeg_scans(repeated) == 1
    hashes = compute_hashes(repeated, limits=MediaLimits(max_jpeg_scans=1))
    assert hashes.perceptual_error is not None and hashes.perceptual_error.startswith("truncated or corrupt image")


def test_the_scan_limit_is_the_callers() -> None:
    data = jpeg_with_scans(50, (256, 256))
    scans = jpeg_scans(data)

    assert compute_hashes(data, limits=MediaLimits(max_jpeg_scans=scans)).perceptual_error is None
    refused = compute_hashes(data, limits=MediaLimits(max_jpeg_scans=scans - 1))
    assert refused.perceptual_error == f"too many JPEG scans: {scans} exceeds the limit of {scans - 1}"


@pytest.mark.parametrize("mode", ["P", "I;16", "1", "PA"])
def test_strip_wise_conversion_gives_the_whole_images_result(mode: str) -> None:
    # Modes Image.reduce cannot average are converted a strip at a time: the hash must be
    # what converting the whole image first gives (bot.hashing.decode._reduce).
    from bot.hashing import decode

    photo = make_photo(5, (1700, 1300))
    if mode == "P":
        img = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "PA":
        img = photo.convert("P", palette=Image.Palette.ADAPTIVE).convert("PA")
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 201)  # mode I;16
        assert img.mode == "I;16"
    else:
        img = photo.convert("1")
    factor = 3
    whole = decode._to_rgb(img).reduce(factor)
    strips = decode._reduce(img, factor)
    assert strips.tobytes() == whole.tobytes()


def test_an_animation_of_thousands_of_frames_is_sampled_within_the_decoding_budget() -> None:
    frames = []
    for i in range(3000):
        frame = Image.new("P", (400, 400), 0)
        ImageDraw.Draw(frame).rectangle((i % 390, 0, i % 390 + 10, 400), fill=1)
        frames.append(frame)
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=20, optimize=False)

    started = time.process_time()
    hashes = compute_hashes(out.getvalue())
    cpu = time.process_time() - started

    # 64 MP of 400x400 frames: the first 400 are reachable, 7 of them sampled.
    assert [number for number, _, _ in hashes.frame_pdqs] == [57, 114, 171, 228, 285, 342, 399]
    assert cpu < 5


def test_a_long_video_is_sampled_for_its_first_minute_only() -> None:
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=2)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        base = np.asarray(make_photo(4, (64, 48)))
        for i in range(2 * 150):  # two and a half minutes
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, i, axis=1)), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())

    started = time.process_time()
    hashes = compute_hashes(out.getvalue())
    cpu = time.process_time() - started

    assert [second for second, _, _ in hashes.frame_pdqs] == list(range(60))
    assert cpu < 5

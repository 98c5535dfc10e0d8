"""Decoding an image for hashing: the reduced first frame, every limit checked first.

Pure: bytes in, a Pillow image out. What perceptual hashing (bot/hashing/media.py) and the
re-encoding for scanning services (bot/hashing/fitting.py) decode. The formats accepted and
the pixel, decoded-byte and JPEG-scan limits are passed explicitly (`MediaLimits`,
bot/hashing/limits.py) and checked from the header and the bytes before any pixel is
decoded; Pillow's own global settings are never changed.

The image is reduced (~512 px on the long side; JPEG is decoded straight at that scale with
DCT scaling), because PDQ downsamples to 64x64 anyway: a 12-megapixel JPEG costs tens of
milliseconds instead of half a second, and the hash stays within a few bits of the
full-resolution one. Other formats are decoded at full size, then reduced before any
conversion that widens the pixels (palette to RGBA, 16-bit to floating point); when a mode
must be converted first, it is converted a strip at a time.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile

from .limits import WEBP_DECODER_BYTES_PER_PIXEL, MediaLimits, decoded_bytes, identify, jpeg_scans, webp_size

# Long side, in pixels, of the image that perceptual hashes are computed from.
REDUCED_SIDE = 512

# Some formats or variants (QOI, plain PPM, RLE BMP, ...) are decoded by Pillow in pure
# Python at 1-2 microseconds a pixel: a smaller limit keeps them under ~2 s of CPU.
SLOW_DECODER_MAX_PIXELS = 1_000_000

# Pixels per strip when a mode is converted before reduction: 8 MB as float64.
_STRIP_PIXELS = 1 << 20

# Modes Image.reduce handles (it averages alpha correctly); others are converted first.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})
_DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

# The same table as PIL.ImageOps.exif_transpose.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112


class Unhashable(Exception):
    """The bytes have no perceptual hash; the message is the reason given to users."""


def open_image(data: bytes, limits: MediaLimits) -> ImageFile.ImageFile:
    """Identify the format from the bytes and read the header, without Pillow's global
    pixel limit (whose warning or error would come on its own terms: the caller's limits
    are applied explicitly). Only accepted formats are opened; see bot/hashing/limits.py."""
    formats = limits.formats
    fmt, refused = identify(data, formats)
    if fmt is None:
        if refused is not None:
            raise Unhashable(f"unsupported image format {refused}")
        raise Unhashable("not an image (unrecognised format)")
    if fmt == "WEBP":
        _check_webp(data, limits)
    try:
        with warnings.catch_warnings():
            # Some readers (WebP) apply Pillow's global pixel limit while opening; ours
            # comes next, and is lower by default.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.OPEN[fmt][0](io.BytesIO(data), "")
    except Image.DecompressionBombError as e:
        raise Unhashable(f"decompression bomb: {describe(e)}") from None
    except Exception as e:
        raise Unhashable(f"truncated or corrupt image: {fmt}: {describe(e)}") from None
    if img.format not in formats:  # the JPEG reader returning an MPO when MPO is not accepted
        img.close()
        raise Unhashable(f"unsupported image format {img.format}")
    return img


def _check_webp(data: bytes, limits: MediaLimits) -> None:
    """The pixel and decoded-byte limits, from a WebP's header: opening one allocates."""
    size = webp_size(data)
    if size is None:
        return
    width, height = size
    if width * height > limits.max_pixels:
        raise Unhashable(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {limits.max_pixels}"
        )
    needed = width * height * (4 + WEBP_DECODER_BYTES_PER_PIXEL)
    if needed > limits.max_decoded_bytes:
        raise Unhashable(
            f"decoded image too large: {width}x{height} WebP needs {needed} bytes to decode, "
            f"over the limit of {limits.max_decoded_bytes}"
        )


def decode(img: ImageFile.ImageFile, data: bytes, limits: MediaLimits) -> Image.Image:
    """The reduced RGB image perceptual hashes are computed from; Unhashable if refused.

    Every limit is checked from the header and the bytes before any pixel is decoded."""
    width, height = img.size
    max_pixels = limits.max_pixels
    if width <= 0 or height <= 0:
        raise Unhashable(f"corrupt image: size {width}x{height}")
    if width * height > max_pixels:
        raise Unhashable(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels}"
        )
    slow = _python_decoder(img)
    if slow is not None and width * height > min(max_pixels, SLOW_DECODER_MAX_PIXELS):
        raise Unhashable(
            f"image too large for its slow decoder ({slow}): {width}x{height} = "
            f"{width * height} pixels exceeds the limit of "
            f"{min(max_pixels, SLOW_DECODER_MAX_PIXELS)}"
        )
    if img.format in ("JPEG", "MPO"):
        scans = jpeg_scans(data)
        if scans > limits.max_jpeg_scans:
            raise Unhashable(f"too many JPEG scans: {scans} exceeds the limit of {limits.max_jpeg_scans}")
        # Decoded in colour, not to the luma plane alone (which would skip the chroma planes,
        # ~10% of the decode): 8-bit luma bands smooth gradients, and PDQ of wallpaper-like
        # images moved 10-15 bits further from their copies' (bench/bench_robustness.py),
        # and the border search needs colours to tell a pale panel from white padding.
        img.draft("RGB", draft_size(width, height))
    needed = decoded_bytes(img, (width, height))
    if needed > limits.max_decoded_bytes:
        raise Unhashable(
            f"decoded image too large: {width}x{height} {img.mode} needs {needed} bytes to decode, "
            f"over the limit of {limits.max_decoded_bytes}"
        )
    return reduced(img)


def draft_size(width: int, height: int) -> tuple[int, int]:
    """The size a JPEG of `width` x `height` is drafted to (Image.draft's request).

    DCT scaling: libjpeg decodes at 1/2, 1/4 or 1/8 scale, the smallest that keeps the
    long side at least 3/4 of REDUCED_SIDE (4000x3000 -> 500x375). Entropy decoding still
    reads every coefficient, so this is the dominant cost. Smaller scales move PDQ too far
    from the full-size decode's (bench/bench_draft.py: at 1/4 of this side the mean
    distance doubles)."""
    long_side = max(width, height)
    wanted = REDUCED_SIDE * 3 // 4
    return max(1, width * wanted // long_side), max(1, height * wanted // long_side)


def _python_decoder(img: ImageFile.ImageFile) -> str | None:
    """The name of the pure-Python decoder the image needs, if it needs one."""
    for tile in getattr(img, "tile", None) or ():
        if tile[0] in Image.DECODERS:  # Pillow's registry of Python decoders
            return str(tile[0])
    return None


def reduced(img: ImageFile.ImageFile) -> Image.Image:
    """The current frame as RGB, ~REDUCED_SIDE px on the long side, upright per EXIF
    (a JPEG already drafted by `decode`)."""
    img.load()
    orientation = _exif_orientation(img)
    frame: Image.Image = img
    factor = max(frame.size) * 4 // (REDUCED_SIDE * 3)  # reduce only below 3/4 of the side
    if factor >= 2:
        frame = _reduce(frame, factor)
    frame = _to_rgb(frame)
    method = _ORIENTATION.get(orientation)
    return frame.transpose(method) if method is not None else frame


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """`img` reduced by `factor` (box filter: every source pixel counts).

    A mode Image.reduce cannot average (palette, 16-bit, 1-bit) is converted to RGB first,
    but a strip of rows at a time, so that the wider pixels (RGBA for a palette, float64
    for 16-bit) never exist for the whole image. Strips are a multiple of `factor` rows
    high, so each box lies in one strip and the result is the whole image's, pixel for
    pixel. 16-bit samples are scaled by the whole image's maximum, as _to_rgb would.
    """
    if img.mode in _REDUCIBLE_MODES:
        return img.reduce(factor)
    width, height = img.size
    top = max(0.0, float(img.getextrema()[1])) if img.mode in _DEEP_MODES else None  # type: ignore[arg-type, index]
    rows = max(factor, _STRIP_PIXELS // max(1, width) // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for y in range(0, height, rows):
        strip = _to_rgb(img.crop((0, y, width, min(height, y + rows))), top)
        out.paste(strip.reduce(factor), (0, y // factor))
    return out


def _to_rgb(img: Image.Image, top: float | None = None) -> Image.Image:
    """`img` as RGB. Deep greyscale is scaled to 8 bits by its maximum (`top` when given:
    the whole image's, for a strip)."""
    if img.mode in _DEEP_MODES:
        # Pillow's own conversion clips these to 255: scale deep greyscale to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        if top is None:
            top = float(arr.max(initial=0.0))
        if img.mode == "F" and top <= 1.0:
            scale = 255.0  # floating point samples in 0..1
        else:
            scale = 1.0 if top <= 255 else 255.0 / top
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        # Palette transparency is only carried over faithfully through RGBA.
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            # Hash what a viewer sees, not the colour hidden under transparent pixels.
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return rgba.convert("RGB")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise Unhashable(f"unsupported image mode {img.mode}: {describe(e)}") from e


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF: hash the image as stored
        return 1
    return value if isinstance(value, int) else 1


def describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."

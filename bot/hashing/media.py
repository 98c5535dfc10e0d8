"""Hashes of media bytes: cryptographic always, perceptual when the bytes are an image.

Pure: bytes in, `Hashes` out. No I/O, no logging, no clock, and no Pillow setting is
changed — limits are passed explicitly (`MediaLimits`, bot/hashing/limits.py: which
formats are decoded, and the pixel, decoded-byte and JPEG-scan limits checked before
decoding). The bot runs this in worker processes with memory and CPU limits
(bot/hashing/pool.py); the checks here keep ordinary hostile files from reaching those.

Perceptual hashing decodes a reduced image (~512 px on the long side; JPEG is decoded
straight at that scale with DCT scaling), because PDQ downsamples to 64x64 anyway: a
12-megapixel JPEG costs tens of milliseconds instead of half a second, and the hash stays
within a few bits of the full-resolution one. Other formats are decoded at full size, then
reduced before any conversion that widens the pixels (palette to RGBA, 16-bit to floating
point); when a mode must be converted first, it is converted a strip at a time.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image, ImageFile

from . import pdq, smoothsig
from bot.model import Hashes

from .border import trim_box
from .phash import phash
from .limits import WEBP_DECODER_BYTES_PER_PIXEL, MediaLimits, decoded_bytes, identify, jpeg_scans, webp_size
from .video import add_video_hashes, video_format

# Long side, in pixels, of the image that perceptual hashes are computed from.
REDUCED_SIDE = 512

# Some formats or variants (QOI, plain PPM, RLE BMP, ...) are decoded by Pillow in pure
# Python at 1-2 microseconds a pixel: a smaller limit keeps them under ~2 s of CPU.
SLOW_DECODER_MAX_PIXELS = 1_000_000

# Animations (GIF, APNG, WebP): frames hashed besides the first, spread evenly over the
# frames reachable within ANIMATION_PIXEL_BUDGET: reaching frame k decodes every frame
# before it (each composited on the last), so the budget bounds the decoding work.
# Frames larger than ANIMATION_MAX_FRAME_PIXELS are not sampled (the first frame is still
# hashed): compositing keeps two of them in memory, within the sandbox's memory limit.
ANIMATION_FRAMES = 7
ANIMATION_PIXEL_BUDGET = 64_000_000
ANIMATION_MAX_FRAME_PIXELS = 4_000_000

# Pixels per strip when a mode is converted before reduction: 8 MB as float64.
_STRIP_PIXELS = 1 << 20

OUT_OF_MEMORY = "out of memory while decoding the image"

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


class _Unhashable(Exception):
    """The bytes have no perceptual hash; the message is the reason given to users."""


def compute_hashes(data: bytes, *, max_pixels: int | None = None, limits: MediaLimits | None = None) -> Hashes:
    """Hash `data`. Never raises on hostile input.

    sha256, md5 and size are always set. When the bytes are an image in one of the
    accepted formats (first frame of an animation), pdq, pdq_quality, phash and
    pdq_queries are set too, and for an animation frame_pdqs (see _frame_pdqs); otherwise they are None/empty and `perceptual_error` says
    why. width, height and image_format come from the header and are kept whenever the
    header could be read, even when decoding was refused (a decompression bomb) or failed
    (a truncated file). `limits` (default: MediaLimits()) are checked before decoding;
    `max_pixels`, when given, overrides its pixel limit.
    """
    try:
        return hash_within(data, _limits(limits, max_pixels))
    except MemoryError:
        return exact_hashes(data, OUT_OF_MEMORY)


def hash_within(data: bytes, limits: MediaLimits) -> Hashes:
    """compute_hashes, except that MemoryError propagates: a sandboxed worker that runs
    out of its memory limit must say so, and be replaced."""
    hashes = exact_hashes(data, None)
    if video_format(data) is not None:
        return add_video_hashes(hashes, data, limits)
    try:
        img = _open(data, limits)
    except _Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    width, height = img.size
    hashes = replace(hashes, width=width, height=height, image_format=img.format)
    try:
        hashes = _add_perceptual(hashes, _decode(img, data, limits))
    except _Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    except MemoryError:
        raise
    except Exception as e:  # hostile input can make any decoder raise anything
        return replace(hashes, perceptual_error=f"truncated or corrupt image: {_describe(e)}")
    try:
        return replace(hashes, frame_pdqs=_frame_pdqs(img))
    except MemoryError:
        raise
    except Exception:  # a later frame truncated or corrupt: the first frame's hashes stand
        return hashes
    finally:
        img.close()


def exact_hashes(data: bytes, perceptual_error: str | None = None) -> Hashes:
    """The cryptographic hashes alone, with the reason there are no perceptual ones."""
    return Hashes(
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        sha1=hashlib.sha1(data).hexdigest(),
        size=len(data),
        perceptual_error=perceptual_error,
    )


def _limits(limits: MediaLimits | None, max_pixels: int | None) -> MediaLimits:
    limits = limits or MediaLimits()
    return limits if max_pixels is None else replace(limits, max_pixels=max_pixels)


def crop_hashes(
    data: bytes,
    fractions: Sequence[float],
    *,
    max_pixels: int | None = None,
    min_quality: int = 50,
    limits: MediaLimits | None = None,
) -> tuple[str, ...]:
    """PDQ hashes of central crops of the image in `data`, one per usable fraction, in order.

    For a fraction f the crop keeps the centred f x width by f x height region (f = 0.95
    drops 2.5% of the length at each end of each side) of the image decoded exactly as
    `compute_hashes` decodes it. PDQ does not survive cropping: a list that also holds
    these finds copies cropped by about as much, evenly at both ends, and their rotations
    and flips through the queries' transforms. PDQ moves by ~25 bits when the content
    shifts by ~1% of a side, so a crop taken mostly off one end is still missed.
    Crops whose PDQ quality is below `min_quality` (flat centres) are left out, as are
    duplicates. Empty when `data` has no perceptual hash (see `compute_hashes`); never
    raises on hostile input. ValueError if a fraction is not within (0, 1].
    """
    try:
        return crops_within(data, fractions, _limits(limits, max_pixels), min_quality)
    except MemoryError:
        return ()


def crops_within(data: bytes, fractions: Sequence[float], limits: MediaLimits, min_quality: int = 50) -> tuple[str, ...]:
    """crop_hashes, except that MemoryError propagates (see hash_within)."""
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"crop fractions must be within (0, 1], got {f}")
    try:
        img = _open(data, limits)
    except _Unhashable:
        return ()
    try:
        rgb = _decode(img, data, limits)
        luma = _luma(rgb)  # a crop's luma is the luma's crop
        w, h = rgb.size
        found: list[str] = []
        for f in fractions:
            cw, ch = max(1, round(w * f)), max(1, round(h * f))
            left, top = (w - cw) // 2, (h - ch) // 2
            pdq_hash, quality = pdq.pdq_hash(luma[top : top + ch, left : left + cw])
            if quality >= min_quality:
                found.append(pdq_hash)
        return tuple(dict.fromkeys(found))
    except MemoryError:
        raise
    except Exception:  # refused, or whatever a decoder raises on hostile input
        return ()
    finally:
        img.close()


def warm_up() -> None:
    """Hash a small generated JPEG once, so that what the first hash would pay for happens
    now: Pillow registers its format plugins, numpy's BLAS starts. Call it at start-up,
    before the first event."""
    ramp = np.add.outer(np.arange(48), np.arange(64) * 2).astype(np.uint8)
    rgb = Image.fromarray(np.stack([ramp, ramp[::-1], ramp[:, ::-1]], axis=-1), "RGB")
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=90)
    compute_hashes(out.getvalue())


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hashes of different lengths: {len(a_hex)} and {len(b_hex)} hex digits")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def _open(data: bytes, limits: MediaLimits) -> ImageFile.ImageFile:
    """Identify the format from the bytes and read the header, without Pillow's global
    pixel limit (whose warning or error would come on its own terms: the caller's limits
    are applied explicitly). Only accepted formats are opened; see bot/hashing/limits.py."""
    formats = limits.formats
    fmt, refused = identify(data, formats)
    if fmt is None:
        if refused is not None:
            raise _Unhashable(f"unsupported image format {refused}")
        raise _Unhashable("not an image (unrecognised format)")
    if fmt == "WEBP":
        _check_webp(data, limits)
    try:
        with warnings.catch_warnings():
            # Some readers (WebP) apply Pillow's global pixel limit while opening; ours
            # comes next, and is lower by default.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.OPEN[fmt][0](io.BytesIO(data), "")
    except Image.DecompressionBombError as e:
        raise _Unhashable(f"decompression bomb: {_describe(e)}") from None
    except Exception as e:
        raise _Unhashable(f"truncated or corrupt image: {fmt}: {_describe(e)}") from None
    if img.format not in formats:  # the JPEG reader returning an MPO when MPO is not accepted
        img.close()
        raise _Unhashable(f"unsupported image format {img.format}")
    return img


def _check_webp(data: bytes, limits: MediaLimits) -> None:
    """The pixel and decoded-byte limits, from a WebP's header: opening one allocates."""
    size = webp_size(data)
    if size is None:
        return
    width, height = size
    if width * height > limits.max_pixels:
        raise _Unhashable(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {limits.max_pixels}"
        )
    needed = width * height * (4 + WEBP_DECODER_BYTES_PER_PIXEL)
    if needed > limits.max_decoded_bytes:
        raise _Unhashable(
            f"decoded image too large: {width}x{height} WebP needs {needed} bytes to decode, "
            f"over the limit of {limits.max_decoded_bytes}"
        )


def _decode(img: ImageFile.ImageFile, data: bytes, limits: MediaLimits) -> Image.Image:
    """The reduced RGB image perceptual hashes are computed from; _Unhashable if refused.

    Every limit is checked from the header and the bytes before any pixel is decoded."""
    width, height = img.size
    max_pixels = limits.max_pixels
    if width <= 0 or height <= 0:
        raise _Unhashable(f"corrupt image: size {width}x{height}")
    if width * height > max_pixels:
        raise _Unhashable(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels}"
        )
    slow = _python_decoder(img)
    if slow is not None and width * height > min(max_pixels, SLOW_DECODER_MAX_PIXELS):
        raise _Unhashable(
            f"image too large for its slow decoder ({slow}): {width}x{height} = "
            f"{width * height} pixels exceeds the limit of "
            f"{min(max_pixels, SLOW_DECODER_MAX_PIXELS)}"
        )
    if img.format in ("JPEG", "MPO"):
        scans = jpeg_scans(data)
        if scans > limits.max_jpeg_scans:
            raise _Unhashable(f"too many JPEG scans: {scans} exceeds the limit of {limits.max_jpeg_scans}")
        img.draft("RGB", draft_size(width, height))
    needed = decoded_bytes(img, (width, height))
    if needed > limits.max_decoded_bytes:
        raise _Unhashable(
            f"decoded image too large: {width}x{height} {img.mode} needs {needed} bytes to decode, "
            f"over the limit of {limits.max_decoded_bytes}"
        )
    return _reduced_rgb(img)


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


def _reduced_rgb(img: ImageFile.ImageFile) -> Image.Image:
    """The first frame as RGB, ~REDUCED_SIDE px on the long side, upright per EXIF
    (a JPEG already drafted by _decode)."""
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
        raise _Unhashable(f"unsupported image mode {img.mode}: {_describe(e)}") from e


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF: hash the image as stored
        return 1
    return value if isinstance(value, int) else 1


def _add_perceptual(hashes: Hashes, rgb: Image.Image) -> Hashes:
    luma = _luma(rgb)
    # From the turned and flipped pixels, not by DCT sign changes: PDQ's sampling is not
    # symmetric, and on textured images the sign-changed hash of a mirror can lie tens of
    # bits from the mirrored copy's (issue 14; pdq.exact_dihedral_hashes).
    queries, quality = pdq.exact_dihedral_hashes(luma)
    left, top, right, bottom = trim_box(rgb)
    if (left, top, right, bottom) != (0, 0, *rgb.size):
        # Only when trimming removed something: a second dihedral doubles the PDQ cost.
        # The luma of the trimmed image is the trimmed luma.
        queries += pdq.exact_dihedral_hashes(luma[top:bottom, left:right])[0]
    return replace(
        hashes,
        pdq=queries[0],  # the untransformed image
        pdq_quality=quality,
        phash=phash(rgb),
        pdq_queries=tuple(dict.fromkeys(queries)),
        lowfreq=smoothsig.signatures(luma, (left, top, right, bottom)),
    )


def _luma(rgb: Image.Image) -> np.ndarray:
    """PDQ's luma of an RGB image, float32: Pillow's "F" conversion computes the same
    0.299 R + 0.587 G + 0.114 B as pdqhash, bit for bit (tests/unit/test_pdq.py)."""
    return np.asarray(rgb.convert("F"))


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _frame_pdqs(img: ImageFile.ImageFile) -> tuple[tuple[int, str, int], ...]:
    """PDQ and quality of up to ANIMATION_FRAMES frames after the first, spread evenly over
    the frames within ANIMATION_PIXEL_BUDGET; () for a still image. Stops at the first
    frame that cannot be decoded (what came before it stands)."""
    if not getattr(img, "is_animated", False):
        return ()
    width, height = img.size
    if width * height > ANIMATION_MAX_FRAME_PIXELS:
        return ()
    reachable = min(int(getattr(img, "n_frames", 1)), ANIMATION_PIXEL_BUDGET // max(1, width * height))
    if reachable < 2:
        return ()
    wanted = sorted({round(i * (reachable - 1) / ANIMATION_FRAMES) for i in range(1, ANIMATION_FRAMES + 1)} - {0})
    found: list[tuple[int, str, int]] = []
    for frame in wanted:
        try:
            img.seek(frame)
            pdq_hash, quality = pdq.pdq_hash(_luma(_reduced_rgb(img)))
        except MemoryError:
            raise
        except Exception:
            break
        found.append((frame, pdq_hash, quality))
    return tuple(found)

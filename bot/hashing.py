"""Hashes of media bytes: cryptographic always, perceptual when the bytes are an image.

Pure: bytes in, `Hashes` out. No I/O, no logging, no clock, and no Pillow setting is
changed — limits are passed explicitly.

Perceptual hashing decodes a reduced image (~512 px on the long side; JPEG is decoded
straight at that scale with DCT scaling), because PDQ downsamples to 64x64 anyway: a
12-megapixel JPEG costs tens of milliseconds instead of half a second, and the hash stays
within a few bits of the full-resolution one.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import replace

import imagehash
import numpy as np
from PIL import Image, ImageFile

from bot import pdq
from bot.model import Hashes

# Long side, in pixels, of the image that perceptual hashes are computed from.
REDUCED_SIDE = 512

# Some formats or variants (QOI, plain PPM, RLE BMP, ...) are decoded by Pillow in pure
# Python at 1-2 microseconds a pixel: a smaller limit keeps them under ~2 s of CPU.
SLOW_DECODER_MAX_PIXELS = 1_000_000

# Formats never opened: EPS is decoded by running Ghostscript on the file.
_REFUSED_FORMATS = frozenset({"EPS"})

# Border trimming: a line belongs to a border band when at least _BAND_FRACTION of its
# pixels are within _BAND_TOLERANCE (per channel) of the band's colour; the tolerance
# absorbs JPEG noise and ringing next to the content.
_BAND_TOLERANCE = 12
_BAND_FRACTION = 0.9
_MIN_KEPT = 0.5  # never trim a side to less than half its length
_MIN_BAND = 0.01  # bands thinner than 1% of the side (or 2 px) are ignored

# Modes Image.reduce handles (it averages alpha correctly); others are converted first.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})

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


def compute_hashes(data: bytes, *, max_pixels: int = 64_000_000) -> Hashes:
    """Hash `data`. Never raises on hostile input.

    sha256, md5 and size are always set. When the bytes are an image Pillow can decode
    (first frame of an animation), pdq, pdq_quality, phash and pdq_queries are set too;
    otherwise they are None/empty and `perceptual_error` says why. width, height and
    image_format come from the header and are kept whenever the header could be read,
    even when decoding was refused (a decompression bomb) or failed (a truncated file).
    Images of more than `max_pixels` pixels (per the header) are refused undecoded.
    """
    hashes = Hashes(
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        sha1=hashlib.sha1(data).hexdigest(),
        size=len(data),
    )
    try:
        img = _open(data)
    except _Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    width, height = img.size
    hashes = replace(hashes, width=width, height=height, image_format=img.format)
    try:
        return _add_perceptual(hashes, _decode(img, max_pixels))
    except _Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    except MemoryError:
        return replace(hashes, perceptual_error="out of memory while decoding the image")
    except Exception as e:  # hostile input can make any decoder raise anything
        return replace(hashes, perceptual_error=f"truncated or corrupt image: {_describe(e)}")
    finally:
        img.close()


def crop_hashes(
    data: bytes,
    fractions: Sequence[float],
    *,
    max_pixels: int = 64_000_000,
    min_quality: int = 50,
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
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"crop fractions must be within (0, 1], got {f}")
    try:
        img = _open(data)
    except _Unhashable:
        return ()
    try:
        rgb = _decode(img, max_pixels)
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
    except Exception:  # refused, out of memory, or whatever a decoder raises on hostile input
        return ()
    finally:
        img.close()


def warm_up() -> None:
    """Hash a small generated JPEG once, so that what the first hash would pay for happens
    now: imagehash imports scipy on its first pHash (~0.8 s), Pillow registers its format
    plugins, numpy's BLAS starts. Call it at start-up, before the first event."""
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


def trim_uniform_border(img: Image.Image) -> Image.Image:
    """`img` without uniform-colour bands (padding, letterbox, frame) along its sides.

    Returns `img` itself when there is nothing to trim, or when trimming would keep less
    than half of a side (a mostly flat image is not a border around a small picture).
    """
    box = _trim_box(img)
    return img if box == (0, 0, *img.size) else img.crop(box)


def _trim_box(img: Image.Image) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box `trim_uniform_border` crops `img` to."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    w, h = rgb.size
    top, bottom = _bands(rgb, (0, 0, w, h), columns=False)
    left, right = _bands(rgb, (0, top, w, h - bottom), columns=True)
    if (left or right) and not (top or bottom):
        # Side bands found; the top/bottom ones may only show once the sides are gone.
        top, bottom = _bands(rgb, (left, 0, w - right, h), columns=False)
    return left, top, w - right, h - bottom


def _open(data: bytes) -> ImageFile.ImageFile:
    """Identify the format and read the header, without Pillow's global pixel limit.

    This is what Image.open does (same plugin registry, same order) minus its
    MAX_IMAGE_PIXELS check, which would warn or raise on its own terms; the caller
    applies an explicit limit instead.
    """
    Image.init()
    prefix = data[:16]
    failure: str | None = None
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if accept is not None:
            try:
                accepted = accept(prefix)
            except Exception:  # a signature check choking on short input: not this format
                continue
            if isinstance(accepted, str) or not accepted:
                continue
            if fmt in _REFUSED_FORMATS:
                raise _Unhashable(f"unsupported image format {fmt}")
        try:
            return factory(io.BytesIO(data), "")
        except Exception as e:
            # A format without a signature check rejecting the bytes is not news; one
            # whose signature matched but whose header is broken is.
            if accept is not None and failure is None:
                failure = f"{fmt}: {_describe(e)}"
    if failure is not None:
        raise _Unhashable(f"truncated or corrupt image: {failure}")
    raise _Unhashable("not an image (unrecognised format)")


def _decode(img: ImageFile.ImageFile, max_pixels: int) -> Image.Image:
    """The reduced RGB image perceptual hashes are computed from; _Unhashable if refused."""
    width, height = img.size
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
    return _reduced_rgb(img)


def _python_decoder(img: ImageFile.ImageFile) -> str | None:
    """The name of the pure-Python decoder the image needs, if it needs one."""
    for tile in getattr(img, "tile", None) or ():
        if tile[0] in Image.DECODERS:  # Pillow's registry of Python decoders
            return str(tile[0])
    return None


def _reduced_rgb(img: ImageFile.ImageFile) -> Image.Image:
    """The first frame as RGB, ~REDUCED_SIDE px on the long side, upright per EXIF."""
    if img.format in ("JPEG", "MPO"):
        # DCT scaling: libjpeg decodes at 1/2, 1/4 or 1/8 scale, the smallest that keeps
        # the long side at least 3/4 of REDUCED_SIDE (4000x3000 -> 500x375). Entropy
        # decoding still reads every coefficient, so this is the dominant cost.
        w, h = img.size
        long_side = max(w, h)
        wanted = REDUCED_SIDE * 3 // 4
        img.draft("RGB", (max(1, w * wanted // long_side), max(1, h * wanted // long_side)))
    img.load()
    orientation = _exif_orientation(img)
    frame: Image.Image = img
    factor = max(frame.size) * 4 // (REDUCED_SIDE * 3)  # reduce only below 3/4 of the side
    if factor >= 2:
        if frame.mode not in _REDUCIBLE_MODES:
            frame = _to_rgb(frame)
        frame = frame.reduce(factor)  # box filter: every source pixel counts
    frame = _to_rgb(frame)
    method = _ORIENTATION.get(orientation)
    return frame.transpose(method) if method is not None else frame


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own conversion clips these to 255: scale deep greyscale to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
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
    queries, quality = pdq.dihedral_hashes(luma)
    left, top, right, bottom = _trim_box(rgb)
    if (left, top, right, bottom) != (0, 0, *rgb.size):
        # Only when trimming removed something: a second dihedral doubles the PDQ cost.
        # The luma of the trimmed image is the trimmed luma.
        queries += pdq.dihedral_hashes(luma[top:bottom, left:right])[0]
    return replace(
        hashes,
        pdq=queries[0],  # the untransformed image
        pdq_quality=quality,
        phash=str(imagehash.phash(rgb)),
        pdq_queries=tuple(dict.fromkeys(queries)),
    )


def _luma(rgb: Image.Image) -> np.ndarray:
    """PDQ's luma of an RGB image, float32: Pillow's "F" conversion computes the same
    0.299 R + 0.587 G + 0.114 B as pdqhash, bit for bit (tests/unit/test_pdq.py)."""
    return np.asarray(rgb.convert("F"))


def _bands(rgb: Image.Image, box: tuple[int, int, int, int], columns: bool) -> tuple[int, int]:
    """Widths of the uniform bands at both ends of the rows (or columns) of `box` in `rgb`.

    Only the lines looked at are read out of the image, a few at a time: most images have
    no border, and their first few lines at each end settle it.
    """
    x0, y0, x1, y1 = box
    n, length = (x1 - x0, y1 - y0) if columns else (y1 - y0, x1 - x0)
    if n < 4 or length <= 0:
        return 0, 0

    def read(first: int, stop: int, from_end: bool) -> np.ndarray:
        """Lines first..stop-1 counted from the start (or end), as lines x pixels x 3."""
        lo, hi = (n - stop, n - first) if from_end else (first, stop)
        region = (x0 + lo, y0, x0 + hi, y1) if columns else (x0, y0 + lo, x1, y0 + hi)
        lines = np.asarray(rgb.crop(region))
        if columns:
            lines = lines.transpose(1, 0, 2)
        return lines[::-1] if from_end else lines

    most = n - int(np.ceil(_MIN_KEPT * n))  # the most both bands together may remove
    start = _band_width(lambda a, b: read(a, b, False), most + 1)
    end = _band_width(lambda a, b: read(a, b, True), most + 1)
    if start + end > most:
        return 0, 0
    thinnest = max(2, round(_MIN_BAND * n))
    return (start if start >= thinnest else 0), (end if end >= thinnest else 0)


def _band_width(read: Callable[[int, int], np.ndarray], limit: int) -> int:
    """How many leading lines (at most `limit`) are mostly the colour of the first one.

    `read(a, b)` gives lines a..b-1. A line is uniform when at least _BAND_FRACTION of its
    pixels are within _BAND_TOLERANCE of the colour in every channel.
    """
    width, step = 0, 4  # most images have no border: look at a few lines first
    low = span = None
    while width < limit:
        chunk = read(width, min(limit, width + step))
        lines, pixels = chunk.shape[:2]
        if low is None or span is None:
            colour = _median_colour(chunk[0])
            bottom = np.maximum(colour - _BAND_TOLERANCE, 0)
            top = np.minimum(colour + _BAND_TOLERANCE, 255)
            # Repeated along a whole line: numpy is slow over a trailing axis of 3.
            low = np.tile(bottom.astype(np.uint8), pixels)
            span = np.tile((top - bottom).astype(np.uint8), pixels)
        # low <= value <= low + span in one uint8 subtraction: values below low wrap round.
        within = ((chunk.reshape(lines, pixels * 3) - low) <= span).reshape(lines, pixels, 3)
        near = within[..., 0] & within[..., 1] & within[..., 2]
        uniform = np.count_nonzero(near, axis=1) / pixels >= _BAND_FRACTION
        if not uniform.all():
            return width + int(np.argmin(uniform))
        width += len(chunk)
        step *= 2
    return width


def _median_colour(line: np.ndarray) -> np.ndarray:
    """Per channel, the median of `line` (pixels x 3, uint8) rounded half to even, as
    numpy.median(line, axis=0).round() gives it (the mean of the middle two when even)."""
    values = np.ascontiguousarray(line.T)  # partitioning along a contiguous axis is faster
    middle = values.shape[1] // 2
    if values.shape[1] % 2:
        return np.partition(values, middle, axis=1)[:, middle].astype(np.float64)
    both = np.partition(values, (middle - 1, middle), axis=1)
    return np.round((both[:, middle - 1].astype(np.float64) + both[:, middle]) / 2)


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."

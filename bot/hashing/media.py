"""Hashes of media bytes: cryptographic always, perceptual when the bytes are an image.

Pure: bytes in, `Hashes` out. No I/O, no logging, no clock, and no Pillow setting is
changed — limits are passed explicitly (`MediaLimits`, bot/hashing/limits.py: which
formats are decoded, and the pixel, decoded-byte and JPEG-scan limits checked before
decoding, bot/hashing/decode.py). The bot runs this in worker processes with memory and
CPU limits (bot/hashing/pool.py); the checks keep ordinary hostile files from reaching
those.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFile

from . import pdq, pdqcoef, pdqtiers, smoothsig, uncrop
from bot.model import Hashes

from .border import trim_box
from .caption import caption_box
from .decode import REDUCED_SIDE, SLOW_DECODER_MAX_PIXELS, Unhashable, decode, describe, open_image, reduced
from .phash import phash
from .limits import MediaLimits
from .video import add_video_hashes, video_format

__all__ = [
    "REDUCED_SIDE",
    "SLOW_DECODER_MAX_PIXELS",
    "compute_hashes",
    "Crop",
    "brightened_name",
    "checked_gains",
    "crop_hashes",
    "crop_name",
    "crop_spec",
    "crops_within",
    "named_crop_hashes",
    "exact_hashes",
    "hamming",
    "hash_within",
    "warm_up",
]

# Animations (GIF, APNG, WebP): frames hashed besides the first, spread evenly over the
# frames reachable within ANIMATION_PIXEL_BUDGET: reaching frame k decodes every frame
# before it (each composited on the last), so the budget bounds the decoding work.
# Frames larger than ANIMATION_MAX_FRAME_PIXELS are not sampled (the first frame is still
# hashed): compositing keeps two of them in memory, within the sandbox's memory limit.
ANIMATION_FRAMES = 7
ANIMATION_PIXEL_BUDGET = 64_000_000
ANIMATION_MAX_FRAME_PIXELS = 4_000_000

OUT_OF_MEMORY = "out of memory while decoding the image"

# crop_hashes lists a brightened image only when at least this share of its pixels clip.
MIN_CLIPPED_SHARE = 0.01


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


def hash_within(data: bytes, limits: MediaLimits, sha256: str | None = None) -> Hashes:
    """compute_hashes, except that MemoryError propagates: a sandboxed worker that runs
    out of its memory limit must say so, and be replaced. `sha256`: the bytes' SHA-256 when
    the caller has it already (bot/hashing/repeats.py), not computed twice."""
    hashes = exact_hashes(data, None, sha256)
    if video_format(data) is not None:
        return add_video_hashes(hashes, data, limits)
    try:
        img = open_image(data, limits)
    except Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    width, height = img.size
    hashes = replace(hashes, width=width, height=height, image_format=img.format)
    try:
        hashes = _add_perceptual(hashes, decode(img, data, limits), crop_guesses=limits.crop_guesses)
    except Unhashable as e:
        return replace(hashes, perceptual_error=str(e))
    except MemoryError:
        raise
    except Exception as e:  # hostile input can make any decoder raise anything
        return replace(hashes, perceptual_error=f"truncated or corrupt image: {describe(e)}")
    try:
        frames = _frame_pdqs(img)
        return replace(hashes, frame_pdqs=frames) if frames else hashes  # a still image: no copy
    except MemoryError:
        raise
    except Exception:  # a later frame truncated or corrupt: the first frame's hashes stand
        return hashes
    finally:
        img.close()


def exact_hashes(data: bytes, perceptual_error: str | None = None, sha256: str | None = None) -> Hashes:
    """The cryptographic hashes alone, with the reason there are no perceptual ones."""
    return Hashes(
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        sha1=hashlib.sha1(data).hexdigest(),
        size=len(data),
        perceptual_error=perceptual_error,
    )


def _limits(limits: MediaLimits | None, max_pixels: int | None) -> MediaLimits:
    limits = limits or MediaLimits()
    return limits if max_pixels is None else replace(limits, max_pixels=max_pixels)


# A crop add-image lists: (keep, across, down) keeps `keep` of each side, the cut split
# across : 1 - across between the left and right ends and down : 1 - down between top and
# bottom (0.5, 0.5: centred); (keep_x, keep_y, across, down) keeps keep_x of the width and
# keep_y of the height. A bare fraction is a centred crop.
Crop = float | tuple[float, float, float] | tuple[float, float, float, float]
_ANCHORS = {0.0: ("top", "left"), 0.5: ("", ""), 1.0: ("bottom", "right")}


def crop_spec(crop: Crop) -> tuple[float, float, float, float]:
    """(keep_x, keep_y, across, down) of `crop`; ValueError unless what is kept is within
    (0, 1] and the anchors within [0, 1]."""
    if isinstance(crop, (int, float)):
        crop = (crop, crop, 0.5, 0.5)
    elif len(crop) == 3:
        crop = (crop[0], *crop)
    keep_x, keep_y, across, down = crop  # type: ignore[misc]
    if not (0 < keep_x <= 1 and 0 < keep_y <= 1):
        raise ValueError(f"crop fractions must be within (0, 1], got {keep_x}, {keep_y}")
    if not (0 <= across <= 1 and 0 <= down <= 1):
        raise ValueError(f"crop anchors must be within [0, 1], got {across}, {down}")
    return float(keep_x), float(keep_y), float(across), float(down)


def crop_name(crop: Crop) -> str:
    """How a list row derived by this crop reads: "crop to 95%, centred", "crop to 95%, top
    left", "crop to 95% of the height, bottom", "crop to 95%, 0.25 across, 0.75 down"."""
    keep_x, keep_y, across, down = crop_spec(crop)
    if keep_x == 1:  # only the height cut: where across the width means nothing
        across = 0.5
    if keep_y == 1:
        down = 0.5
    if across in _ANCHORS and down in _ANCHORS:
        where = " ".join(w for w in (_ANCHORS[down][0], _ANCHORS[across][1]) if w) or "centred"
    else:
        where = f"{across:g} across, {down:g} down"
    if keep_x == keep_y == 1:
        return "whole image"
    if keep_x == keep_y:
        return f"crop to {keep_x * 100:g}%, {where}"
    if keep_x == 1:
        return f"crop to {keep_y * 100:g}% of the height, {where}"
    if keep_y == 1:
        return f"crop to {keep_x * 100:g}% of the width, {where}"
    return f"crop to {keep_x * 100:g}% x {keep_y * 100:g}%, {where}"


def checked_gains(gains: Sequence[float]) -> list[float]:
    """The brightening gains as a list; ValueError unless each is within (1, 4]."""
    for g in gains:
        if not 1 < g <= 4:
            raise ValueError(f"brightening gains must be within (1, 4], got {g}")
    return list(gains)


def brightened_name(gain: float) -> str:
    return f"brightened x{gain:g}"


def crop_hashes(data: bytes, fractions: Sequence[Crop], **options: Any) -> tuple[str, ...]:
    """named_crop_hashes' hashes alone (same options)."""
    return tuple(h for h, _ in named_crop_hashes(data, fractions, **options))


def named_crop_hashes(
    data: bytes,
    fractions: Sequence[Crop],
    *,
    max_pixels: int | None = None,
    min_quality: int = 50,
    limits: MediaLimits | None = None,
    gains: Sequence[float] = (),
) -> tuple[tuple[str, str], ...]:
    """PDQ hashes of crops of the image in `data`, one per usable crop, in order, then of
    the whole image brightened by each of `gains`, each with what it is of (crop_name,
    brightened_name): the `derived` column of a list's row (bot/lists/format.py).

    A fraction f keeps the centred f x width by f x height region (f = 0.95 drops 2.5% of
    the length at each end of each side) of the image decoded exactly as `compute_hashes`
    decodes it; (f, across, down) keeps as much anchored elsewhere, (fx, fy, across, down)
    fx of the width and fy of the height (see `Crop`). PDQ does not survive cropping: a
    list that also holds these finds copies cropped by about as much at about that place,
    and their rotations and flips through the queries' transforms. PDQ moves by ~25 bits
    when the content shifts by ~1% of a side, so a crop taken mostly off one end misses a
    centred crop's hash: the anchored ones find it.
    Brightening (each colour channel times the gain, clipped at white, as a photo editor's
    brightness slider does) is the one tone edit PDQ does not survive: PDQ compares DCT
    coefficients with their median, so scaling or shifting luma changes nothing until the
    highlights clip, and then the clipped areas go flat. A copy brightened by about as much
    clips where this hash's image clips. A gain under which less than MIN_CLIPPED_SHARE of
    the pixels clip adds nothing.

    Hashes whose PDQ quality is below `min_quality` (flat centres) are left out, as are
    duplicates. Empty when `data` has no perceptual hash (see `compute_hashes`); never
    raises on hostile input. ValueError if a crop is malformed or a gain not over 1.
    """
    try:
        return crops_within(data, fractions, _limits(limits, max_pixels), min_quality, gains)
    except MemoryError:
        return ()


def crops_within(
    data: bytes, fractions: Sequence[Crop], limits: MediaLimits, min_quality: int = 50, gains: Sequence[float] = ()
) -> tuple[tuple[str, str], ...]:
    """named_crop_hashes, except that MemoryError propagates (see hash_within)."""
    specs = [crop_spec(f) for f in fractions]
    checked_gains(gains)
    try:
        img = open_image(data, limits)
    except Unhashable:
        return ()
    try:
        # Brightened in colour: each channel clips on its own (a saturated red stays red).
        image = decode(img, data, limits)
        luma = _luma(image)  # a crop's luma is the luma's crop
        w, h = image.size
        found: list[tuple[tuple[str, int], str]] = []
        for spec in specs:
            keep_x, keep_y, across, down = spec
            cw, ch = max(1, round(w * keep_x)), max(1, round(h * keep_y))
            # Floored: a centred crop lies where it always did ((w - cw) // 2).
            left, top = int((w - cw) * across), int((h - ch) * down)
            found.append((pdq.pdq_hash(luma[top : top + ch, left : left + cw]), crop_name(spec)))
        if gains:
            brightest = np.asarray(image).max(axis=2)  # a pixel clips when its brightest channel does
            for g in gains:
                # Without clipping, brightening is a scaling, which PDQ does not see.
                if np.count_nonzero(brightest * g > 255) >= MIN_CLIPPED_SHARE * brightest.size:
                    found.append((pdq.pdq_hash(_luma(ImageEnhance.Brightness(image).enhance(g))), brightened_name(g)))
        named: dict[str, str] = {}
        for (hex_hash, quality), what in found:
            if quality >= min_quality:
                named.setdefault(hex_hash, what)
        return tuple(named.items())
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


def _add_perceptual(hashes: Hashes, image: Image.Image, *, crop_guesses: bool = True) -> Hashes:
    """`hashes` with the perceptual hashes of the reduced RGB `image` (and its crop
    guesses, unless told not to)."""
    luma = _luma(image)
    # From the turned and flipped pixels, not by DCT sign changes: PDQ's sampling is not
    # symmetric, and on textured images the sign-changed hash of a mirror can lie tens of
    # bits from the mirrored copy's (issue 14; pdq.exact_dihedral_hashes).
    queries, quality, small = pdq.exact_dihedral(luma)
    smalls = [small]
    # Colours are read out of Pillow only when the luma allows an edge to be uniform.
    left, top, right, bottom = trim_box(image, luma)
    # A caption bar (text on a white or black band above or below) is cut off too; its
    # margin alone may pass for a uniform border, so the deeper cut wins.
    caption = caption_box(luma) if (left, right) == (0, image.width) else None
    if caption is not None:
        top, bottom = max(top, caption[1]), min(bottom, caption[3])
    if (left, top, right, bottom) != (0, 0, *image.size):
        # Only when trimming removed something: a second dihedral doubles the PDQ cost.
        # The luma of the trimmed image is the trimmed luma.
        trimmed_queries, _quality, trimmed_small = pdq.exact_dihedral(luma[top:bottom, left:right])
        queries += trimmed_queries
        smalls.append(trimmed_small)
    # The low-frequency signatures from the same 64x64 images: what smoothsig.signatures
    # computes from the luma, without downsampling it again.
    signatures = (smoothsig.of_downsampled(s) for s in smalls if s is not None)
    # Under quality 50 the coefficients too, for matching the most reliable bits: of the
    # image as decoded only (a trimmed image's against a list's crop entries matched
    # unrelated dark images, whose dark margins trim like borders; README "Smooth images").
    coefficients = pdqcoef.of_downsampled(small) if small is not None and quality < pdqcoef.BELOW_QUALITY else None
    # Crop guesses (bot/hashing/uncrop.py): of the image as decoded only (a trimmed image
    # was cut already); under quality 50 their low-frequency signatures too, for add-image
    # lists' signature entries.
    guessed = uncrop.coefficients_of(luma) if crop_guesses else None
    return replace(
        hashes,
        pdq=queries[0],  # the untransformed image
        pdq_quality=quality,
        phash=phash(image),
        pdq_queries=tuple(dict.fromkeys(queries)),
        lowfreq=tuple(dict.fromkeys(s for s in signatures if s is not None)),
        pdq_coefficients=(coefficients,) if coefficients else (),
        pdq_uncropped=pdq.hashes_from_coefficients(guessed) if guessed is not None else (),
        lowfreq_uncropped=uncrop.signatures(guessed) if guessed is not None and quality < pdqcoef.BELOW_QUALITY else (),
        pdq_uncropped_tiers=pdqtiers.to_texts(pdqtiers.of_coefficients(guessed)) if guessed is not None else (),
    )


def _luma(rgb: Image.Image) -> np.ndarray:
    """PDQ's luma of an RGB image, float32: Pillow's "F" conversion computes the same
    0.299 R + 0.587 G + 0.114 B as pdqhash, bit for bit (tests/unit/test_pdq.py).

    Converted straight into the array's memory, which Pillow maps as an "F" image (its
    core's map_buffer and convert_into, what Image.frombuffer and ImageTk use): numpy's
    view of a converted image copies it out twice (Image.tobytes's chunks, then their
    join), 0.05 of 0.15 ms for a 1 MP photo (bench/README.md, issue 16). Where this Pillow
    lacks either, the converted image is copied out."""
    width, height = rgb.size
    out = np.empty((height, width), dtype=np.float32)
    try:
        rgb.im.convert_into(Image.core.map_buffer(out, (width, height), "raw", 0, ("F", 0, 1)))
    except (AttributeError, TypeError, ValueError):
        return np.asarray(rgb.convert("F"))
    return out


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
            pdq_hash, quality = pdq.pdq_hash(_luma(reduced(img)))
        except MemoryError:
            raise
        except Exception:
            break
        found.append((frame, pdq_hash, quality))
    return tuple(found)

"""Fitting an image to what a scanning service accepts: re-encoded, enlarged or reduced, in
memory. PURE: bytes in, bytes out, nothing written anywhere.

PhotoDNA takes GIF, JPEG, PNG, BMP or TIFF of at least 160x160 pixels and at most 4 MB;
Matrix clients also send WebP, stickers and emoji smaller than that, and phones send
photos larger. `fit_image` decodes the image as perceptual hashing does (first frame, RGB,
upright, about 512 px on the long side, every limit of bot/hashing/limits.py checked
first), enlarges it when its short side is under the minimum, and encodes it as JPEG
within the byte limit. It decodes, so it runs only in the hashing sandbox's workers
(bot/hashing/pool.py), like every other decode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from .limits import MediaLimits
from .decode import Unhashable, decode, describe, open_image

# An image so elongated that enlarging its short side makes the long one larger than this
# is refused: a 1-pixel-high strip enlarged to 160 would be tens of megapixels of nothing.
MAX_FITTED_SIDE = 8192
_QUALITIES = (90, 80, 65, 50)


@dataclass(frozen=True)
class FitSpec:
    """What the service accepts."""

    min_side: int  # pixels, for both width and height
    max_bytes: int


@dataclass(frozen=True)
class Fitted:
    """The re-encoded image and what was done to it."""

    data: bytes
    mimetype: str
    width: int
    height: int
    enlarged: bool
    quality: int


def fit_image(data: bytes, limits: MediaLimits, spec: FitSpec) -> Fitted:
    """`data` as a JPEG the service accepts; ValueError saying why it cannot be made one."""
    img = reduced_image(data, limits)
    width, height = img.size
    enlarged = False
    if min(width, height) < spec.min_side:
        scale = spec.min_side / min(width, height)
        size = (max(spec.min_side, round(width * scale)), max(spec.min_side, round(height * scale)))
        if max(size) > MAX_FITTED_SIDE:
            raise ValueError(
                f"a {width}x{height} image is too elongated to enlarge to {spec.min_side} px"
                f" (its long side would be {max(size)} px)"
            )
        img = img.resize(size, Image.Resampling.LANCZOS)
        enlarged = True
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality)
            if out.tell() <= spec.max_bytes:
                return Fitted(out.getvalue(), "image/jpeg", img.width, img.height, enlarged, quality)
        smaller = (img.width * 3 // 4, img.height * 3 // 4)
        if min(smaller) < spec.min_side:
            raise ValueError(f"cannot encode the image within {spec.max_bytes} bytes")
        img = img.resize(smaller, Image.Resampling.LANCZOS)


def reduced_image(data: bytes, limits: MediaLimits) -> Image.Image:
    """The image as perceptual hashing sees it (first frame, RGB, upright, about
    REDUCED_SIDE px on the long side), every limit applied; ValueError saying why not.
    MemoryError propagates, as in hash_within."""
    try:
        img = open_image(data, limits)
    except Unhashable as e:
        raise ValueError(str(e)) from None
    try:
        reduced = decode(img, data, limits)
        return reduced.copy() if reduced is img else reduced  # img is closed below
    except Unhashable as e:
        raise ValueError(str(e)) from None
    except MemoryError:
        raise
    except Exception as e:  # hostile input can make any decoder raise anything
        raise ValueError(f"truncated or corrupt image: {describe(e)}") from None
    finally:
        img.close()

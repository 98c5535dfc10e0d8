"""pHash, the DCT perceptual hash of the imagehash library, computed with numpy alone.

`imagehash.phash` reduces the greyscale image to 32x32 (Pillow's LANCZOS), takes
scipy.fftpack's DCT-II of the pixels along each axis, keeps the top-left 8x8 coefficients
and sets a bit for each one above their median. The same here, computing only the
coefficients kept, sums and differences of pixels first and cosine products last, and
the hashing workers do not import scipy (~0.8 s on the first pHash).

One difference, for speed: the reduction to 32x32 first averages boxes of pixels down to
at least 3 x 32 on each side (Pillow's `reducing_gap=3`, what `Image.thumbnail` does), then
applies LANCZOS. A LANCZOS reduction of a 576x432 image straight to 32x32 weighs ~100
pixels per output along each axis and was the largest cost of hashing a 1 MP photo after
decoding it (0.76 ms of ~5.6); with the box step it costs 0.12 ms. The hash is imagehash's
of the box-reduced image bit for bit (tests/unit/test_phash.py), and on generated photos
within 0.7 bits on average (at most 4) of imagehash's of the image itself, as far as
imagehash's own hash of a JPEG's full-size decode lies from its reduced decode.

Where the two could differ: a coefficient within floating point rounding of the median,
which needs the two middle coefficients to be within rounding of each other. Exact ties
(flat, evenly graded or mirror-symmetric images: coefficients that are exactly 0) come
out as in scipy, see _dct.

Pure: a Pillow image in, 16 hex digits out.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

_SIDE = 32  # imagehash: hash_size 8 x highfreq_factor 4
_KEPT = 8
# Box-reduce first, to no less than this many times the 32x32 side (see the docstring).
REDUCING_GAP = 3.0
_MIDDLE = _KEPT * _KEPT // 2
# Pillow's resampling in 8 bits: coefficients in 22-bit fixed point (PRECISION_BITS).
_ONE = float(1 << 22)
_HALF = float(1 << 21)
_LANCZOS_SUPPORT = 3.0


def phash(image: Image.Image) -> str:
    """imagehash.phash of `image` box-reduced as Pillow's reducing_gap=3 does it, as its hex
    string (16 hex digits, first row's bits first)."""
    grey = image if image.mode == "L" else image.convert("L")
    pixels = _small(grey)
    low = _dct(_dct(pixels).T).T  # along axis 0, then axis 1: the top-left 8x8
    # np.median's value (the mean of the middle two of 64), without its checks and copies.
    middle = np.partition(low.reshape(-1), (_MIDDLE - 1, _MIDDLE))
    bits = low > (middle[_MIDDLE - 1] + middle[_MIDDLE]) / 2
    return np.packbits(bits).tobytes().hex()


def _small(grey: Image.Image) -> np.ndarray:
    """`grey.resize((32, 32), LANCZOS, reducing_gap=3)`'s pixels, as float64.

    Pillow reduces by whole boxes first (`Image.reduce`, used here too), then resamples the
    box (0, 0, width / factor, height / factor) of the result. That resampling is done here
    in numpy as Pillow does it in integers: the same coefficients in 22-bit fixed point,
    one axis into 8 bits, then the other (_resample_matrix). Pillow computes its
    coefficients (~2,000 sines) on every call and sums pixel by pixel, 0.06 ms of pHash's
    0.36 for a 1 MP photo; these are cached per size, and the sums are exact in float64
    (integers under 2^53), so the pixels are Pillow's (tests/unit/test_phash.py).

    Pillow resamples horizontally first, but Pillow 13 vertically first when the height
    shrinks much more than the width (python-pillow/Pillow #9549; the rounding between the
    passes differs): those shapes (narrow and tall, after the box reduction) are left to
    Pillow itself, so that pHash does not depend on which rule the installed Pillow follows.
    """
    width, height = grey.size
    factor_x = int(width / _SIDE / REDUCING_GAP) or 1
    factor_y = int(height / _SIDE / REDUCING_GAP) or 1
    box = (0.0, 0.0, width / factor_x, height / factor_y)
    if factor_x > 1 or factor_y > 1:
        grey = grey.reduce((factor_x, factor_y))
    elif (width, height) == (_SIDE, _SIDE):
        return np.asarray(grey, dtype=np.float64)  # Pillow's resize is a copy
    if grey.height > _SIDE and grey.height - _SIDE > 2 * (grey.width - _SIDE):
        return np.asarray(grey.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS, box=box), dtype=np.float64)
    pixels = np.asarray(grey, dtype=np.float64)
    rows_matrix, first, last = _resample_matrix(grey.height, box[3])
    columns_matrix, _, _ = _resample_matrix(grey.width, box[2])
    across = _fixed_point_to_8_bits(pixels[first:last] @ columns_matrix.T)
    return _fixed_point_to_8_bits(rows_matrix[:, first:last] @ across)


def _fixed_point_to_8_bits(sums: np.ndarray) -> np.ndarray:
    """Pillow's clip8 of sums of pixels times 22-bit coefficients: rounded (its initial
    half), shifted down (floor) and clipped to 0..255."""
    return np.clip(np.floor((sums + _HALF) / _ONE), 0, 255)


@functools.lru_cache(maxsize=64)
def _resample_matrix(size: int, end: float) -> tuple[np.ndarray, int, int]:
    """Pillow's LANCZOS coefficients (Resample.c, precompute_coeffs and
    normalize_coeffs_8bpc) from the box 0..`end` of a side of `size` pixels to _SIDE, as a
    _SIDE x size matrix of 22-bit fixed-point integers (float64), and the first and past
    the last pixel any output uses. Pillow passes the box as single-precision floats."""
    scale = float(np.float32(end) - np.float32(0.0)) / _SIDE
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    matrix = np.zeros((_SIDE, size))
    lows, highs = [], []
    for out in range(_SIDE):
        center = (out + 0.5) * scale
        low = max(0, int(center - support + 0.5))
        count = min(size, int(center + support + 0.5)) - low
        weights = [_lanczos((x + low - center + 0.5) * (1.0 / filterscale)) for x in range(count)]
        total = 0.0
        for w in weights:  # summed in Pillow's order
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        for x, w in enumerate(weights):
            matrix[out, low + x] = int(w * _ONE - 0.5) if w < 0 else int(w * _ONE + 0.5)
        lows.append(low)
        highs.append(low + max(count, 0))
    matrix.setflags(write=False)
    return matrix, min(lows), max(highs)


def _lanczos(x: float) -> float:
    """Pillow's lanczos_filter: sinc(x) sinc(x / 3) within -3 <= x < 3."""
    if not -3.0 <= x < 3.0:
        return 0.0
    return _sinc(x) * _sinc(x / 3)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _dct(x: np.ndarray) -> np.ndarray:
    """scipy.fftpack.dct(x, axis=0)[:8] for 32 rows: y[k] = 2 sum x[n] cos(pi k (2n + 1) / 64).

    Folded as a fast DCT is (cos at n and at 31 - n, 15 - n, 7 - n are equal or opposite):
    sums and differences of rows first, products last. So what is exactly zero for scipy
    (a frequency of a constant or mirror-symmetric signal, whose differences are exact) is
    exactly zero here too: on a flat or evenly graded image the median is 0, and a matrix
    product's rounding noise would decide the bits.
    """
    even, odd = x[:16] + x[:15:-1], x[:16] - x[:15:-1]  # 16 rows each
    even2, odd2 = even[:8] + even[:7:-1], even[:8] - even[:7:-1]  # 8 rows each
    even3, odd3 = even2[:4] + even2[:3:-1], even2[:4] - even2[:3:-1]  # 4 rows each
    c = _cosines()
    y = np.empty((_KEPT, x.shape[1]))
    y[0] = 2.0 * even3.sum(axis=0)
    y[4] = c[4, :4] @ odd3
    y[2::4] = c[2::4, :8] @ odd2  # frequencies 2 and 6
    y[1::2] = c[1::2, :16] @ odd  # 1, 3, 5, 7
    return y


@functools.cache
def _cosines() -> np.ndarray:
    """8 x 32: 2 cos(pi k (2n + 1) / 64) for the frequencies k = 0..7."""
    k = np.arange(_KEPT)[:, None]
    n = np.arange(_SIDE)[None, :]
    matrix = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * _SIDE))
    matrix.setflags(write=False)
    return matrix

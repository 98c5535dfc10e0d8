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

import numpy as np
from PIL import Image

_SIDE = 32  # imagehash: hash_size 8 x highfreq_factor 4
_KEPT = 8
# Box-reduce first, to no less than this many times the 32x32 side (see the docstring).
REDUCING_GAP = 3.0


def phash(image: Image.Image) -> str:
    """imagehash.phash of `image` box-reduced as Pillow's reducing_gap=3 does it, as its hex
    string (16 hex digits, first row's bits first)."""
    grey = image if image.mode == "L" else image.convert("L")
    small = grey.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    pixels = np.asarray(small, dtype=np.float64)
    low = _dct(_dct(pixels).T).T  # along axis 0, then axis 1: the top-left 8x8
    bits = low > np.median(low)
    return np.packbits(bits).tobytes().hex()


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

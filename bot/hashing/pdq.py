"""PDQ, Facebook's perceptual hash, computed from a float luma image with numpy.

The algorithm is the reference one (ThreatExchange, pdq/cpp): luma, a "Jarosz" blur of
two box-filter passes along each axis, decimation to 64x64, a 16x16 DCT of that, and one
bit per DCT coefficient: above the coefficients' median or not. The eight dihedral
variants (rotations and flips) come from the same DCT by sign changes and transposition,
as in the reference.

What differs is how the blur is computed: blur and decimation are linear, so the 64x64
buffer is `A_rows @ luma @ A_cols.T` with one 64 x n matrix per image dimension, each
non-zero over a band of ~n/64 pixels per row (the bands are cached). Those products run
as numpy batches of small weighted sums, outside the GIL, instead of pdqhash's C++ passes
over every pixel inside it. The results equal the reference's but for floating point rounding: once in a
while a DCT coefficient lying within rounding of the median lands on the other side of it,
and two bits of the hash differ (it and the coefficient that takes its place).

Pure: numpy in, hex strings and integers out.
"""

from __future__ import annotations

import functools

import numpy as np

# The reference's luma: 0.299 R + 0.587 G + 0.114 B, as floating point.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Images smaller than this along either side get the all-zero hash and quality 0.
MIN_HASHABLE_SIDE = 5

_SIDE = 64  # the downsampled image
_DCT_SIDE = 16  # the DCT coefficients kept: frequencies 1..16 along each axis
_BITS = _DCT_SIDE * _DCT_SIDE
_ZERO_HASH = "0" * (_BITS // 4)

# The order of the eight hashes `dihedral_hashes` returns (the reference's order).
DIHEDRAL = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_x",
    "flip_y",
    "flip_plus1",
    "flip_minus1",
)


def luma(rgb: np.ndarray) -> np.ndarray:
    """The float32 luma of an RGB uint8 array (height x width x 3) as pdqhash computes it:
    in double precision, rounded to float32. Pillow's `convert("F")` gives the same."""
    r, g, b = (rgb[..., c] for c in range(3))
    weight_r, weight_g, weight_b = LUMA_WEIGHTS
    return (r * weight_r + g * weight_g + b * weight_b).astype(np.float32)


def pdq_hash(luma: np.ndarray) -> tuple[str, int]:
    """PDQ hash (64 hex digits, the reference's hex form) and quality (0-100) of `luma`."""
    coefficients, quality = _dct16(luma)
    if coefficients is None:
        return _ZERO_HASH, 0
    return _to_hex(coefficients)[0], quality


def dihedral_hashes(luma: np.ndarray) -> tuple[tuple[str, ...], int]:
    """The eight PDQ hashes of `luma` turned and flipped, in DIHEDRAL order, and its quality.

    Each hash is the one PDQ gives the image transformed that way (exactly so for a 64x64
    image; a few bits off for others, whose blur and sampling are not quite symmetric),
    so a hash list entry made from a rotated or mirrored copy is found by one of them.
    """
    c, quality = _dct16(luma)
    if c is None:
        return (_ZERO_HASH,) * len(DIHEDRAL), 0
    return _to_hex(dihedral_coefficients(c)), quality


def dihedral_coefficients(c: np.ndarray) -> np.ndarray:
    """The 8 x n x n DCT coefficients of the image whose coefficients are `c` (n x n, rows
    and columns of frequencies 1..n, as PDQ keeps them), turned and flipped, in DIHEDRAL
    order (exactly so for a 64x64 image)."""
    # A DCT coefficient of frequency f along an axis changes sign when the image is
    # mirrored along that axis if f is odd. Row i holds frequency i + 1: odd for even i.
    sign = np.where(np.arange(c.shape[0]) % 2 == 0, -1.0, 1.0).astype(c.dtype)  # under mirroring
    # Transposing the image transposes its DCT.
    upside_down = c * sign[:, None]
    mirrored = c * sign[None, :]
    both = upside_down * sign[None, :]
    variants = (
        c,
        mirrored.T,  # rotate90: turned a quarter anticlockwise, numpy.rot90(image)
        both,  # rotate180
        upside_down.T,  # rotate270: turned a quarter clockwise
        upside_down,  # flip_x: upside down, numpy.flipud
        mirrored,  # flip_y: mirrored left to right, numpy.fliplr
        c.T,  # flip_plus1: transposed
        both.T,  # flip_minus1: transposed about the other diagonal
    )
    return np.stack(variants)


def exact_dihedral_hashes(luma: np.ndarray) -> tuple[tuple[str, ...], int]:
    """The eight PDQ hashes of `luma` turned and flipped, in DIHEDRAL order, each computed
    from the transformed pixels, and its quality (the untransformed image's).

    `dihedral_hashes` derives them from one DCT by sign changes, as the reference does;
    that is exact only if the blur and decimation are symmetric, and they are not: the
    decimation keeps pixel int((r + 0.5) * n / 64) and the box filter's window leans one
    way, so mirroring moves every sample by up to a pixel, and on textured images the
    derived hash of a mirror can lie far (tens of bits) from PDQ of the mirrored copy.

    Transposing commutes with PDQ's downsampling (each side has its own band matrix), so
    only the four combinations of reversing rows and columns need their own downsample:
    two passes over the image (rows as they are, and reversed) instead of one, and three
    more passes over the 64-row intermediate. The first hash equals `pdq_hash`'s.
    """
    hashes, quality, _small = exact_dihedral(luma)
    return hashes, quality


def exact_dihedral(luma: np.ndarray) -> tuple[tuple[str, ...], int, np.ndarray | None]:
    """`exact_dihedral_hashes`, and the 64x64 image of `luma` (`downsample`'s; None when
    `luma` is too small to hash) for what else is computed from it."""
    if luma.ndim != 2:
        raise ValueError(f"luma must be two-dimensional, got shape {luma.shape}")
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_SIDE or cols < MIN_HASHABLE_SIDE:
        return (_ZERO_HASH,) * len(DIHEDRAL), 0, None
    pixels = np.asarray(luma, dtype=np.float32)
    # Both row bands (as is, reversed) in one product, then both column bands in one: each
    # output is the same weighted sum as band by band, in fewer, larger numpy calls.
    # cols x 128, made contiguous once: the column pass then gathers whole rows of it
    # instead of strided elements (the same values, so the same sums).
    mixed_t = np.ascontiguousarray(_weighted_rows(_both_bands(rows), pixels).T)
    both = _weighted_rows(_both_bands(cols), mixed_t)  # 128 (columns as is, reversed) x 128
    # small[(r, c)]: the 64x64 image of `luma` with rows reversed if r, columns if c.
    small = {
        (r, c): both[c * _SIDE : (c + 1) * _SIDE, r * _SIDE : (r + 1) * _SIDE].T for r in (0, 1) for c in (0, 1)
    }
    dct = _dct_matrix()
    coeff = {key: dct @ value.astype(np.float64) @ dct.T for key, value in small.items()}
    variants = (
        coeff[0, 0],  # original
        coeff[0, 1].T,  # rotate90 = numpy.rot90: columns reversed, then transposed
        coeff[1, 1],  # rotate180
        coeff[1, 0].T,  # rotate270: rows reversed, then transposed
        coeff[1, 0],  # flip_x: upside down
        coeff[0, 1],  # flip_y: mirrored left to right
        coeff[0, 0].T,  # flip_plus1: transposed
        coeff[1, 1].T,  # flip_minus1
    )
    return _to_hex(np.stack(variants)), _quality(small[0, 0]), small[0, 0]


@functools.lru_cache(maxsize=256)
def _both_bands(n: int) -> tuple[np.ndarray, np.ndarray]:
    """_band(n) and _reversed_band(n) stacked: 128 rows, as is then reversed."""
    (indices, weights), (mirrored, same) = _band(n), _reversed_band(n)
    both = np.concatenate([indices, mirrored]), np.concatenate([weights, same])
    for array in both:
        array.setflags(write=False)
    return both


@functools.lru_cache(maxsize=256)
def _reversed_band(n: int) -> tuple[np.ndarray, np.ndarray]:
    """_band(n) applied to the side reversed: the same weights at mirrored pixels."""
    indices, weights = _band(n)
    mirrored = (n - 1) - indices
    mirrored.setflags(write=False)
    return mirrored, weights


def _dct16(luma: np.ndarray) -> tuple[np.ndarray | None, int]:
    """The 16x16 DCT coefficients (float64) and the quality, or (None, 0) if too small."""
    if luma.ndim != 2:
        raise ValueError(f"luma must be two-dimensional, got shape {luma.shape}")
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_SIDE or cols < MIN_HASHABLE_SIDE:
        return None, 0
    pixels = np.asarray(luma, dtype=np.float32)
    small = downsample(pixels)
    dct = _dct_matrix()
    return dct @ small.astype(np.float64) @ dct.T, _quality(small)


def downsample(luma: np.ndarray) -> np.ndarray:
    """The 64x64 float32 image PDQ hashes: `luma` blurred (Jarosz filter) and decimated.

    That is `A_rows @ luma @ A_cols.T` with a 64 x n matrix per side (see _band). Each
    row of those matrices is non-zero only over about n / 64 neighbouring pixels, so each
    product is done band by band: 64 weighted sums of that many rows (then columns). No
    single product is large enough for OpenBLAS to hand it to its own threads, which
    would spin beside the bot's hashing threads when BLAS threading is left on.
    """
    rows, cols = luma.shape
    pixels = np.asarray(luma, dtype=np.float32)
    mixed = _weighted_rows(_band(rows), pixels)  # 64 x cols
    return _weighted_rows(_band(cols), np.ascontiguousarray(mixed.T)).T  # see exact_dihedral


def _weighted_rows(band: tuple[np.ndarray, np.ndarray], array: np.ndarray) -> np.ndarray:
    """`matrix @ array` for the 64 x n matrix given as `band` (see _band)."""
    indices, weights = band
    # np.take, not array[indices]: the same rows, gathered faster when they are short.
    return np.matmul(weights[:, None, :], np.take(array, indices, axis=0))[:, 0, :]


@functools.lru_cache(maxsize=256)
def _band(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64 x n blur-and-decimate matrix for a side of n pixels, as bands: row r is
    `weights[r]` at pixels `indices[r]` (each 64 x k) and zero elsewhere.

    The reference's box filter (downscaling.cpp, box1DFloat) has a window of w pixels,
    w = ceil(n / 128), with `half` = (w + 2) // 2 of them at and after the output pixel and
    w - half before it; at the ends the window shrinks to what is inside the image:
        box(in)[i] = mean(in[first(i) .. last(i)]),
        first(i) = max(0, i - (w - half)),  last(i) = min(n - 1, i + half - 1)
    Two passes, then decimation keeps pixel p = int((r + 0.5) * n / 64) for output r:
        out[r] = mean over m in first(p)..last(p) of mean(in[first(m) .. last(m)])
    so row r spans pixels first(first(p)) .. last(last(p)), at most 2w - 1 of them.
    """
    window = (n + 2 * _SIDE - 1) // (2 * _SIDE)
    before, after = window - (window + 2) // 2, (window + 2) // 2 - 1

    def first(i: np.ndarray) -> np.ndarray:
        return np.maximum(0, i - before)

    def last(i: np.ndarray) -> np.ndarray:
        return np.minimum(n - 1, i + after)

    picked = ((np.arange(_SIDE) + 0.5) * n / _SIDE).astype(np.int64)
    # The pixels m the second pass averages for each output (padding marked invalid).
    m = first(picked)[:, None] + np.arange(window)[None, :]  # 64 x w
    valid = m <= last(picked)[:, None]
    m = np.minimum(m, n - 1)
    # The pixels j the first pass averaged for each m.
    j = first(m[:, :1]) + np.arange(2 * window - 1)[None, :]  # 64 x (2w - 1)
    covers = (first(m)[:, :, None] <= j[:, None, :]) & (j[:, None, :] <= last(m)[:, :, None])
    shares = (covers & valid[:, :, None]) / (last(m) - first(m) + 1.0)[:, :, None]
    weights = shares.sum(axis=1) / valid.sum(axis=1)[:, None]
    indices = np.minimum(j, n - 1)  # past the end the weight is 0
    weights = weights.astype(np.float32)
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


@functools.cache
def _dct_matrix() -> np.ndarray:
    """16 x 64 float64: DCT-II rows for frequencies 1..16 (the DC term is left out)."""
    scale = float(np.float32(np.sqrt(2.0 / _SIDE)))
    i = np.arange(1, _DCT_SIDE + 1)[:, None]
    j = np.arange(_SIDE)[None, :]
    matrix = (scale * np.cos(np.pi / 2 / _SIDE * i * (2 * j + 1))).astype(np.float32)
    matrix = matrix.astype(np.float64)  # the reference's coefficients, summed more exactly
    matrix.setflags(write=False)
    return matrix


def _quality(small: np.ndarray) -> int:
    """The reference's quality: the sum of quantised gradients of the 64x64 image, / 90.

    Each step between neighbours counts int((u - v) * 100 / 255) in single precision,
    truncated towards zero, so steps under 2.55 grey levels count nothing.
    """
    total = 0
    for step in (small[:-1, :] - small[1:, :], small[:, :-1] - small[:, 1:]):
        scaled = np.asarray(step, dtype=np.float32)  # a fresh array: scaled in place
        np.multiply(scaled, np.float32(100), out=scaled)
        np.divide(scaled, np.float32(255), out=scaled)
        total += int(np.abs(scaled.astype(np.int32)).sum())
    return min(100, total // 90)


def _to_hex(coefficients: np.ndarray) -> tuple[str, ...]:
    """One hash per 16x16 block of `coefficients` (... x 16 x 16).

    Bit 16i + j, counted from the least significant, is set when coefficient [i, j] is
    above the block's median; the reference's median of 256 values is the 128th smallest.
    """
    flat = coefficients.reshape(-1, _BITS)
    median = np.partition(flat, _BITS // 2 - 1, axis=1)[:, _BITS // 2 - 1 : _BITS // 2]
    bits = flat[:, ::-1] > median  # most significant bit first
    text = np.packbits(bits, axis=1).tobytes().hex()
    return tuple(text[i : i + _BITS // 4] for i in range(0, len(text), _BITS // 4))


# For other modules that hash images derived from one luma without building them
# (bot/hashing/uncrop.py): the band of a side, the product with it, the DCT rows, and the
# hashes of 16x16 coefficients.
band = _band
weighted_rows = _weighted_rows
dct_matrix = _dct_matrix


def hashes_from_coefficients(coefficients: np.ndarray) -> tuple[str, ...]:
    """PDQ hashes of k x 16 x 16 DCT coefficients (as `_dct16` computes them), in order."""
    return _to_hex(coefficients)

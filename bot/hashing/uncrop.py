"""PDQ queries for cropped copies: the posted image padded back to its original's extent.

Pure: a luma array in, hex hashes out. PDQ is not robust to crops: cutting 5% off an
image moves every one of PDQ's 64x64 samples, and the copy lands 50-90 bits from its
original's hash (README, "Crops"). A provider list holds only the original's PDQ, so the
copy's own hash cannot be brought nearer by listing crops of the original. What can be done
on the query side is to guess the cut: pad the posted image back, by repeating its edge
pixels, to the size the original had if `HYPOTHESES[i]` was cut away. Where the guess is
right, every sample of the padded image falls where the original's fell, and only the
padding differs from the original's margin: in `bench/crop_study.py` the right guess
brought 5%-cropped copies from a median of 48-65 bits to 14-16 bits of their original.

Which guesses (44): centred cuts of 1.25-5% of each side; cuts of 1.25-5% from one side;
and off-centre crops that cut 5% of the width and 5% of the height, split between the two
ends of each axis in steps of 1.25%. A guess 1.25% of a side off the real cut
lands ~14 bits further (median), so cuts between the steps are found less often. More guesses find more crops and bring unrelated images nearer by
chance (`python bench/crop_study.py`, 92 known images, 5,600 unrelated; threshold 31):
the nearest unrelated image came to 48 bits of a listed PDQ as decoded, 44 with the
centred and one-sided guesses, 42 with these 44, and 32 with every combination of the
steps at the four sides (625), which is too near. Cuts of more than 5% of a side are not
guessed: the padding is then a larger share of the image, and even the right guess found
only half of the copies cut 5% at each side (10% centred).

Computed with PDQ's own blur-and-decimate bands (bot/hashing/pdq.py): padding by repeating
edge pixels is the band of the padded side with its pixel indices clamped to the image, so
nothing is padded in memory; guesses that cut the rows alike share one pass over the
image's rows, and those that cut no column share one pass over its columns; then each
pass's 64 lines are reduced to PDQ's 16 frequencies (in single precision) before the pass
that is each guess's own. The result is `pdq.pdq_hash` of the padded image
(tests/unit/test_uncrop.py), but for a bit whose coefficient lies within rounding of the
median, which only near-flat images have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import pdq, smoothsig

_SIDE = 64  # PDQ's downsampled image

# Fractions of the original's side cut away, per side.
_STEPS = (0.0125, 0.025, 0.0375, 0.05)
_SIDES = ("left", "right", "top", "bottom")
# An off-centre crop: 5% of the width and 5% of the height cut, split between the two
# ends of each axis in steps of 1.25% (25 ways; the even split is a centred guess).
_OFF_CENTRE_TOTAL = 0.05


def _name(cut: tuple[float, float, float, float]) -> str:
    """How a guess reads in a verdict: "2.5% cut from each side", "5% cut from the bottom",
    "1.25% cut from the left, 3.75% from the right, 5% from the top"."""
    if len(set(cut)) == 1:
        return f"{cut[0] * 100:g}% cut from each side"
    parts = [f"{c * 100:g}% from the {side}" for side, c in zip(_SIDES, cut) if c]
    return parts[0].replace(" from", " cut from", 1) + "".join(f", {p}" for p in parts[1:])


def _cuts() -> list[tuple[float, float, float, float]]:
    centred = [(s, s, s, s) for s in _STEPS]
    one_side = [tuple(s if i == k else 0.0 for i in range(4)) for k in range(4) for s in _STEPS]
    splits = [(a, round(_OFF_CENTRE_TOTAL - a, 4)) for a in (0.0, *_STEPS)]
    off_centre = [(left, right, top, bottom) for left, right in splits for top, bottom in splits]
    return list(dict.fromkeys([*centred, *one_side, *off_centre]))  # type: ignore[list-item]


# (name, (left, right, top, bottom)): what was cut from the original, as fractions of its
# width (left, right) and height (top, bottom). The order is `Hashes.pdq_uncropped`'s.
HYPOTHESES: tuple[tuple[str, tuple[float, float, float, float]], ...] = tuple((_name(c), c) for c in _cuts())


def queries(luma: np.ndarray) -> tuple[str, ...]:
    """PDQ of `luma` (float32, as pdq.luma gives it) padded back as each of HYPOTHESES
    says, in that order; () for an image too small to hash."""
    found = coefficients_of(luma)
    return () if found is None else pdq.hashes_from_coefficients(found)


def signatures(coefficients: np.ndarray) -> tuple[str, ...]:
    """The low-frequency signature (bot/hashing/smoothsig.py) of each guess, from its
    coefficients (`coefficients_of`); () when any guess is flat (a verdict names a guess
    by its place)."""
    return smoothsig.of_many_coefficients(coefficients)


def coefficients_of(luma: np.ndarray) -> np.ndarray | None:
    """PDQ's 16x16 DCT coefficients of `luma` padded back as each of HYPOTHESES says
    (guesses x 16 x 16), or None for an image too small to hash."""
    rows, cols = luma.shape
    if rows < pdq.MIN_HASHABLE_SIDE or cols < pdq.MIN_HASHABLE_SIDE:
        return None
    pixels = np.asarray(luma, dtype=np.float32)
    plan = _plan(rows, cols)
    # PDQ keeps 16x16 of the 64x64 image's DCT coefficients, and the DCT of one axis
    # commutes with the blur-and-decimate of the other: each pass's 64 lines are reduced to
    # their 16 frequencies first, so the per-guess work is on 16 lines, not 64.
    dct_t = pdq.dct_matrix().T
    dct32 = _dct32()  # single precision for the wide products: 2.5x faster than double here
    coefficients = np.empty((len(HYPOTHESES), 16, 16))
    # Each first pass's lines, reduced to 16 frequencies, side by side: then one gather and
    # one product serve every guess's second pass (nine of each cost more in calls than work).
    firsts = len(plan.row_bands[1]) // _SIDE
    mixed = pdq.weighted_rows(plan.row_bands, pixels).reshape(firsts, _SIDE, cols)  # every first pass at once
    lines = np.matmul(mixed.transpose(0, 2, 1), dct32.T).reshape(firsts * cols, 16)
    coefficients[plan.by_rows.numbers] = _second_pass(lines, plan.by_rows) @ dct_t
    if plan.by_columns is not None:
        transposed = _transposed(pixels)
        mixed = dct32 @ pdq.weighted_rows(pdq.band(cols), transposed)  # 16 column frequencies x rows
        group = plan.by_columns
        coefficients[group.numbers] = (_second_pass(np.ascontiguousarray(mixed.T), group) @ dct_t).transpose(0, 2, 1)
    return coefficients


def _transposed(pixels: np.ndarray, tile: int = 128) -> np.ndarray:
    """A contiguous copy of pixels.T, a tile at a time: copying a transposed view whole
    walks memory a column at a time and took twice as long here (1 MP: 76 against 137 us)."""
    rows, cols = pixels.shape
    out = np.empty((cols, rows), dtype=pixels.dtype)
    for top in range(0, rows, tile):
        for left in range(0, cols, tile):
            out[left : left + tile, top : top + tile] = pixels[top : top + tile, left : left + tile].T
    return out


@dataclass(frozen=True)
class _Group:
    """Guesses whose second pass runs together: their numbers in HYPOTHESES and the bands
    of their second pass, stacked (guesses x 64 x taps), into the lines of their first."""

    numbers: np.ndarray  # int, to index the guesses' coefficients with
    indices: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class _Plan:
    row_bands: tuple[np.ndarray, np.ndarray]  # the first passes over the rows, stacked (passes * 64 x taps)
    by_rows: _Group  # every guess that cuts a column, its bands into row_bands' lines
    by_columns: _Group | None  # the guesses that cut no column: columns first


@functools.lru_cache(maxsize=64)
def _plan(rows: int, cols: int) -> _Plan:
    """How the guesses for an image of rows x cols share their passes (kept per size:
    images come in few sizes). A pass over the whole image is the costly part: those that
    cut only columns (left, right) share the rows' plain pass, those that cut only rows
    (top, bottom) share the columns' plain pass (of the transposed image), and the rest
    (cut on both axes) share a pass with those that cut the rows alike."""
    by_rows: dict[tuple[int, int], list[int]] = {}
    by_columns: list[int] = []
    for number, (_name, (left, right, top, bottom)) in enumerate(HYPOTHESES):
        if (left, right) == (0.0, 0.0):
            by_columns.append(number)
        else:
            by_rows.setdefault(_padding(rows, top, bottom), []).append(number)
    numbers = [k for group in by_rows.values() for k in group]
    # Guess k's second pass reads the lines of its first pass: the block of cols lines
    # numbered as its row cut is among by_rows.
    offsets = [first * cols for first, group in enumerate(by_rows.values()) for _k in group]
    indices, weights = _stacked_bands(cols, tuple(_padding(cols, *HYPOTHESES[k][1][:2]) for k in numbers))
    indices = indices + np.array(offsets)[:, None, None]
    indices.setflags(write=False)
    columns = None
    if by_columns:
        column_indices, column_weights = _stacked_bands(rows, tuple(_padding(rows, *HYPOTHESES[k][1][2:]) for k in by_columns))
        columns = _Group(np.array(by_columns), column_indices, column_weights)
    first_indices, first_weights = _stacked_bands(rows, tuple(by_rows))
    taps = first_indices.shape[-1]
    firsts = (first_indices.reshape(-1, taps), first_weights.reshape(-1, taps))
    return _Plan(firsts, _Group(np.array(numbers), indices, weights), columns)


def _second_pass(lines: np.ndarray, group: _Group) -> np.ndarray:
    """The second pass of each guess of `group` (guesses x k x 64) over `lines` (n x k:
    the first passes' lines, k values each): one gather of lines for all of them, and one
    batched product (2.5x faster here than a gather along the rows with einsum)."""
    taps = group.indices.shape[-1]
    # np.take, not lines[...]: gathering 16-value lines, it is four times faster here.
    gathered = np.take(lines, group.indices.reshape(-1, taps), axis=0)
    out = np.matmul(group.weights.reshape(-1, 1, taps), gathered)  # guesses*64 x 1 x k
    return out.reshape(len(group.numbers), _SIDE, lines.shape[1]).transpose(0, 2, 1)


@functools.cache
def _dct32() -> np.ndarray:
    return pdq.dct_matrix().astype(np.float32)


@functools.lru_cache(maxsize=256)
def _stacked_bands(n: int, paddings: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The bands of `paddings` (guesses x 64 x taps, indices and weights) for a side of n."""
    bands = [_band(n, *padding) for padding in paddings]
    # Padding can widen PDQ's window (it grows with the side): bands with fewer taps are
    # stacked with zero weights.
    taps = max(indices.shape[1] for indices, _weights in bands)
    indices = np.stack([np.pad(i, ((0, 0), (0, taps - i.shape[1]))) for i, _w in bands])
    weights = np.stack([np.pad(w, ((0, 0), (0, taps - w.shape[1]))) for _i, w in bands])
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


def _padding(n: int, cut_before: float, cut_after: float) -> tuple[int, int]:
    """Pixels to add before and after a side of `n` pixels that had `cut_before` and
    `cut_after` of its original length cut at its ends."""
    if not cut_before and not cut_after:
        return 0, 0
    original = n / (1.0 - cut_before - cut_after)
    return round(original * cut_before), round(original * cut_after)


@functools.lru_cache(maxsize=512)
def _band(n: int, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """PDQ's band (pdq.band) for the side of n pixels padded by `before` and `after`
    pixels that repeat its edge pixels: the padded side's band, its pixels clamped to the
    n that are there."""
    indices, weights = pdq.band(n + before + after)
    clamped = np.clip(indices - before, 0, n - 1)
    clamped.setflags(write=False)
    return clamped, weights


def checked(value: object) -> tuple[str, ...]:
    """`Hashes.pdq_uncropped` as a sandbox worker sent it (JSON, not trusted): none, or one
    PDQ hash (64 lowercase hex digits) per guess of HYPOTHESES; ValueError otherwise."""
    if not isinstance(value, list) or len(value) not in (0, len(HYPOTHESES)):
        raise ValueError("malformed pdq_uncropped")
    for text in value:
        if not (isinstance(text, str) and len(text) == 64 and all(c in _HEX for c in text)):
            raise ValueError("malformed pdq_uncropped")
    return tuple(value)


_HEX = frozenset("0123456789abcdef")

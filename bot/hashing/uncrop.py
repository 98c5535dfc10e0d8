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
ends of each axis in steps of 1.25%. A guess 1.25% of a side off the real cut lands ~14 bits
further (median), so cuts between the steps are found less often. More guesses find more
crops and bring unrelated images nearer by chance (`python bench/crop_study.py`, 92 known
images, 5,600 unrelated; threshold 31):
the nearest unrelated image came to 48 bits of a listed PDQ as decoded, 44 with the
centred and one-sided guesses, 42 with these 44, and 32 with every combination of the
steps at the four sides (625), which is too near. Cuts of more than 5% of a side are not
guessed: the padding is then a larger share of the image, and even the right guess found
only half of the copies cut 5% at each side (10% centred).

Computed with PDQ's own blur-and-decimate bands (bot/hashing/pdq.py): padding by repeating
edge pixels is the band of the padded side with its pixel indices clamped to the image, so
nothing is padded in memory. Each band is a row of a sparse matrix: the guesses that cut the
rows alike share one pass over the image's rows, reduced to PDQ's 16 frequencies (single
precision) before the pass that is each guess's own; the guesses that cut no column share
one product of the image with the columns' plain band and DCT (16 columns of numbers). The
result is `pdq.pdq_hash` of the padded image (tests/unit/test_uncrop.py), but for a bit whose
coefficient lies within rounding of the median, which only near-flat images have.

The sparse products are scipy's (`scipy.sparse`, CSR): one pass over the matrix's entries,
each a multiply-add of a row of the image, with nothing gathered in between. numpy has no
such product; its gather-then-multiply form (np.take, np.matmul) wrote every tap's rows into
a temporary several times the image and took 2-3.5x as long for the 44 guesses of a 1 MP
photo (bench/README.md, issue 16).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from . import pdq, smoothsig
from .hextext import hex_bytes

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
    dct = pdq.dct_matrix()
    coefficients = np.empty((len(HYPOTHESES), 16, 16))
    # PDQ keeps 16x16 of the 64x64 image's DCT coefficients, and the DCT of one axis
    # commutes with the blur-and-decimate of the other: each first pass's 64 lines are
    # reduced to their 16 frequencies first, so each guess's own pass is over 16 numbers
    # per column, not 64.
    firsts = plan.first_pass.shape[0] // _SIDE
    mixed = (plan.first_pass @ pixels).reshape(firsts, _SIDE, cols)
    lines = np.matmul(mixed.transpose(0, 2, 1), _dct32().T).reshape(firsts * cols, 16)
    sampled = (plan.second_pass @ lines).reshape(-1, _SIDE, 16)  # guess, column sample, row frequency
    coefficients[plan.by_rows] = sampled.transpose(0, 2, 1) @ dct.T
    if len(plan.by_columns):
        # The columns' plain band and DCT in one dense product: rows x 16 column frequencies.
        frequencies = pixels @ plan.column_dct
        sampled = (plan.column_pass @ frequencies).reshape(-1, _SIDE, 16)  # guess, row sample, column frequency
        coefficients[plan.by_columns] = np.matmul(dct, sampled)
    return coefficients


@dataclass(frozen=True)
class _Plan:
    """How the guesses for an image of one size are computed (see _plan)."""

    by_rows: np.ndarray  # the guesses that cut a column, by number in HYPOTHESES
    first_pass: sparse.csr_matrix  # (row cuts * 64) x rows: the row bands of their row cuts
    second_pass: sparse.csr_matrix  # (by_rows * 64) x (row cuts * cols): each one's column band, into its first pass's lines
    by_columns: np.ndarray  # the guesses that cut no column
    column_dct: np.ndarray  # cols x 16, float32: the columns' plain band then the DCT
    column_pass: sparse.csr_matrix  # (by_columns * 64) x rows: each one's row band


@functools.lru_cache(maxsize=64)
def _plan(rows: int, cols: int) -> _Plan:
    """How the guesses for an image of rows x cols share their passes (kept per size:
    images come in few sizes). A pass over the whole image is the costly part: those that
    cut only columns (left, right) share the rows' plain pass, those that cut only rows
    (top, bottom) share the columns' plain band, and the rest (cut on both axes) share a
    pass with those that cut the rows alike."""
    by_row_cut: dict[tuple[int, int], list[int]] = {}
    by_columns: list[int] = []
    for number, (_name, (left, right, top, bottom)) in enumerate(HYPOTHESES):
        if (left, right) == (0.0, 0.0):
            by_columns.append(number)
        else:
            by_row_cut.setdefault(_padding(rows, top, bottom), []).append(number)
    by_rows = [k for group in by_row_cut.values() for k in group]
    # Guess k's own pass reads the cols lines of its first pass (first passes side by side).
    offsets = [first * cols for first, group in enumerate(by_row_cut.values()) for _k in group]
    column_bands = _stacked_bands(cols, tuple(_padding(cols, *HYPOTHESES[k][1][:2]) for k in by_rows))
    second_pass = _matrix(*column_bands, len(by_row_cut) * cols, np.repeat(offsets, _SIDE))
    first_pass = _matrix(*_stacked_bands(rows, tuple(by_row_cut)), rows)
    column_pass = _matrix(*_stacked_bands(rows, tuple(_padding(rows, *HYPOTHESES[k][1][2:]) for k in by_columns)), rows)
    indices, weights = pdq.band(cols)
    plain = np.zeros((_SIDE, cols), dtype=np.float32)
    np.add.at(plain, (np.arange(_SIDE)[:, None], indices), weights)  # clamped pixels repeat
    column_dct = np.ascontiguousarray((_dct32() @ plain).T)
    column_dct.setflags(write=False)
    return _Plan(np.array(by_rows), first_pass, second_pass, np.array(by_columns), column_dct, column_pass)


def _matrix(indices: np.ndarray, weights: np.ndarray, width: int, offsets: np.ndarray | int = 0) -> sparse.csr_matrix:
    """The stacked bands (guesses x 64 x taps) as one sparse matrix, a band per row, of
    `width` columns; row r's pixel indices moved by offsets[r]. A clamped index repeats in
    its row: CSR products add every entry, so it counts as often as the padding repeats it."""
    taps = indices.shape[-1]
    columns = indices.reshape(-1, taps) + np.reshape(offsets, (-1, 1))
    starts = np.arange(0, columns.size + 1, taps)
    return sparse.csr_matrix((weights.reshape(-1), columns.reshape(-1), starts), shape=(len(starts) - 1, width))


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
    # The digits of all guesses checked as one string, in C (bot/hashing/hextext.py).
    if hex_bytes(value, 64) is None:
        raise ValueError("malformed pdq_uncropped")
    return tuple(value)


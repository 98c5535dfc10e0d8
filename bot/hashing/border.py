"""Uniform borders (padding, letterbox, frame) around an image, found so they can be trimmed.

Pure: a reduced RGB image (or its pixels) in, a box out. Part of perceptual hashing
(bot/hashing/media.py): a copy posted with a border added gets the trimmed image's PDQ
queries too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

# Border trimming: a line belongs to a border band when at least _BAND_FRACTION of its
# pixels are within _BAND_TOLERANCE (per channel) of the band's colour; the tolerance
# absorbs JPEG noise and ringing next to the content.
_BAND_TOLERANCE = 12
_BAND_FRACTION = 0.9
_MIN_KEPT = 0.5  # never trim a side to less than half its length
_MIN_BAND = 0.01  # bands thinner than 1% of the side (or 2 px) are ignored
_LUMA_SLACK = 0.01  # float32 rounding of a luma, with room to spare (see _may_be_uniform)


def trim_uniform_border(img: Image.Image) -> Image.Image:
    """`img` without uniform-colour bands (padding, letterbox, frame) along its sides.

    Returns `img` itself when there is nothing to trim, or when trimming would keep less
    than half of a side (a mostly flat image is not a border around a small picture).
    """
    box = trim_box(img)
    return img if box == (0, 0, *img.size) else img.crop(box)


def trim_box(img: Image.Image | np.ndarray, luma: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box `trim_uniform_border` crops `img` to (its RGB
    pixels, rows x columns x 3 uint8, will do too).

    `luma`, when given, is PDQ's float luma of `img` (bot/hashing/media.py has it already):
    when it shows that no edge line can be uniform, no colour is read at all."""
    pixels = img if isinstance(img, np.ndarray) or img.mode == "RGB" else img.convert("RGB")
    w, h = (pixels.shape[1], pixels.shape[0]) if isinstance(pixels, np.ndarray) else pixels.size
    if w >= 4 and h >= 4 and luma is not None and luma.shape == (h, w) and not _may_be_uniform(luma):
        return 0, 0, w, h
    if w >= 4 and h >= 4 and not any(_uniform_lines(lines).any() for lines in _edges(pixels)):
        # Most images: no edge line is uniform, so no band starts (what _bands would find
        # after reading the first few lines at each end, for ~60% of the cost).
        return 0, 0, w, h
    return scanned_box(pixels)


def _may_be_uniform(luma: np.ndarray) -> bool:
    """False when the luma of the four edge lines proves that none of them is uniform as
    _uniform_lines judges colours; True when it may be (then the colours decide).

    A pixel within _BAND_TOLERANCE of a colour in every channel has a luma within
    _BAND_TOLERANCE of the colour's (the luma weighs the channels by weights summing to 1),
    so a uniform line has _BAND_FRACTION of its lumas within a span of twice the tolerance:
    with the lumas sorted, some run of that many spans no more. The float luma is rounded
    to float32 (~2e-5 at 255); _LUMA_SLACK covers it. Four lines of floats in numpy cost
    a fraction of copying the edges' colours out of Pillow (bench/README.md, issue 16).
    """
    for lines in (luma[[0, -1]], luma[:, [0, -1]].T):
        n = lines.shape[1]
        count = _fewest_near(n)
        ordered = np.sort(lines, axis=1)
        spans = ordered[:, count - 1 :] - ordered[:, : n - count + 1]
        if (spans.min(axis=1) <= 2 * _BAND_TOLERANCE + _LUMA_SLACK).any():
            return True
    return False


def _fewest_near(n: int) -> int:
    """The fewest pixels near the colour that make a line of n pixels uniform: the least
    count with count / n >= _BAND_FRACTION, as _uniform_lines computes it."""
    count = max(1, min(n, int(np.ceil(_BAND_FRACTION * n))))
    while count > 1 and (count - 1) / n >= _BAND_FRACTION:
        count -= 1
    while count < n and count / n < _BAND_FRACTION:
        count += 1
    return count


def _edges(pixels: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last rows, and the first and last columns, each pair as 2 x length x 3.
    From a Pillow image, only these four lines are copied out: the whole image is, by
    scanned_box, only when one of them is uniform (few images)."""
    if isinstance(pixels, np.ndarray):
        return pixels[[0, -1]], pixels[:, [0, -1]].transpose(1, 0, 2)
    w, h = pixels.size
    rows = np.concatenate([np.asarray(pixels.crop((0, y, w, y + 1))) for y in (0, h - 1)])
    columns = np.concatenate([np.asarray(pixels.crop((x, 0, x + 1, h))) for x in (0, w - 1)], axis=1)
    return rows, columns.transpose(1, 0, 2)


def scanned_box(img: Image.Image | np.ndarray) -> tuple[int, int, int, int]:
    """trim_box's answer, found by reading lines from each end."""
    pixels = _pixels(img)
    h, w = pixels.shape[:2]
    top, bottom = _bands(pixels, (0, 0, w, h), columns=False)
    left, right = _bands(pixels, (0, top, w, h - bottom), columns=True)
    if (left or right) and not (top or bottom):
        # Side bands found; the top/bottom ones may only show once the sides are gone.
        top, bottom = _bands(pixels, (left, 0, w - right, h), columns=False)
    return left, top, w - right, h - bottom


def _bands(pixels: np.ndarray, box: tuple[int, int, int, int], columns: bool) -> tuple[int, int]:
    """Widths of the uniform bands at both ends of the rows (or columns) of `box` in `pixels`.

    Only the lines looked at are compared, a few at a time: most images have no border,
    and their first few lines at each end settle it.
    """
    x0, y0, x1, y1 = box
    n, length = (x1 - x0, y1 - y0) if columns else (y1 - y0, x1 - x0)
    if n < 4 or length <= 0:
        return 0, 0

    def read(first: int, stop: int, from_end: bool) -> np.ndarray:
        """Lines first..stop-1 counted from the start (or end), as lines x pixels x 3."""
        lo, hi = (n - stop, n - first) if from_end else (first, stop)
        if columns:
            lines = pixels[y0:y1, x0 + lo : x0 + hi].transpose(1, 0, 2)
        else:
            lines = pixels[y0 + lo : y0 + hi, x0:x1]
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


def _pixels(img: Image.Image | np.ndarray) -> np.ndarray:
    """`img`'s pixels as rows x columns x 3 (RGB)."""
    if isinstance(img, np.ndarray):
        return img
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _uniform_lines(lines: np.ndarray) -> np.ndarray:
    """For each line of `lines` (lines x pixels x 3), whether it is uniform as _band_width
    judges its first line; the lines are judged together, in one pass of each numpy step."""
    count, pixels = lines.shape[:2]
    values = np.ascontiguousarray(lines.transpose(0, 2, 1))  # partitioning along a contiguous axis is faster
    colour = _median_of_rows(values.reshape(count * 3, pixels)).reshape(count, 3)
    low = np.maximum(colour - _BAND_TOLERANCE, 0)
    span = (np.minimum(colour + _BAND_TOLERANCE, 255) - low).astype(np.uint8)
    # low <= value <= low + span in one uint8 subtraction: values below low wrap round.
    within = (values - low.astype(np.uint8)[:, :, None]) <= span[:, :, None]  # lines x 3 x pixels
    near = within[:, 0] & within[:, 1] & within[:, 2]
    return np.count_nonzero(near, axis=1) / pixels >= _BAND_FRACTION


def _median_colour(line: np.ndarray) -> np.ndarray:
    """Per channel, the median of `line` (pixels x 3, uint8) rounded half to even, as
    numpy.median(line, axis=0).round() gives it (the mean of the middle two when even)."""
    return _median_of_rows(np.ascontiguousarray(line.T))  # partitioning along a contiguous axis is faster


def _median_of_rows(values: np.ndarray) -> np.ndarray:
    """The median of each row of `values` (uint8), as float64 rounded half to even."""
    middle = values.shape[1] // 2
    if values.shape[1] % 2:
        return np.partition(values, middle, axis=1)[:, middle].astype(np.float64)
    both = np.partition(values, (middle - 1, middle), axis=1)
    return np.round((both[:, middle - 1].astype(np.float64) + both[:, middle]) / 2)

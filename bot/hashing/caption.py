"""Caption bars (a meme's line of text on a white or black band above or below the picture),
found so they can be cut off. Pure: PDQ's float luma in, a box out.

Part of perceptual hashing (bot/hashing/media.py): a caption bar found here is cut off
with any uniform border (bot/hashing/border.py; the deeper cut wins, since the bar's margin
alone may pass for a border), and the rest gets the trimmed image's PDQ queries, so a known
image posted under a caption is found. A bar's rows are at least partly its shade (big text
covers most of the rows it crosses), and it ends, as it starts, with rows wholly of its
shade: the margins around the text. A band that runs on past _MAX_BAR of the height is not
a bar but the picture itself (a white sky, a night photo).
"""

from __future__ import annotations

import numpy as np

_TOLERANCE = 16  # luma levels: JPEG noise and the text's antialiasing
_EDGE_FRACTION = 0.95  # of the edge row's pixels at the bar's shade
_ROW_FRACTION = 0.3  # of a bar row's pixels at its shade: big text covers the rest
_MIN_BAR = 0.04  # of the height: thinner bands are borders' business, or nothing
_MAX_BAR = 0.35
_WHITE, _BLACK = 230.0, 26.0  # the shades caption bars come in


def caption_box(luma: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the picture under or over a caption bar at the top or
    bottom of `luma` (rows x columns), or None when there is none."""
    rows, cols = luma.shape
    limit = int(rows * _MAX_BAR)
    if rows < 8 or cols < 8 or limit < 2:
        return None
    for top in (True, False):
        band = luma[:limit] if top else luma[::-1][:limit]
        shade = float(np.median(band[0]))
        if _BLACK <= shade < _WHITE or np.mean(np.abs(band[0] - shade) <= _TOLERANCE) < _EDGE_FRACTION:
            continue
        at_shade = np.mean(np.abs(band - shade) <= _TOLERANCE, axis=1)
        bar = at_shade >= _ROW_FRACTION
        run = limit if bar.all() else int(np.argmin(bar))
        # The bar ends with its last wholly uniform row (the margin past the text): rows
        # after it that still pass are the picture's own light (or dark) edge.
        uniform = np.flatnonzero(at_shade[:run] >= _EDGE_FRACTION)
        end = int(uniform[-1]) + 1 if len(uniform) else 0
        if run < limit and end >= max(2, _MIN_BAR * rows):
            return (0, end, cols, rows) if top else (0, 0, cols, rows - end)
    return None

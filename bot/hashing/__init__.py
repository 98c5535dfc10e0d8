"""Hashing media bytes: what the hashes are (media.py, pure) and where they are computed
(pool.py: worker processes with memory and CPU limits, the only place the bot decodes
media). Re-exports the names callers used when this was one module."""

from .border import trim_uniform_border
from . import video
from .limits import MATRIX_IMAGE_FORMATS, MediaLimits
from .media import (
    REDUCED_SIDE,
    SLOW_DECODER_MAX_PIXELS,
    compute_hashes,
    crop_hashes,
    exact_hashes,
    named_crop_hashes,
    hamming,
    warm_up,
)

__all__ = [
    "MATRIX_IMAGE_FORMATS",
    "REDUCED_SIDE",
    "SLOW_DECODER_MAX_PIXELS",
    "MediaLimits",
    "compute_hashes",
    "crop_hashes",
    "exact_hashes",
    "hamming",
    "named_crop_hashes",
    "trim_uniform_border",
    "video",
    "warm_up",
]

"""PDQ's DCT coefficients of a smooth image: what its most reliable bits are computed from.

A PDQ bit says whether one of 256 DCT coefficients lies above their median. In a smooth
image (PDQ quality under 50) many coefficients sit next to the median, so a re-encode or a
resize flips tens of bits and the hash alone cannot tell a copy from an unrelated image.
The bits whose coefficients lie farthest from the median do not flip: a provider list
holds only the original's hash, but the posted copy's own coefficients say which of its
bits to trust (bot/classify/reliablematch.py matches them; the rule and its measurement
are in bot/classify/pdqrule.py). Computed only under quality 50, where the rule applies.

Text form (`Hashes.pdq_coefficients`, the media table): 1024 hex digits, the 16x16
coefficients row by row (vertical frequency 1..16 first) as big-endian signed 16-bit
integers, scaled so that the largest magnitude is 32767. The scale drops nothing the rule
uses: only the order of the coefficients and of their distances from the median.

Pure: numpy in, strings and arrays out.
"""

from __future__ import annotations

import numpy as np

from . import pdq
from .hextext import hex_bytes

# Computed for images under this PDQ quality (pdqrule.FULL_QUALITY: a test holds them equal).
BELOW_QUALITY = 50
SIDE = 16
COUNT = SIDE * SIDE
TEXT_LENGTH = 4 * COUNT
_FULL_SCALE = 32767


def of_downsampled(small: np.ndarray) -> str | None:
    """The text of PDQ's coefficients of its 64x64 image `small`; None for a flat image."""
    dct = pdq._dct_matrix()
    coefficients = dct @ np.asarray(small, dtype=np.float64) @ dct.T
    largest = float(np.abs(coefficients).max())
    if not largest > 1e-9:
        return None
    scaled = np.rint(coefficients * (_FULL_SCALE / largest)).astype(">i2")
    return scaled.tobytes().hex()


def parse(text: str) -> np.ndarray:
    """The 16x16 coefficients (float64) a text stands for; ValueError with the reason."""
    return np.frombuffer(_valid_bytes(text), dtype=">i2").astype(np.float64).reshape(SIDE, SIDE)


def checked(value: object) -> tuple[str, ...]:
    """`Hashes.pdq_coefficients` as a sandbox worker sent it (JSON, not trusted): at most
    one valid text (of the image as decoded), or ValueError."""
    if not isinstance(value, (list, tuple)) or len(value) > 1 or not all(isinstance(v, str) for v in value):
        raise ValueError("malformed pdq_coefficients")
    for text in value:
        _valid_bytes(text)
    return tuple(value)


def _valid_bytes(text: str) -> bytes:
    if len(text) != TEXT_LENGTH:
        raise ValueError(f"PDQ coefficients must be {TEXT_LENGTH} hex digits, got {len(text)}")
    raw = hex_bytes([text], TEXT_LENGTH)
    if raw is None:
        raise ValueError("PDQ coefficients are not lower-case hexadecimal")
    pairs = {raw[i : i + 2] for i in range(0, len(raw), 2)}
    # The largest magnitude must be 32767 (7fff or 8001), and -32768 (8000) absent.
    if b"\x80\x00" in pairs or not pairs & {b"\x7f\xff", b"\x80\x01"}:
        raise ValueError("PDQ coefficients are not normalised (the largest must be +-32767)")
    return raw

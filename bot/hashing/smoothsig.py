"""The low-frequency signature: a second signal for smooth images, where PDQ's bits are noise.

PDQ keeps one bit per DCT coefficient (above the median or not). In a near-flat gradient
(a wallpaper, PDQ quality 5-30) every coefficient sits next to the median, so a plain
re-encode moves 30-80 of the 256 bits and no PDQ bound tells copies from unrelated
images. The coefficients themselves are stable: the 6x6 lowest of PDQ's own 64x64 image
(frequencies 1-6 along each axis, DC left out) describe the shape of the gradient, and
after normalising they change little under re-encoding, resizing, brightness and contrast
(an affine change of luma scales them all alike). Two signatures are compared by
correlation, reported as 1000 x (1 - r): copies of smooth images stay within ~3 for most
edits (JPEG q20 at most 23), the nearest of 1,813 unrelated images under quality 50 was
55 (bench/smooth_study.py; the bound is in bot/classify/pdqrule.py).

Turns and flips are sign changes and a transposition of the coefficients (exactly, for
the 64x64 image), so a posted image carries one signature (and one of its border-trimmed
image) and the matcher derives the other seven (`dihedral`, in pdq.DIHEDRAL's order).

Text form (list entries, `Hashes.lowfreq`): 72 hex digits, the 36 coefficients row by
row (vertical frequency first) as signed bytes, scaled so that the largest is +-127.

Pure: numpy in, strings and arrays out.
"""

from __future__ import annotations

import numpy as np

from . import pdq
from .hextext import hex_bytes

SIDE = 6  # coefficients per axis: frequencies 1..SIDE
LENGTH = SIDE * SIDE
TEXT_LENGTH = 2 * LENGTH
# Below this norm (of coefficients of a 0-255 luma) the image is flat: no shape to compare.
_FLAT_NORM = 1e-3


def signatures(luma: np.ndarray, trim: tuple[int, int, int, int] | None = None) -> tuple[str, ...]:
    """The signature of `luma` (as PDQ sees it), then that of the box `trim` (left, top,
    right, bottom) of it when it is given and is not the whole image; flat images have none."""
    found = [_signature(luma)]
    if trim is not None and trim != (0, 0, luma.shape[1], luma.shape[0]):
        left, top, right, bottom = trim
        found.append(_signature(luma[top:bottom, left:right]))
    return tuple(dict.fromkeys(s for s in found if s is not None))


def parse(text: str) -> np.ndarray:
    """The unit vector (36 float32) a signature's text stands for; ValueError with the reason."""
    values = np.frombuffer(_valid_bytes(text), dtype=np.int8).astype(np.float32)
    return values / np.linalg.norm(values)


def _valid_bytes(text: str) -> bytes:
    """The signed bytes of a valid signature's text; ValueError with the reason."""
    if len(text) != TEXT_LENGTH:
        raise ValueError(f"lowfreq signature must be {TEXT_LENGTH} hex digits, got {len(text)}")
    raw = hex_bytes([text], TEXT_LENGTH)
    if raw is None:
        raise ValueError("lowfreq signature is not lower-case hexadecimal")
    # As signed bytes, the largest magnitude must be 127: +127 (7f) or -127 (81) present,
    # -128 (80) absent.
    if 0x80 in raw or (0x7F not in raw and 0x81 not in raw):
        raise ValueError("lowfreq signature is not normalised (its largest coefficient must be +-127)")
    return raw


def checked(value: object) -> tuple[str, ...]:
    """`Hashes.lowfreq` as a sandbox worker sent it (JSON, not trusted): at most two valid
    signatures, or ValueError. Checked on every hashed image: no numpy here."""
    if not isinstance(value, (list, tuple)) or len(value) > 2 or not all(isinstance(v, str) for v in value):
        raise ValueError("malformed lowfreq")
    for text in value:
        _valid_bytes(text)
    return tuple(value)


def dihedral(vector: np.ndarray) -> np.ndarray:
    """The 8 x 36 signatures of the image turned and flipped, in pdq.DIHEDRAL's order (as
    pdq.dihedral_hashes derives PDQ's): frequency f changes sign under a mirror along its
    axis when f is odd, and turning is mirroring and transposing."""
    c = np.asarray(vector, dtype=np.float32).reshape(SIDE, SIDE)
    return pdq.dihedral_coefficients(c).reshape(len(pdq.DIHEDRAL), LENGTH)


def distance(a: np.ndarray, b: np.ndarray) -> int:
    """1000 x (1 - correlation) of two unit vectors, rounded: 0 alike, 1000 unrelated, 2000 opposite."""
    return int(np.rint(1000 * (1 - float(np.dot(a, b)))))


def _signature(luma: np.ndarray) -> str | None:
    rows, cols = luma.shape
    if rows < pdq.MIN_HASHABLE_SIDE or cols < pdq.MIN_HASHABLE_SIDE:
        return None
    return of_downsampled(pdq.downsample(np.asarray(luma, dtype=np.float32)))


def of_downsampled(small: np.ndarray) -> str | None:
    """The signature of an image from its 64x64 PDQ image (`pdq.downsample`'s, which
    `pdq.exact_dihedral` hands back: no second downsample); None when it is flat."""
    dct = pdq._dct_matrix()[:SIDE]
    return of_coefficients(dct @ small.astype(np.float64) @ dct.T)


def of_coefficients(coefficients: np.ndarray) -> str | None:
    """The signature from PDQ's DCT coefficients (at least SIDE x SIDE, frequencies from 1:
    the top-left corner of the 16x16 PDQ hashes), as bot/hashing/uncrop.py has them for
    its crop guesses; None when they are flat."""
    found = of_many_coefficients(np.asarray(coefficients)[None])
    return found[0] if found else None


def of_many_coefficients(coefficients: np.ndarray) -> tuple[str, ...]:
    """`of_coefficients` of each of k coefficient blocks (k x at least SIDE x SIDE), in one
    pass; () when any of them is flat."""
    values = np.asarray(coefficients, dtype=np.float64)[:, :SIDE, :SIDE].reshape(len(coefficients), LENGTH)
    if not len(values) or bool((np.linalg.norm(values, axis=1) < _FLAT_NORM).any()):
        return ()
    largest = np.abs(values).max(axis=1, keepdims=True)
    scaled = np.clip(np.rint(values / largest * 127), -127, 127).astype(np.int8)
    text = scaled.tobytes().hex()
    return tuple(text[i : i + TEXT_LENGTH] for i in range(0, len(text), TEXT_LENGTH))


def checked_guesses(value: object, count: int) -> tuple[str, ...]:
    """`Hashes.lowfreq_uncropped` as a sandbox worker sent it (JSON, not trusted): none, or
    `count` valid signatures (one per crop guess); ValueError otherwise."""
    if not isinstance(value, (list, tuple)) or len(value) not in (0, count) or not all(isinstance(v, str) for v in value):
        raise ValueError("malformed lowfreq_uncropped")
    for text in value:
        _valid_bytes(text)
    return tuple(value)

"""How reliable each bit of a PDQ hash is: tiers by the distance of its coefficient from the median.

A PDQ bit says whether one of 256 DCT coefficients lies above their median. An edit moves
the coefficients a little, and flips the bits whose coefficients sat next to the median;
those far from it hold. Ranked by that distance, a hash's bits fall into tiers: the 64
farthest (tier 0), the next 32 (tier 1), the next 32 (tier 2), the other 128 (tier 3).
The rules of bot/classify/pdqrule.py (RELIABLE_TIERS: the same sizes, a test holds them
equal) allow at most so many mismatches per tier: reliablematch.py for smooth images'
own hashes, cropmatch.py for crop guesses a few bits over their bound.

Text form (`Hashes.pdq_uncropped_tiers`, the media table): 128 hex digits per hash, its 256
tiers two bits each, in the hash's own bit order (the first digit's high bits are the tier
of the hash's most significant bit).

Pure: numpy in, strings and arrays out.
"""

from __future__ import annotations

import numpy as np

from .hextext import hex_bytes

# The tiers' upper ends by rank: ranks 0-63 are tier 0, 64-95 tier 1, 96-127 tier 2.
BOUNDARIES = (64, 96, 128)
BITS = 256
TEXT_LENGTH = BITS // 2  # two bits a bit, four bits a hex digit
# How many bits each tier holds (the last: every bit past the boundaries).
_SIZES = np.diff((0, *BOUNDARIES, BITS))
_SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)


def of_coefficients(coefficients: np.ndarray) -> np.ndarray:
    """The tier (0-3) of every bit of the PDQ hashes of `coefficients` (k x 16 x 16, as PDQ
    keeps them): k x 256 uint8, in the hashes' bit order (most significant first, as
    pdq.hashes_from_coefficients writes them). Ties keep the earlier bit."""
    flat = np.asarray(coefficients, dtype=np.float32).reshape(-1, BITS)[:, ::-1]
    # Sorted rows, not partitions: for 256 values numpy's sort is the faster (44 crop
    # guesses: ~0.05 ms for all of this, against ~0.5 for a stable argsort).
    median = np.sort(flat, axis=1)[:, BITS // 2 - 1 : BITS // 2]
    distance = np.abs(flat - median)
    ordered = np.sort(distance, axis=1)
    tiers = np.full(distance.shape, len(BOUNDARIES), dtype=np.uint8)
    exact = np.ones(len(distance), dtype=bool)
    for boundary in BOUNDARIES:
        edge = BITS - boundary  # the boundary-th farthest distance, ascending
        tiers -= distance >= ordered[:, edge : edge + 1]
        exact &= ordered[:, edge] > ordered[:, edge - 1]  # no tie across the boundary
    for row in np.flatnonzero(~exact):  # distances tied at a boundary: ranked one by one
        order = np.argsort(-distance[row], kind="stable")
        rank = np.empty(BITS, dtype=np.int64)
        rank[order] = np.arange(BITS)
        tiers[row] = np.searchsorted(np.asarray(BOUNDARIES), rank, side="right")
    return tiers


def to_texts(tiers: np.ndarray) -> tuple[str, ...]:
    """One text per row of `tiers` (k x 256, 0-3)."""
    t = np.asarray(tiers, dtype=np.uint8)
    packed = (t[:, 0::4] << 6) | (t[:, 1::4] << 4) | (t[:, 2::4] << 2) | t[:, 3::4]
    text = packed.tobytes().hex()
    return tuple(text[i : i + TEXT_LENGTH] for i in range(0, len(text), TEXT_LENGTH))


def parse(texts: tuple[str, ...] | list[str]) -> np.ndarray:
    """The tiers (k x 256 uint8) the texts stand for; ValueError unless each text is
    TEXT_LENGTH lower-case hex digits whose tiers hold as many bits as each tier must."""
    raw = np.frombuffer(_hex_bytes(texts), dtype=np.uint8).reshape(len(texts), TEXT_LENGTH // 2)
    tiers = ((raw[:, :, None] >> _SHIFTS) & 3).reshape(len(texts), BITS)
    for t, size in enumerate(_SIZES):
        if not (np.count_nonzero(tiers == t, axis=1) == size).all():
            raise ValueError("PDQ bit tiers must hold 64, 32, 32 and 128 bits")
    return tiers


def masks(tiers: np.ndarray) -> np.ndarray:
    """Per tier t, which bits are in tier t or a more reliable one: (3, k, 256) bool."""
    return np.stack([tiers <= t for t in range(len(BOUNDARIES))])


def checked(value: object, count: int) -> tuple[str, ...]:
    """Tiers as a sandbox worker sent them (JSON, not trusted): none, or `count` texts of
    TEXT_LENGTH lower-case hex digits (one per crop guess); ValueError otherwise. What the
    digits say is checked where they are used (`parse`): most images never need them."""
    if not isinstance(value, list) or len(value) not in (0, count):
        raise ValueError("malformed PDQ bit tiers")
    _hex_bytes(value)
    return tuple(value)


def _hex_bytes(texts: tuple[str, ...] | list[str]) -> bytes:
    """The bytes of `texts`, each TEXT_LENGTH lower-case hex digits; ValueError otherwise."""
    raw = hex_bytes(texts, TEXT_LENGTH)
    if raw is None:
        raise ValueError(f"PDQ bit tiers must be {TEXT_LENGTH} lower-case hex digits each")
    return raw

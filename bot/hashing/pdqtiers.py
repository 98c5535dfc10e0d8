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

# The tiers' upper ends by rank: ranks 0-63 are tier 0, 64-95 tier 1, 96-127 tier 2.
BOUNDARIES = (64, 96, 128)
BITS = 256
TEXT_LENGTH = BITS // 2  # two bits a bit, four bits a hex digit
# How many bits each tier holds (the last: every bit past the boundaries).
_SIZES = np.diff((0, *BOUNDARIES, BITS))
_SHIFTS = np.array([6, 4, 2, 0], dtype=np.uint8)
_HEX = frozenset("0123456789abcdef")


def of_coefficients(coefficients: np.ndarray) -> np.ndarray:
    """The tier (0-3) of every bit of the PDQ hashes of `coefficients` (k x 16 x 16, as PDQ
    keeps them): k x 256 uint8, in the hashes' bit order (most significant first, as
    pdq.hashes_from_coefficients writes them). Ties keep the earlier bit."""
    flat = np.asarray(coefficients, dtype=np.float64).reshape(-1, BITS)[:, ::-1]
    median = np.partition(flat, BITS // 2 - 1, axis=1)[:, BITS // 2 - 1 : BITS // 2]
    order = np.argsort(-np.abs(flat - median), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(BITS)[None, :], axis=1)
    return np.searchsorted(np.asarray(BOUNDARIES), rank, side="right").astype(np.uint8)


def to_texts(tiers: np.ndarray) -> tuple[str, ...]:
    """One text per row of `tiers` (k x 256, 0-3)."""
    packed = np.bitwise_or.reduce(tiers.reshape(len(tiers), -1, 4) << _SHIFTS, axis=2).astype(np.uint8)
    return tuple(row.tobytes().hex() for row in packed)


def parse(texts: tuple[str, ...] | list[str]) -> np.ndarray:
    """The tiers (k x 256 uint8) the texts stand for; ValueError unless each text is
    TEXT_LENGTH lower-case hex digits whose tiers hold as many bits as each tier must."""
    if not all(isinstance(t, str) and len(t) == TEXT_LENGTH for t in texts) or not _HEX.issuperset("".join(texts)):
        raise ValueError(f"PDQ bit tiers must be {TEXT_LENGTH} lower-case hex digits each")
    raw = np.frombuffer(bytes.fromhex("".join(texts)), dtype=np.uint8).reshape(len(texts), TEXT_LENGTH // 2)
    tiers = ((raw[:, :, None] >> _SHIFTS) & 3).reshape(len(texts), BITS)
    counts = np.stack([np.count_nonzero(tiers == t, axis=1) for t in range(len(_SIZES))], axis=1)
    if not (counts == _SIZES).all():
        raise ValueError("PDQ bit tiers must hold 64, 32, 32 and 128 bits")
    return tiers


def masks(tiers: np.ndarray) -> np.ndarray:
    """Per tier t, which bits are in tier t or a more reliable one: (3, k, 256) bool."""
    return np.stack([tiers <= t for t in range(len(BOUNDARIES))])


def checked(value: object, count: int) -> tuple[str, ...]:
    """Tiers as a sandbox worker sent them (JSON, not trusted): none, or `count` valid
    texts (one per crop guess); ValueError otherwise."""
    if not isinstance(value, list) or len(value) not in (0, count):
        raise ValueError("malformed PDQ bit tiers")
    parse(value)
    return tuple(value)

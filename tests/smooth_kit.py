"""Smooth test images and the reliable-bit tiers of their queries, for the tests of
bot/classify/reliablematch.py (and of retro matching through it)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bot.classify.pdqrule import FULL_QUALITY, RELIABLE_TIERS
from bot.classify.reliablematch import reliable_queries
from bot.demo.samples import encode
from bot.hashing import compute_hashes
from bot.lists.index import code_to_hex
from bot.model import Hashes


def dark_room(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A dim scene: soft shapes at luma 10-60 and sensor noise, PDQ quality under 50."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pixels = np.full((h, w), 18.0, dtype=np.float32)
    for _ in range(9):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(25, 120)
        pixels += rng.uniform(-15, 60) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    rgb = np.stack([pixels * k for k in (1.0, 0.9, 1.1)], axis=-1) + rng.normal(0, 1.5, (h, w, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def smooth_hashes(seed: int = 1) -> Hashes:
    hashes = compute_hashes(encode(dark_room(seed), "JPEG", quality=90))
    assert hashes.pdq_quality is not None and hashes.pdq_quality < FULL_QUALITY and hashes.pdq_coefficients
    return hashes


def tiers_of(hashes: Hashes) -> tuple[np.ndarray, list[np.ndarray]]:
    """The as-decoded query's bits and its tiers' masks, as bool arrays in hex order."""
    found = reliable_queries(hashes, 0)
    assert found is not None
    queries, masks = found

    def unpack(words: np.ndarray) -> np.ndarray:
        return np.unpackbits(np.frombuffer(bytes.fromhex(code_to_hex(words, 64)), dtype=np.uint8)).astype(bool)

    return unpack(queries[0]), [unpack(masks[t, 0]) for t in range(len(RELIABLE_TIERS))]


def entry_with(bits: np.ndarray, flip: np.ndarray) -> str:
    return np.packbits(bits ^ flip).tobytes().hex()


def flips(positions: np.ndarray) -> np.ndarray:
    out = np.zeros(256, dtype=bool)
    out[positions] = True
    return out

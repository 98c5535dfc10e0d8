"""The answers of a hashing worker, checked field by field before the bot uses them.

A worker decodes hostile media; whatever it sends back is treated as hostile too: every
field of its hashes has a type, a length and an alphabet, and a malformed answer is the
worker's failure (bot/hashing/pool.py replaces the worker and says why), never a hash.

Pure: a parsed JSON answer in, values out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from bot.model import Hashes

from . import pdqtiers, uncrop
from .fitting import Fitted
from .hextext import hex_bytes
from .pdqcoef import checked as checked_coefficients
from .smoothsig import checked_guesses as checked_signature_guesses
from .smoothsig import checked as checked_lowfreq
from .video import MAX_VIDEO_FRAMES

_HASH_FIELDS = {f.name: f for f in fields(Hashes)}


def _frame_pdqs(value: object) -> tuple[tuple[int, str, int], ...]:
    """A worker's frame_pdqs, checked: a short list of [frame, 64 hex digits, quality]."""
    if not isinstance(value, list) or len(value) > MAX_VIDEO_FRAMES:
        raise ValueError("malformed frame_pdqs")
    frames = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3 and type(item[0]) is int and type(item[2]) is int
                and isinstance(item[1], str) and len(item[1]) == 64 and 0 <= item[2] <= 100):
            raise ValueError("malformed frame_pdqs")
        frames.append((item[0], item[1], item[2]))
    return tuple(frames)


def _pdq_queries(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(q, str) and len(q) == 64 for q in value):
        raise ValueError("malformed pdq_queries")
    return tuple(value)


# The checks of the fields that are not a plain string or integer.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "pdq_queries": _pdq_queries,
    "frame_pdqs": _frame_pdqs,
    "lowfreq": checked_lowfreq,
    "pdq_coefficients": checked_coefficients,
    "pdq_uncropped": uncrop.checked,
    "lowfreq_uncropped": lambda value: checked_signature_guesses(value, len(uncrop.HYPOTHESES)),
    "pdq_uncropped_tiers": lambda value: pdqtiers.checked(value, len(uncrop.HYPOTHESES)),
}


def parse(answer: dict[str, Any]) -> tuple[Hashes, tuple[tuple[str, str], ...]]:
    """The worker's answer as values, checked field by field (it is not trusted)."""
    raw = answer["hashes"]
    if not isinstance(raw, dict) or set(raw) - set(_HASH_FIELDS):
        raise ValueError("malformed hashes")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _CHECKS:
            value = _CHECKS[name](value)
        elif value is not None and not isinstance(value, (str, int)) or isinstance(value, str) and len(value) > 1000:
            raise ValueError(f"malformed {name}")
        values[name] = value
    crops = answer.get("crops") or []
    if not isinstance(crops, list) or not all(_named_crop(c) for c in crops):
        raise ValueError("malformed crops")
    return Hashes(**values), tuple((c[0], c[1]) for c in crops)


def _named_crop(value: Any) -> bool:
    """Whether a worker's crop is [64 hex digits, a short name] (it is not trusted)."""
    ok = isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)
    return ok and hex_bytes(value[:1], 64) is not None and 0 < len(value[1]) <= 64


def parse_fit(answer: dict[str, Any], data: bytes) -> Fitted | str:
    """A fit job's answer, checked (it is not trusted): the image, or the worker's reason."""
    if "error" in answer:
        return f"cannot be re-encoded: {str(answer['error'])[:500]}"
    meta = answer["fitted"]
    if not isinstance(meta, dict) or meta.get("mimetype") != "image/jpeg" or not data:
        raise ValueError("malformed fit answer")
    width, height, quality = (meta.get(k) for k in ("width", "height", "quality"))
    if not all(isinstance(v, int) and v > 0 for v in (width, height, quality)):
        raise ValueError("malformed fit answer")
    return Fitted(data, "image/jpeg", width, height, bool(meta.get("enlarged")), quality)  # type: ignore[arg-type]

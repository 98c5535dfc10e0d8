"""vPDQ: a whole video's hash (a PDQ, quality and timestamp per sampled frame), how it is
written, read and compared. PURE (numpy).

What python-threatexchange's `vpdq` signal type (used by HMA) defines, followed exactly:

- **Its signal string**: a JSON list of one string per frame, `"<pdq hex>,<quality>,<timestamp>"`
  (timestamp in seconds, written with Python's `.3` format: 3 significant digits); quality
  0-100, timestamp >= 0, 64 hex digits. `signal_string` writes it, `parse_vpdq` reads it.
- **Read as well**: the older JSON object keyed by frame number
  (`{"0": {"quality": 100, "hash": "<hex>", "timestamp": 0.0}, ...}`), and the text files
  Meta's `vpdq` tool writes, one `frame_number,quality,pdq_hex,timestamp` line per frame
  (its Python binding's README prints `frame_number,pdq_hex,quality,timestamp`: both orders
  are read, the 64 hex digits tell them apart).
- **Matching** (`compare`): frames of quality under 50 are dropped, then repeated hashes
  (the same hex) kept once, on both sides; a frame matches when some frame of the other side
  is within PDQ distance 31. The query-match percent is the share of the query's frames
  that match, the compared-match percent the share of the list entry's; a video matches
  when the first is at least 80 and the second at least 0 (python-threatexchange's
  VPDQ_QUERY_MATCH_THRESHOLD_PERCENT and VPDQ_INDEX_MATCH_THRESHOLD_PERCENT). A side with
  no frame left matches nothing.

modbot's own list files hold a vPDQ entry on one line, as `vpdq,<frames>,label` (or
`vpdq:<frames>` in a plain list), `<frames>` being `hex:quality:timestamp` per frame
joined by `;` (no comma, so no CSV quoting); `canonical` writes that form, timestamps with
3 decimals.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# python-threatexchange's defaults (extensions/vpdq/vpdq_util.py).
VPDQ_QUALITY_THRESHOLD = 50
VPDQ_DISTANCE_THRESHOLD = 31
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
VPDQ_INDEX_MATCH_THRESHOLD_PERCENT = 0.0
# Frames a list entry may hold by default (a list's `max_vpdq_frames`): an hour sampled
# once a second. A longer entry is refused (a rejected line), so one line cannot make a
# list's index arbitrarily large; a list of longer videos (films) raises it.
DEFAULT_MAX_FRAMES = 3600
# The most a list may be configured to: a day at a frame a second (a line of ~6.5 MB).
# Rewriting a list file (removing entries) reads entries up to this, whatever the list's cap.
MAX_FRAMES_CEILING = 86_400

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VpdqFrame:
    """One sampled frame: its PDQ (lower-case hex), PDQ quality and time in seconds."""

    pdq: str
    quality: int
    timestamp: float


@dataclass(frozen=True)
class VpdqComparison:
    """How two vPDQ hashes compare: the two shares, and which frames matched."""

    query_percent: float
    compared_percent: float
    # (query frame, compared frame, distance) for each query frame that matched, its nearest.
    pairs: tuple[tuple[VpdqFrame, VpdqFrame, int], ...] = ()

    def matches(self, query_threshold: float = VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
                compared_threshold: float = VPDQ_INDEX_MATCH_THRESHOLD_PERCENT) -> bool:
        return bool(self.pairs) and self.query_percent >= query_threshold and self.compared_percent >= compared_threshold


def _frame(pdq: object, quality: object, timestamp: object) -> VpdqFrame:
    """A checked frame; ValueError saying what is wrong."""
    hex_hash = str(pdq).strip().lower()
    if not _HEX64.fullmatch(hex_hash):
        raise ValueError("vpdq frame hash must be 64 hex digits")
    try:
        q = int(str(quality).strip())
        t = float(str(timestamp).strip())
    except ValueError:
        raise ValueError("vpdq frame quality must be an integer and timestamp a number") from None
    if not 0 <= q <= 100:
        raise ValueError(f"vpdq frame quality must be within 0..100, got {q}")
    if not t >= 0 or t == float("inf"):  # also refuses NaN
        raise ValueError("vpdq frame timestamp must be a finite number >= 0")
    return VpdqFrame(hex_hash, q, t)


def parse_vpdq(text: str, max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[VpdqFrame, ...]:
    """Frames of a vPDQ hash in any of the forms of the module docstring (modbot's compact
    one too); ValueError with the reason when it is none of them, is empty or has more than
    `max_frames` frames."""
    text = text.strip().removeprefix("\ufeff")
    if text.startswith("[") or text.startswith("{"):
        frames = _from_json(text, max_frames)
    elif ";" in text or (":" in text and "," not in text):
        frames = _from_items((part.split(":") for part in text.split(";") if part.strip()), max_frames, _compact)
    else:
        lines = (line.split(",") for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
        frames = _from_items(lines, max_frames, _tool_line)
    if not frames:
        raise ValueError("vpdq hash has no frames")
    return frames


class TooManyFrames(ValueError):
    """A video sampled into more frames than a list's vPDQ entries may hold."""


def check_entry_frames(frames: int, list_name: str, max_frames: int) -> None:
    """TooManyFrames, naming the list, its `max_vpdq_frames` and the setting to lower, when a
    video of `frames` sampled frames would be a longer entry than the list takes. What adding
    a video to a list checks first (`hashes add-video`, `!mod hash add`), before writing
    anything."""
    if frames > max_frames:
        raise TooManyFrames(
            f"{frames} frames sampled, more than list {list_name}'s max_vpdq_frames ({max_frames}); "
            "lower processing.max_video_frames or raise it"
        )


def _from_items(items: Iterable[list[str]], max_frames: int, make: object) -> tuple[VpdqFrame, ...]:
    frames: list[VpdqFrame] = []
    for parts in items:
        if len(frames) >= max_frames:
            raise ValueError(f"vpdq hash has more than {max_frames} frames (the list's max_vpdq_frames)")
        frames.append(make(parts))  # type: ignore[operator]
    return tuple(frames)


def _compact(parts: list[str]) -> VpdqFrame:
    if len(parts) != 3:
        raise ValueError("vpdq frame must be 'hex:quality:timestamp'")
    return _frame(*parts)


def _tool_line(parts: list[str]) -> VpdqFrame:
    """A line of the vpdq tool's hash file: frame,quality,hex,timestamp (or frame,hex,quality,timestamp)."""
    if len(parts) != 4:
        raise ValueError("vpdq line must be 'frame_number,quality,pdq_hex,timestamp'")
    number, a, b, timestamp = (p.strip() for p in parts)
    if not number.isdigit():
        raise ValueError("vpdq frame number must be a non-negative integer")
    quality, pdq = (a, b) if len(b) == 64 else (b, a)
    return _frame(pdq, quality, timestamp)


def _from_json(text: str, max_frames: int) -> tuple[VpdqFrame, ...]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"vpdq hash is not JSON: {e.msg}") from None
    if isinstance(doc, list):  # the signal string: ["hex,quality,timestamp", ...]
        if not all(isinstance(item, str) for item in doc):
            raise ValueError("vpdq signal must be a JSON list of 'hex,quality,timestamp' strings")
        return _from_items((item.split(",") for item in doc), max_frames, _signal_item)
    if isinstance(doc, dict):  # the older form, keyed by frame number
        def item(entry: tuple[str, object]) -> list[str]:
            number, value = entry
            if not str(number).isdigit() or not isinstance(value, dict):
                raise ValueError("vpdq JSON object must map frame numbers to {quality, hash, timestamp}")
            return [value.get("hash"), value.get("quality"), value.get("timestamp")]  # type: ignore[list-item]
        return _from_items((item(e) for e in doc.items()), max_frames, _signal_item)
    raise ValueError("vpdq hash must be a JSON list or object")


def _signal_item(parts: list[str]) -> VpdqFrame:
    if len(parts) != 3:
        raise ValueError("vpdq signal item must be 'hex,quality,timestamp'")
    return _frame(*parts)


def leading_json(text: str) -> str:
    """The JSON value at the start of `text` (a signal string followed by other fields),
    re-serialised; ValueError when there is none."""
    try:
        doc, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except json.JSONDecodeError as e:
        raise ValueError(f"vpdq signal is not JSON: {e.msg}") from None
    return json.dumps(doc)


def signal_string(frames: Sequence[VpdqFrame]) -> str:
    """The python-threatexchange / HMA signal string of `frames` (see the module docstring)."""
    return json.dumps([f"{f.pdq},{f.quality},{f.timestamp:.3}" for f in frames])


def canonical(frames: Sequence[VpdqFrame]) -> str:
    """modbot's one-line form of `frames`: `hex:quality:timestamp` joined by `;`."""
    return ";".join(f"{f.pdq}:{f.quality}:{f.timestamp:.3f}" for f in frames)


def entry_id(canonical_form: str) -> str:
    """A short name for a list entry in verdicts and audit rows: `vpdq:` and 16 hex digits
    of the SHA-256 of its canonical form (the entry itself runs to kilobytes)."""
    return "vpdq:" + hashlib.sha256(canonical_form.encode()).hexdigest()[:16]


def prepared(frames: Iterable[VpdqFrame], min_quality: int = VPDQ_QUALITY_THRESHOLD) -> tuple[VpdqFrame, ...]:
    """The frames matching looks at: quality >= `min_quality`, each hash once (its first frame)."""
    seen: set[str] = set()
    kept = []
    for f in frames:
        if f.quality >= min_quality and f.pdq not in seen:
            seen.add(f.pdq)
            kept.append(f)
    return tuple(kept)


def codes(frames: Sequence[VpdqFrame]) -> np.ndarray:
    """(n, 4) uint64 rows of the frames' PDQ hashes."""
    raw = bytes.fromhex("".join(f.pdq for f in frames))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(frames), 4)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances between two sets of PDQ rows."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int64)


def compare(
    query: Sequence[VpdqFrame],
    compared: Sequence[VpdqFrame],
    *,
    distance: int = VPDQ_DISTANCE_THRESHOLD,
    min_quality: int = VPDQ_QUALITY_THRESHOLD,
) -> VpdqComparison:
    """The two shares of frames matched (see the module docstring), and the matched frames."""
    q, c = prepared(query, min_quality), prepared(compared, min_quality)
    if not q or not c:
        return VpdqComparison(0.0, 0.0)
    d = distances(codes(q), codes(c))
    close = d <= distance
    nearest = d.argmin(axis=1)
    pairs = tuple((q[i], c[int(nearest[i])], int(d[i, nearest[i]])) for i in np.flatnonzero(close.any(axis=1)))
    return VpdqComparison(
        100.0 * int(close.any(axis=1).sum()) / len(q),
        100.0 * int(close.any(axis=0).sum()) / len(c),
        pairs,
    )

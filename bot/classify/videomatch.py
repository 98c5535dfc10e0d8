"""Verdicts for whole videos: a posted video's frames against a list's vPDQ entries.

The hash-list classifier (bot/classify/hashlist.py) calls this for media hashed as a video
(frames sampled once a second, no still `pdq` of its own). Matching follows HMA
(bot/lists/videoindex.py, bot/lists/vpdq.py); a verdict names the entry (`matched_hash`:
`vpdq:` and 16 hex digits of the entry's SHA-256, `bot.lists.vpdq.entry_id`), both shares
and the frames that matched. Single frames are still matched against the list's PDQ
entries by the classifier itself (a known image shown in a video).

Pure: hashes in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.lists.loaded import LoadedList
from bot.lists.videoindex import video_frames
from bot.lists.vpdq import entry_id
from bot.model import VIDEO_HASH_TYPE, Hashes, MatchKind, Verdict

# Matched frames a verdict lists (a one-hour entry may match thousands).
MAX_LISTED_FRAMES = 10


def is_video(hashes: Hashes) -> bool:
    """Whether `hashes` are a video's: frames, and no still image hash."""
    return hashes.pdq is None and bool(hashes.frame_pdqs)


def video_verdicts(classifier: str, lst: LoadedList, hashes: Hashes) -> Iterator[Verdict]:
    """A verdict per vPDQ entry of `lst` the video matches (none when it is not a video)."""
    videos = lst.index.videos
    if videos is None or not is_video(hashes):
        return
    for match in videos.search(video_frames(hashes.frame_pdqs)):
        comparison = match.comparison
        frames: list[dict[str, Any]] = [
            {"second": q.timestamp, "entry_timestamp": c.timestamp, "distance": d, "query_hash": q.pdq}
            for q, c, d in comparison.pairs[:MAX_LISTED_FRAMES]
        ]
        yield Verdict(
            classifier=classifier,
            label=match.entry.label,
            kind=MatchKind.NEAR,
            list_name=lst.name,
            hash_type=VIDEO_HASH_TYPE,
            distance=max(d for _, _, d in comparison.pairs),
            matched_hash=entry_id(match.entry.text),
            details={
                "query": "video",
                "query_match_percent": round(comparison.query_percent, 1),
                "compared_match_percent": round(comparison.compared_percent, 1),
                "frames_matched": len(comparison.pairs),
                "frames": frames,
            },
        )

"""`modbot hashes add-video`: hash local videos into a configured list as vPDQ entries.

A video is hashed in the same sandbox, under the same limits, as a posted one
(bot/hashing/video.py: a frame a second, PDQ and quality of each, for the first
`processing.max_video_frames` seconds); its entry is the frames as vPDQ (bot/lists/vpdq.py), beside its SHA-256 and MD5.
Posted copies then match it by the share of frames matched both ways (HMA's rule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Config
from ..hashing.pool import HashSandbox
from ..lists.format import HashEntry, append_entries
from ..lists.videoindex import video_frames
from ..lists.vpdq import TooManyFrames, canonical, check_entry_frames
from ..model import VIDEO_HASH_TYPE
from .common import configured_list, load
from .scan import run_with_sandbox


class NotAVideo(ValueError):
    """A file given to add-video cannot be listed (no video frames, or too many); the message says why."""


def add_videos(videos: list[Path], config: Config, list_name: str, label: str | None) -> tuple[int, Path]:
    """Hash local videos into a configured list file; returns (entries added, file).

    KeyError for an unknown list, NotAVideo (nothing written) when a file is not a video
    or has more sampled frames than the list's entries may (`max_vpdq_frames`)."""
    target = configured_list(config, list_name)
    label = label or target.label

    async def hash_all(sandbox: HashSandbox) -> list[HashEntry]:
        entries: list[HashEntry] = []
        for path in videos:
            hashes = await sandbox.hash(path.read_bytes())
            if hashes.pdq is not None or not hashes.frame_pdqs:
                why = hashes.perceptual_error or "an image, not a video"
                raise NotAVideo(f"{path}: not a video ({why})")
            try:
                check_entry_frames(len(hashes.frame_pdqs), list_name, target.max_vpdq_frames)
            except TooManyFrames as e:
                raise NotAVideo(f"{path}: {e}") from None
            entries.append(HashEntry("sha256", hashes.sha256, label))
            if hashes.md5:
                entries.append(HashEntry("md5", hashes.md5, label))
            entries.append(HashEntry(VIDEO_HASH_TYPE, canonical(video_frames(hashes.frame_pdqs)), label))
        return entries

    entries = run_with_sandbox(config, hash_all)
    return append_entries(target.path, entries, max_vpdq_frames=target.max_vpdq_frames), Path(target.path)


def cmd_hashes_add_video(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        added, path = add_videos([Path(p) for p in args.videos], config, args.list, args.label)
    except KeyError as e:
        print(f"modbot: {e.args[0]}", file=sys.stderr)
        return 2
    except (OSError, NotAVideo) as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    print(f"added {added} hashes to list {args.list} ({path})")
    return 0

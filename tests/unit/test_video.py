"""bot.hashing.video: a known image shown in a video is found, once a second, within limits.

Clips are made here with PyAV from generated photos: unrelated footage (other seeds) with
the known image shown for a few seconds, re-encoded or trimmed as someone might repost it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import av
import numpy as np
import pytest
from images import encode, make_photo
from PIL import Image

from bot.classify.hashlist import HashListClassifier
from bot.config import ProcessingConfig
from bot.hashing import MediaLimits, compute_hashes
from bot.hashing.pool import HashSandbox
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList
from bot.model import Hashes


@cache
def photo(seed: int) -> Image.Image:
    return make_photo(seed, (480, 360))


def clip(scenes: Sequence[tuple[int, float]], codec: str = "libx264", container: str = "mp4",
         fps: int = 10, size: tuple[int, int] = (480, 360)) -> bytes:
    """A clip of `scenes`: (photo seed, seconds shown), each photo slowly panning."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for seed, seconds in scenes:
            base = np.asarray(photo(seed).resize(size))
            for i in range(round(seconds * fps)):
                frame = np.roll(base, i // 4, axis=1)  # a little motion, as footage has
                c.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        c.mux(stream.encode())
    return out.getvalue()


KNOWN = 7
UNRELATED = (101, 102, 103)


@cache
def image_list() -> LoadedList:
    known = compute_hashes(encode(photo(KNOWN), "JPEG", quality=90))
    return LoadedList.from_entries("known", [HashEntry("pdq", known.pdq or "", "csam")], label="csam")


def seconds_matched(hashes: Hashes) -> list[int]:
    return [v.details["second"] for v in HashListClassifier([image_list()]).match(hashes).verdicts]


@pytest.mark.parametrize(
    ("codec", "container", "fps", "size"),
    [("libx264", "mp4", 10, (480, 360)), ("libvpx", "webm", 25, (320, 240)), ("mpeg4", "mp4", 15, (640, 480))],
)
def test_a_known_image_shown_for_a_few_seconds_inside_unrelated_video_is_found(
    codec: str, container: str, fps: int, size: tuple[int, int]
) -> None:
    data = clip([(UNRELATED[0], 3), (KNOWN, 2.5), (UNRELATED[1], 3)], codec, container, fps, size)
    hashes = compute_hashes(data)
    assert hashes.perceptual_error is None and hashes.pdq is None
    assert (hashes.width, hashes.height, hashes.image_format) == (*size, "WEBM" if container == "webm" else "MP4")
    assert [second for second, _, _ in hashes.frame_pdqs] == list(range(9))  # one a second
    (second,) = seconds_matched(hashes)
    assert 3 <= second <= 5


def test_a_trimmed_clip_is_found_and_unrelated_footage_is_not() -> None:
    assert seconds_matched(compute_hashes(clip([(KNOWN, 2), (UNRELATED[2], 2)]))) == [0]
    assert seconds_matched(compute_hashes(clip([(seed, 2) for seed in UNRELATED]))) == []


def test_sampling_stops_at_the_frame_and_pixel_budgets_and_says_so() -> None:
    data = clip([(UNRELATED[0], 6)])
    whole = compute_hashes(data)
    assert len(whole.frame_pdqs) == 6 and whole.sampling_limit is None
    assert compute_hashes(data, limits=MediaLimits(video_frames=6)).sampling_limit is None  # exactly its length
    by_frames = compute_hashes(data, limits=MediaLimits(video_frames=3))
    assert len(by_frames.frame_pdqs) == 3
    assert by_frames.sampling_limit == "frame limit: the first 3 s sampled (processing.max_video_frames)"
    by_pixels = compute_hashes(data, limits=MediaLimits(video_pixel_budget=480 * 360 * 25))  # 2.5 s at 10 frames/s
    assert len(by_pixels.frame_pdqs) == 3
    assert by_pixels.sampling_limit == (
        f"decoded-pixel limit: {480 * 360 * 25} pixels decoded in 26 frames after 3 s (processing.max_video_decoded_pixels)"
    )


def test_hostile_videos_get_a_reason_not_a_crash() -> None:
    data = clip([(UNRELATED[0], 4)])
    junk = compute_hashes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    assert junk.perceptual_error is not None and junk.perceptual_error.startswith("truncated or corrupt video")
    assert junk.sha256 and junk.frame_pdqs == ()
    too_large = compute_hashes(data, limits=MediaLimits(max_pixels=480 * 360 - 1))
    assert too_large.perceptual_error is not None and too_large.perceptual_error.startswith("decompression bomb")
    cut = compute_hashes(data[: len(data) // 2])  # the moov atom is at the end: nothing to read
    assert cut.perceptual_error is not None and cut.frame_pdqs == ()
    webm = clip([(UNRELATED[0], 4)], "libvpx", "webm")
    assert len(compute_hashes(webm).frame_pdqs) == 4
    cut = compute_hashes(webm[: len(webm) * 7 // 10])  # WebM streams: the frames before the cut stand
    assert cut.perceptual_error is None and 0 < len(cut.frame_pdqs) < 4
    cut = compute_hashes(webm[: len(webm) // 2])  # the first keyframe cut through
    assert cut.perceptual_error == "truncated or corrupt video: no frame decoded"


async def test_the_sandbox_hashes_video_as_compute_hashes_does() -> None:
    data = clip([(UNRELATED[0], 1), (KNOWN, 2)])
    async with HashSandbox.from_config(ProcessingConfig(), workers=1) as sandbox:
        hashes = await sandbox.hash(data)
    assert hashes == compute_hashes(data)
    assert seconds_matched(hashes) == [1]


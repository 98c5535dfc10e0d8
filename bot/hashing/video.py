"""Video: PDQ of frames sampled once a second, decoded from memory with PyAV (FFmpeg).

What Meta's vPDQ samples (one frame per second by default, PDQ and quality of each), so a
known image shown in a video for a second or more is found by the image lists through
`Hashes.frame_pdqs`, whose frame number is, for a video, the second it was taken at.
The same frames are the video's vPDQ: matched against the vPDQ entries of lists by the
share of frames matched both ways (bot/lists/videoindex.py, HMA's rule), and what
`hashes add-video` lists (bot/cli/videos.py).

Bounded before and while decoding: only MP4/QuickTime (ISO base media) and WebM/Matroska
are opened, identified from the bytes, and only the codecs of `MediaLimits.video_codecs`
(limits.MATRIX_VIDEO_CODECS) decoded; a stream whose frames are over the pixel limit, or
would take more than `MediaLimits.max_decoded_bytes` to decode (VIDEO_BYTES_PER_PIXEL),
is refused from its header, and a later frame that grows past either stops decoding (a
sampled frame is reduced by FFmpeg before any RGB conversion: no full-size copy);
decoding stops after `MediaLimits.video_frames` samples (so the first that many seconds:
the duration limit, whatever duration the container claims) or `video_pixel_budget`
decoded pixels, every frame counted as at least MIN_FRAME_PIXELS (a stream of thousands of
tiny frames a second costs per frame, not per pixel), whichever comes first, and
`Hashes.sampling_limit` says which (the pipeline audits it); FFmpeg decodes on one thread.
The sandbox's memory and CPU limits (bot/hashing/pool.py) stay the backstop, as for images:
tests/unit/test_video_limits.py has a hostile video hit each limit.

Pure: bytes in, frame hashes out.
"""

from __future__ import annotations

import io
from dataclasses import replace

import av
import numpy as np

from bot.model import Hashes

from . import pdq
from .limits import MediaLimits

# The most samples a video may be configured to (processing.max_video_frames): an hour.
MAX_VIDEO_FRAMES = 3600
# Address space decoding takes, per pixel of a frame: the decoder's frames in flight, 1.5
# bytes a pixel each in 4:2:0 (an H.264 stream keeps its reference frames and those waiting
# to be reordered: 8-9 with 4 references and 2 B-frames). Measured growth of a process's
# peak: 12.8 bytes a pixel for 8K H.264 so encoded, 16 for 4K (fixed costs included), 3.3-4.4
# for intra-only streams (sampling reduces frames in FFmpeg, with no full-size RGB copy).
# With the default max_decoded_bytes (192 MiB) frames up to 12.5 MP are decoded (4K UHD is
# 8.3 MP). Streams that hold more than the estimate are left to the sandbox's memory limit:
# 4K H.264 with 16 references took 237 MB, 4K 10-bit HEVC 224 MB (both fit in 256 MiB).
VIDEO_BYTES_PER_PIXEL = 16
# Decoding a frame costs ~13 us whatever its size (FFmpeg and PyAV per-frame work; measured
# on 16x16 frames), what ~9,000 pixels of a large frame cost: each frame is counted as at
# least this many pixels against video_pixel_budget, so that 2e9 is ~3 s of CPU however
# small the frames (without it, 2e9 is millions of tiny frames: minutes).
MIN_FRAME_PIXELS = 16_384
# FFmpeg's demuxers for the formats video_format identifies.
_DEMUXERS = {"MP4": "mov", "WEBM": "matroska"}
# Long side of the frame PDQ is computed from (as images: PDQ downsamples to 64x64 anyway).
_REDUCED_SIDE = 512


class VideoRefused(Exception):
    """The video is not hashed; the message is the reason given to users."""


def video_format(data: bytes) -> str | None:
    """"MP4" (ISO base media: MP4, MOV, 3GP) or "WEBM" (Matroska), from the bytes; else None."""
    if data[4:8] == b"ftyp":
        return "MP4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "WEBM"
    return None


def add_video_hashes(hashes: Hashes, data: bytes, limits: MediaLimits) -> Hashes:
    """`hashes` (exact ones) with the video's size, format and sampled frames, or the
    reason there are none in `perceptual_error`. `pdq` stays None: a video matches
    image lists through its frames only."""
    fmt = video_format(data)
    try:
        size, frames, stopped = sample_video(data, limits)
    except VideoRefused as e:
        return replace(hashes, image_format=fmt, perceptual_error=str(e))
    return replace(
        hashes, width=size[0], height=size[1], image_format=fmt, frame_pdqs=frames, sampling_limit=stopped
    )


def video_frame_pdqs(
    data: bytes, limits: MediaLimits, every: float = 1.0
) -> tuple[tuple[int, int], tuple[tuple[int, str, int], ...]]:
    """((width, height), (second, PDQ, quality) of a frame every `every` seconds); see sample_video."""
    size, frames, _ = sample_video(data, limits, every)
    return size, frames


def sample_video(
    data: bytes, limits: MediaLimits, every: float = 1.0
) -> tuple[tuple[int, int], tuple[tuple[int, str, int], ...], str | None]:
    """((width, height), (second, PDQ, quality) of a frame every `every` seconds, the limit
    that stopped sampling before the end or None).

    VideoRefused when the video cannot be opened, has no video stream, or its frames
    exceed the pixel limit; a video that breaks off later keeps the frames before it.
    """
    # The demuxer of the format identified (no other is probed), and FFmpeg told which
    # decoders it may open at all: opening a file already decodes a first frame of a stream
    # whose header leaves its parameters open.
    demuxer = _DEMUXERS.get(video_format(data) or "")
    try:
        container = av.open(
            io.BytesIO(data), mode="r", format=demuxer,
            container_options={"codec_whitelist": ",".join(sorted(limits.video_codecs))},
        )  # fmt: skip
    except Exception as e:  # FFmpeg raises its own errors for anything malformed
        raise VideoRefused(f"truncated or corrupt video: {_describe(e)}") from None
    with container:
        if not container.streams.video:
            raise VideoRefused("no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in limits.video_codecs:
            raise VideoRefused(f"unsupported video codec {codec}")
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoRefused(f"corrupt video: frame size {width}x{height}")
        refused = _frame_refused(width, height, limits)
        if refused:
            raise VideoRefused(f"decompression bomb: {refused}")
        found: list[tuple[int, str, int]] = []
        decoded = frames = 0
        next_at = 0.0
        stopped: str | None = None
        wanted = min(limits.video_frames, MAX_VIDEO_FRAMES)
        try:
            for frame in container.decode(stream):
                at = frame.time
                if len(found) >= wanted and at is not None and at + 1e-6 >= next_at:  # the video goes on
                    stopped = f"frame limit: the first {wanted} s sampled (processing.max_video_frames)"
                    break
                pixels = frame.width * frame.height
                decoded += max(pixels, MIN_FRAME_PIXELS)
                frames += 1
                refused = _frame_refused(frame.width, frame.height, limits)
                if refused:
                    stopped = f"a later frame is too large: {refused}"
                    break
                if decoded > limits.video_pixel_budget:
                    small = f", frames of {frame.width}x{frame.height} counted as {MIN_FRAME_PIXELS} pixels each" * (
                        pixels < MIN_FRAME_PIXELS
                    )
                    stopped = (f"decoded-pixel limit: {limits.video_pixel_budget} pixels decoded in {frames} frames "
                               f"after {len(found)} s{small} (processing.max_video_decoded_pixels)")  # fmt: skip
                    break
                if at is None or at + 1e-6 < next_at:
                    continue
                found.append((int(at), *_frame_pdq(frame)))
                next_at = (int(at / every) + 1) * every
        except MemoryError:
            raise
        except Exception:  # a broken packet later on: the frames before it stand
            pass
        if not found:
            raise VideoRefused("truncated or corrupt video: no frame decoded")
        return (width, height), tuple(found), stopped


def _frame_refused(width: int, height: int, limits: MediaLimits) -> str | None:
    """Why frames of width x height are not decoded (over the pixel or decoded-byte limit), or None."""
    if width * height > limits.max_pixels:
        return (
            f"{width}x{height} = {width * height} pixels exceeds the limit of {limits.max_pixels} "
            "(processing.max_image_pixels)"
        )
    needed = width * height * VIDEO_BYTES_PER_PIXEL
    if needed > limits.max_decoded_bytes:
        return (
            f"video frames of {width}x{height} need {needed} bytes to decode, "
            f"over the limit of {limits.max_decoded_bytes} (processing.max_decoded_bytes)"
        )
    return None


def _frame_pdq(frame: av.VideoFrame) -> tuple[str, int]:
    factor = max(frame.width, frame.height) // _REDUCED_SIDE
    if factor >= 2:
        # Reduced by FFmpeg straight from the decoded YUV (area averaging, as Pillow's
        # reduce): no full-size RGB copy. A 4K frame costs 7 ms instead of 64 and ~3 bytes
        # a pixel instead of 16; the hash is within 0-6 bits of reducing the RGB frame.
        frame = frame.reformat(width=frame.width // factor, height=frame.height // factor, format="rgb24",
                               interpolation="AREA")  # fmt: skip
    return pdq.pdq_hash(np.asarray(frame.to_image().convert("F")))


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


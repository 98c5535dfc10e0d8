"""Video: PDQ of frames sampled once a second, decoded from memory with PyAV (FFmpeg).

What Meta's vPDQ samples (one frame per second by default, PDQ and quality of each), so a
known image shown in a video for a second or more is found by the image lists through
`Hashes.frame_pdqs`, whose frame number is, for a video, the second it was taken at.
Matching whole videos against vPDQ list entries (HMA's share of frames matched both ways),
importing vPDQ lists and `hashes add-video` are not done yet; a video reaches only image
lists, frame by frame, and only by its frames with the bounds of their own quality.

Bounded before and while decoding: only MP4/QuickTime (ISO base media) and WebM/Matroska
are opened, identified from the bytes; a stream whose frames are over the pixel limit is
refused from its header; decoding stops after VIDEO_FRAMES samples or VIDEO_PIXEL_BUDGET
decoded pixels, whichever comes first; FFmpeg decodes on one thread. Memory and CPU are
the sandbox's (bot/hashing/pool.py), as for images.

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

# Samples taken, one a second: the first minute.
VIDEO_FRAMES = 60
# Decoded pixels after which decoding stops: ~3 s of CPU, ~72 s of 720p or ~32 s of 1080p
# at 30 frames a second (every frame is decoded: later ones are built from earlier ones),
# well within the sandbox's CPU limit of 10 s.
VIDEO_PIXEL_BUDGET = 2_000_000_000
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
        size, frames = video_frame_pdqs(data, limits)
    except VideoRefused as e:
        return replace(hashes, image_format=fmt, perceptual_error=str(e))
    return replace(hashes, width=size[0], height=size[1], image_format=fmt, frame_pdqs=frames)


def video_frame_pdqs(
    data: bytes, limits: MediaLimits, every: float = 1.0
) -> tuple[tuple[int, int], tuple[tuple[int, str, int], ...]]:
    """((width, height), (second, PDQ, quality) of a frame every `every` seconds).

    VideoRefused when the video cannot be opened, has no video stream, or its frames
    exceed the pixel limit; a video that breaks off later keeps the frames before it.
    """
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as e:  # FFmpeg raises its own errors for anything malformed
        raise VideoRefused(f"truncated or corrupt video: {_describe(e)}") from None
    with container:
        if not container.streams.video:
            raise VideoRefused("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoRefused(f"corrupt video: frame size {width}x{height}")
        if width * height > limits.max_pixels:
            raise VideoRefused(
                f"decompression bomb: {width}x{height} = {width * height} pixels "
                f"exceeds the limit of {limits.max_pixels}"
            )
        found: list[tuple[int, str, int]] = []
        decoded = 0
        next_at = 0.0
        try:
            for frame in container.decode(stream):
                decoded += frame.width * frame.height
                if frame.width * frame.height > limits.max_pixels or decoded > VIDEO_PIXEL_BUDGET:
                    break
                at = frame.time
                if at is None or at + 1e-6 < next_at:
                    continue
                found.append((int(at), *_frame_pdq(frame)))
                next_at = (int(at / every) + 1) * every
                if len(found) >= VIDEO_FRAMES:
                    break
        except MemoryError:
            raise
        except Exception:  # a broken packet later on: the frames before it stand
            pass
        if not found:
            raise VideoRefused("truncated or corrupt video: no frame decoded")
        return (width, height), tuple(found)


def _frame_pdq(frame: av.VideoFrame) -> tuple[str, int]:
    image = frame.to_image()  # RGB
    factor = max(image.size) // _REDUCED_SIDE
    if factor >= 2:
        image = image.reduce(factor)
    return pdq.pdq_hash(np.asarray(image.convert("F")))


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."


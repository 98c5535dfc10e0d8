"""Every limit on hashing a video, each hit by a hostile video (tests/hostile_video.py).

What it promises: only the codecs Matrix clients send are decoded; frames too large to
decode within the decoded-byte limit are refused from the header, and a later frame that
grows past it stops decoding; a stream of thousands of tiny frames stops at the decoded-pixel limit (each frame counted as at least
MIN_FRAME_PIXELS); the duration a container claims costs nothing (what is sampled is the
first `video_frames` seconds of decoded frames). Through the sandbox, a video over the CPU
or memory limit of its worker has the worker replaced and the media not scanned, the
reason naming the limit and its configuration key; a video refused from its header costs
no worker.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from hostile_video import flat_clip, flat_jpeg, mjpeg_clip, skip_clip

from bot.config import ProcessingConfig
from bot.demo.samples import encode_frames
from bot.hashing import MediaLimits, compute_hashes, video
from bot.hashing.limits import DEFAULT_VIDEO_FRAMES, DEFAULT_VIDEO_PIXEL_BUDGET, MATRIX_VIDEO_CODECS
from bot.hashing.pool import HashSandbox
from bot.hashing.video import MIN_FRAME_PIXELS, VIDEO_BYTES_PER_PIXEL

MB = 1024 * 1024
DEFAULT_DECODED_BYTES = MediaLimits().max_decoded_bytes


def test_8k_frames_are_refused_from_the_header_and_4k_ones_are_sampled() -> None:
    assert 3840 * 2160 * VIDEO_BYTES_PER_PIXEL <= DEFAULT_DECODED_BYTES < 7680 * 4320 * VIDEO_BYTES_PER_PIXEL
    eight_k = flat_clip(7680, 4320, 3)
    started = time.process_time()
    refused = compute_hashes(eight_k)
    assert time.process_time() - started < 0.5  # nothing decoded
    assert refused.perceptual_error == (
        f"decompression bomb: video frames of 7680x4320 need {7680 * 4320 * VIDEO_BYTES_PER_PIXEL} bytes to "
        f"decode, over the limit of {DEFAULT_DECODED_BYTES} (processing.max_decoded_bytes)"
    )
    assert refused.sha256 == hashlib.sha256(eight_k).hexdigest() and refused.frame_pdqs == ()

    four_k = compute_hashes(flat_clip(3840, 2160, 2))
    assert four_k.perceptual_error is None and len(four_k.frame_pdqs) == 2


def test_only_the_codecs_matrix_clients_send_are_decoded() -> None:
    # FFV1 (a lossless archival codec) in Matroska: a container modbot reads, a decoder it
    # does not open. The same frames in VP8/WebM are hashed.
    frames = [np.full((240, 320, 3), 90, np.uint8)] * 10
    ffv1 = encode_frames(frames, "ffv1", "matroska", 10, (320, 240))
    refused = compute_hashes(ffv1)
    assert refused.perceptual_error == "unsupported video codec ffv1"
    assert refused.sha256 == hashlib.sha256(ffv1).hexdigest() and refused.image_format == "WEBM"
    assert "ffv1" not in MATRIX_VIDEO_CODECS and {"h264", "hevc", "vp8", "vp9", "libdav1d"} <= MATRIX_VIDEO_CODECS
    vp8 = compute_hashes(encode_frames(frames, "libvpx", "webm", 10, (320, 240)))
    assert vp8.perceptual_error is None and len(vp8.frame_pdqs) == 1


def test_a_frame_larger_than_the_header_said_stops_decoding_and_the_frames_before_stand() -> None:
    small, huge = flat_jpeg(640, 480), flat_jpeg(8000, 8000)
    data = mjpeg_clip([(small, 0), (small, 1000), (huge, 2000), (small, 3000)], (640, 480))

    hashes = compute_hashes(data)

    assert hashes.perceptual_error is None and [s for s, _, _ in hashes.frame_pdqs] == [0, 1]
    assert hashes.sampling_limit == (
        "a later frame is too large: video frames of 8000x8000 need "
        f"{8000 * 8000 * VIDEO_BYTES_PER_PIXEL} bytes to decode, over the limit of "
        f"{DEFAULT_DECODED_BYTES} (processing.max_decoded_bytes)"
    )
    lifted = compute_hashes(data, limits=MediaLimits(max_decoded_bytes=1 << 40, max_pixels=63_000_000))
    assert lifted.sampling_limit == (
        "a later frame is too large: 8000x8000 = 64000000 pixels exceeds the limit of 63000000 (processing.max_image_pixels)"
    )


def test_thousands_of_tiny_frames_at_one_instant_stop_at_the_decoded_pixel_limit() -> None:
    # 3000 frames of 16x16, all at 0 s: one sample, and every frame decoded. Counted by their
    # pixels they would be 768,000, under a budget of 1000 frames' minimum; counted as they
    # cost, decoding stops after 1000 frames.
    data = flat_clip(16, 16, 3000, every_ms=0)
    budget = 1000 * MIN_FRAME_PIXELS
    assert 3000 * 16 * 16 < budget

    hashes = compute_hashes(data, limits=MediaLimits(video_pixel_budget=budget))

    assert len(hashes.frame_pdqs) == 1
    assert hashes.sampling_limit == (
        f"decoded-pixel limit: {budget} pixels decoded in 1001 frames after 1 s, frames of 16x16 counted as "
        f"{MIN_FRAME_PIXELS} pixels each (processing.max_video_decoded_pixels)"
    )
    whole = compute_hashes(data)  # the default budget lets 122,070 such frames through: ~2 s of CPU
    assert whole.sampling_limit is None and len(whole.frame_pdqs) == 1


def test_a_container_claiming_ten_hours_costs_what_its_frames_cost() -> None:
    # Three frames, the last at 10 h: the Matroska header's duration says 10 h, and the
    # video is sampled where it has frames, not decoded or waited on for 10 h.
    jpeg = flat_jpeg(320, 240)
    data = mjpeg_clip([(jpeg, 0), (jpeg, 1000), (jpeg, 36_000_000)], (320, 240))
    started = time.process_time()

    hashes = compute_hashes(data)

    assert time.process_time() - started < 1
    assert [s for s, _, _ in hashes.frame_pdqs] == [0, 1, 36_000] and hashes.sampling_limit is None
    # Sampling stops at the frame limit however long the stream says it is.
    limited = compute_hashes(flat_clip(320, 240, 10), limits=MediaLimits(video_frames=4))
    assert len(limited.frame_pdqs) == 4
    assert limited.sampling_limit == "frame limit: the first 4 s sampled (processing.max_video_frames)"


async def test_a_video_over_a_workers_cpu_limit_has_it_replaced_and_the_media_not_scanned() -> None:
    # 1500 frames of 4K (50 s, 5 MB): ~3 ms of CPU each to decode, ~5 s in all. By default
    # the decoded-pixel limit stops decoding after 242 of them; with it lifted the worker
    # decodes on, past a CPU limit of 1 s.
    data = skip_clip(3840, 2160, 1500)
    assert (compute_hashes(data).sampling_limit or "").startswith("decoded-pixel limit: 2000000000 pixels decoded in 242 frames")
    async with HashSandbox(
        workers=1, memory_bytes=256 * MB, cpu_seconds=1, limits=MediaLimits(video_pixel_budget=1 << 62)
    ) as sb:
        hashes = await sb.hash(data)

        assert hashes.perceptual_error == (
            "not scanned: resource limit (cpu): over 1 s of CPU for one media (processing.hash_cpu_seconds)"
        )
        assert hashes.sha256 == hashlib.sha256(data).hexdigest() and hashes.frame_pdqs == ()
        assert sb.restarts == 1 and sb.restart_reasons["cpu"] == 1
        small = flat_clip(320, 240, 3)
        assert await sb.hash(small) == compute_hashes(small)  # the next job has a new worker


async def test_a_video_over_a_workers_memory_limit_has_it_replaced_and_the_media_not_scanned() -> None:
    # 64 MP frames in 4:4:4 (3 MB of file): refused from the header by default; with the
    # decoded-byte check lifted the worker really tries, and two decoded frames held at once
    # (192 MB each) do not fit in 256 MiB.
    jpeg = flat_jpeg(8000, 8000, subsampling=0)
    data = mjpeg_clip([(jpeg, 0), (jpeg, 1000), (jpeg, 2000)], (8000, 8000))
    async with HashSandbox(
        workers=1, memory_bytes=256 * MB, cpu_seconds=10, limits=MediaLimits(max_decoded_bytes=1 << 40)
    ) as sb:
        first = sb.pids
        hashes = await sb.hash(data)

        assert hashes.perceptual_error == (
            "not scanned: resource limit (memory): over 256 MiB beyond the worker's idle size "
            "(processing.hash_memory_mb)"
        )
        assert hashes.sha256 == hashlib.sha256(data).hexdigest() and hashes.frame_pdqs == ()
        assert sb.restarts == 1 and sb.restart_reasons["memory"] == 1
        small = flat_clip(320, 240, 3)
        assert await sb.hash(small) == compute_hashes(small)
        assert sb.pids != first


async def test_under_the_default_limits_a_hostile_video_is_refused_without_costing_a_worker() -> None:
    clips = [flat_clip(8000, 8000, 2), flat_clip(7680, 4320, 3), flat_clip(16, 16, 2000, every_ms=0)]
    async with HashSandbox.from_config(ProcessingConfig(), workers=1) as sb:
        results = [await sb.hash(data) for data in clips]
        assert sb.restarts == 0
    assert [r.perceptual_error and r.perceptual_error.split(":")[0] for r in results] == [
        "decompression bomb", "decompression bomb", None
    ]
    assert results[2] == compute_hashes(clips[2])


def test_each_video_limit_default_is_held_once_by_media_limits() -> None:
    # bot/hashing/limits.py holds each default; video.py samples within the MediaLimits it is
    # given and keeps no copy of them to drift apart from these.
    limits = MediaLimits()
    assert (limits.video_frames, limits.video_pixel_budget) == (DEFAULT_VIDEO_FRAMES, DEFAULT_VIDEO_PIXEL_BUDGET)
    assert (DEFAULT_VIDEO_FRAMES, DEFAULT_VIDEO_PIXEL_BUDGET) == (60, 2_000_000_000)  # the first minute; ~3 s of CPU
    assert not {"VIDEO_FRAMES", "VIDEO_PIXEL_BUDGET"} & set(vars(video))
    # The `processing:` defaults are the same limits: the bot samples what a bare caller does.
    assert HashSandbox.from_config(ProcessingConfig()).settings.limits == limits

"""Hostile videos built from benign generated pixels: small files that cost a decoder much.

Each is a Matroska (WebM's container) file of Motion-JPEG frames: one flat JPEG, encoded
once, muxed as many times as wanted at chosen timestamps, so a clip of 60 frames of 4K or
of 64 MP, or of thousands of tiny frames, is built in well under a second (no video
encoder runs). Matroska and MJPEG are what modbot's video path accepts (it identifies the
container from the bytes; FFmpeg decodes whatever codec is inside), and a flat JPEG costs
the decoder the same per pixel whatever it shows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from functools import cache

import av
from PIL import Image

_MS = Fraction(1, 1000)  # Matroska's default timestamp unit


@cache
def flat_jpeg(width: int, height: int, colour: tuple[int, int, int] = (90, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="JPEG", quality=75)
    return out.getvalue()


def mjpeg_clip(frames: Sequence[tuple[bytes, int]], size: tuple[int, int]) -> bytes:
    """A Matroska file of the (JPEG, timestamp in ms) `frames`; the stream's header declares
    `size`, whatever size the JPEGs are (a header can lie)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p"
        for jpeg, ms in frames:
            packet = av.Packet(jpeg)
            packet.stream = stream
            packet.time_base = _MS
            packet.pts = packet.dts = ms
            packet.is_keyframe = True
            container.mux(packet)
    return out.getvalue()


def flat_clip(width: int, height: int, count: int, every_ms: int = 1000) -> bytes:
    """`count` flat frames of width x height, one every `every_ms` ms (0: all at once)."""
    jpeg = flat_jpeg(width, height)
    return mjpeg_clip([(jpeg, i * every_ms) for i in range(count)], (width, height))

"""Hostile videos built from benign generated pixels: small files that cost a decoder much.

Each is a Matroska (WebM's container) file whose frames are one packet encoded once and
muxed as many times as wanted at chosen timestamps, so a clip of 60 frames of 4K or of
64 MP, or of thousands of tiny frames, is built in well under a second:

- Motion-JPEG (`mjpeg_clip`, `flat_clip`): every frame a flat JPEG, decoded in full each
  time; the JPEG's size may differ from the one the stream's header declares.
- MPEG-4 Part 2 (`skip_clip`): one keyframe, then the same predicted frame over and over,
  each a copy of the one before ("not coded" blocks): ~4 kB a 4K frame, ~3 ms to decode.

Matroska is what modbot's video path accepts as WebM (it identifies the container from the
bytes; FFmpeg decodes whatever codec is inside).
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
def flat_jpeg(width: int, height: int, subsampling: int = 2) -> bytes:
    """A flat JPEG; `subsampling` 2 is 4:2:0 (1.5 bytes a pixel decoded), 0 is 4:4:4 (3)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(out, format="JPEG", quality=75, subsampling=subsampling)
    return out.getvalue()


def mjpeg_clip(frames: Sequence[tuple[bytes, int]], size: tuple[int, int]) -> bytes:
    """A Matroska file of the (JPEG, timestamp in ms) `frames`; the stream's header declares
    `size`, whatever size the JPEGs are (a header can lie)."""
    return _mux("mjpeg", size, [(jpeg, ms, True) for jpeg, ms in frames])


def _mux(codec: str, size: tuple[int, int], packets: Sequence[tuple[bytes, int, bool]]) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="matroska") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for data, ms, key in packets:
            packet = av.Packet(data)
            packet.stream = stream
            packet.time_base = _MS
            packet.pts = packet.dts = ms
            packet.is_keyframe = key
            container.mux(packet)
    return out.getvalue()


def flat_clip(width: int, height: int, count: int, every_ms: int = 1000) -> bytes:
    """`count` flat frames of width x height, one every `every_ms` ms (0: all at once)."""
    jpeg = flat_jpeg(width, height)
    return mjpeg_clip([(jpeg, i * every_ms) for i in range(count)], (width, height))


@cache
def _mpeg4_key_and_skip(width: int, height: int) -> tuple[bytes, bytes]:
    """An MPEG-4 Part 2 keyframe of a flat picture and a predicted frame with nothing coded."""
    codec = av.CodecContext.create("mpeg4", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.options = {"g": "1000"}  # no second keyframe
    picture = av.VideoFrame.from_image(Image.new("RGB", (width, height), (90, 120, 200))).reformat(format="yuv420p")
    packets = []
    for i in range(2):
        picture.pts = i
        packets += codec.encode(picture)
    packets += codec.encode(None)
    key, skip = packets[0], packets[1]
    assert key.is_keyframe and not skip.is_keyframe and skip.size < key.size // 10
    return bytes(key), bytes(skip)


def skip_clip(width: int, height: int, count: int, fps: int = 30) -> bytes:
    """`count` frames of width x height at `fps`: a keyframe, then the same predicted frame."""
    key, skip = _mpeg4_key_and_skip(width, height)
    return _mux("mpeg4", (width, height), [(key if i == 0 else skip, i * 1000 // fps, i == 0) for i in range(count)])

"""Benign generated images and clips: the stand-ins for "known" media in the demo, tests and benchmarks.

Everything here is synthetic: gradients, random shapes and noise drawn from a fixed seed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def make_photo(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A photo-like RGB image: smooth gradients, soft random shapes, sensor-like noise.

    Different seeds give unrelated images (their PDQ hashes are far apart); the same seed
    always gives the same pixels.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    # Background: two random colours blended along a random direction.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img = Image.fromarray(base.astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(img)
    for i in range(60):
        # Large shapes first, then smaller ones on top: structure at every scale.
        scale = 0.5 * 0.96**i
        x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 1.0) * h
        x1 = x0 + rng.uniform(0.2, 1.0) * scale * w
        y1 = y0 + rng.uniform(0.2, 1.0) * scale * h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            corners = rng.uniform(0, 1, (5, 2)) * (x1 - x0, y1 - y0) + (x0, y0)
            points = [(float(x), float(y)) for x, y in corners]
            draw.polygon(points, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) / 400))

    noise = rng.normal(0, 6, (h, w, 3))
    pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **opts: Any) -> bytes:
    """The bytes of `img` saved in format `fmt` ("JPEG", "PNG", "WEBP"...) with `opts`."""
    out = io.BytesIO()
    img.save(out, format=fmt, **opts)
    return out.getvalue()


def make_clip(
    scenes: list[tuple[Image.Image, float]],
    codec: str = "libx264",
    container: str = "mp4",
    fps: int = 10,
    size: tuple[int, int] = (480, 360),
    bitrate: int | None = None,
) -> bytes:
    """A benign generated video: each (picture, seconds) scene shown in turn, panning slowly
    (1/200 of the width a second, as footage moves: the same motion at any frame rate and
    size, so re-encodings show the same pictures at the same times), encoded in memory with PyAV."""

    def frames() -> Iterator[np.ndarray]:
        for picture, seconds in scenes:
            base = np.asarray(picture.convert("RGB").resize(size))
            for i in range(round(seconds * fps)):
                yield np.roll(base, i * size[0] // (200 * fps), axis=1)

    return encode_frames(frames(), codec, container, fps, size, bitrate)


def encode_frames(
    frames: Iterable[np.ndarray], codec: str, container: str, fps: int, size: tuple[int, int], bitrate: int | None = None
) -> bytes:
    """RGB frames (height x width x 3, `size`) as a video file, encoded in memory with PyAV."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if bitrate:
            stream.bit_rate = bitrate
        for frame in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        c.mux(stream.encode())
    return out.getvalue()

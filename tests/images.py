"""Benign generated images for tests and benchmarks.

Everything here is synthetic: gradients, random shapes and noise drawn from a fixed seed,
so a test can build "a known image" and its altered copies without any real media.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

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


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png_bomb(w: int, h: int) -> bytes:
    """A valid all-black 1-bit PNG of w x h pixels: ~300 KB for 50000x50000, built in ~20 ms.

    Decoded it would need w*h bytes or more, so a decoder must refuse it from the header.
    The raw rows are all zero bytes (filter 0, black pixels); they are deflated one 1 MiB
    block at a time with a full flush after each, which resets the compressor, so every
    full block compresses to the same bytes and is compressed only once.
    """
    total = h * (1 + (w + 7) // 8)  # each row: filter byte + packed bits
    block = 1 << 20
    full, rest = divmod(total, block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; zlib framing below
    parts = []
    if full:
        repeated = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
        parts.append(repeated * full)
    parts.append(deflate.compress(bytes(rest)) + deflate.flush(zlib.Z_FINISH))
    # Adler-32 of `total` zero bytes: A stays 1, B adds 1 per byte.
    adler = ((total % 65521) << 16) | 1
    idat = b"\x78\xda" + b"".join(parts) + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def truncated(data: bytes) -> bytes:
    """The first half of `data`: what an interrupted upload or download leaves."""
    return data[: len(data) // 2]

"""Benign generated images for tests and benchmarks, and hostile files built from them.

Everything here is synthetic: gradients, random shapes and noise drawn from a fixed seed,
so a test can build "a known image" and its altered copies without any real media.
"""

from __future__ import annotations

import struct
import zlib

from bot.demo.samples import encode, make_photo

__all__ = ["encode", "make_photo", "make_png_bomb", "truncated"]


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

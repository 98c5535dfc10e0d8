"""Hostile media built from benign generated pixels: small files that cost a decoder much.

Each file is a flat colour, a gradient or a generated photo whose container lies or asks
for too much: 16-bit PNGs, a lossless WebP or a GIF with a huge canvas, an ICO whose
directory hides a far larger PNG, a progressive JPEG with thousands of scans, formats
Matrix clients do not send, truncated files and headers that lie. They are built in
milliseconds and a few MB of memory (rows are compressed as they are generated, headers
are patched), never by encoding a large image.

`HOSTILE` lists them with what compute_hashes, under the default limits, must say: the
start of its perceptual_error, or None when the file is an image it hashes within the
limits (reduced before any conversion that would widen it).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image

from bot.demo.samples import encode, make_photo


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(w: int, h: int, *, bit_depth: int = 8, colour_type: int = 0, row: bytes | None = None, apng: bool = False) -> bytes:
    """A valid PNG whose rows all equal `row` (default: a ramp), deflated row block by row block.

    Identical rows compress to almost nothing, so a 64 MP 16-bit PNG is ~100 KB and takes
    well under a second to build.
    """
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row_bytes = (w * channels * bit_depth + 7) // 8
    if row is None:
        row = bytes(i * 7 % 251 for i in range(row_bytes))
    line = b"\x00" + row[:row_bytes].ljust(row_bytes, b"\x00")
    # Raw deflate with zlib's framing added here: after a full flush the compressor starts
    # afresh, so every full block of rows compresses to the same bytes, computed once.
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    block_rows = max(1, (1 << 20) // len(line))
    rows = line * block_rows
    block = deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(h, block_rows)
    adler = 1
    for _ in range(full):
        adler = zlib.adler32(rows, adler)
    adler = zlib.adler32(line * rest, adler)
    tail = deflate.compress(line * rest) + deflate.flush(zlib.Z_FINISH)
    idat = b"\x78\x9c" + block * full + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    chunks = [_chunk(b"IHDR", ihdr)]
    if colour_type == 3:
        chunks.append(_chunk(b"PLTE", bytes(range(256)) * 3))
    if apng:
        # Two frames, the first being the default image: a second frame's control chunk
        # follows the image data, its own data is a repeat of the first frame's.
        chunks.append(_chunk(b"acTL", struct.pack(">II", 2, 0)))
        chunks.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, w, h, 0, 0, 1, 10, 0, 0)))
        chunks.append(_chunk(b"IDAT", idat))
        chunks.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", 1, w, h, 0, 0, 1, 10, 0, 0)))
        chunks.append(_chunk(b"fdAT", struct.pack(">I", 2) + idat))
    else:
        chunks.append(_chunk(b"IDAT", idat))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def webp_flat_lossless(w: int, h: int) -> bytes:
    """A lossless WebP of one colour, w x h: a 16x16 one with its size patched. A flat
    image's entropy codes have one symbol each, which take no bits per pixel, so the same
    bytes are valid at any size: ~40 bytes that decode to w x h x 4 bytes."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (30, 120, 200)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = int.from_bytes(data[at + 1 : at + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (w - 1) | ((h - 1) << 14)
    data[at + 1 : at + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def gif_big_canvas(w: int, h: int) -> bytes:
    """A GIF whose logical screen is w x h around a 64x48 frame (the canvas is decoded)."""
    data = bytearray(encode(make_photo(3, (64, 48)), "GIF"))
    data[6:10] = struct.pack("<HH", w, h)
    return bytes(data)


def ico_hiding_a_png(w: int, h: int) -> bytes:
    """An ICO whose directory says 256x256 but whose one entry is a w x h PNG."""
    embedded = png(w, h, colour_type=0)
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(embedded), 6 + 16)  # 0 = 256
    return header + entry + embedded


def jpeg_with_scans(scans: int, size: tuple[int, int] = (2048, 2048)) -> bytes:
    """A progressive greyscale JPEG of a flat image with `scans` extra copies of its last
    scan. A flat image's AC scans are a few bytes of end-of-band runs, yet a decoder walks
    every block of the image once per scan."""
    data = encode(Image.new("L", size, 128), "JPEG", quality=90, progressive=True)
    sos = data.rindex(b"\xff\xda")
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[sos:eoi] * scans + data[eoi:]


def jpeg_lying_size(w: int, h: int) -> bytes:
    """A small JPEG whose frame header (SOF) claims w x h."""
    data = bytearray(encode(make_photo(4, (64, 48)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def psd_header(w: int, h: int) -> bytes:
    """A Photoshop file header (8-bit RGB, raw) without much after it."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + bytes(64)


def png_lying_size(w: int, h: int) -> bytes:
    """A 64x48 greyscale PNG whose header (with a valid checksum) claims w x h."""
    data = png(64, 48)
    return data[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + data[33:]


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@dataclass(frozen=True)
class Hostile:
    name: str
    build: Callable[[], bytes]
    # Start of perceptual_error under the default limits; None: hashed within the limits.
    expected: str | None


HOSTILE: tuple[Hostile, ...] = (
    Hostile("16-bit grey PNG, 64 MP", lambda: png(8000, 8000, bit_depth=16), None),
    Hostile("16-bit RGBA PNG, 64 MP", lambda: png(8000, 8000, bit_depth=16, colour_type=6), "decoded image too large"),
    Hostile("palette PNG, 64 MP", lambda: png(8000, 8000, colour_type=3), None),
    Hostile("lossless WebP, 64 MP flat", lambda: webp_flat_lossless(8000, 8000), "decoded image too large"),
    Hostile("lossless WebP, 16383x16383", lambda: webp_flat_lossless(16383, 16383), "decompression bomb"),
    Hostile("lossless WebP, 4500x4500 flat", lambda: webp_flat_lossless(4500, 4500), "decoded image too large"),
    Hostile("lossless WebP, 4000x4000 flat", lambda: webp_flat_lossless(4000, 4000), None),
    Hostile("GIF with an 8000x8000 canvas", lambda: gif_big_canvas(8000, 8000), None),
    Hostile("GIF with a 65535x65535 canvas", lambda: gif_big_canvas(65535, 65535), "decompression bomb"),
    Hostile("ICO hiding a 13000x13000 PNG", lambda: ico_hiding_a_png(13000, 13000), "unsupported image format ICO"),
    Hostile("progressive JPEG, 2000 scans", lambda: jpeg_with_scans(2000), "too many JPEG scans"),
    Hostile("JPEG claiming 60000x60000", lambda: jpeg_lying_size(60000, 60000), "decompression bomb"),
    Hostile("APNG, 2 frames of 4000x4000", lambda: png(4000, 4000, colour_type=2, apng=True), None),
    Hostile("APNG, 16-bit RGBA 7200x7200", lambda: png(7200, 7200, bit_depth=16, colour_type=6, apng=True), "decoded image too large"),
    Hostile("PNG claiming 30000x30000", lambda: png_lying_size(30000, 30000), "decompression bomb"),
    Hostile("PNG claiming 7000x7000, data for 64x48", lambda: png_lying_size(7000, 7000), "truncated or corrupt image"),
    Hostile("TIFF", lambda: encode(make_photo(5, (64, 48)), "TIFF"), "unsupported image format TIFF"),
    Hostile("BMP", lambda: encode(make_photo(5, (64, 48)), "BMP"), "unsupported image format BMP"),
    Hostile("RLE BMP header", lambda: b"BM" + bytes(8) + struct.pack("<IIiiHHI", 54, 40, 20000, 20000, 1, 8, 1), "unsupported image format BMP"),
    Hostile("ICO", lambda: encode(make_photo(5, (64, 48)), "ICO"), "unsupported image format ICO"),
    Hostile("PSD claiming 30000x30000", lambda: psd_header(30000, 30000), "unsupported image format PSD"),
    Hostile("WebP animation", lambda: _animation("WEBP"), None),
    Hostile("GIF animation", lambda: _animation("GIF"), None),
    Hostile("truncated JPEG", lambda: half(encode(make_photo(6), "JPEG", quality=90)), "truncated or corrupt image"),
    Hostile("truncated PNG", lambda: half(encode(make_photo(6), "PNG")), "truncated or corrupt image"),
    Hostile("truncated GIF", lambda: half(encode(make_photo(6), "GIF")), "truncated or corrupt image"),
    Hostile("truncated WebP", lambda: half(encode(make_photo(6), "WEBP")), "truncated or corrupt image"),
    Hostile("PNG signature alone", lambda: b"\x89PNG\r\n\x1a\n", "truncated or corrupt image"),
    Hostile("text with an image mimetype", lambda: b"not an image at all\n" * 10, "not an image"),
)


def _animation(fmt: str) -> bytes:
    frames = [make_photo(seed, (320, 240)) for seed in (7, 8, 9)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


@cache
def hostile_bytes(name: str) -> bytes:
    return next(h for h in HOSTILE if h.name == name).build()

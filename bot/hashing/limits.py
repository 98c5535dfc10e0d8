"""What may be decoded: the image formats accepted, and the costs checked before decoding.

Pure: bytes and image headers in, a refusal reason (or nothing) out. Everything here reads
headers and marker bytes only; nothing decodes pixels. The limits are the caller's
(`MediaLimits`), with defaults sized for real photos:

- **Formats: JPEG (and MPO, the multi-picture JPEG phones write), PNG and APNG, GIF,
  WebP.** These are the images of Matrix: Synapse makes thumbnails of exactly these
  (`THUMBNAIL_SUPPORTED_MEDIA_FORMAT_MAP` in synapse/config/repository.py), MSC2700
  requires servers to thumbnail PNG, JPEG and GIF, and clients send photos and stickers in
  them. Anything else (BMP, TIFF, ICO, PSD and Pillow's 30-odd other readers) reaches
  people only as a file to download and open elsewhere, and each extra reader is attack
  surface (the ICO reader decodes an embedded PNG while opening, whatever size its
  directory claims). Such files still get exact hashes (SHA-256, MD5, SHA-1), so a list's
  exact entries still match them. AVIF (which some clients display) is left out for now:
  Pillow reads it through libavif, whose memory use the estimate below does not model.
- **The format is identified from the bytes** (each reader's signature check), never from
  the mimetype the sender declared.
- **Decoded bytes, not pixels**: width x height x the bytes Pillow stores per pixel for the
  decoded mode (1 for L/P, 2 for 16-bit grey, 4 for RGB and every other multi-band mode),
  plus the decoder's own working buffers where they are known to be large (libwebp's two
  RGBA canvases, allocated while the file is opened, so a WebP is measured from its header
  before Pillow opens it; libjpeg's coefficient buffers for a progressive JPEG, 2 bytes per sample at full
  resolution whatever the DCT scaling). A JPEG is measured after `draft`, at the scale it
  will really be decoded at.
- **JPEG scans**: a progressive JPEG is re-read once per scan, so thousands of scans cost
  minutes of CPU from a file under 1 MB. The scans (SOS markers) of the first image are
  counted from the bytes before anything is decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image, ImageFile

# The formats compute_hashes decodes (see the module docstring). MPO is opened by the JPEG
# reader, which returns an MPO image for JPEGs carrying a multi-picture index.
MATRIX_IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP"})

# The video codecs decoded (bot/hashing/video.py), by FFmpeg decoder name: what phones,
# browsers and screen recorders put in MP4/QuickTime and WebM (H.264, HEVC, VP8, VP9, AV1,
# which FFmpeg decodes with dav1d), older phones' 3GP (MPEG-4 Part 2, H.263) and cameras'
# Motion-JPEG. The containers can hold any of FFmpeg's ~200 other decoders, each more
# attack surface, as Pillow's rarer readers are for images: such a video gets exact hashes.
MATRIX_VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4", "h263", "mjpeg"})

DEFAULT_MAX_PIXELS = 64_000_000
# A 48 MP RGB image, or a 64 MP palette or greyscale one, fully decoded; a JPEG of any size
# up to the pixel limit (it is decoded at 1/8 scale). Below the sandbox's 256 MiB with room
# for the file's own bytes.
DEFAULT_MAX_DECODED_BYTES = 192 * 1024 * 1024
# Real encoders write 1 scan (baseline) or about 10 (progressive); MPO and thumbnails do
# not count (only the first image's scans are).
DEFAULT_MAX_JPEG_SCANS = 100
# Videos (bot/hashing/video.py): samples taken, one a second (the first minute), and
# decoded pixels after which decoding stops (~3 s of CPU, ~72 s of 720p or ~32 s of 1080p at
# 30 frames a second, since every frame is decoded, later ones being built from earlier
# ones; well within the sandbox's CPU limit of 10 s).
DEFAULT_VIDEO_FRAMES = 60
DEFAULT_VIDEO_PIXEL_BUDGET = 2_000_000_000


@dataclass(frozen=True)
class MediaLimits:
    """The limits compute_hashes applies before decoding; see the module docstring."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS
    formats: frozenset[str] = MATRIX_IMAGE_FORMATS
    # Videos (bot/hashing/video.py): seconds sampled (a frame each), and decoded pixels.
    video_frames: int = DEFAULT_VIDEO_FRAMES
    video_pixel_budget: int = DEFAULT_VIDEO_PIXEL_BUDGET
    video_codecs: frozenset[str] = MATRIX_VIDEO_CODECS
    # Whether an image's 44 crop guesses are computed (bot/hashing/uncrop.py): ~1 ms of CPU
    # per image, the price of finding cropped copies of images listed by their PDQ alone.
    crop_guesses: bool = True


def identify(data: bytes, formats: frozenset[str]) -> tuple[str | None, str | None]:
    """(format to open, None) for an accepted format; (None, format) for a recognised but
    refused one; (None, None) when no reader's signature check accepts the bytes.

    Only signature checks run here. Readers without one (TGA, IM, ...) are never tried:
    they would accept almost anything.
    """
    Image.init()
    prefix = data[:16]
    refused: str | None = None
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if accept is None:
            continue
        try:
            accepted = accept(prefix)
        except Exception:  # a signature check choking on short input: not this format
            continue
        if isinstance(accepted, str) or not accepted:
            continue
        if fmt in formats or (fmt == "JPEG" and "MPO" in formats):
            return fmt, None
        refused = refused or fmt
    return None, refused


# Pillow reads WebP through libwebp's animation decoder, which allocates two RGBA canvases
# (the frame and the previous one) while the file is being opened.
WEBP_DECODER_BYTES_PER_PIXEL = 8


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file declares, read before Pillow opens it (opening
    allocates the decoder's canvases); None when the header is not one of the three kinds."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel of `mode`: multi-band modes are kept 4 bytes wide."""
    if mode.startswith("I;16"):
        return 2
    if mode in ("I", "F"):
        return 4
    return 1 if Image.getmodebands(mode) == 1 else 4


def decoded_bytes(img: ImageFile.ImageFile, full_size: tuple[int, int]) -> int:
    """What decoding `img` as it stands (after any draft; `full_size` is the size its header
    gave before) holds in memory, at least."""
    width, height = img.size
    total = width * height * bytes_per_pixel(img.mode)
    if img.format == "WEBP":
        total += width * height * WEBP_DECODER_BYTES_PER_PIXEL
    if img.format in ("JPEG", "MPO") and img.info.get("progressive"):
        total += _progressive_coefficients(img, full_size)
    return total


def _progressive_coefficients(img: ImageFile.ImageFile, full_size: tuple[int, int]) -> int:
    """libjpeg keeps every DCT coefficient of a progressive JPEG (2 bytes per sample, at
    full resolution even when decoding at a reduced scale) until the last scan."""
    layers = getattr(img, "layer", None) or []
    width, height = full_size
    if not layers:
        return width * height * 3 * 2
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(
        2 * -(-width * layer[1] // h_max) * -(-height * layer[2] // v_max) for layer in layers
    )


# A marker in entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart
# marker (D0-D7) or fill bytes (FF).
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9
_SEQUENTIAL_SOF = frozenset({0xC0, 0xC1})  # baseline and extended sequential, Huffman-coded
_NO_LENGTH = frozenset({0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)})  # SOI, EOI, TEM, RSTn


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS markers) of the first image in a JPEG file that libjpeg
    would decode.

    Segments are skipped by their length, so bytes inside APPn segments (an EXIF thumbnail,
    an ICC profile) are not mistaken for markers; entropy-coded data is searched for the
    next marker with a regular expression (C speed, but ~1.2 ms for a 3.4 MB photo).
    Counting stops at the first EOI: later images of an MPO file are not decoded.

    Most photos need no search: a sequential (baseline or extended, Huffman) JPEG whose
    first scan holds every component is one scan for libjpeg, which stops with an error at
    a second SOS (jdinput.c: such a file does not have multiple scans), so 1 is returned at
    that first scan. Progressive files, and sequential ones that send their components in
    separate scans, are counted.
    """
    pos, scans, size = 2, 0, len(data)
    components = 0  # of the frame (SOF), when it is sequential Huffman
    while pos + 1 < size:
        if data[pos] != 0xFF:
            found = _MARKER.search(data, pos)  # entropy-coded data after a scan header
            if found is None:
                break
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            break
        if marker in _NO_LENGTH or marker == 0x00:
            pos += 2
            continue
        if marker in _SEQUENTIAL_SOF and pos + 9 < size:
            components = data[pos + 9]
        if marker == _SOS:
            scans += 1
            if scans == 1 and components and pos + 4 < size and data[pos + 4] == components:
                return 1
        if pos + 4 > size:
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return scans

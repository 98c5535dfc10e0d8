"""How many edited copies of known images modbot still matches, and how many unrelated images it
matches by mistake.

    pip install -e '.[bench]'      # scikit-image, for its bundled sample photos
    python bench/bench_robustness.py [--jobs N] [--known-per-family N] [--unrelated-per-family N]
                                     [--sweep]

Corpus, all benign and built in memory:
- known: the photos scikit-image ships inside its package (astronaut, camera, coffee...:
  those that load without a download), and images from eight generators — bot.demo.samples'
  photo-like shapes, landscapes, fractal textures, Voronoi mosaics, portrait-like
  layouts (a head and shoulders on a background: many share that layout, a hard case
  for false matches), and four smooth or dark kinds whose PDQ quality is mostly under
  50: wallpapers (gradients, waves, soft blobs), night photos, app screenshots with flat
  panels, underexposed indoor photos (a portrait-like room lit by one lamp, shadows
  crushed, smoothed by noise reduction: mean luma ~10-30). Originals are JPEG q90 (generated) or PNG (scikit-image). All are listed,
  whatever their quality; "smooth" means a provider PDQ quality under 50.
- unrelated: other seeds of the same five generators, and plain images (flat colours,
  gradients, text screenshots, slides), each posted through one of the edits in turn (so
  that trimmed, rotated and thumbnailed query hashes are exercised too).

Edits: recompression, resizing, colour changes, mirror, rotations, a white border, crops
("crop 5% centred" drops 2.5% of each side's length at each end; "off-centre" splits the
5% at random between the two ends; "one side" takes it all from one edge), a meme-style
caption bar. Every copy is re-encoded as it would be posted (JPEG q85 unless the edit is
the encoding).

Each known image is put on a list in two ways, and each edited copy is matched through the
real HashListClassifier on the real compute_hashes output, as the bot matches a post:
- provider: the list holds what a hash provider ships — SHA-256 of the original file and
  the PDQ of the original at full resolution (pdqhash.compute, no reduced decode).
- add-image: the list holds what `modbot hashes add-image` writes (bot.cli.scan.add_images,
  called on each original): SHA-256, MD5, PDQ, pHash, the PDQ of central crops and the
  low-frequency signature (`lowfreq`, matched under PDQ quality 50: bot/classify/smoothmatch.py).

Prints the old quality cliff (pdq_min_quality 50) against the quality rule of
bot/classify/pdqrule.py (the default) per edit, for textured and smooth images; per
family, the cliff, the previous session's rule and the current one; and by
the query's quality how near copies and unrelated images come; then a Markdown table (edit x mode -> share of copies matched to their own image, with
the images missed), the false matches per mode (unrelated images matched, and copies
matched to another known image), and distance statistics: copies to their own PDQ
entries, unrelated images to the nearest PDQ and pHash entry, and between the originals
of the corpus (are different seeds unrelated?). --sweep adds a table for other PDQ
thresholds, central-crop fractions and minimum PDQ qualities, from the same hashes.
Generation and hashing run in --jobs worker processes (default 2); a default run takes
about 170 CPU-seconds.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported, here and in the workers

import argparse
import contextlib
import importlib.util
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bot.classify.hashlist as hashlist_module  # noqa: E402
import bot.classify.smoothmatch as smooth_module  # noqa: E402
from bot.classify.hashlist import HashListClassifier  # noqa: E402
from bot.classify.pdqrule import PdqBounds  # noqa: E402
from bot.classify.pdqrule import FULL_QUALITY  # noqa: E402
from bot.lists.loaded import LoadedList, Thresholds  # noqa: E402
from bot.config import Config, HashlistSettings  # noqa: E402
from bot.hashing import compute_hashes, crop_hashes  # noqa: E402
from bot.hashing.media import crop_name  # noqa: E402
from bot.lists.format import HashEntry, read_hash_list  # noqa: E402
from bot.model import Hashes  # noqa: E402
from bot.demo.samples import encode, make_photo  # noqa: E402
from bot.cli.scan import add_images  # noqa: E402
from bot.lists.imagerows import ADD_IMAGE_CROPS  # noqa: E402

# "Textured": PDQ quality at or above the old cliff (the default minimum before issue 14);
# "smooth": below it. The classifier now matches both, smooth ones within stricter bounds.
PDQ_MIN_QUALITY = FULL_QUALITY
RULE_MIN_QUALITY = HashlistSettings().pdq_min_quality
KNOWN_SIZES = ((800, 600), (600, 800), (1024, 768), (640, 640), (960, 540))
UNRELATED_SIZES = ((480, 360), (360, 480), (512, 512), (640, 360))
# Central-crop fractions (of each side) tried by --sweep.
SWEEP_CROPS = (0.975, 0.95, 0.925, 0.9, 0.875, 0.85)
SWEEP_CROP_SETS: tuple[tuple[float, ...], ...] = (
    (), (0.95,), (0.975, 0.95), (0.95, 0.9), (0.975, 0.95, 0.925), (0.975, 0.95, 0.925, 0.9),
    SWEEP_CROPS,
)
SWEEP_THRESHOLDS = (24, 28, 31, 34, 38, 42, 48)
SWEEP_MIN_QUALITY = (40, 30, 20)
# scikit-image samples that load without a download; stereo_motorcycle gives a pair of
# near-identical views: only the left one is used.
SKIMAGE_SAMPLES = (
    "astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "moon",
    "coins", "clock", "cell", "immunohistochemistry", "grass", "gravel", "brick", "page", "text",
    "colorwheel", "logo", "motorcycle",
)


# --- generators -----------------------------------------------------------------------------

def _rng(family: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([sum(family.encode()), seed])


def _fractal(rng: np.random.Generator, h: int, w: int, beta: float) -> np.ndarray:
    """Noise with a 1/f^beta power spectrum (clouds, terrain), scaled to 0..1."""
    white = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    field_ = np.fft.irfft2(np.fft.rfft2(white) / f ** (beta / 2), s=(h, w))
    lo, hi = np.percentile(field_, (1, 99))
    return np.clip((field_ - lo) / max(hi - lo, 1e-9), 0, 1)


def _finish(pixels: np.ndarray, rng: np.random.Generator, blur: float) -> Image.Image:
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 4, (img.height, img.width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def make_landscape(seed: int, size: tuple[int, int]) -> Image.Image:
    """Sky, clouds, mountain ridges, ground, a sun and trees: the layout many photos share."""
    rng = _rng("landscape", seed)
    w, h = size
    horizon = rng.uniform(0.35, 0.7) * h
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    top, low = rng.uniform([10, 40, 120], [120, 160, 255]), rng.uniform([150, 150, 150], [255, 230, 255])
    sky = top + (low - top) * np.clip(yy / horizon, 0, 1)
    pixels = np.broadcast_to(sky, (h, w, 3)).copy()
    clouds = _fractal(rng, h, w, rng.uniform(2.5, 3.5))
    cover = np.clip((clouds - rng.uniform(0.4, 0.75)) * 3, 0, 1)[..., None]
    pixels = pixels * (1 - cover) + 245 * cover
    sun = rng.uniform([0.05 * w, 0.05 * h], [0.95 * w, 0.8 * horizon])
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.03, 0.08) * w
    draw.ellipse((sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r), fill=(255, 240, 200))
    xs = np.arange(w)
    for layer in range(int(rng.integers(1, 4))):
        ridge = np.cumsum(rng.standard_normal(w)) * rng.uniform(0.5, 2)
        ridge = np.convolve(ridge - ridge.mean(), np.ones(15) / 15, mode="same")
        base = horizon - rng.uniform(0.05, 0.3) * h * (1 - layer * 0.3)
        heights = base - ridge * h / 400
        shade = rng.uniform(40, 160) + layer * 25
        colour = tuple(int(c) for c in np.clip(rng.normal(shade, 20, 3), 0, 255))
        draw.polygon([(0, h), *zip(xs.tolist(), heights.tolist()), (w, h)], fill=colour)
    ground = tuple(int(c) for c in rng.uniform([30, 60, 10], [160, 180, 90]))
    draw.rectangle((0, horizon, w, h), fill=ground)
    for _ in range(int(rng.integers(0, 12))):
        x, y = rng.uniform(0, w), rng.uniform(horizon, h)
        th, tw = rng.uniform(0.05, 0.3) * h, rng.uniform(0.02, 0.08) * w
        green = tuple(int(c) for c in rng.uniform([0, 40, 0], [60, 120, 50]))
        draw.ellipse((x - tw, y - th, x + tw, y), fill=green)
    texture = _fractal(rng, h, w, 2.0)[..., None] * rng.uniform(20, 60)
    pixels = np.asarray(img, dtype=np.float32)
    below = (np.arange(h) > horizon)[:, None, None]
    return _finish(pixels + np.where(below, texture, 0), rng, max(w, h) / 500)


def make_texture(seed: int, size: tuple[int, int]) -> Image.Image:
    """Fractal noise through a random colour ramp: marble, clouds, terrain maps."""
    rng = _rng("texture", seed)
    w, h = size
    value = _fractal(rng, h, w, rng.uniform(1.8, 3.6))
    if rng.uniform() < 0.5:
        value = np.abs(np.sin(value * rng.uniform(3, 12)))  # banded, marble-like
    stops = np.sort(rng.uniform(0, 1, int(rng.integers(3, 6))))
    stops[0], stops[-1] = 0.0, 1.0
    colours = rng.uniform(0, 255, (len(stops), 3))
    pixels = np.stack([np.interp(value, stops, colours[:, c]) for c in range(3)], axis=-1)
    shade = _fractal(rng, h, w, 3.0)[..., None]
    return _finish(pixels * (0.6 + 0.6 * shade), rng, 0)


def make_mosaic(seed: int, size: tuple[int, int]) -> Image.Image:
    """Voronoi cells in random colours, like stained glass or a map."""
    rng = _rng("mosaic", seed)
    w, h = size
    n = int(rng.integers(12, 150))
    points = rng.uniform(0, 1, (n, 2)) * (w, h)
    # Cells computed on a quarter-size grid, scaled up with nearest neighbour.
    gw, gh = w // 4, h // 4
    gy, gx = np.mgrid[0:gh, 0:gw]
    grid = np.stack([gx.ravel() * 4 + 2, gy.ravel() * 4 + 2], axis=1).astype(np.float32)
    nearest = np.empty(len(grid), dtype=np.int32)
    for start in range(0, len(grid), 8192):
        d = ((grid[start : start + 8192, None, :] - points[None, :, :]) ** 2).sum(axis=2)
        nearest[start : start + 8192] = d.argmin(axis=1)
    colours = rng.uniform(0, 255, (n, 3))
    cells = Image.fromarray(colours[nearest].reshape(gh, gw, 3).astype(np.uint8), "RGB")
    cells = cells.resize((w, h), Image.Resampling.NEAREST)
    edges = cells.filter(ImageFilter.FIND_EDGES).convert("L")
    pixels = np.asarray(cells, dtype=np.float32)
    lead = np.asarray(edges, dtype=np.float32)[..., None] > 0
    pixels = np.where(lead, rng.uniform(0, 60), pixels)
    return _finish(pixels, rng, max(w, h) / 600)


def make_portrait(seed: int, size: tuple[int, int]) -> Image.Image:
    """A head and shoulders in front of a background: a layout that profile pictures share."""
    rng = _rng("portrait", seed)
    w, h = size
    background = _fractal(rng, h, w, rng.uniform(2.5, 4))[..., None]
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = Image.fromarray((c0 + (c1 - c0) * background).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.45) * h
    head_w, head_h = rng.uniform(0.12, 0.22) * w, rng.uniform(0.16, 0.26) * h
    skin = tuple(int(c) for c in rng.uniform([90, 50, 30], [255, 210, 180]))
    cloth = tuple(int(c) for c in rng.integers(0, 256, 3))
    hair = tuple(int(c) for c in rng.uniform([0, 0, 0], [200, 160, 120]))
    draw.ellipse((cx - 2.2 * head_w, cy + 0.8 * head_h, cx + 2.2 * head_w, cy + 4 * head_h), fill=cloth)
    draw.rectangle((cx - 0.35 * head_w, cy + 0.5 * head_h, cx + 0.35 * head_w, cy + 1.2 * head_h), fill=skin)
    draw.ellipse((cx - 1.1 * head_w, cy - 1.15 * head_h, cx + 1.1 * head_w, cy + 0.6 * head_h), fill=hair)
    draw.ellipse((cx - head_w, cy - head_h, cx + head_w, cy + head_h), fill=skin)
    for side in (-1, 1):
        ex, ey = cx + side * 0.4 * head_w, cy - 0.15 * head_h
        er = 0.12 * head_w
        draw.ellipse((ex - er, ey - er * 0.6, ex + er, ey + er * 0.6), fill=(30, 25, 20))
    draw.ellipse((cx - 0.35 * head_w, cy + 0.4 * head_h, cx + 0.35 * head_w, cy + 0.55 * head_h), fill=(150, 60, 60))
    return _finish(np.asarray(img, dtype=np.float32), rng, max(w, h) / 300)


_WORDS = ("see", "you", "at", "the", "meeting", "tomorrow", "ok", "thanks", "lunch", "build",
          "is", "green", "again", "photo", "from", "our", "trip", "haha", "where", "are")


def make_plain(seed: int, size: tuple[int, int]) -> Image.Image:
    """Little structure: flat colours, gradients, text screenshots, slides. Most hash with a
    PDQ quality below 50 and are not queried; the rest test how alike plain images hash."""
    rng = _rng("plain", seed)
    w, h = size
    kind = seed % 4
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # flat colour
        pixels = np.broadcast_to(c0, (h, w, 3)).astype(np.float32)
    else:  # gradient, along a random direction
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        pixels = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if kind >= 2:
        draw = ImageDraw.Draw(img)
        dark = float(np.mean(c0)) > 128
        ink = tuple(int(c) for c in (rng.uniform(0, 60, 3) if dark else rng.uniform(200, 255, 3)))
        if kind == 2:  # a chat or document screenshot: lines of small text
            font = ImageFont.load_default(size=max(10, h // 30))
            y = rng.uniform(0.02, 0.1) * h
            while y < h * 0.95:
                words = rng.choice(_WORDS, int(rng.integers(2, 12)))
                draw.text((w * 0.05, y), " ".join(words), fill=ink, font=font)
                y += h / 30 * rng.uniform(1.3, 2.5)
        else:  # a slide: one big title
            font = ImageFont.load_default(size=max(12, h // 8))
            words = " ".join(rng.choice(_WORDS, int(rng.integers(1, 4))))
            draw.text((w / 2, h * rng.uniform(0.3, 0.7)), words, fill=ink, font=font, anchor="mm")
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 2, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def make_wallpaper(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth wallpaper: a gradient with a few soft colour blobs (PDQ quality mostly < 50)."""
    rng = _rng("wallpaper", seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
    t = ((t - t.min()) / max(float(t.max() - t.min()), 1e-6))[..., None]
    c0, c1 = rng.uniform(0, 90, 3), rng.uniform(140, 255, 3)  # dark to light
    pixels = c0 * (1 - t) + c1 * t
    # Soft waves, as in many OS wallpapers.
    waves = np.sin(t * rng.uniform(6, 20) + rng.uniform(0, 6) + np.sin(yy / h * rng.uniform(1, 5))[..., None])
    pixels = pixels + waves * rng.uniform(25, 70)
    for _ in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.08, 0.35) * max(w, h)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        pixels = pixels * (1 - blob) + rng.uniform(0, 255, 3) * blob
    noisy = pixels + rng.normal(0, 1.5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def make_night(seed: int, size: tuple[int, int]) -> Image.Image:
    """A night photo: a landscape at a tenth to a quarter of its brightness, a few lights."""
    rng = _rng("night", seed)
    img = make_landscape(seed + 50_000, size)
    pixels = np.asarray(img, dtype=np.float32) * rng.uniform(0.08, 0.25)
    lit = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(lit)
    w, h = size
    for _ in range(int(rng.integers(0, 8))):
        x, y, r = rng.uniform(0, w), rng.uniform(0.4 * h, h), rng.uniform(1, 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 220, 150))
    noisy = np.asarray(lit, dtype=np.float32) + rng.normal(0, 2, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def make_screenshot(seed: int, size: tuple[int, int]) -> Image.Image:
    """An app screenshot: flat panels (a bar, a sidebar, cards) and a little text."""
    rng = _rng("screenshot", seed)
    w, h = size
    dark = rng.uniform() < 0.5
    base = rng.uniform(10, 50, 3) if dark else rng.uniform(215, 250, 3)
    img = Image.new("RGB", size, tuple(int(c) for c in base))
    draw = ImageDraw.Draw(img)
    accent = tuple(int(c) for c in rng.uniform(30, 230, 3))
    bar = rng.uniform(0.06, 0.12) * h
    draw.rectangle((0, 0, w, bar), fill=accent)
    side = rng.uniform(0.15, 0.3) * w if rng.uniform() < 0.6 else 0
    if side:
        draw.rectangle((0, bar, side, h), fill=tuple(int(c) for c in base * rng.uniform(0.85, 1.15)))
    ink = (220, 220, 220) if dark else (40, 40, 40)
    font = ImageFont.load_default(size=max(9, h // 40))
    y = bar + rng.uniform(0.02, 0.06) * h
    while y < h * 0.9:
        card_h = rng.uniform(0.06, 0.2) * h
        fill = tuple(int(c) for c in np.clip(base + rng.uniform(-25, 25), 0, 255))
        draw.rounded_rectangle((side + 0.04 * w, y, w * 0.96, y + card_h), radius=6, fill=fill)
        if rng.uniform() < 0.6:
            words = " ".join(rng.choice(_WORDS, int(rng.integers(2, 7))))
            draw.text((side + 0.06 * w, y + card_h * 0.3), words, fill=ink, font=font)
        y += card_h + rng.uniform(0.02, 0.05) * h
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, 1, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")



def make_dark(seed: int, size: tuple[int, int]) -> Image.Image:
    """An underexposed indoor photo: a room lit by one lamp, most of it in deep shadow.

    A portrait-like scene through a steep tone curve (shadows crushed, as a phone does at
    low light), a warm pool of light with a soft edge, heavy smoothing (the phone's noise
    reduction) and chroma-free sensor noise on top."""
    rng = _rng("dark", seed)
    w, h = size
    scene = np.asarray(make_portrait(seed + 70_000, size), dtype=np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lx, ly = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.6) * h
    reach = rng.uniform(0.25, 0.6) * max(w, h)
    lamp = np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * reach * reach))[..., None]
    light = rng.uniform(0.06, 0.15) + rng.uniform(0.4, 0.9) * lamp
    warm = np.array([1.0, rng.uniform(0.75, 0.9), rng.uniform(0.45, 0.7)], dtype=np.float32)
    pixels = 255 * (scene * light * warm) ** rng.uniform(1.2, 1.6)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(max(w, h) / rng.uniform(250, 500)))
    grain = rng.normal(0, rng.uniform(1.5, 3.5), (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8), "RGB")


GENERATORS: dict[str, Callable[[int, tuple[int, int]], Image.Image]] = {
    "photo": make_photo,
    "landscape": make_landscape,
    "texture": make_texture,
    "mosaic": make_mosaic,
    "portrait": make_portrait,
    "wallpaper": make_wallpaper,
    "night": make_night,
    "screenshot": make_screenshot,
    "plain": make_plain,
    "dark": make_dark,
}
# Plain images (flat colours, gradients, text): unrelated images only.
UNRELATED_ONLY = frozenset({"plain"})


def skimage_sample(name: str) -> Image.Image:
    import skimage.data

    arr = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    img = Image.fromarray(arr)
    if img.mode == "RGBA":
        return Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    return img.convert("RGB")


# --- edits ----------------------------------------------------------------------------------

def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    return encode(img, "JPEG", quality=quality)


def _border(img: Image.Image, fraction: float) -> bytes:
    dw, dh = round(img.width * fraction), round(img.height * fraction)
    out = Image.new("RGB", (img.width + 2 * dw, img.height + 2 * dh), "white")
    out.paste(img, (dw, dh))
    return _jpeg(out)


def _crop(img: Image.Image, fraction: float, where: str, rng: np.random.Generator) -> bytes:
    """Drop `fraction` of the length of each side: "centred" (half at each end), "off-centre"
    (split at random between the two ends), or "one side" (all of it, from one random side
    only: the picture loses a strip along one edge)."""
    w, h = img.size
    dw, dh = round(w * fraction), round(h * fraction)
    if where == "centred":
        box = (dw // 2, dh // 2, dw // 2 + w - dw, dh // 2 + h - dh)
    elif where == "off-centre":
        left, top = int(rng.integers(0, dw + 1)), int(rng.integers(0, dh + 1))
        box = (left, top, left + w - dw, top + h - dh)
    else:
        box = ((0, dh, w, h), (0, 0, w, h - dh), (dw, 0, w, h), (0, 0, w - dw, h))[int(rng.integers(0, 4))]
    return _jpeg(img.crop(box))


def _caption(img: Image.Image) -> bytes:
    """A meme-style white bar above the picture, with a line of black text."""
    bar = max(24, round(img.height * 0.18))
    out = Image.new("RGB", (img.width, img.height + bar), "white")
    out.paste(img, (0, bar))
    font = ImageFont.load_default(size=max(12, bar // 2))
    ImageDraw.Draw(out).text((img.width // 2, bar // 2), "when the build is green", fill="black",
                             font=font, anchor="mm")
    return _jpeg(out)


def _thumbnail(img: Image.Image, side: int) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _jpeg(thumb, 80)


Edit = Callable[[Image.Image, np.random.Generator], bytes]
EDITS: dict[str, Edit] = {
    "JPEG q50": lambda im, rng: _jpeg(im, 50),
    "JPEG q20": lambda im, rng: _jpeg(im, 20),
    "WebP q75": lambda im, rng: encode(im, "WEBP", quality=75),
    "half size": lambda im, rng: _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "320 px thumbnail": lambda im, rng: _thumbnail(im, 320),
    "greyscale": lambda im, rng: _jpeg(im.convert("L")),
    "brightness +30%": lambda im, rng: _jpeg(ImageEnhance.Brightness(im).enhance(1.3)),
    "brightness -30%": lambda im, rng: _jpeg(ImageEnhance.Brightness(im).enhance(0.7)),
    "contrast +50%": lambda im, rng: _jpeg(ImageEnhance.Contrast(im).enhance(1.5)),
    "contrast -40%": lambda im, rng: _jpeg(ImageEnhance.Contrast(im).enhance(0.6)),
    "mirror": lambda im, rng: _jpeg(ImageOps.mirror(im)),
    "rotate 90°": lambda im, rng: _jpeg(im.transpose(Image.Transpose.ROTATE_90)),
    "white border 10%": lambda im, rng: _border(im, 0.1),
    "crop 5% centred": lambda im, rng: _crop(im, 0.05, "centred", rng),
    "crop 5% off-centre": lambda im, rng: _crop(im, 0.05, "off-centre", rng),
    "crop 5% one side": lambda im, rng: _crop(im, 0.05, "one side", rng),
    "crop 2.5% centred": lambda im, rng: _crop(im, 0.025, "centred", rng),
    "crop 7.5% centred": lambda im, rng: _crop(im, 0.075, "centred", rng),
    "crop 10% centred": lambda im, rng: _crop(im, 0.10, "centred", rng),
    "caption bar": lambda im, rng: _caption(im),
    "rotate 3°": lambda im, rng: _jpeg(im.rotate(3, Image.Resampling.BICUBIC)),
}
# Edits outside the goal, as issue 14 sets it: "every image edit except crops of 10%,
# 3-degree rotations and watermarks" (the caption bar is the watermark here), in both modes.
# (Until the crop guesses of bot/hashing/uncrop.py, every crop was left out in provider
# mode and all but "crop 5% centred" in add-image mode: figures in the README from before
# say which.)
_OUTSIDE = {"crop 10% centred", "caption bar", "rotate 3°"}
OUTSIDE_GOAL = {"provider": _OUTSIDE, "add-image": _OUTSIDE}
UNCHANGED = "original file"
MODES = ("provider", "add-image")


# --- generating and hashing (worker processes) ----------------------------------------------

@dataclass(frozen=True)
class Item:
    role: str  # "known" or "unrelated"
    family: str  # a GENERATORS key, or "skimage"
    seed: int | str  # a seed, or a scikit-image sample name
    size: tuple[int, int] | None
    edit: str | None = None  # unrelated: the edit it is posted through

    @property
    def name(self) -> str:
        return f"{self.family}:{self.seed}"


@dataclass
class Hashed:
    item: Item
    original: bytes  # the original file (known images only; empty otherwise)
    provider_pdq: str  # PDQ of the original at full resolution
    provider_quality: int
    original_hashes: Hashes  # compute_hashes of the original file
    copies: dict[str, Hashes] = field(default_factory=dict)  # edit -> hashes of the copy
    crops: dict[float, tuple[str, ...]] = field(default_factory=dict)  # --sweep only


def _hash_item(args: tuple[Item, bool]) -> Hashed:
    item, sweep = args
    if item.family == "skimage":
        img = skimage_sample(str(item.seed))
        original = encode(img, "PNG")
    else:
        assert item.size is not None and isinstance(item.seed, int)
        img = GENERATORS[item.family](item.seed, item.size)
        original = encode(img, "JPEG", quality=90)
    img = Image.open(__import__("io").BytesIO(original)).convert("RGB")  # what the edits start from
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(img)))
    provider = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    result = Hashed(item, b"", provider, int(quality), compute_hashes(original))
    rng = np.random.default_rng([sum(item.name.encode()), 7])
    if item.role == "unrelated":
        assert item.edit is not None
        posted = original if item.edit == UNCHANGED else EDITS[item.edit](img, rng)
        result.copies[item.edit] = compute_hashes(posted)
        return result
    result.original = original
    result.copies[UNCHANGED] = result.original_hashes
    for name, edit in EDITS.items():
        result.copies[name] = compute_hashes(edit(img, rng))
    if sweep:
        result.crops = {f: crop_hashes(original, (f,)) for f in SWEEP_CROPS}
    return result


def corpus(known_per_family: int, unrelated_per_family: int) -> list[Item]:
    items = [Item("known", "skimage", name, None) for name in SKIMAGE_SAMPLES]
    edits = [UNCHANGED, *EDITS]
    for family_no, family in enumerate(GENERATORS):
        for i in range(0 if family in UNRELATED_ONLY else known_per_family):
            items.append(Item("known", family, i, KNOWN_SIZES[(i + family_no) % len(KNOWN_SIZES)]))
        for i in range(unrelated_per_family):
            # Seeds far from the known ones; sizes and edits cycle independently of the family.
            n = family_no * unrelated_per_family + i
            items.append(Item("unrelated", family, 100_000 + i, UNRELATED_SIZES[n % len(UNRELATED_SIZES)],
                              edits[n % len(edits)]))
    return items


# --- lists and matching ----------------------------------------------------------------------

def provider_entries(known: Sequence[Hashed]) -> list[HashEntry]:
    entries = []
    for h in known:
        entries.append(HashEntry("sha256", h.original_hashes.sha256, h.item.name))
        entries.append(HashEntry("pdq", h.provider_pdq, h.item.name))
    return entries


def add_image_entries(known: Sequence[Hashed], workdir: Path) -> list[HashEntry]:
    """What `modbot hashes add-image` writes for each known image, one label per image."""
    list_path = workdir / "known.csv"
    config = Config.model_validate({
        "homeserver": {"url": "http://127.0.0.1:8008", "domain": "bench.invalid"},
        "appservice": {"as_token": "bench-as", "hs_token": "bench-hs"},
        "hash_lists": [{"name": "known", "path": str(list_path)}],
    }, context={"base_dir": workdir})
    image = workdir / "image"
    for h in known:
        image.write_bytes(h.original)
        add_images([image], config, "known", h.item.name)
    return list(read_hash_list(list_path, "known").entries)


def sweep_entries(known: Sequence[Hashed], fractions: Sequence[float]) -> list[HashEntry]:
    """add-image's entries with the crops of `fractions` in place of its own."""
    entries = []
    for h in known:
        oh, label = h.original_hashes, h.item.name
        entries += [HashEntry("sha256", oh.sha256, label), HashEntry("md5", oh.md5, label)]
        if oh.pdq:
            entries.append(HashEntry("pdq", oh.pdq, label))
        if oh.phash:
            entries.append(HashEntry("phash", oh.phash, label))
        entries += [HashEntry("pdq", c, label) for f in fractions for c in h.crops[f]]
    return entries


@dataclass
class Outcome:
    matched: dict[str, list[bool]]  # edit -> per known image: matched its own entry
    cross: list[tuple[str, str, str]]  # (edit, copy of, matched) copies matched to another image
    false: list[tuple[str, str, str]]  # (unrelated image, its edit, "label by type at distance")


def evaluate(entries: Iterable[HashEntry], known: Sequence[Hashed], unrelated: Sequence[Hashed],
             threshold: int = Thresholds().pdq, min_quality: int = RULE_MIN_QUALITY) -> Outcome:
    lst = LoadedList.from_entries("known", entries, label="known", thresholds=Thresholds(pdq=threshold))
    classifier = HashListClassifier([lst], pdq_min_quality=min_quality)
    outcome = Outcome({}, [], [])
    for h in known:
        for edit, copy in h.copies.items():
            labels = {v.label for v in classifier.match(copy).verdicts}
            outcome.matched.setdefault(edit, []).append(h.item.name in labels)
            outcome.cross += [(edit, h.item.name, other) for other in sorted(labels - {h.item.name})]
    for h in unrelated:
        [(edit, copy)] = h.copies.items()
        outcome.false += [(h.item.name, edit, f"{v.label} by {v.hash_type} at {v.distance}")
                          for v in classifier.match(copy).verdicts]
    return outcome


# --- distances -------------------------------------------------------------------------------

def _matrix(hexes: Sequence[str]) -> np.ndarray:
    raw = bytes.fromhex("".join(hexes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), 4)


def _distances(queries: Sequence[str], listed: Sequence[str]) -> np.ndarray:
    """(len(queries), len(listed)) Hamming distances."""
    q, l_ = _matrix(queries), _matrix(listed)
    return np.bitwise_count(q[:, None, :] ^ l_[None, :, :]).sum(axis=2)


def _queries(h: Hashes) -> list[str]:
    if h.pdq_quality is None or h.pdq_quality < PDQ_MIN_QUALITY:
        return []  # the classifier does not query these
    return list(dict.fromkeys(((h.pdq,) if h.pdq else ()) + h.pdq_queries))


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    a = np.asarray(values)
    return (f"{a.min():.0f} / {np.percentile(a, 1):.0f} / {np.percentile(a, 5):.0f} / "
            f"{np.median(a):.0f}")


def _upper_stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    a = np.asarray(values)
    return f"{np.median(a):.0f} / {np.percentile(a, 95):.0f} / {a.max():.0f}"


# --- report ----------------------------------------------------------------------------------

def _pct(flags: Sequence[bool]) -> str:
    return f"{100 * sum(flags) / len(flags):.1f}" if flags else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--known-per-family", type=int, default=20)
    parser.add_argument("--unrelated-per-family", type=int, default=90)
    parser.add_argument("--sweep", action="store_true", help="also tabulate other thresholds and crops")
    args = parser.parse_args()
    if importlib.util.find_spec("skimage") is None:
        sys.exit("scikit-image is needed for the sample photos: pip install -e '.[bench]'")

    started = time.perf_counter()
    items = corpus(args.known_per_family, args.unrelated_per_family)
    with ProcessPoolExecutor(args.jobs) as pool:
        hashed = list(pool.map(_hash_item, [(item, args.sweep) for item in items], chunksize=4))
    hashed_at = time.perf_counter()
    known = [h for h in hashed if h.item.role == "known"]
    low = [h for h in known if h.provider_quality < PDQ_MIN_QUALITY]
    unrelated = [h for h in hashed if h.item.role == "unrelated"]

    with tempfile.TemporaryDirectory() as tmp:
        entries = {"provider": provider_entries(known), "add-image": add_image_entries(known, Path(tmp))}
    outcomes = {mode: evaluate(entries[mode], known, unrelated) for mode in MODES}
    cliff = {mode: evaluate(entries[mode], known, unrelated, min_quality=PDQ_MIN_QUALITY) for mode in MODES}
    with _previous_rule():
        previous = {mode: evaluate(entries[mode], known, unrelated) for mode in MODES}

    print("# Robustness of hash-list matching\n")
    makers = [g for g in GENERATORS if g not in UNRELATED_ONLY]
    print(f"{len(known)} known images ({sum(h.item.family == 'skimage' for h in known)} scikit-image "
          f"photos, {args.known_per_family} from each of {len(makers)} generators: "
          f"{', '.join(makers)}), {len(unrelated)} unrelated images ({args.unrelated_per_family} "
          f"other seeds of each of those and of {', '.join(sorted(UNRELATED_ONLY))}, each posted "
          f"through one edit in turn). PDQ threshold {Thresholds().pdq}, pHash "
          f"{Thresholds().phash}, pdq_min_quality {RULE_MIN_QUALITY} with the quality rule "
          f"(bot/classify/pdqrule.py); add-image crops "
          f"{'; '.join(crop_name(c) for c in ADD_IMAGE_CROPS)}.")
    if low:
        print(f"Smooth (provider PDQ quality < {PDQ_MIN_QUALITY}): {len(low)} of them: "
              f"{', '.join(f'{h.item.name} ({h.provider_quality})' for h in low)}.")
    counts = {mode: _entry_counts(entries[mode]) for mode in MODES}
    for mode in MODES:
        print(f"- {mode} list: {counts[mode]}")
    print()
    _print_before_after(cliff, outcomes, known)
    _print_families(cliff, previous, outcomes, known)
    _print_match_table(outcomes, known)
    _print_false_matches(outcomes)
    _print_low_quality_distances(known, unrelated, entries)
    _print_distances(known, unrelated, entries)
    _print_corpus_distances(hashed)
    if args.sweep:
        _print_sweep(known, unrelated)
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    print(f"\nGenerated and hashed in {hashed_at - started:.0f} s with {args.jobs} worker(s); "
          f"total {time.perf_counter() - started:.0f} s, {cpu:.0f} CPU-seconds.")


def _print_before_after(cliff: dict[str, Outcome], rule: dict[str, Outcome], known: Sequence[Hashed]) -> None:
    smooth = [h.provider_quality < PDQ_MIN_QUALITY for h in known]
    n_smooth = sum(smooth)
    print(f"## The quality cliff against the quality rule (%, textured n = {len(known) - n_smooth}, "
          f"smooth n = {n_smooth})\n")
    print(f"cliff: `pdq_min_quality: {PDQ_MIN_QUALITY}` (nothing below it near-matches); rule: "
          f"`pdq_min_quality: {RULE_MIN_QUALITY}` with the bounds of bot/classify/pdqrule.py.\n")
    heads = [f"{mode} {group} {which}" for mode in MODES for group in ("textured", "smooth")
             for which in ("cliff", "rule")]
    print("| edit | " + " | ".join(heads) + " |")
    print("| --- | " + " | ".join("---:" for _ in heads) + " |")

    def share(o: Outcome, edit: str, want_smooth: bool) -> str:
        return _pct([ok for ok, sm in zip(o.matched[edit], smooth) if sm == want_smooth])

    means: dict[str, list[float]] = {h: [] for h in heads}
    for edit in rule["provider"].matched:
        cells = []
        for mode in MODES:
            for group in (False, True):
                for o in (cliff[mode], rule[mode]):
                    cells.append(share(o, edit, group))
        for h, c in zip(heads, cells):
            if c != "-":
                means[h].append(float(c))
        print(f"| {edit} | " + " | ".join(cells) + " |")
    print("| **mean** | " + " | ".join(f"{np.mean(v):.1f}" if v else "-" for v in means.values()) + " |")
    print("\n| mode | unrelated matched, cliff | rule | cross matches, cliff | rule |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode in MODES:
        print(f"| {mode} | {len({n for n, _, _ in cliff[mode].false})} | {len({n for n, _, _ in rule[mode].false})} "
              f"| {len(cliff[mode].cross)} | {len(rule[mode].cross)} |")
    print()


@contextlib.contextmanager
def _previous_rule() -> Iterator[None]:
    """The matching of the session before this rule (commit 69ddd49), for a before/after on
    the same corpus: below quality 50, the as-decoded hash within 24 bits just under 50
    down to 8 at 0 (linear), derived queries within 8; pHash matches unconfirmed; no
    low-frequency signature (bot/classify/smoothmatch.py)."""

    def bounds(threshold: int, quality: int | None, min_quality: int) -> PdqBounds:
        if quality is None or quality < min_quality:
            return PdqBounds(None, None)
        if quality >= FULL_QUALITY:
            return PdqBounds(threshold, threshold)
        low = round(8 + 16 * min(1.0, max(0.0, quality / (FULL_QUALITY - 1))))
        return PdqBounds(min(threshold, low), min(threshold, 8))

    saved = hashlist_module.pdq_bounds, hashlist_module._confirmed_by_pdq, smooth_module.lowfreq_bound
    hashlist_module.pdq_bounds = bounds
    hashlist_module._confirmed_by_pdq = lambda found, *_: found
    smooth_module.lowfreq_bound = lambda *_: None
    try:
        yield
    finally:
        hashlist_module.pdq_bounds, hashlist_module._confirmed_by_pdq, smooth_module.lowfreq_bound = saved


def _print_families(cliff: dict[str, Outcome], previous: dict[str, Outcome], rule: dict[str, Outcome],
                    known: Sequence[Hashed]) -> None:
    """Per family: the share of copies matched over the edits inside the goal."""
    print("## Per family, edits inside the goal (%: cliff / previous rule / rule)\n")
    print("previous rule: the bounds before this one (24 down to 8 under quality 50, derived 8; pHash "
          "unconfirmed); rule: bot/classify/pdqrule.py now. smooth: known images of provider PDQ quality under 50.\n")
    families = sorted({h.item.family for h in known})
    print("| family | known | smooth | provider | add-image |")
    print("| --- | ---: | ---: | --- | --- |")
    groups = [(f, [h.item.family == f for h in known]) for f in families]
    groups.append(("all smooth", [h.provider_quality < PDQ_MIN_QUALITY for h in known]))
    groups.append(("all textured", [h.provider_quality >= PDQ_MIN_QUALITY for h in known]))
    for name, members in groups:
        cells = []
        for mode in MODES:
            goal = [e for e in rule[mode].matched if e not in OUTSIDE_GOAL[mode]]
            shares = []
            for o in (cliff[mode], previous[mode], rule[mode]):
                flags = [ok for e in goal for ok, m in zip(o.matched[e], members) if m]
                shares.append(_pct(flags))
            cells.append(" / ".join(shares))
        n = sum(members)
        n_smooth = sum(1 for h, m in zip(known, members) if m and h.provider_quality < PDQ_MIN_QUALITY)
        print(f"| {name} | {n} | {n_smooth} | {cells[0]} | {cells[1]} |")
    print("\n| mode | unrelated matched: cliff / previous / rule | cross matches |")
    print("| --- | --- | --- |")
    for mode in MODES:
        false = [str(len({n for n, _, _ in o.false})) for o in (cliff[mode], previous[mode], rule[mode])]
        cross = [str(len(o.cross)) for o in (cliff[mode], previous[mode], rule[mode])]
        print(f"| {mode} | {' / '.join(false)} | {' / '.join(cross)} |")
    for mode in MODES:
        for name, edit, label in previous[mode].false[:5]:
            print(f"- previous rule, {mode}: unrelated {name} ({edit}) matched {label}")
    print()


def _print_low_quality_distances(known: Sequence[Hashed], unrelated: Sequence[Hashed],
                                 entries: dict[str, list[HashEntry]]) -> None:
    """What the bounds of the rule are read from: by the query's quality, how near a copy's
    as-decoded hash and its derived queries come to its own entries, and how near an
    unrelated image's come to any entry."""
    print("## Low-quality queries: distances by the query's PDQ quality\n")
    print("add-image list (its PDQ and crop entries). own: a copy's nearest own entry (median / "
          "75th percentile, over every edit, crops included); unrelated: nearest entry of any image (min / 1st percentile).\n")
    listed = [e for e in entries["add-image"] if e.type == "pdq"]
    hexes = [e.hash for e in listed]
    labels = np.array([e.label for e in listed])
    buckets = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 101))
    print("| quality | copies | own as-decoded | own derived | unrelated | unrelated as-decoded | unrelated derived |")
    print("| --- | ---: | --- | --- | ---: | --- | --- |")
    for lo, hi in buckets:
        own_a, own_d, un_a, un_d = [], [], [], []
        for h in known:
            for copy in h.copies.values():
                if copy.pdq and copy.pdq_quality is not None and lo <= copy.pdq_quality < hi:
                    d = _distances(list(dict.fromkeys((copy.pdq, *copy.pdq_queries))), hexes)
                    d = d[:, labels == h.item.name]
                    own_a.append(int(d[0].min()))
                    own_d.append(int(d[1:].min()) if len(d) > 1 else 256)
        for h in unrelated:
            copy = next(iter(h.copies.values()))
            if copy.pdq and copy.pdq_quality is not None and lo <= copy.pdq_quality < hi:
                d = _distances(list(dict.fromkeys((copy.pdq, *copy.pdq_queries))), hexes)
                un_a.append(int(d[0].min()))
                un_d.append(int(d[1:].min()) if len(d) > 1 else 256)

        def up(v: list[int]) -> str:
            return f"{np.median(v):.0f} / {np.percentile(v, 75):.0f}" if v else "-"

        def down(v: list[int]) -> str:
            return f"{min(v)} / {np.percentile(v, 1):.0f}" if v else "-"

        print(f"| {lo}-{hi - 1} | {len(own_a)} | {up(own_a)} | {up(own_d)} | {len(un_a)} | {down(un_a)} | {down(un_d)} |")
    print()


def _entry_counts(entries: Sequence[HashEntry]) -> str:
    by_type: dict[str, int] = {}
    for e in entries:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    return ", ".join(f"{n} {t}" for t, n in by_type.items())


def _print_match_table(outcomes: dict[str, Outcome], known: Sequence[Hashed]) -> None:
    print(f"## Copies of known images matched to their own image (%, n = {len(known)} per edit)\n")
    print("| edit | provider | add-image |")
    print("| --- | ---: | ---: |")
    for edit in outcomes["provider"].matched:
        cells = []
        for mode in MODES:
            pct = _pct(outcomes[mode].matched[edit])
            in_goal = edit not in OUTSIDE_GOAL[mode]
            cells.append(pct if in_goal else f"({pct})")
        print(f"| {edit} | {' | '.join(cells)} |")
    print("\n(Parenthesised: outside the goal for that mode. Goal: 95% or more elsewhere.)\n")
    for mode in MODES:
        for edit, flags in outcomes[mode].matched.items():
            missed = [h.item.name for h, ok in zip(known, flags) if not ok]
            if missed and edit not in OUTSIDE_GOAL[mode]:
                print(f"- missed, {mode}, {edit}: {', '.join(missed)}")
    print()


def _print_false_matches(outcomes: dict[str, Outcome]) -> None:
    print("## False matches\n")
    print("| mode | unrelated images matched | copies matched to another known image |")
    print("| --- | ---: | ---: |")
    for mode in MODES:
        o = outcomes[mode]
        print(f"| {mode} | {len({name for name, _, _ in o.false})} | {len(o.cross)} |")
    for mode in MODES:
        for name, edit, label in outcomes[mode].false[:10]:
            print(f"- {mode}: unrelated {name} ({edit}) matched {label}")
        for edit, name, label in outcomes[mode].cross[:10]:
            print(f"- {mode}: {edit} copy of {name} matched {label}")
    print()


def _print_distances(known: Sequence[Hashed], unrelated: Sequence[Hashed],
                     entries: dict[str, list[HashEntry]]) -> None:
    print("## PDQ distances\n")
    print("Nearest distance from a copy's queries (its 8 rotations/flips, and those of the "
          "border-trimmed image) to its own image's PDQ entries: median / 95th percentile / max. "
          "Copies whose PDQ quality is below the minimum are not queried and not counted.\n")
    own: dict[str, dict[str, list[str]]] = {}
    for mode in MODES:
        own[mode] = {}
        for e in entries[mode]:
            if e.type == "pdq":
                own[mode].setdefault(e.label, []).append(e.hash)
    print("| edit | provider | add-image | copies below quality |")
    print("| --- | ---: | ---: | ---: |")
    for edit in known[0].copies:
        cells, low = [], 0
        for mode in MODES:
            nearest = []
            for h in known:
                queries = _queries(h.copies[edit])
                if not queries:
                    low += mode == "provider"
                    continue
                nearest.append(int(_distances(queries, own[mode][h.item.name]).min()))
            cells.append(_upper_stats(nearest))
        print(f"| {edit} | {' | '.join(cells)} | {low} |")
    print("\nNearest distance from an unrelated image's queries to any PDQ entry of the list: "
          "min / 1st percentile / 5th percentile / median.\n")
    print("| mode | PDQ entries | unrelated -> nearest entry |")
    print("| --- | ---: | --- |")
    for mode in MODES:
        listed = [e.hash for e in entries[mode] if e.type == "pdq"]
        nearest = [int(_distances(q, listed).min()) for h in unrelated if (q := _queries(next(iter(h.copies.values()))))]
        print(f"| {mode} | {len(listed)} | {_stats(nearest)} |")
    phashes = [e.hash for e in entries["add-image"] if e.type == "phash"]
    listed_p = np.array([int(p, 16) for p in phashes], dtype=np.uint64)
    nearest_p = [
        int(np.bitwise_count(listed_p ^ np.uint64(int(c.phash, 16))).min())
        for h in unrelated
        if (c := next(iter(h.copies.values()))).phash and (c.pdq_quality or 0) >= PDQ_MIN_QUALITY
    ]
    print(f"\npHash (64 bits, threshold {Thresholds().phash}; add-image lists only), unrelated -> "
          f"nearest of {len(phashes)} entries: {_stats(nearest_p)}.\n")


def _print_corpus_distances(hashed: Sequence[Hashed]) -> None:
    """Are different seeds of one generator unrelated? Nearest neighbour of each original."""
    print("## Distances between the corpus's originals\n")
    print("For each original (known and unrelated), the nearest other original: PDQ distance "
          "from its 8 rotations/flips to the other's full-resolution PDQ. min / 1st / 5th "
          "percentile / median, within its family and across families.\n")
    usable = [h for h in hashed if h.provider_quality >= PDQ_MIN_QUALITY]
    listed = _matrix([h.provider_pdq for h in usable])
    families = np.array([h.item.family for h in usable])
    within: dict[str, list[int]] = {}
    across: dict[str, list[int]] = {}
    closest: list[tuple[int, str, str]] = []
    for i, h in enumerate(usable):
        q = _matrix(_queries(h.original_hashes) or [h.provider_pdq])
        d = np.bitwise_count(q[:, None, :] ^ listed[None, :, :]).sum(axis=2).min(axis=0)
        d[i] = 10_000
        same = families == h.item.family
        within.setdefault(h.item.family, []).append(int(d[same].min()))
        if (~same).any():
            across.setdefault(h.item.family, []).append(int(d[~same].min()))
        j = int(d.argmin())
        closest.append((int(d[j]), h.item.name, usable[j].item.name))
    print("| family | originals | nearest in family | nearest in other families |")
    print("| --- | ---: | --- | --- |")
    for family in within:
        print(f"| {family} | {len(within[family])} | {_stats(within[family])} | {_stats(across.get(family, []))} |")
    pairs = sorted({(d, *sorted((a, b))) for d, a, b in closest})[:5]
    print(f"\nClosest pairs: {', '.join(f'{a} ~ {b} ({d})' for d, a, b in pairs)}.\n")


def _print_sweep(known: Sequence[Hashed], unrelated: Sequence[Hashed]) -> None:
    print("## Sweep: PDQ threshold, central crops, minimum PDQ quality\n")
    print("add-image lists are built from the same hashes, with the crops given; false: unrelated "
          "images matched; cross: copies matched to another known image.\n")
    edits = list(known[0].copies)
    print("| PDQ threshold | min quality | list | " + " | ".join(edits) + " | false | cross |")
    print("| ---: | ---: | --- | " + " | ".join("---:" for _ in edits) + " | ---: | ---: |")
    default = Thresholds().pdq
    configs: list[tuple[int, tuple[float, ...] | None, int]] = [
        (t, None, PDQ_MIN_QUALITY) for t in SWEEP_THRESHOLDS
    ]
    configs += [(t, c, PDQ_MIN_QUALITY) for t in (default, 38) for c in SWEEP_CROP_SETS]
    centred = tuple(c for c in ADD_IMAGE_CROPS if not isinstance(c, tuple))  # what --sweep hashes
    configs += [(default, c, q) for c in (None, centred) for q in SWEEP_MIN_QUALITY]
    notes: list[str] = []
    for threshold, crops, quality in configs:
        entries = provider_entries(known) if crops is None else sweep_entries(known, crops)
        o = evaluate(entries, known, unrelated, threshold, quality)
        label = "provider" if crops is None else ",".join(f"{c:g}" for c in crops) or "none"
        print(f"| {threshold} | {quality} | {label} | " + " | ".join(_pct(o.matched[e]) for e in edits)
              + f" | {len({n for n, _, _ in o.false})} | {len(o.cross)} |")
        notes += [f"- threshold {threshold}, quality {quality}, {label}: unrelated {n} ({e}) matched {m}"
                  for n, e, m in o.false[:3]]
    print("\n".join(["", *notes]) if notes else "")
    print()


if __name__ == "__main__":
    main()

"""Cropped copies of generated images, and the PDQ a provider lists for their original."""

from __future__ import annotations

from PIL import Image

from bot.demo.samples import encode
from bot.hashing import compute_hashes


def cut(img: Image.Image, left: float = 0, right: float = 0, top: float = 0, bottom: float = 0) -> Image.Image:
    """`img` with those fractions of its width (left, right) and height (top, bottom) cut away."""
    w, h = img.size
    return img.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def jpeg(img: Image.Image) -> bytes:
    return encode(img, "JPEG", quality=85)


def original_pdq(img: Image.Image) -> str:
    """The original's PDQ as a provider lists it: of the original alone, no crops."""
    return compute_hashes(encode(img, "PNG")).pdq or ""

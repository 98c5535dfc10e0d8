"""Caption bars cut off (bot/hashing/caption.py): a meme's line of text on a white or black
band above or below a known picture; the rest gets the trimmed image's PDQ queries, so a
list holding the picture's PDQ alone finds it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.classify.hashlist import HashListClassifier
from bot.demo.samples import encode, make_photo
from bot.hashing import compute_hashes
from bot.hashing.caption import caption_box
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList


def captioned(img: Image.Image, *, below: bool = False, shade: str = "white", share: float = 0.18) -> Image.Image:
    bar = max(24, round(img.height * share))
    out = Image.new("RGB", (img.width, img.height + bar), shade)
    out.paste(img, (0, 0 if below else bar))
    ink = "black" if shade == "white" else "white"
    where = (img.width // 2, img.height + bar // 2 if below else bar // 2)
    ImageDraw.Draw(out).text(where, "me explaining the build to QA", fill=ink,
                             font=ImageFont.load_default(size=max(12, bar // 2)), anchor="mm")
    return out


def luma(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("F"))


def test_a_white_bar_above_and_a_black_bar_below_are_cut_off() -> None:
    photo = make_photo(5, (640, 480))
    left, top, right, bottom = caption_box(luma(captioned(photo))) or (0, 0, 0, 0)
    assert (left, right, bottom) == (0, 640, 480 + 86) and 84 <= top <= 88  # the bar is 86 rows

    left, top, right, bottom = caption_box(luma(captioned(photo, below=True, shade="black"))) or (0, 0, 0, 0)
    assert (left, top, right) == (0, 0, 640) and 478 <= bottom <= 482


def test_pictures_without_a_bar_keep_their_rows() -> None:
    photo = make_photo(5, (640, 480))
    assert caption_box(luma(photo)) is None
    sky = np.asarray(photo).copy()
    sky[:300] = 255  # a white sky over most of the picture: no bar ends before 35%
    assert caption_box(luma(Image.fromarray(sky))) is None
    assert caption_box(np.full((480, 640), 255, np.float32)) is None  # white all over
    assert caption_box(np.full((6, 640), 255, np.float32)) is None  # too small to tell
    thin = np.asarray(photo).copy()
    thin[:8] = 255  # an 8-row line: under 4% of the height
    assert caption_box(luma(Image.fromarray(thin))) is None


def test_a_captioned_copy_matches_the_pictures_pdq_listed_alone() -> None:
    photo = make_photo(41, (640, 480))
    listed = compute_hashes(encode(photo, "PNG")).pdq or ""
    classifier = HashListClassifier([LoadedList.from_entries("known", [HashEntry("pdq", listed, "csam")], label="csam")])

    for copy in (captioned(photo), captioned(photo, below=True, shade="black", share=0.1)):
        hashes = compute_hashes(encode(copy, "JPEG", quality=85))
        (verdict,) = classifier.match(hashes).verdicts
        assert verdict.label == "csam" and verdict.distance is not None and verdict.distance <= 31
        assert verdict.details["query"] == "variant" and verdict.details["query_hash"] in hashes.pdq_queries[8:]

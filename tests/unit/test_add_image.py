"""bot.cli.scan.add_images: what `modbot hashes add-image` writes to a list, and what that finds.

Every image is generated (bot.demo.samples); "the added image" stands for one an operator put on
a list, its altered copies for what someone might post instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageFilter

from bot.classify.hashlist import HashListClassifier
from bot.lists.loaded import LoadedList
from bot.config import Config
from bot.hashing import compute_hashes, named_crop_hashes
from bot.lists.format import HashEntry, read_hash_list
from bot.model import Hashes
from bot.demo.samples import encode, make_photo
from bot.cli.scan import add_images
from bot.lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS


def make_config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "homeserver": {"url": "http://127.0.0.1:8008", "domain": "example.org"},
            "appservice": {"as_token": "secret-as", "hs_token": "secret-hs"},
            "hash_lists": [{"name": "known", "path": "known.csv", "label": "csam"}],
        },
        context={"base_dir": tmp_path},
    )


def centre_crop(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def matched_labels(entries: list[HashEntry], hashes: Hashes) -> set[str]:
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")])
    return {v.label for v in classifier.match(hashes).verdicts}


@pytest.fixture
def added(tmp_path: Path) -> tuple[Path, list[HashEntry]]:
    """An image added to the list `known`: its file and the entries written."""
    image = tmp_path / "photo.png"
    image.write_bytes(encode(make_photo(21), "PNG"))
    count, path = add_images([image], make_config(tmp_path), "known", None)
    entries = list(read_hash_list(path, "csam").entries)
    assert count == len(entries)
    return image, entries


def test_add_image_lists_the_central_crops_pdq_and_the_low_frequency_signature_too(added: tuple[Path, list[HashEntry]]) -> None:
    image, entries = added
    data = image.read_bytes()
    hashes = compute_hashes(data)
    crops = named_crop_hashes(data, ADD_IMAGE_CROPS, gains=ADD_IMAGE_GAINS)  # and the brightened image

    # A photo: no crop is left out for low quality, and brightening it clips its highlights.
    assert len(crops) == len(ADD_IMAGE_CROPS) + len(ADD_IMAGE_GAINS)
    assert [(e.type, e.hash, e.derived) for e in entries] == [
        ("sha256", hashes.sha256, ""),
        ("md5", hashes.md5, ""),
        ("pdq", hashes.pdq, ""),
        ("phash", hashes.phash, ""),
        # rows derived from the image, named, and naming it
        *(("pdq", crop, f"{what}; of sha256:{hashes.sha256}") for crop, what in crops),
        ("lowfreq", hashes.lowfreq[0], ""),  # of the image as decoded (bot/hashing/smoothsig.py)
    ]
    assert [what for _, what in crops] == [
        "crop to 97.5%, centred", "crop to 95%, centred", "crop to 92.5%, centred", "crop to 90%, centred",
        "crop to 95%, top left", "crop to 95%, top right", "crop to 95%, bottom left", "crop to 95%, bottom right",
        "crop to 95% of the height, top", "crop to 95% of the height, bottom",
        "crop to 95% of the width, left", "crop to 95% of the width, right",
        "brightened x1.3",
    ]
    assert {e.label for e in entries} == {"csam"}


def test_adding_the_same_image_again_adds_nothing(tmp_path: Path, added: tuple[Path, list[HashEntry]]) -> None:
    image, _ = added
    listed = (tmp_path / "known.csv").read_text()

    assert add_images([image], make_config(tmp_path), "known", None) == (0, tmp_path / "known.csv")
    assert (tmp_path / "known.csv").read_text() == listed


def test_a_non_image_adds_only_its_cryptographic_hashes(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    count, path = add_images([notes], make_config(tmp_path), "known", "spam")

    assert count == 2
    assert [e.type for e in read_hash_list(path, "csam").entries] == ["sha256", "md5"]


@pytest.mark.parametrize("seed", [21, 23, 24])
def test_a_5_percent_crop_matches_the_crop_hashes_and_the_original_only_through_a_crop_guess(
    tmp_path: Path, seed: int
) -> None:
    # The benchmark finds the copy's own PDQ matching the original's in ~1% of such crops.
    image = tmp_path / "photo.png"
    image.write_bytes(encode(make_photo(seed), "PNG"))
    add_images([image], make_config(tmp_path), "known", None)
    pdq = [e for e in read_hash_list(tmp_path / "known.csv", "csam").entries if e.type == "pdq"]
    # 5% of each side's length cut off, half at each end, and re-encoded.
    copy = compute_hashes(encode(centre_crop(make_photo(seed), 0.95), "JPEG", quality=85))

    assert matched_labels(pdq, copy) == {"csam"}
    # The original's PDQ, as a provider lists it: found by padding the copy back.
    assert matched_labels(pdq[:1], replace(copy, pdq_uncropped=())) == set()
    classifier = HashListClassifier([LoadedList.from_entries("known", pdq[:1], label="csam")])
    (verdict,) = classifier.match(copy).verdicts
    assert verdict.details["crop"] == "2.5% cut from each side"


def corner_crop(img: Image.Image, fraction: float, corner: str) -> Image.Image:
    """Keep `fraction` of each side, all of the cut taken from the two sides that meet at
    `corner` ("top left", "bottom right"...)."""
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    left = w - cw if "left" in corner else 0
    top = h - ch if "top" in corner else 0
    return img.crop((left, top, left + cw, top + ch))


@pytest.mark.parametrize(("seed", "corner"), [(21, "top left"), (23, "bottom right"), (24, "top right")])
def test_a_copy_cropped_5_percent_from_two_sides_matches_the_crop_anchored_at_the_opposite_corner(
    tmp_path: Path, seed: int, corner: str
) -> None:
    # Cut from the top and left, what is left is the original's bottom-right 95%: a central
    # crop's hash is ~2.5% of a side away, ~60 bits (bench/offset_crop_study.py).
    image = tmp_path / "photo.png"
    image.write_bytes(encode(make_photo(seed), "PNG"))
    add_images([image], make_config(tmp_path), "known", None)
    pdq = [e for e in read_hash_list(tmp_path / "known.csv", "csam").entries if e.type == "pdq"]
    copy = replace(compute_hashes(encode(corner_crop(make_photo(seed), 0.95, corner), "JPEG", quality=85)), pdq_uncropped=())
    kept = {"top left": "bottom right", "bottom right": "top left", "top right": "bottom left"}[corner]

    classifier = HashListClassifier([LoadedList.from_entries("known", pdq, label="csam")])
    entries = {v.details.get("entry") for v in classifier.match(copy).verdicts}
    assert f"crop to 95%, {kept}" in entries
    centred = [e for e in pdq if not e.derived or "centred" in e.derived]
    assert matched_labels(centred, copy) == set()


@pytest.mark.parametrize(("seed", "side", "kept"), [
    (21, "bottom", "crop to 95% of the height, top"), (23, "left", "crop to 95% of the width, right"),
])
def test_a_copy_cut_5_percent_along_one_edge_matches_the_crop_that_keeps_the_rest(
    tmp_path: Path, seed: int, side: str, kept: str
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(encode(make_photo(seed), "PNG"))
    add_images([image], make_config(tmp_path), "known", None)
    pdq = [e for e in read_hash_list(tmp_path / "known.csv", "csam").entries if e.type == "pdq"]
    img = make_photo(seed)
    w, h = img.size
    box = {"bottom": (0, 0, w, h - round(h * 0.05)), "left": (round(w * 0.05), 0, w, h)}[side]
    copy = replace(compute_hashes(encode(img.crop(box), "JPEG", quality=85)), pdq_uncropped=())

    classifier = HashListClassifier([LoadedList.from_entries("known", pdq, label="csam")])
    assert kept in {v.details.get("entry") for v in classifier.match(copy).verdicts}
    assert matched_labels([e for e in pdq if "of the" not in e.derived], copy) == set()


def smooth_image(seed: int) -> Image.Image:
    """A dark, smooth picture (PDQ quality about 10): a generated photo blurred and at 15%
    of its brightness, like a photo taken at night."""
    return ImageEnhance.Brightness(make_photo(seed).filter(ImageFilter.GaussianBlur(6))).enhance(0.15)


@pytest.mark.parametrize("seed", [21, 23, 24])
def test_add_image_lists_the_crops_of_a_smooth_image_and_a_cropped_copy_matches(tmp_path: Path, seed: int) -> None:
    # Crops under quality 50 are listed too (bot.lists.imagerows.CROP_MIN_QUALITY): a smooth copy
    # cropped 5% matches its crop's entry within bot.classify.pdqrule.LOW_BOUND.
    image = tmp_path / "dark.png"
    image.write_bytes(encode(smooth_image(seed), "PNG"))
    assert 0 < (compute_hashes(image.read_bytes()).pdq_quality or 0) < 50
    add_images([image], make_config(tmp_path), "known", None)
    pdq = [e for e in read_hash_list(tmp_path / "known.csv", "csam").entries if e.type == "pdq"]
    assert len(pdq) == 1 + len(ADD_IMAGE_CROPS)

    copy = compute_hashes(encode(centre_crop(smooth_image(seed), 0.95), "JPEG", quality=85))
    assert matched_labels(pdq, copy) == {"csam"}
    # The whole image's PDQ alone: not by the copy's own hashes, only by a crop guess.
    assert matched_labels(pdq[:1], replace(copy, pdq_uncropped=())) == set()


def test_add_image_leaves_out_the_crops_of_a_flat_image(tmp_path: Path) -> None:
    # A flat image's PDQ (quality 0) is noise: its crops would be noise entries.
    image = tmp_path / "flat.png"
    image.write_bytes(encode(Image.new("RGB", (400, 300), (90, 120, 150)), "PNG"))
    add_images([image], make_config(tmp_path), "known", None)
    assert [e.type for e in read_hash_list(tmp_path / "known.csv", "csam").entries].count("pdq") <= 1

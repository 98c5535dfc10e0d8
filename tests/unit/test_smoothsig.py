"""The low-frequency signature (bot/hashing/smoothsig.py): what finds copies of smooth images,
wallpapers above all, that PDQ cannot, in lists written by `modbot hashes add-image`.

The wallpapers are generated here: a gradient with soft waves and a little noise, PDQ quality
3-40, whose re-encoded, half-size copies lie 64-124 PDQ bits from them (PDQ's coefficients all
sit next to their median), far past bot.classify.pdqrule.LOW_BOUND.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.classify.hashlist import HashListClassifier
from bot.classify.pdqrule import LOW_BOUND, LOWFREQ_BOUND
from bot.cli.scan import add_images
from bot.config import Config
from bot.demo.samples import encode, make_photo
from bot.hashing import compute_hashes, hamming, smoothsig
from bot.lists.columns import HashColumns, read_hash_columns
from bot.lists.format import HashEntry, append_entries, read_hash_list
from bot.lists.loaded import LoadedList
from bot.lists.sigindex import SignatureEntry, SignatureIndex
from bot.model import Hashes, Verdict


def wallpaper(seed: int, size: tuple[int, int] = (640, 400)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / max(w, h)
    t = ((t - t.min()) / (t.max() - t.min()))[..., None]
    c0, c1 = rng.uniform(0, 90, 3), rng.uniform(140, 255, 3)
    pixels = c0 * (1 - t) + c1 * t + np.sin(t * rng.uniform(6, 14) + rng.uniform(0, 6)) * rng.uniform(15, 30)
    pixels = pixels + rng.normal(0, 1.0, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "homeserver": {"url": "http://127.0.0.1:8008", "domain": "example.org"},
            "appservice": {"as_token": "secret-as", "hs_token": "secret-hs"},
            "hash_lists": [{"name": "known", "path": "known.csv", "label": "csam"}],
        },
        context={"base_dir": tmp_path},
    )


def add(tmp_path: Path, img: Image.Image) -> list[HashEntry]:
    """`modbot hashes add-image` of `img` (through the sandbox); the list's entries."""
    image = tmp_path / "listed.png"
    image.write_bytes(encode(img, "PNG"))
    add_images([image], make_config(tmp_path), "known", None)
    return list(read_hash_list(tmp_path / "known.csv", "csam").entries)


def verdicts(entries: list[HashEntry], hashes: Hashes, **settings: int) -> tuple[Verdict, ...]:
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="csam")], **settings)
    return classifier.match(hashes).verdicts


def copy_of(img: Image.Image) -> Hashes:
    """A half-size JPEG q30 re-encode: what a chat client's thumbnailing might post."""
    return compute_hashes(encode(img.resize((img.width // 2, img.height // 2)), "JPEG", quality=30))


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_a_resized_re_encoded_wallpaper_matches_an_add_image_list_through_the_signature(tmp_path: Path, seed: int) -> None:
    entries = add(tmp_path, wallpaper(seed))
    copy = copy_of(wallpaper(seed))
    listed_pdq = next(e.hash for e in entries if e.type == "pdq")

    assert copy.pdq_quality is not None and copy.pdq_quality < 50
    assert min(hamming(q, listed_pdq) for q in copy.pdq_queries) > LOW_BOUND  # PDQ cannot find it
    (verdict,) = verdicts(entries, copy)
    assert verdict.hash_type == "lowfreq" and verdict.label == "csam"
    assert verdict.distance is not None and verdict.distance <= LOWFREQ_BOUND
    assert verdict.details["signal"] == "lowfreq" and verdict.details["transform"] == "original"
    assert verdict.details["signature"] == next(e.hash for e in entries if e.type == "lowfreq")
    # Without the signature entry the list misses the copy: the signal is what found it.
    assert verdicts([e for e in entries if e.type != "lowfreq"], copy) == ()


@pytest.mark.parametrize(
    ("turn", "transform"),
    [
        (Image.Transpose.ROTATE_90, "rotate270"),  # turned a quarter anticlockwise; rotate270 undoes it
        (Image.Transpose.ROTATE_180, "rotate180"),
        (Image.Transpose.FLIP_LEFT_RIGHT, "flip_y"),
        (Image.Transpose.FLIP_TOP_BOTTOM, "flip_x"),
        (Image.Transpose.TRANSPOSE, "flip_plus1"),
    ],
)
def test_turned_and_flipped_copies_match_and_the_verdict_names_the_transformation(
    tmp_path: Path, turn: Image.Transpose, transform: str
) -> None:
    entries = [e for e in add(tmp_path, wallpaper(4)) if e.type == "lowfreq"]
    (verdict,) = verdicts(entries, copy_of(wallpaper(4).transpose(turn)))
    assert verdict.details["transform"] == transform
    assert verdict.distance is not None and verdict.distance <= LOWFREQ_BOUND


def test_unrelated_wallpapers_and_gradients_do_not_match(tmp_path: Path) -> None:
    entries = add(tmp_path, wallpaper(2))
    others = [copy_of(wallpaper(seed)) for seed in (3, 5, 6, 7, 11, 12)]
    # A plain diagonal gradient and a radial one: smooth, but of other shapes.
    yy, xx = np.mgrid[0:400, 0:640]
    diagonal = np.repeat(((xx + yy) * 255 / 1038).astype(np.uint8)[..., None], 3, axis=2)
    radial = np.repeat(np.clip(np.hypot(xx - 320, yy - 200) / 1.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    others += [copy_of(Image.fromarray(a, "RGB")) for a in (diagonal, radial)]

    assert all(h.lowfreq for h in others)
    assert sum(1 for h in others if h.pdq_quality is not None and h.pdq_quality < 50) >= 7
    assert [verdicts(entries, h) for h in others] == [()] * len(others)


def test_the_signature_is_not_matched_at_pdq_quality_50_or_more(tmp_path: Path) -> None:
    # A textured photo's PDQ bits are stable: its 36 coefficients would say too little.
    photo = make_photo(21)
    signature_only = [e for e in add(tmp_path, photo) if e.type == "lowfreq"]
    same = compute_hashes(encode(photo, "PNG"))
    assert (same.pdq_quality or 0) >= 50 and same.lowfreq[0] == signature_only[0].hash
    assert verdicts(signature_only, same) == ()


def test_the_operators_pdq_min_quality_applies_to_the_signature_too(tmp_path: Path) -> None:
    entries = [e for e in add(tmp_path, wallpaper(3)) if e.type == "lowfreq"]
    copy = copy_of(wallpaper(3))
    assert verdicts(entries, copy) and verdicts(entries, copy, pdq_min_quality=50) == ()


def test_a_flat_image_and_a_gradient_along_one_axis_have_no_signature() -> None:
    # Frequencies 1-6 along both axes, as PDQ's DCT (which leaves out frequency 0): a
    # gradient along one axis only has nothing there, as a flat image has nothing at all.
    yy = np.mgrid[0:200, 0:300][0]
    vertical = np.repeat((yy * 255 / 199).astype(np.uint8)[..., None], 3, axis=2)
    for img in (Image.new("RGB", (300, 200), (40, 90, 160)), Image.fromarray(vertical, "RGB")):
        assert compute_hashes(encode(img, "PNG")).lowfreq == ()


def test_signature_entries_round_trip_through_the_list_file_and_both_readers(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    signature = compute_hashes(encode(wallpaper(2), "PNG")).lowfreq[0]
    entries = [HashEntry("lowfreq", signature, "csam"), HashEntry("pdq", "ab" * 32, "csam")]
    assert append_entries(path, entries) == 2
    assert append_entries(path, entries) == 0  # already there
    assert f"lowfreq,{signature},csam\n" in path.read_text()

    assert list(read_hash_list(path, "x").entries) == entries
    columns = read_hash_columns(path, "x")
    assert sorted(columns.entries(), key=lambda e: e.type) == sorted(entries, key=lambda e: e.type)
    assert columns.counts["lowfreq"] == 1
    loaded = LoadedList.from_columns("known", columns, label="x")
    assert loaded.index.counts["lowfreq"] == 1
    assert HashColumns.from_entries(entries).signatures == columns.signatures


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("lowfreq,7f00", "lowfreq signature must be 72 hex digits, got 4"),
        ("lowfreq," + "zz" * 36, "lowfreq signature is not lower-case hexadecimal"),
        ("lowfreq," + "00" * 36, "lowfreq signature is not normalised (its largest coefficient must be +-127)"),
        ("lowfreq," + "7f" + "40" * 35 + "00", "lowfreq signature must be 72 hex digits, got 74"),
        ("lowfreq," + "80" + "00" * 35, "lowfreq signature is not normalised (its largest coefficient must be +-127)"),
    ],
)
def test_a_hostile_signature_line_is_rejected_with_its_reason_and_the_rest_loads(tmp_path: Path, row: str, reason: str) -> None:
    good = compute_hashes(encode(wallpaper(2), "PNG")).lowfreq[0]
    path = tmp_path / "list.csv"
    path.write_text(f"type,hash,label\n{row},csam\nlowfreq,{good},csam\n")
    # Both readers (the line parser and the array reader) agree, line number and reason.
    assert read_hash_list(path, "x").errors == ((2, reason),)
    columns = read_hash_columns(path, "x")
    assert columns.errors == ((2, reason),)
    assert [s.text for s in columns.signatures] == [good]


def test_the_sandbox_answer_is_checked() -> None:
    good = compute_hashes(encode(wallpaper(2), "PNG")).lowfreq
    assert smoothsig.checked(list(good)) == good
    for hostile in ("ab" * 36, ["ab"], [good[0]] * 3, [1, 2], [good[0].upper()]):
        with pytest.raises(ValueError):
            smoothsig.checked(hostile)


def test_turning_the_signature_is_turning_the_image() -> None:
    # The 8 derived signatures equal the signatures of the turned 64x64 images, exactly.
    luma = np.asarray(wallpaper(6, (64, 64)).convert("F"))
    original = smoothsig.parse(smoothsig.signatures(luma)[0])
    turned = [np.rot90(luma), np.rot90(luma, 2), np.rot90(luma, 3), np.flipud(luma), np.fliplr(luma), luma.T, np.rot90(luma, 2).T]
    for derived, image in zip(smoothsig.dihedral(original)[1:], turned):
        assert smoothsig.distance(derived, smoothsig.parse(smoothsig.signatures(np.ascontiguousarray(image))[0])) <= 1


def test_the_index_finds_what_comparing_with_every_entry_finds() -> None:
    rng = np.random.default_rng(7)
    listed = [smoothsig.parse(compute_hashes(encode(wallpaper(seed), "PNG")).lowfreq[0]) for seed in range(6)]

    def text(v: np.ndarray) -> str:
        return np.rint(v / np.abs(v).max() * 127).astype(np.int8).tobytes().hex()

    entries = [SignatureEntry(text(v), f"w{i}") for i, v in enumerate(listed)]
    entries += [SignatureEntry(text(rng.normal(size=36)), "noise") for _ in range(500)]
    index = SignatureIndex(entries)
    query = smoothsig.dihedral(listed[3] + rng.normal(0, 0.02, 36).astype(np.float32))
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    for bound in (5, 20, 300):
        expected = []
        for row, entry in enumerate(index.entries):
            d = [smoothsig.distance(q, smoothsig.parse(entry.text)) for q in query]
            if min(d) <= bound:
                expected.append((row, int(np.argmin(d)), min(d)))
        found = index.search(query, bound)
        assert [(r, q) for r, q, _ in found] == [(r, q) for r, q, _ in expected]
        assert all(abs(a[2] - b[2]) <= 1 for a, b in zip(found, expected))  # float32 against float64
    assert [index.entries[r].label for r, _, _ in index.search(query, LOWFREQ_BOUND)] == ["w3"]


@pytest.mark.parametrize("bordered", [False, True], ids=["plain", "with a border"])
def test_hashing_gives_the_signatures_of_the_decoded_luma_and_its_trimmed_box(bordered: bool) -> None:
    # compute_hashes reuses PDQ's 64x64 images instead of downsampling again: the same values.
    from bot.hashing.border import trim_box
    from bot.hashing.decode import decode, open_image
    from bot.hashing.limits import MediaLimits

    img = wallpaper(3)
    if bordered:
        framed = Image.new("RGB", (img.width + 80, img.height + 80), "white")
        framed.paste(img, (40, 40))
        img = framed
    data = encode(img, "PNG")
    limits = MediaLimits()
    decoded = decode(open_image(data, limits), data, limits)
    box = trim_box(decoded)

    expected = smoothsig.signatures(np.asarray(decoded.convert("F")), box)

    assert (box != (0, 0, *decoded.size)) == bordered
    assert compute_hashes(data).lowfreq == expected and len(expected) == 1 + bordered

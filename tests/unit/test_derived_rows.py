"""Derived rows of a hash list: hashes of a crop or a brightened copy of a listed image.

`hashes add-image` lists them beside the image's own hashes with a fourth CSV column saying
what they are of (bot/lists/format.py). They match like any other row within the list's
threshold, and say so in the verdict; the rules that lean on an image's own hash skip them:
a pHash match confirmed by the label's PDQ and a smooth image's most reliable bits (each
gives an unrelated image a second chance, and a crop or a brightened copy shares the
image's layout, which is what they trust).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.act.notices import describe_verdict
from bot.classify import cropmatch
from bot.classify.hashlist import HashListClassifier
from bot.classify.pdqrule import LOW_BOUND
from bot.hashing import hamming, uncrop
from bot.lists.columns import HashColumns, parse_hash_columns, read_hash_columns
from bot.lists.fingerprints import columns_difference, entry_fingerprints, new_entries
from bot.lists.format import HashEntry, append_entries, derived_of, parse_hash_list, read_hash_list, remove_entries, source_of, split_derived
from bot.lists.importers import format_entries, parse_import, write_list_file
from bot.lists.loaded import LoadedList
from bot.model import Hashes, Verdict
from smooth_kit import entry_with, flips, smooth_hashes, tiers_of

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
CROP = "0" * 64
PHASH = "9c6b6361e1c4d25b"


def flipped(hex_hash: str, n: int) -> str:
    """`hex_hash` with its first n bits inverted."""
    bits = len(hex_hash) * 4
    return f"{int(hex_hash, 16) ^ (((1 << n) - 1) << (bits - n)):0{len(hex_hash)}x}"


def verdicts(entries: list[HashEntry], hashes: Hashes) -> tuple[Verdict, ...]:
    return HashListClassifier([LoadedList.from_entries("known", entries, label="csam")]).match(hashes).verdicts


# --- the file ------------------------------------------------------------------------------


def test_a_fourth_column_says_what_a_row_is_of_and_both_readers_agree() -> None:
    text = (
        "type,hash,label,derived\n"
        f"pdq,{PDQ},csam\n"
        f"pdq,{CROP},csam,\"crop to 95%, top left\"\n"
        f"md5,{'a' * 32},csam,\n"
    )
    parsed = parse_hash_list(text, "x")
    assert parsed.errors == ()
    assert parsed.entries == (
        HashEntry("pdq", PDQ, "csam"),
        HashEntry("pdq", CROP, "csam", derived="crop to 95%, top left"),
        HashEntry("md5", "a" * 32, "csam"),
    )
    columns = parse_hash_columns(text.encode(), "x")
    assert columns.errors == () and set(columns.entries()) == set(parsed.entries)


def test_a_derived_column_is_one_short_line() -> None:
    parsed = parse_hash_list(f"type,hash,label\npdq,{PDQ},csam,{'x' * 161}\npdq,{CROP},csam,{'x' * 160}\n", "x")
    assert [line for line, _ in parsed.errors] == [2]
    assert parsed.entries == (HashEntry("pdq", CROP, "csam", derived="x" * 160),)
    with pytest.raises(ValueError, match="derived"):
        append_entries("/nonexistent-never-written", [HashEntry("pdq", PDQ, "csam", derived="a\nb")])


def test_appending_writes_the_column_and_a_new_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "known.csv"
    assert append_entries(path, [HashEntry("pdq", PDQ, "csam"), HashEntry("pdq", CROP, "csam", derived="crop to 95%, top")]) == 2
    assert path.read_text() == f"type,hash,label,derived\npdq,{PDQ},csam\npdq,{CROP},csam,\"crop to 95%, top\"\n"
    # An older three-column file takes four-column rows as they are.
    old = tmp_path / "old.csv"
    old.write_text(f"type,hash,label\npdq,{PDQ},csam\n")
    append_entries(old, [HashEntry("pdq", CROP, "csam", derived="brightened x1.3")])
    assert read_hash_columns(old, "x").errors == ()
    assert set(read_hash_columns(old, "x").entries()) == {
        HashEntry("pdq", PDQ, "csam"), HashEntry("pdq", CROP, "csam", derived="brightened x1.3"),
    }


IMAGE_SHA = "ab" * 32


def test_a_derived_row_names_its_image_and_removing_the_image_removes_it(tmp_path: Path) -> None:
    # What hashes add-image and hash add write (bot/lists/imagerows.py): the image's SHA-256
    # after "; of sha256:", so that the rows go with the image even once its bytes are gone.
    what = derived_of("crop to 95% of the height, bottom", IMAGE_SHA.upper())
    assert what == f"crop to 95% of the height, bottom; of sha256:{IMAGE_SHA}" and len(what) <= 160
    assert split_derived(what) == ("crop to 95% of the height, bottom", IMAGE_SHA)
    for unnamed in ("crop to 95%, top left", f"; of sha256:{IMAGE_SHA}", "crop; of sha256:abc", f"x; of sha256:{'zz' * 32}"):
        assert split_derived(unnamed) == (unnamed, None) and source_of(unnamed) is None
    path = tmp_path / "l.csv"
    other = derived_of("crop to 95%, centred", "cd" * 32)
    append_entries(path, [
        HashEntry("sha256", IMAGE_SHA, "csam"), HashEntry("pdq", PDQ, "csam"),
        HashEntry("pdq", CROP, "csam", derived=what), HashEntry("pdq", flipped(CROP, 40), "csam", derived=other),
        HashEntry("pdq", flipped(CROP, 80), "csam", derived="crop to 95%, top"),  # an older row: names nothing
    ])
    # Both readers take the long column; the fast one as the slow one does.
    assert set(read_hash_columns(path, "x").entries()) == set(read_hash_list(path, "x").entries)
    assert remove_entries(path, {IMAGE_SHA, PDQ}, images={IMAGE_SHA.upper()}) == 3
    assert [(e.hash, e.derived) for e in read_hash_list(path, "x").entries] == [
        (flipped(CROP, 40), other), (flipped(CROP, 80), "crop to 95%, top"),
    ]


def test_a_verdict_and_the_notice_name_the_listed_image_of_a_derived_row() -> None:
    query = flipped(CROP, 10)
    hashes = Hashes("ef" * 32, None, 1, pdq=query, pdq_quality=100, pdq_queries=(query,))
    (verdict,) = verdicts([HashEntry("pdq", CROP, "csam", derived=derived_of("crop to 95%, top left", IMAGE_SHA))], hashes)
    assert verdict.details["entry"] == "crop to 95%, top left" and verdict.details["entry_image"] == IMAGE_SHA
    assert describe_verdict(verdict).endswith(
        f"the list's entry is of the image's crop to 95%, top left (listed image sha256:{IMAGE_SHA}))"
    )


def test_a_hash_listed_both_as_an_images_own_and_as_derived_is_its_own() -> None:
    for order in ([HashEntry("pdq", CROP, "csam", derived="crop"), HashEntry("pdq", CROP, "csam")],
                  [HashEntry("pdq", CROP, "csam"), HashEntry("pdq", CROP, "csam", derived="crop")]):
        index = LoadedList.from_entries("l", order, label="csam").index.near["pdq"]
        assert len(index) == 1 and index.derived_at(0) == "" and index.own_rows() is None


def test_exports_imports_and_new_entries_keep_the_column(tmp_path: Path) -> None:
    listed = [HashEntry("pdq", PDQ, "csam"), HashEntry("pdq", CROP, "csam", derived="crop to 95%, left")]
    columns = HashColumns.from_entries(listed)
    exported = "".join(format_entries(columns, "modbot"))
    assert exported == f"type,hash,label,derived\npdq,{PDQ},csam\npdq,{CROP},csam,\"crop to 95%, left\"\n"
    imported = parse_import(exported.encode(), "modbot", "x").columns
    assert set(imported.entries()) == set(listed)
    # What an import adds to a list that holds neither, and what retro matching sees as new.
    assert set(columns_difference(imported, HashColumns({}, ())).entries()) == set(listed)
    path = tmp_path / "l.csv"
    write_list_file(path, None, imported, default_label="x")
    assert set(read_hash_columns(path, "x").entries()) == set(listed)
    lst = LoadedList.from_columns("l", columns, label="csam")
    fresh = new_entries(lst, entry_fingerprints(LoadedList.from_entries("l", listed[:1], label="csam")))
    assert [(fresh.index.near["pdq"].hash_at(0), fresh.index.near["pdq"].derived_at(0))] == [(CROP, "crop to 95%, left")]


# --- matching --------------------------------------------------------------------------------


def test_a_derived_row_matches_within_the_threshold_and_the_verdict_says_what_it_is_of() -> None:
    query = flipped(CROP, 10)
    hashes = Hashes("ab" * 32, None, 1, pdq=query, pdq_quality=100, pdq_queries=(query,))
    (verdict,) = verdicts([HashEntry("pdq", CROP, "csam", derived="crop to 95%, top left")], hashes)
    assert verdict.distance == 10 and verdict.details["entry"] == "crop to 95%, top left"
    assert describe_verdict(verdict) == (
        "list known, label csam (near, pdq distance 10; the list's entry is of the image's crop to 95%, top left)"
    )
    (own,) = verdicts([HashEntry("pdq", CROP, "csam")], hashes)
    assert "entry" not in own.details and "entry" not in describe_verdict(own)


@pytest.mark.parametrize("derived", ["", "crop to 95%, top"])
def test_a_phash_match_is_confirmed_by_the_images_own_pdq_only(derived: str) -> None:
    # The label's PDQ 50 bits from the image: within the confirmation's 64, outside the
    # threshold, so only the pHash match can be reported.
    query = flipped(PDQ, 0)
    hashes = Hashes("ab" * 32, None, 1, pdq=query, pdq_quality=100, pdq_queries=(query,), phash=PHASH)
    listed = [HashEntry("phash", PHASH, "csam"), HashEntry("pdq", flipped(PDQ, 50), "csam", derived=derived)]
    found = [v.hash_type for v in verdicts(listed, hashes)]
    assert found == ([] if derived else ["phash"])


@pytest.mark.parametrize("derived", ["", "crop to 95%, bottom"])
def test_a_smooth_images_reliable_bits_are_matched_against_own_rows_only(derived: str) -> None:
    hashes = smooth_hashes()
    bits, (_, _, top128) = tiers_of(hashes)
    entry = entry_with(bits, flips(np.flatnonzero(~top128)[:60]))  # 60 bits away, none it trusts
    assert min(hamming(q, entry) for q in hashes.pdq_queries) > LOW_BOUND
    found = verdicts([HashEntry("pdq", entry, "csam", derived=derived)], hashes)
    assert [v.details.get("signal") for v in found] == ([] if derived else ["reliable bits"])


@pytest.mark.parametrize("derived_too", [True, False])
def test_a_crop_guess_is_matched_against_derived_rows_too_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, derived_too: bool
) -> None:
    # A copy cut 5% off-centre, padded back by 2.5%, lies near a crop of its original: the
    # guesses and the crops find together what neither finds alone (bot/classify/cropmatch.py).
    monkeypatch.setattr(cropmatch, "GUESSES_MATCH_DERIVED", derived_too)
    far = "f" * 64
    guesses = [far] * len(uncrop.HYPOTHESES)
    guesses[3] = CROP
    hashes = Hashes("ab" * 32, None, 1, pdq=far, pdq_quality=100, pdq_queries=(far,), pdq_uncropped=tuple(guesses))
    found = verdicts([HashEntry("pdq", CROP, "csam", derived="crop to 95%, top left")], hashes)
    assert [v.details.get("crop") for v in found] == ([uncrop.HYPOTHESES[3][0]] if derived_too else [])
    assert [v.details.get("crop") for v in verdicts([HashEntry("pdq", CROP, "csam")], hashes)] == [uncrop.HYPOTHESES[3][0]]
    assert verdicts([HashEntry("pdq", CROP, "csam")], replace(hashes, pdq_uncropped=())) == ()

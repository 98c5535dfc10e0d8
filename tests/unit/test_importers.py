"""Importers: every format read, every bad line counted with its reason; lists written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.lists.format import HashEntry, parse_hash_list
from bot.lists.fingerprints import columns_difference
from bot.lists.importers import format_entries, parse_import, write_list_file
from bot.lists.columns import HashColumns, read_hash_columns

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ2 = "0" * 63 + "1"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def entries(columns: HashColumns) -> set[HashEntry]:
    return set(columns.entries())


def test_modbot_format() -> None:
    result = parse_import(f"type,hash,label\npdq,{PDQ},ncii\nmd5,{MD5}\nmd5,nope,x\n".encode(), "modbot", "csam")
    assert entries(result.columns) == {HashEntry("pdq", PDQ, "ncii"), HashEntry("md5", MD5, "csam")}
    assert result.problems == [(4, "md5 hash must be 32 hex digits, got 4")] and result.rejected == 1


def test_plain_needs_a_type_and_counts_bad_lines() -> None:
    with pytest.raises(ValueError, match="--type"):
        parse_import(b"", "plain", "csam")
    result = parse_import(f"# sha1 list\n{SHA1}\n{SHA1.upper()}\n\nnot-a-hash\n{SHA1[:-2]}\n".encode(), "plain", "csam", hash_type="sha1")
    assert entries(result.columns) == {HashEntry("sha1", SHA1, "csam")}
    assert result.problems == [(5, "sha1 hash must be 40 hex digits, got 10"), (6, "sha1 hash must be 40 hex digits, got 38")]
    assert result.rejected == 2 and len(result.problem_counts) == 1  # one kind of problem


def test_threatexchange_csv() -> None:
    text = (
        "signal_type,signal_str,collab,category,tags\n"
        f"pdq,{PDQ},Sample,ADULT,a b\n"
        f"video_md5,{MD5},Sample,ADULT,\n"
        "tmk,abcd,Sample,ADULT,\n"
        "pdq,zz,Sample,ADULT,\n"
        "pdq\n"
    )
    result = parse_import(text.encode(), "te-csv", "terrorism")
    assert entries(result.columns) == {HashEntry("pdq", PDQ, "terrorism"), HashEntry("md5", MD5, "terrorism")}
    assert [line for line, _ in result.problems] == [4, 5, 6]
    assert result.problems[0] == (4, "unsupported signal type 'tmk'")


def test_threatexchange_lines() -> None:
    result = parse_import(f"pdq {PDQ} 'Sample' meta\nvideo_md5 {MD5}\nurl https://example.org\nlonely\n".encode(), "te-lines", "spam")
    assert entries(result.columns) == {HashEntry("pdq", PDQ, "spam"), HashEntry("md5", MD5, "spam")}
    assert result.problems == [(3, "unsupported signal type 'url'"), (4, "expected '<signal_type> <hash>'")]


@pytest.mark.parametrize("shape", ["data", "list", "lines"])
def test_threatexchange_json(shape: str) -> None:
    items = [
        {"id": "1", "type": "HASH_PDQ", "raw_indicator": PDQ},
        {"id": "2", "type": "HASH_MD5", "indicator": {"indicator": MD5}},
        {"signal_type": "pdq", "signal": PDQ2},  # HMA
        {"sha1": SHA1},  # HMA's /h/hash answer shape
        {"type": "URI", "raw_indicator": "https://example.org"},
        {"something": "else"},
    ]
    if shape == "data":
        text = json.dumps({"data": items})
    elif shape == "list":
        text = json.dumps(items)
    else:
        text = "\n".join(json.dumps(i) for i in items) + "\n{broken\n"
    result = parse_import(text.encode(), "te-json", "csam")
    assert entries(result.columns) == {
        HashEntry("pdq", PDQ, "csam"), HashEntry("md5", MD5, "csam"),
        HashEntry("pdq", PDQ2, "csam"), HashEntry("sha1", SHA1, "csam"),
    }
    reasons = [reason for _, reason in result.problems]
    assert reasons[:2] == ["unsupported signal type 'URI'", "no signal type and hash found in the object"]
    assert result.rejected == (3 if shape == "lines" else 2)


def test_ncmec_with_a_header() -> None:
    text = f'"ID","MD5 Hash","SHA-1","Notes"\n1,{MD5},{SHA1},x\n2,,{SHA1.upper()},\n3,,,empty\n4,{MD5[:-1]},,\n'
    result = parse_import(text.encode(), "ncmec", "csam")
    assert entries(result.columns) == {HashEntry("md5", MD5, "csam"), HashEntry("sha1", SHA1, "csam")}
    assert result.problems == [(4, "no hash in the MD5/SHA-1/SHA-256 columns"), (5, "md5 hash must be 32 hex digits, got 31")]


def test_ncmec_without_a_header_tells_types_by_length() -> None:
    result = parse_import(f"{MD5}\n{SHA1}\t{SHA256}\nxyz\n".encode(), "ncmec", "csam")
    assert entries(result.columns) == {HashEntry("md5", MD5, "csam"), HashEntry("sha1", SHA1, "csam"), HashEntry("sha256", SHA256, "csam")}
    assert result.problems == [(3, "not an MD5, SHA-1 or SHA-256 hex digest: 'xyz'")]


def test_a_large_import_keeps_going_and_keeps_the_first_problems() -> None:
    lines = [SHA1 if i % 3 else f"bad line {i}" for i in range(600)]
    result = parse_import("\n".join(lines).encode(), "plain", "csam", hash_type="sha1")
    assert result.rejected == 200 and len(result.problems) == 50
    assert len(result.columns) == 400


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        parse_import(b"", "xml", "csam")


def test_write_appends_only_new_entries_atomically(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(f"type,hash,label\npdq,{PDQ},csam\n", encoding="utf-8")
    existing = read_hash_columns(path, "csam")
    imported = parse_import(f"type,hash,label\npdq,{PDQ},\npdq,{PDQ2},\nmd5,{MD5},ncii\npdq,{PDQ2},\n".encode(), "modbot", "csam")
    added = columns_difference(imported.columns, existing)
    assert entries(added) == {HashEntry("pdq", PDQ2, "csam"), HashEntry("md5", MD5, "ncii")}
    assert write_list_file(path, existing, added, default_label="csam") == 2
    parsed = parse_hash_list(path.read_text(encoding="utf-8"), "csam")
    assert parsed.errors == () and set(parsed.entries) == {
        HashEntry("pdq", PDQ, "csam"), HashEntry("pdq", PDQ2, "csam"), HashEntry("md5", MD5, "ncii")
    }
    assert [p.name for p in tmp_path.iterdir()] == ["l.csv"]  # no temporary file left


def test_write_to_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_text(f"pdq:{PDQ}\n", encoding="utf-8")
    existing = read_hash_columns(path, "csam")
    same_label = HashColumns.from_entries([HashEntry("md5", MD5, "csam")])
    write_list_file(path, existing, same_label, default_label="csam")
    assert path.read_text(encoding="utf-8") == f"pdq:{PDQ}\nmd5:{MD5}\n"
    other_label = HashColumns.from_entries([HashEntry("sha1", SHA1, "ncii")])
    write_list_file(path, read_hash_columns(path, "csam"), other_label, default_label="csam")
    assert set(parse_hash_list(path.read_text(encoding="utf-8"), "csam").entries) == {
        HashEntry("pdq", PDQ, "csam"), HashEntry("md5", MD5, "csam"), HashEntry("sha1", SHA1, "ncii")
    }


def test_replace_and_export_formats(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(f"type,hash,label\npdq,{PDQ},csam\n", encoding="utf-8")
    new = HashColumns.from_entries([HashEntry("md5", MD5, "a, b")])
    write_list_file(path, read_hash_columns(path, "x"), new, default_label="x", replace=True)
    assert path.read_text(encoding="utf-8") == f'type,hash,label\nmd5,{MD5},"a, b"\n'
    assert "".join(format_entries(new, "plain")) == f"md5:{MD5}\n"
    te = "".join(format_entries(new, "te-csv"))
    assert te == f'signal_type,signal_str,collab,category,tags\nvideo_md5,{MD5},,,"a, b"\n'
    back = parse_import(te.encode(), "te-csv", "x")
    assert entries(back.columns) == {HashEntry("md5", MD5, "x")}


def test_an_import_of_a_modbot_list_carries_its_signatures_over(tmp_path: Path) -> None:
    # `lowfreq` rows (smooth images' signatures, written by `hashes add-image`) are not hashes
    # of fixed width; the ones the list lacks are added like any other entry.
    old_sig = bytes([127, *range(1, 36)]).hex()
    new_sig = bytes([0x81, *range(2, 37)]).hex()  # -127 first
    path = tmp_path / "l.csv"
    path.write_text(f"type,hash,label\nlowfreq,{old_sig},csam\n", encoding="utf-8")
    existing = read_hash_columns(path, "csam")
    imported = parse_import(f"type,hash,label\nlowfreq,{old_sig},\nlowfreq,{new_sig},\npdq,{PDQ},\n".encode(), "modbot", "csam")
    added = columns_difference(imported.columns, existing)
    assert entries(added) == {HashEntry("lowfreq", new_sig, "csam"), HashEntry("pdq", PDQ, "csam")}
    assert write_list_file(path, existing, added, default_label="csam") == 2
    parsed = parse_hash_list(path.read_text(encoding="utf-8"), "csam")
    assert parsed.errors == () and HashEntry("lowfreq", new_sig, "csam") in set(parsed.entries)

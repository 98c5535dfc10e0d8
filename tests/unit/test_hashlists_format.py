"""The hash list file format: CSV with a header, or plain `type:hex` lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.lists.format import HashEntry, ParsedList, append_entries, parse_hash_list, read_hash_list

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5 = "098f6bcd4621d373cade4e832627b4f6"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PHASH = "d1c4a6b3e8f09c2a"


def test_csv_with_labels_and_defaults() -> None:
    text = f"""\
# exported 2024-05-01
type,hash,label
sha256,{SHA256.upper()},csam

md5,{MD5},
pdq,{PDQ},"terror, violent"
phash,{PHASH}
"""
    assert parse_hash_list(text, "default") == ParsedList(
        entries=(
            HashEntry("sha256", SHA256, "csam"),  # upper-case hex is stored lower-case
            HashEntry("md5", MD5, "default"),  # empty label -> the list's label
            HashEntry("pdq", PDQ, "terror, violent"),
            HashEntry("phash", PHASH, "default"),  # missing label column too
        ),
        errors=(),
    )


def test_plain_lines() -> None:
    text = f"""\
# one hash per line
sha256:{SHA256}
MD5:{MD5.upper()}

pdq:{PDQ}
   phash:{PHASH}
"""
    assert parse_hash_list(text, "csam") == ParsedList(
        entries=(
            HashEntry("sha256", SHA256, "csam"),
            HashEntry("md5", MD5, "csam"),
            HashEntry("pdq", PDQ, "csam"),
            HashEntry("phash", PHASH, "csam"),
        ),
    )


def test_bad_csv_rows_are_reported_with_line_numbers_and_the_rest_loaded() -> None:
    text = f"""\
type,hash,label
sha512,{SHA256},csam
sha256,{SHA256[:-1]},csam
md5,{MD5[:-1]}z,csam
pdq,{PDQ},csam,crop,extra
sha256,{SHA256},csam
phash,{PHASH}0
"""
    parsed = parse_hash_list(text, "default")
    assert parsed.entries == (HashEntry("sha256", SHA256, "csam"),)
    assert parsed.errors == (
        (2, "unknown hash type 'sha512' (expected sha256, md5, sha1, pdq, phash, vpdq or lowfreq)"),
        (3, "sha256 hash must be 64 hex digits, got 63"),
        (4, "md5 hash is not hexadecimal"),
        (5, "expected 2 to 4 columns (type,hash,label,derived), got 5"),
        (7, "phash hash must be 16 hex digits, got 17"),
    )


def test_bad_plain_lines_are_reported_with_line_numbers() -> None:
    text = f"""\
sha256:{SHA256}
# comment
{SHA256}
sha256 {SHA256}
sha256:{SHA256} csam
sha256,{SHA256},csam
pdq:{PDQ[:32]}
"""
    parsed = parse_hash_list(text, "csam")
    assert parsed.entries == (HashEntry("sha256", SHA256, "csam"),)
    assert parsed.errors == (
        (3, "expected 'type:hex'"),
        (4, "expected 'type:hex'"),
        (5, "expected 'type:hex'"),
        (6, "expected 'type:hex' (a CSV list needs the header 'type,hash,label')"),
        (7, "pdq hash must be 64 hex digits, got 32"),
    )


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# only a comment\n", "type,hash,label\n", "\ufefftype,hash,label\n# none yet\n"],
    ids=["empty", "blank lines", "comment only", "header only", "BOM and header"],
)
def test_empty_lists(text: str) -> None:
    assert parse_hash_list(text, "csam") == ParsedList(entries=(), errors=())


def test_format_is_decided_by_the_first_meaningful_line() -> None:
    # A header further down is a bad plain line, not a switch to CSV.
    text = f"sha256:{SHA256}\ntype,hash,label\n"
    parsed = parse_hash_list(text, "csam")
    assert parsed.entries == (HashEntry("sha256", SHA256, "csam"),)
    assert [line for line, _ in parsed.errors] == [2]


def test_header_may_omit_label_and_use_any_case() -> None:
    parsed = parse_hash_list(f"Type, Hash\nsha256,{SHA256}\n", "csam")
    assert parsed == ParsedList(entries=(HashEntry("sha256", SHA256, "csam"),))


def test_windows_line_endings() -> None:
    parsed = parse_hash_list(f"type,hash,label\r\nmd5,{MD5},x\r\n", "csam")
    assert parsed == ParsedList(entries=(HashEntry("md5", MD5, "x"),))


def test_read_missing_file_is_an_empty_list_with_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert read_hash_list(path, "csam") == ParsedList(
        entries=(), errors=((0, f"file not found: {path}"),)
    )


def test_read_directory_is_an_error_not_an_exception(tmp_path: Path) -> None:
    parsed = read_hash_list(tmp_path, "csam")
    assert parsed.entries == ()
    assert len(parsed.errors) == 1 and parsed.errors[0][0] == 0


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"md5:{MD5}\n", encoding="utf-8")
    assert read_hash_list(path, "csam").entries == (HashEntry("md5", MD5, "csam"),)


def test_append_creates_a_csv_file_with_header(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    written = append_entries(
        path, [HashEntry("sha256", SHA256.upper(), "csam"), HashEntry("pdq", PDQ, "a, b")]
    )
    assert written == 2
    assert path.read_text(encoding="utf-8") == (
        f'type,hash,label\nsha256,{SHA256},csam\npdq,{PDQ},"a, b"\n'
    )
    assert read_hash_list(path, "default").entries == (
        HashEntry("sha256", SHA256, "csam"),
        HashEntry("pdq", PDQ, "a, b"),
    )


def test_append_skips_hashes_already_present(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"type,hash,label\nsha256,{SHA256},csam", encoding="utf-8")  # no final newline
    written = append_entries(
        path,
        [
            HashEntry("sha256", SHA256, "csam"),  # already there
            HashEntry("md5", MD5, "csam"),
            HashEntry("md5", MD5.upper(), "csam"),  # twice in one call
        ],
    )
    assert written == 1
    assert read_hash_list(path, "csam") == ParsedList(
        entries=(HashEntry("sha256", SHA256, "csam"), HashEntry("md5", MD5, "csam"))
    )
    assert append_entries(path, [HashEntry("md5", MD5, "csam")]) == 0


def test_append_to_a_comment_only_file_adds_the_header(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("# moderators' additions\n", encoding="utf-8")
    append_entries(path, [HashEntry("md5", MD5, "spam")])
    assert read_hash_list(path, "csam") == ParsedList(entries=(HashEntry("md5", MD5, "spam"),))


def test_append_to_a_plain_file_keeps_it_plain(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"sha256:{SHA256}\n", encoding="utf-8")
    assert append_entries(path, [HashEntry("md5", MD5, "csam")], default_label="csam") == 1
    assert path.read_text(encoding="utf-8") == f"sha256:{SHA256}\nmd5:{MD5}\n"


def test_append_refuses_labels_a_plain_file_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"sha256:{SHA256}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot record labels"):
        append_entries(path, [HashEntry("md5", MD5, "spam")], default_label="csam")
    assert path.read_text(encoding="utf-8") == f"sha256:{SHA256}\n"


@pytest.mark.parametrize(
    "entry",
    [
        HashEntry("sha512", "a" * 128, "csam"),  # type: ignore[arg-type]
        HashEntry("md5", "z" * 32, "csam"),
        HashEntry("md5", MD5, "two\nlines"),
    ],
    ids=["unknown type", "not hex", "label with newline"],
)
def test_append_rejects_invalid_entries(tmp_path: Path, entry: HashEntry) -> None:
    path = tmp_path / "list.csv"
    with pytest.raises(ValueError):
        append_entries(path, [entry])
    assert not path.exists()

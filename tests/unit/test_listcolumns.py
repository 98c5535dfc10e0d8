"""bot.lists.columns: list files read into arrays, accepting and rejecting what bot.lists.format does."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.lists.format import HashEntry, parse_hash_list
from bot.lists.columns import HashColumns, parse_hash_columns, read_hash_columns

R = random.Random(5)
LENGTHS = {"sha256": 64, "md5": 32, "sha1": 40, "pdq": 64, "phash": 16}


def hexdigits(n: int) -> str:
    return "".join(R.choice("0123456789abcdef") for _ in range(n))


def random_line(csv: bool) -> str:
    """A line as lists hold them: mostly canonical, some odd but valid, some broken."""
    hash_type = R.choice(list(LENGTHS))
    value = hexdigits(LENGTHS[hash_type])
    roll = R.random()
    if roll < 0.05:
        value = value[:-1]
    elif roll < 0.08:
        value = value[:-1] + "z"
    elif roll < 0.1:
        hash_type = hash_type.upper()
    elif roll < 0.12:
        hash_type = "sha512"
    elif roll < 0.15:
        value = value.upper()
    if csv:
        label = R.choice(["", "csam", "ncii", "spam", '"a, b"', " x ", "terror", "ünï", "a" * 40, None])
        line = f"{hash_type},{value}" + ("" if label is None else "," + label)
        if R.random() < 0.03:
            line += ",extra"
    else:
        line = f"{hash_type}:{value}"
        if R.random() < 0.03:
            line = " " + line
        if R.random() < 0.03:
            line += " csam"
    roll = R.random()
    if roll < 0.03:
        return "# comment " + line
    if roll < 0.05:
        return ""
    if roll < 0.06:
        return "   "
    return line


@pytest.mark.parametrize("trial", range(60))
def test_the_array_reader_agrees_with_the_line_parser(trial: int) -> None:
    csv = trial % 2 == 0
    lines = [random_line(csv) for _ in range(R.randint(0, 80))]
    if csv and trial % 10:
        lines.insert(R.randint(0, 2) if lines else 0, R.choice(["type,hash,label", "Type, Hash", "type,hash"]))
    newline = R.choice(["\n", "\r\n"])
    text = newline.join(lines) + (newline if R.random() < 0.5 else "")
    if trial % 7 == 0:
        text = "\ufeff" + text
    expected = parse_hash_list(text, "dflt")
    got = parse_hash_columns(text.encode(), "dflt")
    assert sorted(got.entries(), key=repr) == sorted(expected.entries, key=repr)
    assert got.errors == expected.errors


def test_counts_labels_and_read_from_file(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(
        "type,hash,label\n"
        f"pdq,{'a' * 64},csam\n"
        f"pdq,{'b' * 64},\n"
        f"sha1,{'c' * 40},ncii\n"
        f"md5,{'d' * 31}\n",
        encoding="utf-8",
    )
    columns = read_hash_columns(path, "default")
    assert columns.counts == {"sha256": 0, "md5": 0, "sha1": 1, "pdq": 2, "phash": 0}
    assert set(columns.entries()) == {
        HashEntry("pdq", "a" * 64, "csam"),
        HashEntry("pdq", "b" * 64, "default"),
        HashEntry("sha1", "c" * 40, "ncii"),
    }
    assert columns.errors == ((5, "md5 hash must be 32 hex digits, got 31"),)
    assert columns.signature is not None


def test_unreadable_files_are_one_error_on_line_0(tmp_path: Path) -> None:
    missing = read_hash_columns(tmp_path / "nope.csv", "x")
    assert len(missing) == 0 and missing.errors == ((0, f"file not found: {tmp_path / 'nope.csv'}"),)
    directory = read_hash_columns(tmp_path, "x")
    assert len(directory) == 0 and directory.errors[0][0] == 0


def test_from_entries_round_trip() -> None:
    entries = [HashEntry("phash", "0123456789abcdef", "spam"), HashEntry("sha256", "e" * 64, "csam")]
    assert set(HashColumns.from_entries(entries).entries()) == set(entries)


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int]] = []
    parse_hash_columns(f"md5:{'a' * 32}\nmd5:{'b' * 32}\n".encode(), "x", lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2)

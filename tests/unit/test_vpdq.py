"""vPDQ list entries: HMA's serialisation read and written, HMA's matching semantics, and
vPDQ rows in list files and imports.

The hashes here are random 256-bit values and their flips: matching only sees bits, and
random hashes are ~128 bits apart, so what matches is exactly what a test put close.
"""

from __future__ import annotations

import json
import random

import pytest

from pydantic import ValidationError

from bot.configdetect import HashListConfig
from bot.lists.columns import parse_hash_columns, read_hash_columns
from bot.lists.format import HashEntry, append_entries, parse_hash_list, remove_entries
from bot.lists.importers import format_entries, parse_import
from bot.lists.loaded import LoadedList, Thresholds, load_list
from bot.lists.videoindex import VideoEntry, VideoIndex
from bot.lists.vpdq import (
    DEFAULT_MAX_FRAMES,
    VpdqFrame,
    canonical,
    compare,
    parse_vpdq,
    signal_string,
)

rng = random.Random(14)


def random_hex() -> str:
    return f"{rng.getrandbits(256):064x}"


def flipped(hex_hash: str, bits: int) -> str:
    """`hex_hash` with its lowest `bits` bits inverted: exactly `bits` away."""
    return f"{int(hex_hash, 16) ^ ((1 << bits) - 1):064x}"


def video(n: int, quality: int = 100) -> tuple[VpdqFrame, ...]:
    return tuple(VpdqFrame(random_hex(), quality, float(i)) for i in range(n))


# --- the serialisation ------------------------------------------------------------------------


def test_the_signal_string_is_pythons_threatexchange_json_list_of_hex_quality_timestamp() -> None:
    frames = (VpdqFrame("a" * 64, 100, 0.0), VpdqFrame("b" * 64, 49, 1.5), VpdqFrame("c" * 64, 7, 1234.5))
    signal = signal_string(frames)
    # Timestamps as python-threatexchange writes them (format ".3": 3 significant digits).
    assert json.loads(signal) == [f"{'a' * 64},100,0.0", f"{'b' * 64},49,1.5", f"{'c' * 64},7,1.23e+03"]
    assert [(f.pdq, f.quality) for f in parse_vpdq(signal)] == [(f.pdq, f.quality) for f in frames]
    assert parse_vpdq(signal)[2].timestamp == 1230.0


def test_the_vpdq_tools_hash_files_and_the_older_json_object_are_read_too() -> None:
    a, b = random_hex(), random_hex()
    tool_file = f"0,100,{a},0.000\n1,87,{b},1.000\n"  # frame_number,quality,pdq_hex,timestamp
    binding_print = f"0,{a},100,0.0\n1,{b},87,1.0\n"  # the Python binding README's order
    older = json.dumps({"0": {"quality": 100, "hash": a, "timestamp": 0.0}, "1": {"quality": 87, "hash": b, "timestamp": 1.0}})
    expected = (VpdqFrame(a, 100, 0.0), VpdqFrame(b, 87, 1.0))
    assert parse_vpdq(tool_file) == parse_vpdq(binding_print) == parse_vpdq(older) == expected
    assert parse_vpdq(canonical(expected)) == expected  # modbot's own one-line form


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('["' + "g" * 64 + ',100,0"]', "64 hex digits"),
        ('["' + "a" * 64 + ',101,0"]', "within 0..100"),
        ('["' + "a" * 64 + ',100,-1"]', ">= 0"),
        ('["' + "a" * 64 + ',100,nan"]', ">= 0"),
        ('["' + "a" * 64 + ',100"]', "'hex,quality,timestamp'"),
        ("[]", "no frames"),
        ("[1, 2]", "JSON list of"),
        ("0,100," + "a" * 64, "frame_number,quality,pdq_hex,timestamp"),
    ],
)
def test_malformed_vpdq_hashes_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse_vpdq(text)


def test_an_entry_with_too_many_frames_is_refused() -> None:
    long = [VpdqFrame("a" * 64, 100, float(i)) for i in range(DEFAULT_MAX_FRAMES + 1)]
    with pytest.raises(ValueError, match=f"more than {DEFAULT_MAX_FRAMES} frames"):
        parse_vpdq(signal_string(long))
    assert len(parse_vpdq(signal_string(long[:-1]))) == DEFAULT_MAX_FRAMES


# --- matching ---------------------------------------------------------------------------------


def test_shares_are_of_frames_matched_both_ways_within_distance_31() -> None:
    entry = video(10)
    # The query: 4 of the entry's frames, re-encoded (within 31 bits), and one frame 32 bits off.
    query = tuple(VpdqFrame(flipped(f.pdq, 31), 90, f.timestamp) for f in entry[:4]) + (
        VpdqFrame(flipped(entry[4].pdq, 32), 90, 4.0),
    )
    result = compare(query, entry)
    assert (result.query_percent, result.compared_percent) == (80.0, 40.0)
    assert [(q.timestamp, c.timestamp, d) for q, c, d in result.pairs] == [(t, t, 31) for t in (0.0, 1.0, 2.0, 3.0)]
    assert result.matches()  # HMA's defaults: query >= 80%, compared >= 0%
    assert not result.matches(query_threshold=81)
    assert not result.matches(compared_threshold=41)


def test_frames_under_quality_50_are_ignored_and_repeated_hashes_count_once() -> None:
    entry = video(4)
    still = VpdqFrame(entry[0].pdq, 100, 0.0)
    # A still shown for 6 seconds is one frame; two dark frames (quality 49) do not count.
    query = tuple(VpdqFrame(still.pdq, 100, float(t)) for t in range(6)) + (
        VpdqFrame(random_hex(), 49, 6.0),
        VpdqFrame(random_hex(), 49, 7.0),
    )
    result = compare(query, entry)
    assert (result.query_percent, result.compared_percent) == (100.0, 25.0)
    assert compare(video(3, quality=49), entry).pairs == ()  # nothing left to compare: no match
    assert not compare(video(3, quality=49), entry).matches(0, 0)


def test_the_index_gives_the_same_answer_as_comparing_with_each_entry() -> None:
    entries = [video(rng.randint(1, 12)) for _ in range(30)]
    index = VideoIndex([VideoEntry(canonical(e), f"label{i}") for i, e in enumerate(entries)], 31,
                       query_percent=0.0, compared_percent=0.0)  # fmt: skip
    for _ in range(40):
        source = rng.choice(entries)
        query = tuple(
            VpdqFrame(flipped(f.pdq, rng.choice((0, 20, 31, 40))) if rng.random() < 0.8 else random_hex(), 80, f.timestamp)
            for f in source
        )
        found = {m.entry.label: m.comparison for m in index.search(query)}
        for i, entry in enumerate(entries):
            expected = compare(query, entry)
            if expected.pairs:
                got = found.pop(f"label{i}")
                assert (got.query_percent, got.compared_percent) == (expected.query_percent, expected.compared_percent)
                assert sorted((q.pdq, d) for q, _, d in got.pairs) == sorted((q.pdq, d) for q, _, d in expected.pairs)
        assert found == {}


# --- list files and imports -------------------------------------------------------------------


def test_a_vpdq_row_in_a_list_file_is_read_alike_by_both_readers() -> None:
    frames = video(3)
    text = f"type,hash,label\nvpdq,{canonical(frames)},csam\npdq,{random_hex()},\nvpdq,{'a' * 64}:100:0,\n"
    parsed = parse_hash_list(text, "known")
    columns = parse_hash_columns(text.encode(), "known")
    assert [e for e in parsed.entries if e.type == "vpdq"] == [e for e in columns.entries() if e.type == "vpdq"]
    assert [(v.label, parse_vpdq(v.text)) for v in columns.videos] == [
        ("csam", frames),
        ("known", (VpdqFrame("a" * 64, 100, 0.0),)),
    ]
    assert columns.counts["vpdq"] == 2 and columns.counts["pdq"] == 1
    plain = parse_hash_columns(f"vpdq:{canonical(frames)}\n".encode(), "known")
    assert [parse_vpdq(v.text) for v in plain.videos] == [frames]


def test_a_bad_vpdq_row_is_a_rejected_line_with_its_number() -> None:
    long = canonical([VpdqFrame("a" * 64, 100, float(i)) for i in range(DEFAULT_MAX_FRAMES + 1)])
    text = f"type,hash,label\nvpdq,{'a' * 64}:101:0,x\nvpdq,{long},x\n"
    columns = parse_hash_columns(text.encode(), "known")
    assert columns.videos == ()
    assert columns.errors == (
        (2, "vpdq frame quality must be within 0..100, got 101"),
        (3, f"vpdq hash has more than {DEFAULT_MAX_FRAMES} frames (the list's max_vpdq_frames)"),
    )


def test_a_lists_max_vpdq_frames_rejects_a_longer_entry_by_line_and_the_rest_of_the_list_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    short, long = video(3), video(6)
    sha = "ab" * 32
    path = tmp_path / "videos.csv"
    path.write_text(f"type,hash,label\nvpdq,{canonical(short)},csam\nvpdq,{canonical(long)},csam\nsha256,{sha},csam\n")
    config = HashListConfig(name="videos", path=str(path), max_vpdq_frames=5)

    loaded, report, _ = load_list(config, tmp_path)

    assert report.errors == ((3, "vpdq hash has more than 5 frames (the list's max_vpdq_frames)"),)
    assert loaded.index.counts["vpdq"] == 1 and loaded.index.counts["sha256"] == 1
    assert [parse_vpdq(v.text) for v in read_hash_columns(path, "csam", None, 5).videos] == [short]
    # The default (an hour at a frame a second) loads both; the key is bounded.
    assert load_list(HashListConfig(name="videos", path=str(path)), tmp_path)[0].index.counts["vpdq"] == 2
    assert HashListConfig(name="v", path="x").max_vpdq_frames == DEFAULT_MAX_FRAMES == 3600
    with pytest.raises(ValidationError, match="less than or equal to 86400"):
        HashListConfig(name="v", path="x", max_vpdq_frames=86_401)
    # An import into such a list rejects the entry the same way; removing entries from the
    # file reads a long entry whatever the cap.
    imported = parse_import(json.dumps([{"signal_type": "vpdq", "signal": signal_string(long)}]).encode(), "te-json",
                            "csam", max_vpdq_frames=5)
    assert (imported.rejected, imported.columns.videos) == (1, ())
    assert imported.problems == [(1, "vpdq hash has more than 5 frames (the list's max_vpdq_frames)")]
    assert remove_entries(path, [sha]) == 1 and canonical(long) in path.read_text()
    assert remove_entries(path, [canonical(long)]) == 1 and canonical(long) not in path.read_text()
    with pytest.raises(ValueError, match="more than 5 frames"):
        append_entries(path, [HashEntry("vpdq", canonical(video(7)), "csam")], max_vpdq_frames=5)


def test_appending_a_vpdq_entry_twice_writes_it_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "videos.csv"
    frames = video(5)
    entry = HashEntry("vpdq", canonical(frames), "csam")
    assert append_entries(path, [entry]) == 1
    assert append_entries(path, [HashEntry("vpdq", signal_string(frames), "csam")]) == 0  # the same frames
    lst = LoadedList.from_columns("videos", parse_hash_columns(path.read_bytes(), "csam"), label="csam")
    assert lst.index.counts["vpdq"] == 1


def test_hma_and_threatexchange_exports_import_and_export_again() -> None:
    frames = video(4)
    signal = signal_string(frames)
    cell = '"' + signal.replace('"', '""') + '"'
    te_csv = f"signal_type,signal_str,collab,category,tags\nvpdq,{cell},,,\npdq,{random_hex()},,,\n"
    te_lines = f"vpdq {signal} tag1\n"
    te_json = json.dumps([{"signal_type": "vpdq", "signal": signal}])
    tool = "\n".join(f"{i},{f.quality},{f.pdq},{f.timestamp:.3f}" for i, f in enumerate(frames))
    for fmt, data in (("te-csv", te_csv), ("te-lines", te_lines), ("te-json", te_json), ("vpdq-file", tool)):
        result = parse_import(data.encode(), fmt, "csam")
        assert result.rejected == 0, (fmt, result.problems)
        assert [parse_vpdq(v.text) for v in result.columns.videos] == [frames], fmt
    exported = "".join(format_entries(parse_import(te_csv.encode(), "te-csv", "csam").columns, "te-csv"))
    assert f"vpdq,{cell},,,csam\n" in exported


def test_list_thresholds_for_videos_default_to_hmas() -> None:
    assert (Thresholds().vpdq_query_percent, Thresholds().vpdq_compared_percent) == (80.0, 0.0)
    assert Thresholds.from_config({"pdq": 31, "vpdq_query_percent": 50}).vpdq_query_percent == 50.0
    with pytest.raises(ValueError, match="vpdq_query_percent must be within 0..100"):
        Thresholds(vpdq_query_percent=101)


def test_a_te_csv_field_over_csvs_limit_is_a_rejected_line_not_a_failed_import() -> None:
    huge = signal_string([VpdqFrame(random_hex(), 100, float(i)) for i in range(2000)])  # ~150 kB
    cell = '"' + huge.replace('"', '""') + '"'
    pdq = random_hex()
    result = parse_import(f"signal_type,signal_str\nvpdq,{cell}\npdq,{pdq}\n".encode(), "te-csv", "csam")
    assert result.problems == [(2, "malformed CSV: field larger than field limit (131072)")]
    assert [e.hash for e in result.columns.entries()] == [pdq]

"""Videos matched against vPDQ entries by the hash-list classifier, next to the image entries
their single frames still match. Clips are generated (bot.demo.samples.make_clip)."""

from __future__ import annotations

from functools import cache

from bot.act.notices import describe_verdict
from bot.classify.hashlist import HashListClassifier
from bot.demo.samples import encode, make_clip, make_photo
from bot.hashing import compute_hashes
from bot.lists.format import HashEntry
from bot.lists.loaded import LoadedList, Thresholds
from bot.lists.videoindex import video_frames
from bot.lists.vpdq import canonical, entry_id
from bot.model import Hashes, MatchKind
from PIL import Image


@cache
def picture(seed: int) -> Image.Image:
    return make_photo(seed, (480, 360))


@cache
def hashed(seeds: tuple[int, ...], seconds: float, *encoding: object) -> Hashes:
    return compute_hashes(make_clip([(picture(s), seconds) for s in seeds], *encoding))  # type: ignore[arg-type]


KNOWN = (41, 42, 43, 44)
ORIGINAL = hashed(KNOWN, 3)  # 12 s of four known scenes


def video_list(thresholds: Thresholds = Thresholds()) -> LoadedList:
    entry = HashEntry("vpdq", canonical(video_frames(ORIGINAL.frame_pdqs)), "csam")
    image = HashEntry("pdq", compute_hashes(encode(picture(50), "JPEG", quality=90)).pdq or "", "csam")
    return LoadedList.from_entries("videos", [entry, image], label="csam", thresholds=thresholds)


def test_a_re_encoded_copy_matches_the_entry_by_its_share_of_frames_both_ways() -> None:
    copy = hashed(KNOWN, 3, "mpeg4", "mp4", 15, (640, 480), 300_000)
    [verdict] = HashListClassifier([video_list()]).match(copy).verdicts
    assert (verdict.list_name, verdict.label, verdict.kind, verdict.hash_type) == ("videos", "csam", MatchKind.NEAR, "vpdq")
    assert verdict.matched_hash == entry_id(canonical(video_frames(ORIGINAL.frame_pdqs)))
    assert verdict.details["query_match_percent"] >= 80 and verdict.details["compared_match_percent"] >= 80
    assert [f["second"] for f in verdict.details["frames"]] == [float(s) for s in range(10)]  # the first ten listed
    assert verdict.details["frames_matched"] == len(copy.frame_pdqs)
    text = describe_verdict(verdict)
    assert text.startswith(f"list videos, label csam (video {verdict.matched_hash}: ")
    assert "of the video's frames and" in text and "frames at 0, 1, 2" in text


def test_a_trimmed_part_matches_and_unrelated_footage_does_not() -> None:
    trimmed = hashed(KNOWN[1:3], 3)  # the middle 6 s
    assert [v.hash_type for v in HashListClassifier([video_list()]).match(trimmed).verdicts] == ["vpdq"]
    [verdict] = HashListClassifier([video_list()]).match(trimmed).verdicts
    assert verdict.details["query_match_percent"] == 100.0 and verdict.details["compared_match_percent"] < 60
    unrelated = hashed((61, 62, 63, 64), 3)
    assert HashListClassifier([video_list()]).match(unrelated).verdicts == ()


def test_the_lists_share_thresholds_decide() -> None:
    trimmed = hashed(KNOWN[1:3], 3)
    strict = Thresholds(vpdq_compared_percent=60.0)
    assert HashListClassifier([video_list(strict)]).match(trimmed).verdicts == ()


def test_a_known_image_shown_inside_unrelated_video_still_matches_the_image_entry() -> None:
    inside = compute_hashes(make_clip([(picture(61), 3), (picture(50), 3), (picture(62), 3)]))
    verdicts = HashListClassifier([video_list()]).match(inside).verdicts
    assert [(v.hash_type, v.details.get("query")) for v in verdicts] == [("pdq", "frame")]
    assert 3 <= verdicts[0].details["second"] <= 5
    assert ", second " in describe_verdict(verdicts[0])

"""`modbot hashes add-video`: a video's vPDQ on a list, and what `modbot scan` then finds.

Clips are generated (bot.demo.samples.make_clip: benign photos panning slowly).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from bot.demo.samples import encode, make_clip, make_photo
from bot.lists.columns import read_hash_columns
from bot.lists.vpdq import parse_vpdq
from cli_kit import run

CONFIG = """\
homeserver:
  url: http://127.0.0.1:8008
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
hash_lists:
  - name: videos
    path: lists/videos.csv
    label: csam
"""


@cache
def known_clip(codec: str = "libx264", container: str = "mp4", fps: int = 10, size: tuple[int, int] = (480, 360)) -> bytes:
    """Eight seconds of three known photos."""
    return make_clip([(make_photo(seed, (480, 360)), 8 / 3) for seed in (21, 22, 23)], codec, container, fps, size)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "lists").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_add_video_lists_its_vpdq_and_a_re_encoded_copy_then_matches_it(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    original = write(tmp_path / "known.mp4", known_clip())
    argv = ["hashes", "add-video", str(original), "--list", "videos", "-c", str(config)]
    listed_at = config.parent / "lists" / "videos.csv"
    assert run(capsys, *argv) == (0, f"added 3 hashes to list videos ({listed_at})\n", "")  # sha256, md5, vpdq
    [video] = read_hash_columns(listed_at, "csam").videos
    assert video.label == "csam"
    assert [f.timestamp for f in parse_vpdq(video.text)] == [float(s) for s in range(9)]  # a frame a second (8.1 s)
    assert run(capsys, *argv)[1] == f"added 0 hashes to list videos ({listed_at})\n"  # already there

    copy = write(tmp_path / "copy.webm", known_clip("libvpx", "webm", 25, (320, 240)))
    unrelated = write(tmp_path / "other.mp4", make_clip([(make_photo(seed, (480, 360)), 3) for seed in (31, 32)]))
    code, out, _ = run(capsys, "scan", str(copy), str(unrelated), "--json", "-c", str(config))
    found, other = (json.loads(line) for line in out.splitlines())
    assert [(v["list"], v["label"], v["hash_type"]) for v in found["verdicts"]] == [("videos", "csam", "vpdq")]
    assert found["verdicts"][0]["matched_hash"].startswith("vpdq:")
    assert other["verdicts"] == []
    assert code == 0


def test_add_video_of_an_image_or_a_missing_file_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    image = write(tmp_path / "photo.jpg", encode(make_photo(3), "JPEG"))
    code, out, err = run(capsys, "hashes", "add-video", str(image), "--list", "videos", "-c", str(config))
    assert (code, out) == (2, "")
    assert err == f"modbot: {image}: not a video (an image, not a video)\n"
    code, _, err = run(capsys, "hashes", "add-video", str(tmp_path / "nope.mp4"), "--list", "videos", "-c", str(config))
    assert code == 2 and "nope.mp4" in err
    code, _, err = run(capsys, "hashes", "add-video", str(image), "--list", "nope", "-c", str(config))
    assert code == 2 and err == "modbot: no hash list named 'nope' in the config (have: videos)\n"
    assert not (config.parent / "lists" / "videos.csv").exists()


def test_add_video_refuses_a_video_longer_than_the_lists_vpdq_entries_may_be(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    config.write_text(CONFIG + "    max_vpdq_frames: 5\n")
    original = write(tmp_path / "known.mp4", known_clip())  # 9 frames sampled
    code, out, err = run(capsys, "hashes", "add-video", str(original), "--list", "videos", "-c", str(config))
    assert (code, out) == (2, "")
    assert err == (
        f"modbot: {original}: 9 frames sampled, more than list videos's max_vpdq_frames (5); "
        "lower processing.max_video_frames or raise it\n"
    )
    assert not (config.parent / "lists" / "videos.csv").exists()

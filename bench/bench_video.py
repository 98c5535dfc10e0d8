"""Known images shown in videos, and known videos on vPDQ lists: how many clips modbot finds,
how many unrelated clips it matches by mistake, and what hashing video costs against a plain decode.

    python bench/bench_video.py [--known 20] [--unrelated 60] [--jobs 2]

Corpus, all benign and built in memory: known images are generated photos and landscapes
(bench_robustness's generators); each is put on an image list as a provider would (PDQ of
the original at full resolution, pdqhash) and shown for 3 s inside unrelated footage
(other seeds, each panning slowly), in several encodings:

- H.264/MP4 480x360 at 10 frames/s (the clip as first made);
- re-encoded: VP8/WebM 320x240 at 25 frames/s; MPEG-4 Part 2 640x480 at 15 frames/s at a
  low bitrate; H.264 at 24 frames/s, 854x480;
- trimmed: only 1.5 s of the known image, at the start of the clip.

Known videos (vPDQ): 12 s of four generated pictures, each panning; the list holds the vPDQ
of the original (H.264 480x360 10 fps) as `hashes add-video` writes it. Copies: the same
footage in each encoding above, trimmed to a part (seconds 3-9, and 4.5-10.5: a cut inside
a scene), and the whole video shown after 6 s of unrelated footage. Goal: >= 95% of the
re-encoded and trimmed copies found (HMA's rule: >= 80% of the copy's frames within 31
bits of the entry's), 0 unrelated clips matching a vPDQ entry.

Unrelated clips: 6 s of three other seeds each. Each clip goes through compute_hashes and
the real HashListClassifier, as the bot matches a post. Speed: seconds of video per
CPU-second for compute_hashes, and for a plain one-thread decode of every frame.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import pdqhash
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_robustness import make_landscape  # noqa: E402
from bot.classify.hashlist import HashListClassifier  # noqa: E402
from bot.demo.samples import encode_frames, make_photo  # noqa: E402
from bot.hashing import compute_hashes  # noqa: E402
from bot.lists.format import HashEntry  # noqa: E402
from bot.lists.loaded import LoadedList  # noqa: E402
from bot.lists.videoindex import video_frames  # noqa: E402
from bot.lists.vpdq import canonical, compare, parse_vpdq  # noqa: E402
from bot.model import Hashes  # noqa: E402

# name -> (codec, container, frames/s, size, bitrate or None)
ENCODINGS = {
    "H.264 480x360 10 fps": ("libx264", "mp4", 10, (480, 360), None),
    "VP8/WebM 320x240 25 fps": ("libvpx", "webm", 25, (320, 240), None),
    "MPEG-4 640x480 15 fps 300 kbit/s": ("mpeg4", "mp4", 15, (640, 480), 300_000),
    "H.264 854x480 24 fps": ("libx264", "mp4", 24, (854, 480), None),
}
TRIMMED = "trimmed: 1.5 s at the start"


def picture(kind: str, seed: int) -> Image.Image:
    return make_photo(seed, (640, 480)) if kind == "photo" else make_landscape(seed, (640, 480))


def clip(scenes: list[tuple[Image.Image, float]], encoding: tuple) -> bytes:  # type: ignore[type-arg]
    codec, container, fps, size, bitrate = encoding

    def frames() -> Iterator[np.ndarray]:
        for img, seconds in scenes:
            base = np.asarray(img.resize(size))
            for i in range(round(seconds * fps)):
                yield np.roll(base, i * 8 // fps, axis=1)  # a slow pan

    return encode_frames(frames(), codec, container, fps, size, bitrate)


def _known(args: tuple[str, int]) -> tuple[str, str, dict[str, Hashes]]:
    kind, seed = args
    known = picture(kind, seed)
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(known)))
    listed = np.packbits(bits.astype(np.uint8)).tobytes().hex()
    before, after = picture(kind, seed + 50_000), picture(kind, seed + 60_000)
    clips = {name: compute_hashes(clip([(before, 3), (known, 3), (after, 3)], enc)) for name, enc in ENCODINGS.items()}
    clips[TRIMMED] = compute_hashes(clip([(known, 1.5), (after, 3)], ENCODINGS["H.264 480x360 10 fps"]))
    return f"{kind}:{seed}", listed, clips


def footage(scenes: list[Image.Image], encoding: tuple, start: float = 0.0, end: float | None = None,  # type: ignore[type-arg]
            before: list[Image.Image] = ()) -> bytes:  # type: ignore[assignment]
    """Seconds [start, end) of 3 s scenes panning 8 px/s (the same footage at any frame rate and
    size: a trim is a cut of it), after 3 s scenes of `before` (other footage) if given."""
    codec, container, fps, size, bitrate = encoding
    end = 3.0 * len(scenes) if end is None else end
    times = [(img, t) for img in before for t in np.arange(0, 3, 1 / fps)]
    times += [(scenes[int(t // 3)], t % 3) for t in np.arange(start, end - 1e-9, 1 / fps)]
    resized: dict[int, np.ndarray] = {}
    frames = (
        np.roll(resized.setdefault(id(img), np.asarray(img.resize(size))), int(t * 8 * size[0] / 640), axis=1)
        for img, t in times
    )
    return encode_frames(frames, codec, container, fps, size, bitrate)


ORIGINAL = ENCODINGS["H.264 480x360 10 fps"]
TRIMS = {"trimmed: seconds 3-9": (3.0, 9.0), "trimmed: seconds 4.5-10.5": (4.5, 10.5)}
INSIDE = "after 6 s of unrelated footage"


def _known_video(seed: int) -> tuple[str, str, dict[str, Hashes]]:
    kind = "photo" if seed % 2 else "landscape"
    scenes = [picture(kind, 300_000 + 4 * seed + i) for i in range(4)]
    entry = canonical(video_frames(compute_hashes(footage(scenes, ORIGINAL)).frame_pdqs))
    copies = {name: compute_hashes(footage(scenes, enc)) for name, enc in ENCODINGS.items() if enc is not ORIGINAL}
    for name, (start, end) in TRIMS.items():
        copies[name] = compute_hashes(footage(scenes, ORIGINAL, start, end))
    other = [picture(kind, 400_000 + 2 * seed + i) for i in range(2)]
    copies[INSIDE] = compute_hashes(footage(scenes, ORIGINAL, before=other))
    return f"video:{seed}", entry, copies


def _unrelated(seed: int) -> Hashes:
    scenes = [(picture("photo" if seed % 2 else "landscape", 200_000 + 3 * seed + i), 2.0) for i in range(3)]
    return compute_hashes(clip(scenes, ENCODINGS["H.264 480x360 10 fps"]))


def _speed(seconds: int = 20) -> tuple[float, float]:
    data = clip([(picture("photo", 900 + k), 2) for k in range(seconds // 2)], ("libx264", "mp4", 30, (1280, 720), None))
    started = time.process_time()
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in c.decode(stream):
            pass
    decode = time.process_time() - started
    started = time.process_time()
    compute_hashes(data)
    hashing = time.process_time() - started
    return seconds / hashing, seconds / decode


def _report_videos(videos: list[tuple[str, str, dict[str, Hashes]]], unrelated: list[Hashes]) -> None:
    entries = [HashEntry("vpdq", entry, name) for name, entry, _ in videos]
    classifier = HashListClassifier([LoadedList.from_entries("videos", entries, label="videos")])
    print(f"\n# Known videos on a vPDQ list\n\n{len(videos)} known videos of 12 s on a list as their vPDQ "
          "(the original, H.264 480x360 10 fps); HMA's rule (query share >= 80%, compared >= 0%).\n")
    print("| copy | found | query share (median) | compared share (median) |")
    print("| --- | ---: | ---: | ---: |")
    names = [n for n in [*ENCODINGS, *TRIMS, INSIDE] if n in videos[0][2]]
    for copy in names:
        found, shares = [], []
        for name, entry, copies in videos:
            verdicts = [v for v in classifier.match(copies[copy]).verdicts if v.hash_type == "vpdq" and v.label == name]
            found.append(bool(verdicts))
            result = compare(video_frames(copies[copy].frame_pdqs), parse_vpdq(entry))
            shares.append((result.query_percent, result.compared_percent))
        q, c = np.median([s[0] for s in shares]), np.median([s[1] for s in shares])
        print(f"| {copy} | {100 * sum(found) / len(found):.1f}% | {q:.0f}% | {c:.0f}% |")
    cross = sum(len({v.label for v in classifier.match(h).verdicts} - {name}) for name, _, copies in videos for h in copies.values())
    false = [v for h in unrelated for v in classifier.match(h).verdicts]
    print(f"\nFalse video matches: {len(false)} among {len(unrelated)} unrelated clips; {cross} copies matched "
          "another known video.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--known", type=int, default=20)
    parser.add_argument("--unrelated", type=int, default=60)
    parser.add_argument("--videos", type=int, default=20, help="known videos on a vPDQ list")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    started = time.perf_counter()
    items = [("photo" if i % 2 else "landscape", 1000 + i) for i in range(args.known)]
    with ProcessPoolExecutor(args.jobs) as pool:
        known = list(pool.map(_known, items))
        unrelated = list(pool.map(_unrelated, range(args.unrelated)))
        videos = list(pool.map(_known_video, range(args.videos)))
    entries = [HashEntry("pdq", listed, name) for name, listed, _ in known]
    classifier = HashListClassifier([LoadedList.from_entries("known", entries, label="known")])

    print("# Known images shown in videos\n")
    print(f"{len(known)} known images on an image list (PDQ of each), each shown 3 s inside 9 s of "
          f"unrelated footage; {len(unrelated)} unrelated clips of 6 s.\n")
    print("| clip | found | frames sampled (median) |")
    print("| --- | ---: | ---: |")
    for name in [*ENCODINGS, TRIMMED]:
        found = [name_ in {v.label for v in classifier.match(clips[name]).verdicts} for name_, _, clips in known]
        frames = np.median([len(clips[name].frame_pdqs) for _, _, clips in known])
        print(f"| {name} | {100 * sum(found) / len(found):.1f}% | {frames:.0f} |")
    cross = sum(len({v.label for v in classifier.match(h).verdicts} - {name}) for name, _, clips in known for h in clips.values())
    false = [v for h in unrelated for v in classifier.match(h).verdicts]
    print(f"\nFalse matches: {len(false)} among {len(unrelated)} unrelated clips; {cross} clips matched "
          "another known image.")
    for v in false[:5]:
        print(f"- {v.label} at {v.distance} (second {v.details.get('second')})")
    _report_videos(videos, unrelated)
    hashing, decode = _speed()
    print(f"\nSpeed (20 s of 1280x720 H.264 at 30 frames/s, one core): compute_hashes {hashing:.1f} s of "
          f"video per CPU-second; plain decode of every frame {decode:.1f}.")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()

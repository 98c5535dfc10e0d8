"""Real images from Debian packages against the smooth-image rules: wallpapers and artwork.

    python bench/debian_images.py [--dir /tmp/modbot-debian-images] [--packages gnome-backgrounds desktop-base]

The generated corpus of bench_robustness.py is the benchmark; this checks its rules on
images nobody generated: the raster images (JPEG, PNG, WebP; 200 px or more a side,
reduced to 1,600 px) of Debian's `gnome-backgrounds` and `desktop-base` (wallpapers, many
of them smooth, light and dark variants of the same design, logos on plain grounds),
fetched with `apt-get download` (where apt works) and unpacked with `dpkg-deb -x`.

1. Each image as a known one, listed as a provider lists it (pdqhash of the original), and
   copied through bench_robustness.py's edits inside the goal for provider lists: the share
   of copies found, smooth (quality under 50) and textured, with the reliable-bits rule
   (bot/classify/reliablematch.py) and without it, and the copies that matched another
   image (light and dark variants of one wallpaper are near-duplicates: PDQ matches them
   with or without the rule; what counts is what the rule adds).
2. Each image as an unrelated one (as posted, JPEG q75, half size) against lists of the
   generated known images (bench_robustness.py's, 8 per family), provider and add-image:
   every verdict is a false match.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import bench_robustness as br  # noqa: E402
import bot.classify.hashlist as hashlist  # noqa: E402
from bot.classify.hashlist import HashListClassifier  # noqa: E402
from bot.demo.samples import encode  # noqa: E402
from bot.hashing import compute_hashes  # noqa: E402
from bot.lists.format import HashEntry  # noqa: E402
from bot.lists.loaded import LoadedList  # noqa: E402

MIN_SIDE = 200
MAX_SIDE = 1600


def fetch(directory: Path, packages: list[str]) -> Path:
    """The packages' files unpacked under directory/x (downloaded once)."""
    unpacked = directory / "x"
    if unpacked.is_dir():
        return unpacked
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *packages], cwd=directory, check=True, capture_output=True)
    for deb in directory.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    return unpacked


def images(root: Path) -> list[tuple[str, Image.Image]]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = Image.open(path)
                img.load()
                img = img.convert("RGB")
        except Exception:
            continue
        if min(img.size) >= MIN_SIDE:
            img.thumbnail((MAX_SIDE, MAX_SIDE))
            found.append((path.name, img))
    return found


def provider_entry(img: Image.Image, label: str) -> tuple[HashEntry, int]:
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(img)))
    return HashEntry("pdq", np.packbits(bits.astype(np.uint8)).tobytes().hex(), label), int(quality)


def as_known(known: list[tuple[str, Image.Image]]) -> None:
    entries, quality = [], {}
    for name, img in known:
        entry, quality[name] = provider_entry(img, name)
        entries.append(entry)
    classifier = HashListClassifier([LoadedList.from_entries("debian", entries, label="debian")])
    goal = [e for e in br.EDITS if e not in br.OUTSIDE_GOAL["provider"]]
    rng = np.random.default_rng(3)
    found: dict[bool, list[tuple[bool, bool]]] = {False: [], True: []}
    added_cross: list[str] = []
    per_edit: dict[tuple[str, bool, bool], list[bool]] = {}
    with_rule = hashlist.reliable_verdicts
    try:
        for name, img in known:
            smooth = quality[name] < 50
            for edit in goal:
                copy = compute_hashes(br.EDITS[edit](img, rng))
                others: dict[bool, set[str]] = {}
                for on in (False, True):
                    hashlist.reliable_verdicts = with_rule if on else (lambda *a, **k: iter(()))
                    labels = {v.label for v in classifier.match(copy).verdicts}
                    found[on].append((smooth, name in labels))
                    per_edit.setdefault((edit, smooth, on), []).append(name in labels)
                    others[on] = labels - {name}
                added_cross += [f"{name} ({edit}, quality {copy.pdq_quality}) -> {o}" for o in sorted(others[True] - others[False])]
    finally:
        hashlist.reliable_verdicts = with_rule
    smooth_count = sum(1 for name, _ in known if quality[name] < 50)
    print(f"## 1. {len(known)} Debian images as known ones ({smooth_count} under quality 50), {len(goal)} edits, provider list\n")
    print("| | smooth | textured |")
    print("|---|---:|---:|")
    for on in (False, True):
        rows = np.array(found[on])
        print(f"| reliable bits {'on' if on else 'off'} | {100 * rows[rows[:, 0], 1].mean():.1f} | {100 * rows[~rows[:, 0], 1].mean():.1f} |")
    print("\nPer edit, smooth off -> on: " + ", ".join(
        f"{e} {100 * np.mean(per_edit[e, True, False]):.0f} -> {100 * np.mean(per_edit[e, True, True]):.0f}" for e in goal if smooth_count))
    print(f"\nCopies matching another image because of the rule: {len(added_cross)}" + "".join(f"\n- {c}" for c in added_cross))


def as_unrelated(unrelated: list[tuple[str, Image.Image]], workdir: Path) -> None:
    items = [i for i in br.corpus(8, 0) if i.role == "known"]
    provider, hashed = [], []
    for item in items:
        if item.family == "skimage":
            data = encode(br.skimage_sample(str(item.seed)), "PNG")
        else:
            data = encode(br.GENERATORS[item.family](item.seed, item.size), "JPEG", quality=90)
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
        provider.append(provider_entry(rgb, item.name)[0])
        hashed.append(br.Hashed(item, data, "", 0, compute_hashes(data)))
    lists = {
        "provider": HashListClassifier([LoadedList.from_entries("provider", provider, label="known")]),
        "add-image": HashListClassifier([LoadedList.from_entries("add-image", br.add_image_entries(hashed, workdir), label="known")]),
    }
    queries = low = 0
    false: list[str] = []
    for name, img in unrelated:
        for how, data in (("as posted", encode(img, "PNG")), ("JPEG q75", encode(img, "JPEG", quality=75)),
                          ("half size", encode(img.resize((img.width // 2, img.height // 2)), "JPEG", quality=80))):
            hashes = compute_hashes(data)
            queries += 1
            low += int((hashes.pdq_quality if hashes.pdq_quality is not None else 100) < 50)
            for mode, classifier in lists.items():
                false += [f"{mode}: {name} ({how}, quality {hashes.pdq_quality}) matched {v.label} by {v.hash_type} at {v.distance}"
                          f" ({v.details.get('signal', 'bits')})" for v in classifier.match(hashes).verdicts]
    print(f"\n## 2. Debian images as unrelated ones: {queries} queries ({low} under quality 50) against {len(items)} generated known images\n")
    print(f"False matches: {len(false)}" + "".join(f"\n- {f}" for f in false))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "modbot-debian-images")
    parser.add_argument("--packages", nargs="+", default=["gnome-backgrounds", "desktop-base"])
    args = parser.parse_args()
    found = images(fetch(args.dir, args.packages))
    print(f"# Debian images ({', '.join(args.packages)}): {len(found)} of {MIN_SIDE} px or more a side\n")
    as_known(found)
    with tempfile.TemporaryDirectory() as workdir:
        as_unrelated(found, Path(workdir))


if __name__ == "__main__":
    main()

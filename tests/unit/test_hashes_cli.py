"""`modbot hashes import|export|stats|check|retro`, run in-process through `main`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import ImageOps

from bot.cli.hashes import ProgressBar
from bot.hashing import compute_hashes
from bot.model import Hashes
from bot.demo.samples import encode, make_photo
from cli_kit import run

CONFIG = """\
homeserver:
  url: http://127.0.0.1:8008
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
database:
  url: sqlite+aiosqlite:///modbot.db
hash_lists:
  - name: known
    path: lists/known.csv
    label: csam
"""
MD5 = "098f6bcd4621d373cade4e832627b4f6"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "lists").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


def test_import_adds_new_entries_and_reports_rejected_lines(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "ncmec.csv"
    source.write_text(f"MD5,SHA1\n{MD5},{SHA1}\nxyz,\n", encoding="utf-8")
    code, out, _ = run(capsys, "hashes", "import", str(source), "-c", str(config), "--list", "known", "--format", "ncmec")
    assert code == 0
    assert "2 entries, 1 lines rejected" in out and "line 3: md5 hash must be 32 hex digits, got 3" in out
    assert "added 2 entries (1 md5, 1 sha1) to list known" in out
    listed = (tmp_path / "lists" / "known.csv").read_text(encoding="utf-8")
    assert listed == f"type,hash,label\nmd5,{MD5},csam\nsha1,{SHA1},csam\n"

    code, out, _ = run(capsys, "hashes", "import", str(source), "-c", str(config), "--list", "known", "--format", "ncmec")
    assert code == 0 and "already holds every entry" in out

    code, out, _ = run(capsys, "hashes", "export", "-c", str(config), "--list", "known", "--format", "te-csv")
    assert code == 0 and out.splitlines()[1:] == [f"video_md5,{MD5},,,csam", f"sha1,{SHA1},,,csam"]


def test_import_of_an_unknown_list_or_missing_type(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "x.txt"
    source.write_text(MD5 + "\n", encoding="utf-8")
    code, _, err = run(capsys, "hashes", "import", str(source), "-c", str(config), "--list", "nope")
    assert code != 0
    code, _, err = run(capsys, "hashes", "import", str(source), "-c", str(config), "--list", "known", "--format", "plain")
    assert code == 2 and "--type" in err
    code, out, _ = run(capsys, "hashes", "import", str(source), "-c", str(config), "--list", "known", "--format", "plain", "--type", "md5", "--dry-run")
    assert code == 0 and "dry run: would add 1 entries" in out
    assert not (tmp_path / "lists" / "known.csv").exists()


def test_check_explains_matches_and_near_misses(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = make_photo(seed=11)
    listed = compute_hashes(encode(photo, "PNG"))
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\npdq,{listed.pdq},csam\n", encoding="utf-8")
    mirrored = tmp_path / "mirrored.jpg"
    mirrored.write_bytes(encode(ImageOps.mirror(photo), "JPEG", quality=90))
    other = tmp_path / "other.png"
    other.write_bytes(encode(make_photo(seed=12), "PNG"))
    code, out, _ = run(capsys, "hashes", "check", str(mirrored), str(other), "-c", str(config))
    assert code == 0
    first, second = out.split(f"{other}:")
    assert "MATCH: pdq" in first and "label csam distance" in first and "via variant" in first
    assert "nothing near" in second and "no match" in second


def test_check_says_a_crop_guess_over_the_threshold_matched_by_its_reliable_bits(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crop_kit import cut, jpeg, original_pdq

    photo = make_photo(34, (800, 600))
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\npdq,{original_pdq(photo)},csam\n", encoding="utf-8")
    cropped = tmp_path / "cropped.jpg"
    cropped.write_bytes(jpeg(cut(photo, 0.0375, 0.0375, 0.0375, 0.0375)))

    code, out, _ = run(capsys, "hashes", "check", str(cropped), "-c", str(config))

    assert code == 0 and "MATCH, its most reliable bits agreeing: pdq" in out, out
    assert "via crop guess (3.75% cut from each side)" in out


def test_check_names_the_listed_image_a_derived_entry_came_from(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = make_photo(seed=11)
    original = tmp_path / "original.png"
    original.write_bytes(encode(photo, "PNG"))
    assert run(capsys, "hashes", "add-image", str(original), "--list", "known", "-c", str(config))[0] == 0
    w, h = photo.size
    cropped = tmp_path / "cropped.jpg"  # 10% cut at each side: only the listed crop to 90% is near
    cropped.write_bytes(encode(photo.crop((w // 20, h // 20, w - w // 20, h - h // 20)), "JPEG", quality=90))
    code, out, _ = run(capsys, "hashes", "check", str(cropped), "-c", str(config))
    sha = compute_hashes(original.read_bytes()).sha256
    assert code == 0 and "MATCH: pdq" in out
    assert f"the entry is of the image's crop to 90%, centred (listed image sha256:{sha})" in out, out


def test_stats(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\nmd5,{MD5},ncii\nmd5,bad,x\n", encoding="utf-8")
    code, out, _ = run(capsys, "hashes", "stats", "-c", str(config), "--json")
    assert code == 0
    stats = json.loads(out)
    (known,) = stats["lists"]
    assert known["entries"]["md5"] == 1 and known["labels"] == {"ncii": 1} and known["rejected_lines"] == 1
    assert "error" in stats["history"]  # no database yet


def test_progress_bar_shows_only_after_a_second() -> None:
    stream = io.StringIO()
    bar = ProgressBar("x", stream, delay=1.0)
    bar(1, 10)
    assert stream.getvalue() == ""
    bar = ProgressBar("x", stream, delay=0.0)
    bar(10, 10)
    assert "100% 10/10" in stream.getvalue()


def posted_before(tmp_path: Path, hashes: Hashes) -> None:
    """The bot's database in tmp_path holds one event, $e in !r by @u, whose media
    mxc://example.org/m was hashed as `hashes`: the history `hashes retro` matches."""
    import asyncio

    from bot.model import MediaRef
    from bot.record.db import create_engine, migrate
    from bot.record.store import Store

    async def history() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
        await migrate(engine)
        store = Store(engine)
        event = {"event_id": "$e", "room_id": "!r:example.org", "sender": "@u:example.org", "type": "m.room.message"}
        await store.store_transaction("t", [event], lambda e: True)
        ref = MediaRef("mxc://example.org/m", "example.org", "m", "content.url")
        await store.link_event_media("$e", [ref])
        await store.record_media(ref, status="hashed", hashes=hashes)
        await engine.dispose()

    asyncio.run(history())


def test_retro_shows_what_the_history_holds_and_changes_nothing(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hashes = compute_hashes(encode(make_photo(seed=21), "PNG"))

    posted_before(tmp_path, hashes)
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\nsha1,{hashes.sha1},csam\n", encoding="utf-8")
    code, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert code == 0
    assert "list known: 1 entries not yet matched against the history (never matched: the whole list)" in out
    assert "mxc://example.org/m: sha1 distance 0, label csam; events: $e in !r:example.org by @u:example.org" in out
    code, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert "1 entries not yet matched" in out  # nothing was recorded


def test_retro_matches_low_quality_hashes_with_the_floor_the_bot_would_use(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A smooth image's hash (quality 20) and a list entry 10 bits from it: within the
    # low-quality bound by default, not matched under a floor of 50.
    pdq = "5a" * 32
    near = f"{int(pdq, 16) ^ 0x3FF:064x}"
    hashes = Hashes(sha256="ab" * 32, md5="cd" * 16, size=10, pdq=pdq, pdq_quality=20, pdq_queries=(pdq,))

    posted_before(tmp_path, hashes)
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\npdq,{near},csam\n", encoding="utf-8")
    _, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert "mxc://example.org/m: pdq distance 10, label csam" in out
    text = config.read_text()
    config.write_text(text + "classifiers:\n  - name: hashlist\n    settings: {pdq_min_quality: 50}\n")
    _, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert "mxc://example.org/m" not in out
    config.write_text(text + "hashlist:\n  pdq_min_quality: 50\n")
    _, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert "mxc://example.org/m" not in out


def test_retro_matches_each_list_with_the_floor_of_the_classifier_that_owns_it(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same entry, 10 bits from a smooth image's hash (quality 20), in two lists: one
    # matched by a classifier with a floor of 50, the other by one with no floor.
    pdq = "5a" * 32
    near = f"{int(pdq, 16) ^ 0x3FF:064x}"
    posted_before(tmp_path, Hashes(sha256="ab" * 32, md5="cd" * 16, size=10, pdq=pdq, pdq_quality=20, pdq_queries=(pdq,)))
    for name in ("known", "other"):
        (tmp_path / "lists" / f"{name}.csv").write_text(f"type,hash,label\npdq,{near},csam\n", encoding="utf-8")
    config.write_text(config.read_text() + "  - name: other\n    path: lists/other.csv\n" + (
        "classifiers:\n"
        "  - {name: strict, type: hashlist, settings: {lists: [known], pdq_min_quality: 50}}\n"
        "  - {name: lenient, type: hashlist, settings: {lists: [other], pdq_min_quality: 0}}\n"
    ))
    code, out, _ = run(capsys, "hashes", "retro", "-c", str(config))
    assert code == 0
    known, other = out.split("list other:")
    assert "mxc://example.org/m" not in known
    assert "mxc://example.org/m: pdq distance 10, label csam" in other


def test_retro_says_when_no_enabled_classifier_matches_a_list(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hashes = compute_hashes(encode(make_photo(seed=21), "PNG"))
    posted_before(tmp_path, hashes)
    (tmp_path / "lists" / "known.csv").write_text(f"type,hash,label\nsha1,{hashes.sha1},csam\n", encoding="utf-8")
    config.write_text(config.read_text() + "classifiers:\n  - {name: hashlist, type: hashlist, enabled: false}\n")

    code, out, _ = run(capsys, "hashes", "retro", "-c", str(config))

    assert code == 0
    assert "list known: no enabled hash-list classifier matches it" in out
    assert "mxc://example.org/m" not in out  # as the bot: not matched live, not matched here

"""The `modbot` command, run in-process through `main`, or as a process where exit codes matter."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import ImageOps

import bot
from bot.config import EXAMPLE_CONFIG, load_config
from bot.policy import DEFAULT_POLICY
from bot.demo.samples import encode, make_photo
from bot.lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS
from cli_kit import run

# What add-image writes for a photo: sha256, md5, pdq, phash, its low-frequency signature
# (bot/hashing/smoothsig.py; matched only for queries of PDQ quality under 50), one PDQ per
# central crop and one per brightening gain that clips the photo's highlights.
PHOTO_HASHES = 5 + len(ADD_IMAGE_CROPS) + len(ADD_IMAGE_GAINS)

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
homeserver:
  url: http://127.0.0.1:8008
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
hash_lists:
  - name: known
    path: lists/known.csv
  - name: other
    path: lists/other.csv
    label: spam
"""


def run_process(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def scan_json(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def example_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(EXAMPLE_CONFIG)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "lists").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def photo_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "photo.png"
    path.write_bytes(encode(make_photo(11, (320, 240)), "PNG"))
    return path


@pytest.fixture(scope="module")
def mirrored_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "mirrored.jpg"
    path.write_bytes(encode(ImageOps.mirror(make_photo(11, (320, 240))), "JPEG", quality=85))
    return path


# --- generate-registration ---------------------------------------------------------------------


def _tokens(path: Path) -> tuple[str, str]:
    loaded = load_config(path)
    return loaded.appservice.as_token, loaded.appservice.hs_token


def test_generate_registration_replaces_the_placeholder_tokens(
    capsys: pytest.CaptureFixture[str], example_config: Path, tmp_path: Path
) -> None:
    registration = tmp_path / "reg.yaml"
    code, out, _ = run(capsys, "generate-registration", "-c", str(example_config), "-r", str(registration))
    assert code == 0
    assert str(registration) in out and "modbot check" in out

    as_token, hs_token = _tokens(example_config)  # loads: the placeholders are gone
    assert as_token != hs_token and len(as_token) >= 40 and "CHANGE" not in as_token + hs_token
    # Nothing but the two token lines and the pre-send secret changed.
    secret = load_config(example_config).presend.antispam_secret
    assert len(secret) >= 40 and secret not in (as_token, hs_token)
    changed = [
        (old, new)
        for old, new in zip(EXAMPLE_CONFIG.splitlines(), example_config.read_text().splitlines(), strict=True)
        if old != new
    ]
    assert changed == [("  as_token: CHANGE_ME", f"  as_token: {as_token}"),
                       ("  hs_token: CHANGE_ME", f"  hs_token: {hs_token}"),
                       ('  antispam_secret: ""', f"  antispam_secret: {secret}")]
    # The modules block for homeserver.yaml, with that secret, for synapse-http-antispam.
    block = yaml.safe_load(out[out.index("modules:"):out.index("Next:")])
    assert block["modules"][0]["module"] == "synapse_http_antispam.HTTPAntispam"
    assert block["modules"][0]["config"]["authorization"] == secret
    # Joins are checked too (presend.check_joins, on by default), and fail open: the module
    # would otherwise refuse every join while modbot is down.
    assert block["modules"][0]["config"]["enabled_callbacks"] == ["check_event_for_spam", "user_may_join_room"]
    assert block["modules"][0]["config"]["fail_open"]["user_may_join_room"] is True

    assert stat.S_IMODE(registration.stat().st_mode) == 0o600
    reg = yaml.safe_load(registration.read_text())
    assert (reg["as_token"], reg["hs_token"]) == (as_token, hs_token)
    assert reg["url"] == "http://127.0.0.1:29330"
    assert reg["namespaces"]["users"] == [{"exclusive": True, "regex": r"^@modbot:example\.org$"}]

    # Run again: new tokens, config and registration still agree.
    assert run(capsys, "generate-registration", "-c", str(example_config), "-r", str(registration))[0] == 0
    again = _tokens(example_config)
    assert set(again).isdisjoint({as_token, hs_token})
    reg = yaml.safe_load(registration.read_text())
    assert (reg["as_token"], reg["hs_token"]) == again


def test_generate_registration_gives_different_tokens_each_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tokens = set()
    for n in range(2):
        path = tmp_path / f"config{n}.yaml"
        path.write_text(EXAMPLE_CONFIG)
        assert run(capsys, "generate-registration", "-c", str(path), "-r", str(tmp_path / f"reg{n}.yaml"))[0] == 0
        tokens.update(_tokens(path))
    assert len(tokens) == 4


def test_generate_registration_without_a_config_writes_the_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "new.yaml"
    code, out, _ = run(capsys, "generate-registration", "-c", str(path), "-r", str(tmp_path / "reg.yaml"))
    assert code == 0
    assert "wrote an example config" in out
    assert path.read_text().splitlines()[0] == EXAMPLE_CONFIG.splitlines()[0]
    assert "CHANGE_ME" not in path.read_text()
    load_config(path)


# --- refusing to start -----------------------------------------------------------------------


def test_check_with_placeholder_tokens_says_to_generate_a_registration(
    capsys: pytest.CaptureFixture[str], example_config: Path
) -> None:
    code, out, err = run(capsys, "check", "-c", str(example_config))
    assert code == 2
    assert "valid" not in out
    assert f"modbot generate-registration -c {example_config}" in err
    assert "as_token" in err and "hs_token" in err


def test_run_with_placeholder_tokens_exits_2_naming_generate_registration(example_config: Path, tmp_path: Path) -> None:
    proc = run_process("run", "-c", str(example_config), cwd=tmp_path)
    assert proc.returncode == 2
    assert "generate-registration" in proc.stderr
    assert f"{example_config}:24: appservice.as_token" in proc.stderr
    assert not (tmp_path / "modbot.db").exists()  # refused before touching anything


@pytest.mark.parametrize("where", ["inline", "policy_file"])
def test_an_invalid_policy_names_the_file_and_line(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path, where: str
) -> None:
    policy = "rules:\n  - name: typo\n    actions: [bann]\n"
    if where == "inline":
        config.write_text(CONFIG + "policy:\n" + "".join(f"  {line}\n" for line in policy.splitlines()))
        source, line = config, CONFIG.count("\n") + 4
    else:
        source, line = tmp_path / "policy.yaml", 3
        source.write_text(policy)
        config.write_text(CONFIG + "policy_file: policy.yaml\n")
    assert source.read_text().splitlines()[line - 1].strip() == "actions: [bann]"
    for command in (["check", "-c", str(config)], ["scan", str(config), "-c", str(config)]):
        code, out, err = run(capsys, *command)
        assert code == 2, command
        assert f"{source}:{line}:" in err
        assert "bann" in err
        assert out == "" or "valid" not in out


# --- scan ------------------------------------------------------------------------------------


def test_scan_without_config_gives_hashes_and_no_verdicts(
    capsys: pytest.CaptureFixture[str], photo_png: Path, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all")
    code, out, _ = run(capsys, "scan", str(photo_png), str(text), "--json")
    assert code == 0
    image, other = scan_json(out)

    assert image["file"] == str(photo_png)
    assert image["hashes"]["sha256"] == hashlib.sha256(photo_png.read_bytes()).hexdigest()
    assert image["hashes"]["md5"] == hashlib.md5(photo_png.read_bytes()).hexdigest()
    assert image["hashes"]["size"] == photo_png.stat().st_size
    assert len(image["hashes"]["pdq"]) == 64 and len(image["hashes"]["phash"]) == 16
    assert (image["hashes"]["width"], image["hashes"]["height"]) == (320, 240)
    assert image["hashes"]["perceptual_error"] is None
    assert "pdq_queries" not in image["hashes"]
    assert image["verdicts"] == []
    assert image["decision"] == {"rule": None, "actions": [], "dry_run": False}
    assert "error" not in image

    # Not an image: the cryptographic hashes are there, and why the perceptual ones are not.
    assert other["hashes"]["sha256"] == hashlib.sha256(b"not an image at all").hexdigest()
    assert other["hashes"]["pdq"] is None and other["hashes"]["phash"] is None
    assert "not an image" in other["hashes"]["perceptual_error"]
    assert other["verdicts"] == [] and "error" not in other


def test_scan_matches_images_added_to_a_hash_list(
    capsys: pytest.CaptureFixture[str], config: Path, photo_png: Path, mirrored_jpeg: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Elsewhere: list paths are relative to the config's directory, not the working one.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(capsys, "hashes", "add-image", str(photo_png), "--list", "known", "-c", str(config))
    assert code == 0
    assert f"added {PHOTO_HASHES} hashes to list known" in out
    assert (tmp_path / "lists" / "known.csv").exists()

    code, out, _ = run(capsys, "scan", str(photo_png), str(mirrored_jpeg), "--json", "-c", str(config))
    assert code == 0
    same, mirrored = scan_json(out)
    sha256 = hashlib.sha256(photo_png.read_bytes()).hexdigest()
    assert same["verdicts"] == [{
        "classifier": "hashlist", "list": "known", "label": "known", "kind": "exact",
        "hash_type": "sha256", "distance": 0, "matched_hash": sha256,
    }]
    [near] = mirrored["verdicts"]
    assert (near["list"], near["label"], near["kind"], near["hash_type"]) == ("known", "known", "near", "pdq")
    assert 0 <= near["distance"] <= 31
    assert near["matched_hash"] == same["hashes"]["pdq"]

    [rule] = DEFAULT_POLICY.rules
    actions = [a.kind.value + (":all" if a.scope == "all" else "") for a in rule.actions]
    assert actions == ["quarantine", "redact", "ban", "notify"]
    for result in (same, mirrored):
        assert result["decision"] == {"rule": rule.name, "actions": actions, "dry_run": False}


def test_scan_human_output_describes_the_match(
    capsys: pytest.CaptureFixture[str], config: Path, photo_png: Path
) -> None:
    assert run(capsys, "hashes", "add-image", str(photo_png), "--list", "known", "-c", str(config))[0] == 0
    code, out, _ = run(capsys, "scan", str(photo_png), "-c", str(config))
    assert code == 0
    assert f"{photo_png}: sha256 " in out
    assert "match: known label known exact sha256" in out
    assert "would quarantine, redact, ban, notify" in out


def test_scan_refuses_a_file_over_the_size_cap(config: Path, photo_png: Path, tmp_path: Path) -> None:
    config.write_text(CONFIG + "processing:\n  max_media_bytes: 1000\n")
    small = tmp_path / "small.txt"
    small.write_bytes(b"x" * 1000)
    proc = run_process("scan", str(photo_png), str(small), "--json", "-c", str(config), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    big, fits = scan_json(proc.stdout)
    assert big["file"] == str(photo_png)
    assert "size cap" in big["error"]
    assert "hashes" not in big
    # At the cap exactly is fine, and one file's error does not stop the others.
    assert "error" not in fits and fits["hashes"]["size"] == 1000


def test_scan_of_a_missing_file_is_an_error_entry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "scan", str(tmp_path / "nope.png"), "--json")
    assert code == 1
    [entry] = scan_json(out)
    assert entry["file"] == str(tmp_path / "nope.png") and entry["error"]


# --- hashes add-image -------------------------------------------------------------------------


def test_add_image_to_an_unknown_list_lists_the_configured_ones(
    capsys: pytest.CaptureFixture[str], config: Path, photo_png: Path
) -> None:
    code, out, err = run(capsys, "hashes", "add-image", str(photo_png), "--list", "nope", "-c", str(config))
    assert code == 2
    assert out == ""
    assert err.strip() == "modbot: no hash list named 'nope' in the config (have: known, other)"


def test_adding_the_same_image_twice_adds_nothing_the_second_time(
    capsys: pytest.CaptureFixture[str], config: Path, photo_png: Path, mirrored_jpeg: Path
) -> None:
    argv = ["hashes", "add-image", str(photo_png), "--list", "other", "-c", str(config)]
    assert run(capsys, *argv) == (0, f"added {PHOTO_HASHES} hashes to list other ({config.parent / 'lists' / 'other.csv'})\n", "")
    listed = (config.parent / "lists" / "other.csv").read_text()
    assert listed.splitlines()[0] == "type,hash,label,derived"
    assert {line.split(",")[0] for line in listed.splitlines()[1:]} == {"sha256", "md5", "pdq", "phash", "lowfreq"}
    # The image's own hashes, then its crops and brightened copy, each saying what it is of.
    own = [line for line in listed.splitlines()[1:] if line.endswith(",spam")]
    derived = [line for line in listed.splitlines()[1:] if not line.endswith(",spam")]
    assert len(own) == 5 and len(derived) == PHOTO_HASHES - 5
    assert all(line.startswith("pdq,") and (",spam,\"crop to " in line or ",spam,brightened x1.3; of sha256:" in line)
               for line in derived)

    assert run(capsys, *argv)[:2] == (0, f"added 0 hashes to list other ({config.parent / 'lists' / 'other.csv'})\n")
    assert (config.parent / "lists" / "other.csv").read_text() == listed

    # The same picture in other bytes is new to the list.
    code, out, _ = run(capsys, "hashes", "add-image", str(mirrored_jpeg), "--list", "other", "--label", "x",
                       "-c", str(config))
    assert code == 0 and f"added {PHOTO_HASHES} hashes" in out


def test_add_image_of_a_missing_file_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "hashes", "add-image", str(tmp_path / "nope.png"), "--list", "known", "-c", str(config))
    assert code == 2 and out == ""
    assert "nope.png" in err
    assert not (tmp_path / "lists" / "known.csv").exists()


def test_add_image_of_a_non_image_adds_only_cryptographic_hashes(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, out, _ = run(capsys, "hashes", "add-image", str(text), "--list", "known", "-c", str(config))
    assert code == 0 and "added 2 hashes" in out


# --- version ------------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "version") == (0, f"modbot {bot.__version__}\n", "")
    assert run(capsys, "--version") == (0, f"modbot {bot.__version__}\n", "")

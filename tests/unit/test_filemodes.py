"""Files with secrets or user data are created 0600, and `modbot check` warns about looser ones."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import EXAMPLE_CONFIG, load_config
from bot.demo.waiting import free_port
from bot.filemodes import loose_files, write_private
from bot.record.db import create_engine, migrate, sqlite_database_path
from bot.record.store import Store
from cli_kit import run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    # The umask most systems give a service: files come out 0644 unless modbot says otherwise.
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_write_private_creates_0600_and_tightens_an_existing_file_before_writing(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    write_private(new, "token: a\n")
    assert mode(new) == 0o600 and new.read_text() == "token: a\n"

    old = tmp_path / "old.yaml"
    old.write_text("a much longer old content that must not survive\n")
    old.chmod(0o644)
    write_private(old, "short\n")
    assert mode(old) == 0o600 and old.read_text() == "short\n"


def test_generate_registration_writes_config_and_registration_0600(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config, registration = tmp_path / "config.yaml", tmp_path / "registration.yaml"
    assert run(capsys, "generate-registration", "-c", str(config), "-r", str(registration))[0] == 0
    assert mode(config) == 0o600 and mode(registration) == 0o600


def test_generate_registration_tightens_an_existing_config_that_gets_new_tokens(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config, registration = tmp_path / "config.yaml", tmp_path / "registration.yaml"
    config.write_text(EXAMPLE_CONFIG)
    config.chmod(0o644)
    registration.write_text("old\n")
    registration.chmod(0o644)
    assert run(capsys, "generate-registration", "-c", str(config), "-r", str(registration))[0] == 0
    assert mode(config) == 0o600 and mode(registration) == 0o600
    assert "CHANGE_ME" not in config.read_text()


async def test_sqlite_database_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}"
    engine = create_engine(url)
    try:
        await migrate(engine)
        await Store(engine).audit("test", "ok", "a row, so that the WAL has something in it")
        files = {p.name: mode(p) for p in tmp_path.iterdir()}
    finally:
        await engine.dispose()
    assert {"modbot.db", "modbot.db-wal", "modbot.db-shm"} <= set(files)
    assert files == {name: 0o600 for name in files}


def test_report_export_to_a_file_is_0600(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(EXAMPLE_CONFIG.replace("CHANGE_ME", "secret-token"))
    out = tmp_path / "report.json"
    assert run(capsys, "report", "export", "-c", str(config), "-o", str(out))[0] == 0
    assert mode(out) == 0o600


LISTS_CONFIG = """\
homeserver: {{url: "http://127.0.0.1:{port}", domain: example.org}}
appservice: {{as_token: secret-as, hs_token: secret-hs}}
database: {{url: "sqlite+aiosqlite:///modbot.db"}}
hash_lists:
  - {{name: known, path: known.csv}}
policy_file: policy.yaml
"""


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A config with a registration, a database, a list and a policy file, all as tight as they should be."""
    config = tmp_path / "config.yaml"
    config.write_text(LISTS_CONFIG.format(port=free_port()))
    (tmp_path / "policy.yaml").write_text("rules: []\n")
    (tmp_path / "known.csv").write_text("type,hash,label\n")
    for name in ("registration.yaml", "modbot.db", "modbot.db-wal", "modbot-chain.key", "modbot-anchors.jsonl"):
        (tmp_path / name).write_text("")
    for name, m in (("config.yaml", 0o600), ("registration.yaml", 0o640), ("modbot.db", 0o600),
                    ("modbot.db-wal", 0o600), ("known.csv", 0o640), ("policy.yaml", 0o644),
                    ("modbot-chain.key", 0o600), ("modbot-anchors.jsonl", 0o600)):
        (tmp_path / name).chmod(m)
    return config


def findings(config_path: Path) -> dict[str, int]:
    config = load_config(config_path)
    found = loose_files(
        config, config_path=config_path, registration_path=config_path.parent / "registration.yaml",
        database=sqlite_database_path(config.database.url),
    )
    return {f.path.name: f.mode for f in found}


@pytest.mark.parametrize(
    ("name", "loose", "why"),
    [
        ("config.yaml", 0o640, "tokens: only modbot reads its config"),
        ("config.yaml", 0o644, "tokens readable by everyone"),
        ("registration.yaml", 0o644, "tokens: Synapse's group may read it, nobody else"),
        ("registration.yaml", 0o660, "a group that can write it can change the tokens"),
        ("modbot.db", 0o644, "events and user IDs"),
        ("modbot.db-wal", 0o604, "the WAL holds the same data as the database"),
        ("known.csv", 0o644, "hashes of abuse imagery"),
        ("known.csv", 0o660, "whoever writes a list can disable matching"),
        ("policy.yaml", 0o664, "whoever writes the policy decides what the bot does"),
        ("modbot-chain.key", 0o640, "whoever reads the chain key can forge incident rows"),
        ("modbot-anchors.jsonl", 0o644, "the anchors name incidents; whoever writes them can hide a rewrite"),
    ],
)
def test_looser_modes_are_found(setup: Path, name: str, loose: int, why: str) -> None:
    assert findings(setup) == {}, "the fixture's modes are all acceptable"
    (setup.parent / name).chmod(loose)
    assert findings(setup) == {name: loose}, why


def test_absent_files_are_not_findings(setup: Path) -> None:
    (setup.parent / "modbot.db-wal").unlink()
    (setup.parent / "registration.yaml").unlink()
    assert findings(setup) == {}


def test_check_warns_about_loose_modes_with_the_chmod_that_fixes_them(capsys: pytest.CaptureFixture[str], setup: Path) -> None:
    setup.chmod(0o644)
    (setup.parent / "modbot.db").chmod(0o644)
    code, out, _ = run(capsys, "check", "-c", str(setup))
    assert code == 1  # the homeserver is not reachable on that port; the warnings come first
    assert f"WARN  config {setup} is mode 0644, looser than 0600: its group and everyone can read it" in out
    assert f"fix: chmod 600 {setup}" in out
    assert f"WARN  database {setup.parent / 'modbot.db'} is mode 0644" in out
    assert "registration" not in out.split("homeserver")[0]

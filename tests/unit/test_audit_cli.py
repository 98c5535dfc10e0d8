"""`modbot audit verify`, the chain key made by `generate-registration`, and `modbot run`
refusing a keyed database whose key file is missing: as processes, where exit codes matter."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

from bot.config import EXAMPLE_CONFIG, load_config
from bot.record.evidence import AnchorFile, ChainAnchors, open_chain_key, read_chain_key
from bot.record.db import create_engine, migrate
from bot.record.moderation import ModerationStore

REPO_ROOT = Path(__file__).resolve().parents[2]


class Audit:
    async def audit(self, *_args: object, **_kw: object) -> None:
        return None


def modbot(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def configured(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "homeserver: {url: 'http://127.0.0.1:9', domain: example.org}\n"
        "appservice: {as_token: a-real-as-token, hs_token: a-real-hs-token, port: 9}\n"
        "database: {url: 'sqlite+aiosqlite:///modbot.db'}\n"
    )
    return path


def record_incidents(config_path: Path, count: int) -> None:
    """Incidents as the running bot records them: keyed, each head appended to the anchor file."""

    async def go() -> None:
        config = load_config(config_path)
        engine = create_engine(config.database.url)
        try:
            await migrate(engine)
            store = ModerationStore(engine)
            anchors = ChainAnchors(store, AnchorFile(config.incidents.anchor_file), Audit(), sender=lambda: None,
                                   management_room=lambda: None)
            store.use_chain_key(await open_chain_key(config.incidents.chain_key_file, store), on_incident=anchors.incident_recorded)
            for n in range(count):
                await store.append_incident(f"$event{n}", {"incident_type": "test", "n": n})
        finally:
            await engine.dispose()

    asyncio.run(go())


def sqlite(config_path: Path, statement: str) -> None:
    import sqlite3

    with sqlite3.connect(config_path.parent / "modbot.db") as conn:
        conn.execute(statement)


def test_generate_registration_makes_the_chain_key_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(EXAMPLE_CONFIG)
    first = modbot("generate-registration", "-c", str(path), "-r", str(tmp_path / "reg.yaml"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "modbot-chain.key"
    assert f"wrote the incident chain key {key_file} (mode 0600)" in first.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_chain_key(key_file)
    again = modbot("generate-registration", "-c", str(path), "-r", str(tmp_path / "reg.yaml"), cwd=tmp_path)
    assert again.returncode == 0 and "chain key" not in again.stdout
    assert read_chain_key(key_file) == key  # new tokens, never a new key


def test_verify_exits_0_when_intact_and_1_naming_the_missing_rows(tmp_path: Path) -> None:
    config = configured(tmp_path)
    record_incidents(config, 4)
    ok = modbot("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[0] == "4 incidents, chain intact"
    assert "management room: none configured, not checked" in ok.stdout
    sqlite(config, "DELETE FROM incidents WHERE id > 2")
    broken = modbot("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert broken.returncode == 1
    assert "incidents 3-4 missing: the anchor of " in broken.stdout
    assert broken.stdout.splitlines()[-1] == "EVIDENCE NOT INTACT"


def test_verify_with_an_unusable_key_file_exits_2(tmp_path: Path) -> None:
    config = configured(tmp_path)
    record_incidents(config, 1)
    (tmp_path / "modbot-chain.key").write_text("garbage\n")
    proc = modbot("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert proc.returncode == 2
    assert "does not hold a key" in proc.stderr


def test_run_refuses_a_keyed_database_whose_key_file_is_missing(tmp_path: Path) -> None:
    config = configured(tmp_path)
    record_incidents(config, 2)
    (tmp_path / "modbot-chain.key").unlink()
    proc = modbot("run", "-c", str(config), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "incidents.chain_key_file" in proc.stderr
    assert "is missing, but the database holds incidents keyed with it" in proc.stderr
    assert not (tmp_path / "modbot-chain.key").exists()

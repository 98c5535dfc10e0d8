"""Stopping the bot (bot/app.py), as `modbot run` does on SIGTERM: what was handed to the
database before the stop is committed by the time stop() returns, before the instance lock
is released; nothing waits in the database thread's queue to be dropped at exit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from bot.app import ModBot
from bot.config import load_config
from bot.record.db import migrate

CONFIG = """\
homeserver:
  url: http://127.0.0.1:9
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
database:
  url: sqlite+aiosqlite:///{db}
hash_lists:
  - name: known
    path: {path}
    label: csam
"""


def audit_messages(path: Path) -> list[str]:
    """What another process (the next bot) reads from the file now."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT message FROM audit ORDER BY id")]


async def test_a_write_queued_just_before_a_clean_stop_is_committed_when_stop_returns(tmp_path: Path) -> None:
    (tmp_path / "known.csv").write_text("type,hash,label\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "modbot.db", path=tmp_path / "known.csv"), encoding="utf-8")
    bot = ModBot(load_config(config), config_path=config)
    await migrate(bot.engine)
    # The endpoint is started, nothing else: stop() stops what is running (~2 ms here).
    await bot.appservice.start("127.0.0.1", 0)

    # The database thread is in a transaction that takes a while, and a write waits behind it.
    busy = asyncio.create_task(bot.store.runner.run(lambda conn: time.sleep(0.5)))
    await asyncio.sleep(0)
    write = asyncio.create_task(bot.store.audit("lists", "loaded", "written just before the stop"))
    await asyncio.sleep(0)
    assert audit_messages(tmp_path / "modbot.db") == []

    started = time.monotonic()
    await bot.stop()

    assert audit_messages(tmp_path / "modbot.db") == ["written just before the stop"]
    assert time.monotonic() - started < 5  # DATABASE_DRAIN_TIMEOUT bounds the wait
    await asyncio.gather(busy, write)  # each caller heard it was committed

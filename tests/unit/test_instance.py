"""One modbot per database: the instance lock (bot/record/instance.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.record.db import create_engine
from bot.record.instance import (
    AlreadyRunning,
    NoInstanceLock,
    PostgresAdvisoryLock,
    SqliteFileLock,
    instance_lock,
)

# Another process holding the lock: POSIX locks never conflict within one process, and
# that is how a second `modbot run` meets the first.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.record.instance import instance_lock

    async def main():
        lock = instance_lock(sys.argv[1])
        await lock.acquire()
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await lock.release()
        print("released", flush=True)

    asyncio.run(main())
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_the_lock_kind_follows_the_database_url(tmp_path: Path) -> None:
    assert isinstance(instance_lock(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"), SqliteFileLock)
    assert isinstance(instance_lock("sqlite+aiosqlite:///:memory:"), NoInstanceLock)
    assert isinstance(instance_lock("sqlite+aiosqlite://"), NoInstanceLock)
    lock = instance_lock("postgresql+asyncpg://modbot:secret@db.example/modbot")
    assert isinstance(lock, PostgresAdvisoryLock)
    assert "secret" not in lock.where  # the messages name the database, never its password
    file_lock = instance_lock(f"sqlite+aiosqlite:///file:{tmp_path / 'b.db'}?uri=true")
    assert isinstance(file_lock, SqliteFileLock) and file_lock.path == tmp_path / "b.db.lock"


# --- SQLite ------------------------------------------------------------------------------------


async def test_sqlite_second_process_is_refused_naming_the_holder(holder: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    url, proc = holder
    with pytest.raises(AlreadyRunning) as refused:
        await instance_lock(url).acquire()
    message = str(refused.value)
    assert "another modbot is already running" in message
    assert f"pid {proc.pid}" in message and str(tmp_path / "modbot.db.lock") in message
    assert stat.S_IMODE((tmp_path / "modbot.db.lock").stat().st_mode) == 0o600


async def test_sqlite_lock_is_free_again_after_a_clean_release(holder: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = holder
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    lock = instance_lock(url)
    await lock.acquire()
    assert lock.held
    await lock.release()


async def test_sqlite_lock_of_a_killed_process_is_not_stale(holder: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = holder
    proc.send_signal(signal.SIGKILL)  # a crash: no chance to release anything
    proc.wait(30)
    lock = instance_lock(url)
    await lock.acquire()
    assert lock.held
    await lock.release()


async def test_sqlite_lock_removed_while_running_is_reported_lost(tmp_path: Path) -> None:
    # Someone deletes the lock file: a new process would create a fresh one and lock it, so
    # this bot must no longer count on holding the lock.
    lock = instance_lock(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}", check_interval=0.05)
    told: list[str] = []
    lock.on_lost(lambda: told.append("lost"))
    await lock.acquire()
    await asyncio.sleep(0.2)
    assert not lock.lost.is_set()
    (tmp_path / "modbot.db.lock").unlink()
    await asyncio.wait_for(lock.lost.wait(), 10)
    assert told == ["lost"] and not lock.held
    await lock.release()


async def test_in_memory_sqlite_needs_no_lock() -> None:
    lock = instance_lock("sqlite+aiosqlite:///:memory:")
    await lock.acquire()
    await instance_lock("sqlite+aiosqlite:///:memory:").acquire()  # nothing shared between them
    await lock.release()


# --- PostgreSQL --------------------------------------------------------------------------------


async def test_postgres_second_instance_is_refused_naming_the_holder(fresh_postgres_url: str) -> None:
    # Advisory locks belong to sessions: two locks in one process conflict like two processes.
    first = instance_lock(fresh_postgres_url)
    await first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as refused:
            await instance_lock(fresh_postgres_url).acquire()
        message = str(refused.value)
        assert "another modbot is already running" in message
        assert "modbot (instance lock)" in message and "advisory lock" in message
    finally:
        await first.release()
    second = instance_lock(fresh_postgres_url)
    await second.acquire()  # released: free again
    await second.release()


async def test_postgres_locks_of_different_databases_do_not_conflict(postgres_url: str, fresh_postgres_url: str) -> None:
    one, other = instance_lock(postgres_url), instance_lock(fresh_postgres_url)
    await one.acquire()
    try:
        await other.acquire()
        await other.release()
    finally:
        await one.release()


async def test_postgres_session_killed_is_reported_lost_and_frees_the_lock(fresh_postgres_url: str) -> None:
    lock = instance_lock(fresh_postgres_url, check_interval=0.05)
    told: list[str] = []
    lock.on_lost(lambda: told.append("lost"))
    await lock.acquire()
    await asyncio.sleep(0.2)
    assert not lock.lost.is_set()
    engine = create_engine(fresh_postgres_url)
    try:
        async with engine.begin() as conn:
            killed = (
                await conn.execute(
                    text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'modbot (instance lock)' AND datname = current_database()")
                )
            ).scalar()
        assert killed == 1
        await asyncio.wait_for(lock.lost.wait(), 15)
        assert told == ["lost"] and not lock.held
        # The server dropped the lock with the session: a new instance may start.
        successor = instance_lock(fresh_postgres_url)
        await successor.acquire()
        await successor.release()
    finally:
        await engine.dispose()
        await lock.release()

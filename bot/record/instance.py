"""One modbot per database: a lock taken before anything else at start, held while it runs.

Two processes on one database would both act on every event (both ban, both notify). So
`modbot run` takes a lock tied to the database before it loads lists, migrates or opens its
endpoint, and refuses to start (exit status 3, saying who holds it) when another process has
it. The lock is watched while the bot runs; if it is lost, the bot stops (exit status 4).

- **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) on a dedicated
  connection, outside the pool, held for the life of the process. Advisory locks are per
  database, so two bots on two databases of one server do not conflict. The server drops
  the lock when the session ends, so a crashed bot never leaves a stale lock behind. A
  transaction-mode pooler (pgbouncer `pool_mode = transaction`) breaks session locks:
  connect modbot directly or through session pooling.
- **SQLite**: a POSIX record lock (`fcntl.lockf`) on a sidecar file next to the database,
  `<database>.lock`, created 0600. Not on the database file itself: SQLite holds its own
  POSIX locks there, and closing any other descriptor of that file would silently drop
  them. POSIX locks, unlike flock(2) locks, are not inherited by forked children, so a
  worker process that outlives a crashed bot cannot keep the lock; the kernel drops it
  when the process dies, whatever the cause. The file stays after a stop (removing it
  would race with a process that has just opened it); only the lock on it matters.

**When the lock is lost** (the PostgreSQL session dropped: server restart, network cut,
`pg_terminate_backend`; or the SQLite lock file removed or replaced) the bot stops rather
than re-acquiring. Between the loss and its detection (at most `check_interval` seconds)
another process may already have started and acted; taking the lock again afterwards
would not undo that, and a bot that finds the lock taken must stop anyway. A clean stop
loses nothing (events are stored before they are acknowledged; unfinished ones resume at
the next start), and a supervisor's restart (systemd `Restart=on-failure`) goes through
the start-up check again, which either takes the lock or refuses with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .db import sqlite_database_path

log = logging.getLogger("modbot.instance")

EXIT_ALREADY_RUNNING = 3  # `modbot run` refused: another process holds the database's lock
EXIT_LOCK_LOST = 4  # the lock was lost while running; the bot stopped

# The advisory lock's key: a fixed 64-bit number derived from a name, so that it is the same
# for every modbot version and unlikely to collide with another application's locks.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"modbot instance lock").digest()[:8], "big", signed=True)
CHECK_INTERVAL = 5.0  # seconds between checks that the lock is still held
CHECK_TIMEOUT = 10.0  # a check that hangs this long (network silently cut) counts as lost


class AlreadyRunning(Exception):
    """Another modbot process holds this database's instance lock."""


class InstanceLock:
    """The lock of one database. `acquire()` raises AlreadyRunning; `lost` is set if it goes."""

    def __init__(self, where: str, *, check_interval: float = CHECK_INTERVAL) -> None:
        self.where = where  # what the messages call the database
        self.check_interval = check_interval
        self.lost = asyncio.Event()
        self.held = False
        self._watch: asyncio.Task[None] | None = None
        self._on_lost: list[Callable[[], None]] = []

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._on_lost.append(callback)

    async def acquire(self) -> None:
        if self.held:
            return
        await self._acquire()
        self.held = True
        self.lost.clear()
        self._watch = asyncio.create_task(self._watch_loop(), name="instance-lock-watch")

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.held:
            self.held = False
            await self._release()

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                problem = await asyncio.wait_for(self._check(), CHECK_TIMEOUT)
            except asyncio.TimeoutError:
                problem = f"the check did not answer within {CHECK_TIMEOUT:.0f} s"
            except Exception as e:  # noqa: BLE001 - any failure of the check means the lock is gone
                problem = f"{type(e).__name__}: {e}"
            if problem is not None:
                log.error("lost the instance lock of %s (%s): stopping, so that two bots never act at once", self.where, problem)
                self.held = False
                self.lost.set()
                for callback in self._on_lost:
                    callback()
                return

    async def _acquire(self) -> None:
        raise NotImplementedError

    async def _release(self) -> None:
        raise NotImplementedError

    async def _check(self) -> str | None:
        """None while the lock is held; otherwise why it is not."""
        raise NotImplementedError


class NoInstanceLock(InstanceLock):
    """An in-memory SQLite database: no other process can open it, nothing to lock."""

    async def _acquire(self) -> None:
        return None

    async def _release(self) -> None:
        return None

    async def _check(self) -> str | None:
        return None


def _holder_record() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})


def _describe_holder(raw: str) -> str:
    try:
        holder: dict[str, Any] = json.loads(raw)
        return f"pid {holder['pid']} on {holder['host']}, running since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


class SqliteFileLock(InstanceLock):
    def __init__(self, database: Path, *, check_interval: float = CHECK_INTERVAL) -> None:
        super().__init__(str(database), check_interval=check_interval)
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    async def _acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise AlreadyRunning(
                f"another modbot is already running on the database {self.where}: "
                f"{_describe_holder(holder)} holds its lock file {self.path}. "
                "Stop it first; two bots on one database would act twice on every event."
            ) from None
        # Who holds it, for the message a second process gives; the lock, not this text, decides.
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_record().encode(), 0)
        self._fd = fd

    async def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    async def _check(self) -> str | None:
        assert self._fd is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} was removed"
        mine = os.fstat(self._fd)
        if (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
            return f"{self.path} was replaced by another file"
        return None


class PostgresAdvisoryLock(InstanceLock):
    def __init__(self, url: str, *, check_interval: float = CHECK_INTERVAL) -> None:
        parsed = make_url(url)
        super().__init__(parsed.render_as_string(hide_password=True), check_interval=check_interval)
        connect_args: dict[str, Any] = {}
        if parsed.drivername.endswith("+asyncpg"):
            # Named, so that pg_stat_activity (and the refusal message) shows what holds it.
            connect_args["server_settings"] = {"application_name": "modbot (instance lock)"}
        # Its own engine without a pool: the connection lives as long as the process, and
        # nothing else may ever be given it (or recycle it, which would drop the lock).
        self._engine: AsyncEngine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        self._conn: AsyncConnection | None = None
        self._classid = (ADVISORY_KEY >> 32) & 0xFFFFFFFF
        self._objid = ADVISORY_KEY & 0xFFFFFFFF

    async def _acquire(self) -> None:
        conn = await self._engine.connect()
        try:
            # Autocommit: the session must not sit idle in a transaction for days
            # (idle_in_transaction_session_timeout would end it, and the lock with it).
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})).scalar()
            if not got:
                holder = await self._holder(conn)
                raise AlreadyRunning(
                    f"another modbot is already running on the database {self.where}: {holder} holds its "
                    f"PostgreSQL advisory lock {ADVISORY_KEY}. "
                    "Stop it first; two bots on one database would act twice on every event."
                )
        except BaseException:
            await conn.close()
            await self._engine.dispose()
            raise
        self._conn = conn

    async def _holder(self, conn: AsyncConnection) -> str:
        row = (
            await conn.execute(
                text(
                    "SELECT a.pid, a.client_addr, a.application_name, a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1"
                ),
                {"classid": self._classid, "objid": self._objid},
            )
        ).first()
        if row is None:  # visible only to superusers or the same role: say what we know
            return "a session of another client"
        pid, addr, app, since = row
        return f"server process {pid} ({app or 'no application name'}, from {addr or 'a local socket'}, connected {since:%Y-%m-%d %H:%M:%S %Z})"

    async def _release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dead session has no lock left to release
                await self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        await self._engine.dispose()

    async def _check(self) -> str | None:
        assert self._conn is not None
        held = (
            await self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND classid = :classid AND objid = :objid AND objsubid = 1"
                ),
                {"classid": self._classid, "objid": self._objid},
            )
        ).scalar()
        return None if held else "the session no longer holds the advisory lock"


def instance_lock(database_url: str, *, check_interval: float = CHECK_INTERVAL) -> InstanceLock:
    """The instance lock for a database URL (as in `database.url`)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresAdvisoryLock(database_url, check_interval=check_interval)
    if url.get_backend_name() == "sqlite":
        database = sqlite_database_path(database_url)
        if database is None:
            return NoInstanceLock("an in-memory SQLite database", check_interval=check_interval)
        return SqliteFileLock(database, check_interval=check_interval)
    raise ValueError(f"no instance lock for {url.get_backend_name()} databases: use SQLite or PostgreSQL")

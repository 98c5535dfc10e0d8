"""Transactions of the hot path in one trip each to the database: a thread of their own
for an SQLite file, the async engine otherwise.

aiosqlite runs every DBAPI call (cursor, execute, fetch, close, commit, rollback) as a trip
from the event loop to its thread and back, and SQLAlchemy's adapter makes four or five of
them per statement: a media event's intake, media lookup and final commit took some 22
trips, ~4 ms of CPU per event on the 2-core test machine under load (bench/README.md).
`SqliteThreadRunner` runs a whole transaction as one function, on a plain sqlite3
connection to the same file with the same settings (WAL, synchronous=FULL, the same wait
for the write lock), in one thread: one trip per transaction, and those transactions
queue there in order. PostgreSQL and in-memory SQLite (which a second connection would not
see) run the same function through the async engine (`AsyncRunner`).

The function gets a SQLAlchemy Connection inside a transaction that commits when it
returns and rolls back when it raises; it must not await (it is not on the event loop).

Stopping: `drain(timeout)` lets the thread finish the transactions queued so far, waiting
at most `timeout` seconds; what is still queued then is abandoned with a log line, as a
crash would (nothing of it was acknowledged: its callers never heard back). The bot drains
before it disposes of the engine and releases its instance lock (bot/app.py), so a clean
stop commits what was handed to the database before another bot may start on it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from .db import SQLITE_BUSY_SECONDS, sqlite_database_path, sqlite_pragmas

log = logging.getLogger("modbot.record")

T = TypeVar("T")


class TransactionRunner(Protocol):
    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` in one transaction, committed before this returns."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Finish the transactions handed over so far within `timeout` seconds; whether all were."""
        ...


class AsyncRunner:
    """Through the async engine: a trip per DBAPI call, but any database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def drain(self, timeout: float) -> bool:
        # Each transaction runs in its caller's task, on the event loop: none waits in a
        # queue of this runner's, so none is left behind by stopping.
        return True


class SqliteThreadRunner:
    """An SQLite file's transactions, one trip each, in a thread of their own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # A thread and a queue of its own rather than an executor's: a concurrent Future,
        # its locks and its callbacks chained to an asyncio future cost the event loop more
        # than the hand-off itself (~20 us of CPU per transaction). One thread at a time
        # serves the queue; the lock orders its leaving (on close) against new work.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # Kept open between transactions: a checkout from the pool and its return (with a
        # rollback to reset it) cost more than many a transaction's statements.
        self._conn: Connection | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        # Not cancelled with its caller once under way: a transaction completes (or not) as
        # a whole, like one interrupted by a crash. One still waiting is dropped.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None:
                # A daemon, so that a database that hangs cannot hold the process after a
                # stop: a clean stop drains the queue first (bounded by drain's timeout);
                # what is queued when the process exits otherwise is dropped as in a crash
                # (its callers never heard back: nothing of it was acknowledged).
                self._thread = threading.Thread(target=self._serve, name="modbot-db", daemon=True)
                self._thread.start()
            self._jobs.put((loop, future, work))
        return await future

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:  # close(): leave, unless work came in after it
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        self._disconnect()
                        return
                continue
            loop, future, work = job
            if future.cancelled():
                continue
            result, error = None, None
            try:
                result = self._transaction(work)
            except BaseException as e:  # handed to the caller, as an executor would
                error = e
            _tell(job, error, result)

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self.engine.connect()
        try:
            with conn.begin():
                return work(conn)
        except BaseException:
            if conn.in_transaction():  # a commit or rollback that failed itself: start afresh
                self._conn = None
                conn.close()
            raise

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.engine.dispose()

    async def drain(self, timeout: float) -> bool:
        """Close once the transactions queued so far are done, waiting `timeout` seconds at
        most; False, with a log line, when some were still queued or running then."""
        with self._lock:
            thread = self._thread
            if thread is None:
                self._disconnect()
                return True
            self._jobs.put(None)  # after what is queued: the thread closes the connection as it leaves
        # Joined from another thread: the loop stays free, though the thread needs nothing of it.
        await asyncio.to_thread(thread.join, timeout)
        if not thread.is_alive():
            return True
        # Abandoned: taken off the queue, so that the thread leaves once the transaction it
        # is in ends, and their callers (if still waiting) told rather than left waiting.
        abandoned = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None and not job[1].cancelled():
                abandoned += 1
                _tell(job, DatabaseStopped(f"not run: the database thread was stopped after {timeout:g} s"))
        self._jobs.put(None)
        log.warning(
            "the database thread did not finish in %g s: the transaction under way is left to end by itself, "
            "%d queued are abandoned (as in a crash: none was acknowledged)", timeout, abandoned,
        )
        return False

    def close(self, *_args: Any) -> None:
        """Close the connection once the transactions queued so far are done (a later
        transaction opens it again)."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)  # the thread closes it as it leaves
                return
            self._disconnect()


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[Connection], Any]]


class DatabaseStopped(Exception):
    """A transaction abandoned by `drain`: it was never run."""


def _tell(job: _Job, error: BaseException | None, result: Any = None) -> None:
    """From any thread: the outcome to the job's caller, on its event loop."""
    loop, future, _ = job
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the caller's event loop is closed: nobody is waiting
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the event loop: the transaction's outcome to its caller, unless the caller is gone."""
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def transaction_runner(engine: AsyncEngine) -> TransactionRunner:
    """The runner for `engine`'s database; an SQLite file's connection closes with `engine`'s."""
    if engine.dialect.name != "sqlite" or sqlite_database_path(engine.url.render_as_string(False)) is None:
        return AsyncRunner(engine)
    direct = create_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        # One thread uses it, so one connection; sqlite3 checks the thread that made it.
        poolclass=StaticPool,
        connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
    )
    event.listen(direct, "connect", sqlite_pragmas)
    runner = SqliteThreadRunner(direct)
    event.listen(engine.sync_engine, "engine_disposed", runner.close)
    return runner

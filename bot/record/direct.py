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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from .db import SQLITE_BUSY_SECONDS, sqlite_database_path, sqlite_pragmas

T = TypeVar("T")


class TransactionRunner(Protocol):
    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` in one transaction, committed before this returns."""
        ...


class AsyncRunner:
    """Through the async engine: a trip per DBAPI call, but any database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def run(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)


class SqliteThreadRunner:
    """An SQLite file's transactions, one trip each, in a thread of their own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="modbot-db")
        # Kept open between transactions: a checkout from the pool and its return (with a
        # rollback to reset it) cost more than many a transaction's statements.
        self._conn: Connection | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        # Not cancelled with its caller: a transaction under way completes (or not) as a
        # whole, like one interrupted by a crash.
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, work)

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

    def close(self, *_args: Any) -> None:
        """Close the connection (a later transaction opens it again)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.engine.dispose()


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

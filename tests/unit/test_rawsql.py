"""The hot path's statements on SQLite's own cursor (bot/record/rawsql.py): on an SQLite file
they run on the sqlite3 driver, elsewhere through Core, and either way they store the same
rows, count the same inserts and fail with SQLAlchemy's errors.

Every test runs against an SQLite file (the driver) and a real PostgreSQL (Core).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.record.db import create_engine, migrate
from bot.record.direct import TransactionRunner, transaction_runner
from bot.record.rawsql import Hot, driver
from bot.record.tables import AuditRow, EventMediaRow, TransactionRow


@pytest.fixture
async def runner(database_url: str) -> AsyncIterator[TransactionRunner]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield transaction_runner(engine)
    finally:
        await engine.dispose()


def audit(n: int) -> dict[str, Any]:
    return {"ts": float(n), "category": "scan", "outcome": "ok", "message": f"row {n}",
            "event_id": None, "room_id": None, "sender": None, "mxc": None}


async def test_an_sqlite_file_runs_them_on_the_driver_and_postgresql_on_core(database_url: str, runner: TransactionRunner) -> None:
    on_driver = await runner.run(lambda conn: driver(conn) is not None)
    assert on_driver == database_url.startswith("sqlite")
    if on_driver:
        assert isinstance(await runner.run(driver), sqlite3.Connection)


async def test_rows_written_either_way_read_back_the_same(runner: TransactionRunner) -> None:
    write = Hot(insert(AuditRow.__table__))
    assert await runner.run(lambda conn: write.execute(conn, audit(1))) == 1
    assert await runner.run(lambda conn: write.execute(conn, [audit(2), audit(3)])) in (2, -1)  # Core may not count
    assert await runner.run(lambda conn: write.execute(conn, [])) == 0

    def read(conn: Connection) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(select(AuditRow.ts, AuditRow.message).order_by(AuditRow.ts))]

    assert await runner.run(read) == [(1.0, "row 1"), (2.0, "row 2"), (3.0, "row 3")]


async def test_inserted_names_only_the_rows_that_were_not_there_before(runner: TransactionRunner) -> None:
    table = TransactionRow.__table__
    statement = _txn_insert(runner)
    rows = [{"txn_id": f"t{n}", "received_at": 1.0, "event_count": 1} for n in range(3)]
    assert await runner.run(lambda conn: statement.inserted(conn, rows[:2], "txn_id")) == {"t0", "t1"}
    assert await runner.run(lambda conn: statement.inserted(conn, rows, "txn_id")) == {"t2"}
    assert await runner.run(lambda conn: statement.inserted(conn, [], "txn_id")) == set()
    assert await runner.run(lambda conn: len(conn.execute(select(table)).all())) == 3


def _txn_insert(runner: TransactionRunner) -> Hot:
    """The intake's insert of a transaction id, in the database's own dialect."""
    dialect = getattr(runner, "engine").dialect.name  # either runner keeps its engine
    build = postgresql.insert if dialect == "postgresql" else sqlite.insert
    plain = build(TransactionRow.__table__).on_conflict_do_nothing(index_elements=["txn_id"])
    return Hot(plain.returning(TransactionRow.__table__.c.txn_id), plain)


async def test_a_failing_statement_raises_sqlalchemys_error_and_rolls_back_its_transaction(
    runner: TransactionRunner,
) -> None:
    link = Hot(insert(EventMediaRow.__table__))
    write = Hot(insert(AuditRow.__table__))

    def audit_then_break(conn: Connection) -> None:
        write.execute(conn, audit(1))
        # No such event: the foreign key refuses the link.
        link.execute(conn, {"event_id": "$missing", "mxc": "mxc://example.org/a", "source": "content.url"})

    with pytest.raises(IntegrityError):
        await runner.run(audit_then_break)
    assert await runner.run(lambda conn: conn.execute(select(AuditRow)).all()) == []
    # The connection is fine afterwards.
    assert await runner.run(lambda conn: write.execute(conn, audit(2))) == 1


async def test_a_select_reads_mappings_either_way(runner: TransactionRunner) -> None:
    write = Hot(insert(AuditRow.__table__))
    await runner.run(lambda conn: write.execute(conn, [audit(1), audit(2)]))
    by_ts = Hot(select(AuditRow.__table__).where(AuditRow.__table__.c.ts == bindparam("b_ts")))
    rows = await runner.run(lambda conn: by_ts.rows(conn, {"b_ts": 2.0}))
    assert [(r["message"], r["outcome"]) for r in rows] == [("row 2", "ok")]
    assert await runner.run(lambda conn: by_ts.rows(conn, {"b_ts": 9.0})) == []


async def test_values_the_statement_carries_itself_are_written_with_each_row(runner: TransactionRunner) -> None:
    # Like an action's outcome, which sets owner=None and binds the rest.
    table = AuditRow.__table__
    await runner.run(lambda conn: Hot(insert(table)).execute(conn, [audit(1), {**audit(2), "event_id": "$e"}]))
    relabel = Hot(
        update(table).where(table.c.ts == bindparam("b_ts")).values(outcome=bindparam("b_outcome"), event_id=None)
    )
    assert await runner.run(lambda conn: relabel.execute(conn, {"b_ts": 2.0, "b_outcome": "relabelled"})) == 1
    rows = await runner.run(lambda conn: [tuple(r) for r in conn.execute(select(table.c.outcome, table.c.event_id).order_by(table.c.ts))])
    assert rows == [("ok", None), ("relabelled", None)]

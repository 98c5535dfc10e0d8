"""The hot path's statements on SQLite's own cursor, compiled once from their Core form.

SQLAlchemy Core spends some 50-100 microseconds of Python on each statement it executes
(an execution context, parameter processing, a result object) even when the statement is
compiled once; a media event makes about eight, which was the largest share of the
database thread's CPU (README.md, "modbot's own CPU per media event"). On an SQLite file, where the transaction runner
(direct.py) hands its work a connection over the plain `sqlite3` driver, `Hot` runs the
same statement's SQL, compiled once per set of columns for SQLite with named parameters,
straight on that driver connection, inside the same transaction. Any other connection
(PostgreSQL, in-memory SQLite through aiosqlite) runs the Core statement as before, so
both forms are always in use and tested against each other's databases.

The driver's errors are raised as SQLAlchemy's (IntegrityError, OperationalError...), as
Core would raise them, so callers catch one kind whatever ran the statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

# Named parameters (`:name`): sqlite3 reads each row's dict as it is, no reordering.
_DIALECT = sqlite.dialect(paramstyle="named")


def driver(conn: Connection) -> sqlite3.Connection | None:
    """The plain sqlite3 connection under `conn`, or None (another driver or database)."""
    dbapi = conn.connection.driver_connection
    return dbapi if isinstance(dbapi, sqlite3.Connection) else None


class Hot:
    """One Core statement, run on sqlite3 directly where it can be (see the module's docstring).

    `statement` must not need SQLAlchemy's parameter or result processing on SQLite (plain
    strings, numbers, NULLs: the hot path's tables). On the driver the rows a statement
    changed are counted instead of returned: `on_driver` is the statement without its
    RETURNING, for `inserted`.
    """

    def __init__(self, statement: ClauseElement, on_driver: ClauseElement | None = None) -> None:
        self.statement = statement
        self._driver_statement = statement if on_driver is None else on_driver
        # By the rows' columns (an INSERT names only those): the SQL, and the values the
        # statement carries itself (`owner=None` in .values()), which each row is given.
        self._sql: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}

    def sql(self, columns: Sequence[str]) -> tuple[str, dict[str, Any]]:
        key = tuple(columns)
        found = self._sql.get(key)
        if found is None:
            compiled = self._driver_statement.compile(dialect=_DIALECT, column_keys=list(key))
            own = {
                name: bind.effective_value for name, bind in compiled.binds.items()
                if name not in key and not bind.required
            }
            found = self._sql[key] = (str(compiled), own)
        return found

    def _run(self, raw: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> sqlite3.Cursor:
        sql, own = self.sql(list(rows[0]))
        if own:
            rows = [{**own, **row} for row in rows]
        try:
            return raw.execute(sql, rows[0]) if len(rows) == 1 else raw.executemany(sql, rows)
        except sqlite3.Error as e:
            raise _wrapped(sql, rows, e) from e

    def execute(self, conn: Connection, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        """Run the statement for one row (a mapping) or for each of `rows` (all with the same
        columns); the number of rows changed (-1 when the driver under Core does not count)."""
        if not rows:
            return 0  # (Core would run an empty list as one INSERT of defaults)
        raw = driver(conn)
        if raw is None:
            return conn.execute(self.statement, rows).rowcount
        return self._run(raw, [rows] if isinstance(rows, Mapping) else rows).rowcount

    def inserted(self, conn: Connection, rows: Sequence[Mapping[str, Any]], key: str) -> set[Any]:
        """`key` of the rows an INSERT ... ON CONFLICT DO NOTHING stored (not there before):
        RETURNING on Core, one statement per row and its count on the driver."""
        if not rows:
            return set()
        raw = driver(conn)
        if raw is None:
            return set(conn.execute(self.statement, list(rows)).scalars())
        return {row[key] for row in rows if self._run(raw, [row]).rowcount == 1}

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row of a statement that returns rows (a SELECT, or one row's INSERT or
        UPDATE ... RETURNING), with its columns as attributes; None when there is none."""
        if driver(conn) is None:
            return conn.execute(self.statement, params).first()
        found = self.rows(conn, params)
        return SimpleNamespace(**found[0]) if found else None

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """A statement's rows as mappings of column name to value (Core's on another driver)."""
        raw = driver(conn)
        if raw is None:
            return list(conn.execute(self.statement, params).mappings())
        cursor = self._run(raw, [params])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _wrapped(sql: str, params: Any, error: sqlite3.Error) -> DBAPIError:
    """The driver's error as SQLAlchemy raises it (sqlite3.IntegrityError -> exc.IntegrityError...)."""
    return DBAPIError.instance(sql, params, error, sqlite3.Error)  # type: ignore[arg-type]

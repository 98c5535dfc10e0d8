"""Fixtures the unit tests share (a module's own fixture of the same name wins)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.record.db import create_engine, migrate
from bot.record.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database's URL, once SQLite and once PostgreSQL, for the storage tests."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}"
    # Through the fixture, so that a missing PostgreSQL is a loud skip, not a pass.
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A Store on a new, migrated SQLite database in tmp_path."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()

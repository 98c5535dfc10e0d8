"""Alembic migrations: from an empty database to the models, idempotent, never losing data.

Every test runs against SQLite and a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import BLOB, LargeBinary, String, Text, TypeEngine, _Binary

from bot.model import MediaRef
from bot.record.db import MIGRATIONS, create_engine, current_revision, head_revision, migrate
from bot.record.store import Store
from bot.record.tables import Base

ALEMBIC_TABLE = "alembic_version"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


def _schema(connection: Connection) -> dict[str, dict[str, TypeEngine[Any]]]:
    inspector = inspect(connection)
    return {
        table: {column["name"]: column["type"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


async def schema(engine: AsyncEngine) -> dict[str, dict[str, TypeEngine[Any]]]:
    async with engine.connect() as conn:
        return await conn.run_sync(_schema)


def is_binary(column_type: TypeEngine[Any]) -> bool:
    # LargeBinary, BLOB, BINARY, VARBINARY and PostgreSQL's BYTEA all derive from _Binary.
    return isinstance(column_type, _Binary)


# --- from empty ------------------------------------------------------------------------------


async def test_migrate_reaches_head_from_an_empty_database_and_again_is_a_no_op(engine: AsyncEngine) -> None:
    assert await schema(engine) == {}
    assert await current_revision(engine) is None

    await migrate(engine)
    assert await current_revision(engine) == head_revision()
    migrated = await schema(engine)

    await migrate(engine)
    assert await current_revision(engine) == head_revision()
    assert {t: set(c) for t, c in (await schema(engine)).items()} == {t: set(c) for t, c in migrated.items()}
    async with engine.connect() as conn:
        versions = (await conn.execute(text(f"select version_num from {ALEMBIC_TABLE}"))).scalars().all()
    assert versions == [head_revision()]


async def test_each_revision_applies_in_turn_from_empty(engine: AsyncEngine) -> None:
    # One change per file: stepping through them one by one ends where `head` does.
    script = ScriptDirectory(str(MIGRATIONS))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions and revisions[-1] == head_revision()
    for revision in revisions:
        await migrate(engine, revision)
        assert await current_revision(engine) == revision


async def test_the_migrated_schema_is_the_models(engine: AsyncEngine) -> None:
    await migrate(engine)
    migrated = await schema(engine)
    assert set(migrated) - {ALEMBIC_TABLE} == set(Base.metadata.tables)
    for name, table in Base.metadata.tables.items():
        assert set(migrated[name]) == {c.name for c in table.columns}, name

    # Alembic's own comparison also sees types, nullability, indexes and unique constraints:
    # a model changed without a migration shows up here.
    def differences(connection: Connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []


# --- data survives -----------------------------------------------------------------------------


async def test_data_written_before_a_second_migrate_survives(engine: AsyncEngine) -> None:
    await migrate(engine)
    store = Store(engine)
    event = {"event_id": "$e1", "room_id": "!r:example.org", "sender": "@a:example.org", "type": "m.room.message",
             "content": {"msgtype": "m.image", "url": "mxc://example.org/m1", "body": "x"}}
    await store.store_transaction("txn1", [event], lambda e: True)
    await store.record_media(MediaRef("mxc://example.org/m1", "example.org", "m1", "content.url"), status="encrypted")
    await store.record_verdicts("$e1", "mxc://example.org/m1", "hashlist", [])
    await store.claim_action("$e1/notify", kind="notify", target="!r:example.org", event_id="$e1",
                             room_id="!r:example.org", decided_by=None)
    await store.audit("intake", "queued", "queued $e1", event_id="$e1")

    await migrate(engine)

    again = Store(engine)
    loaded = await again.load_event("$e1")
    assert loaded is not None and loaded.event == event
    assert (await again.store_transaction("txn1", [], lambda e: True)).new is False
    media = await again.get_media("mxc://example.org/m1")
    assert media is not None and media.status == "encrypted"
    assert [v.kind for v in await again.verdicts_for(event_id="$e1")] == ["no_match"]
    assert [a.key for a in await again.actions()] == ["$e1/notify"]
    assert [a.message for a in await again.audit_log()] == ["queued $e1"]


# --- no media bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("column_type", [LargeBinary(), BLOB(), postgresql.BYTEA(), sqlite.BLOB()])
def test_is_binary_recognises_binary_types(column_type: TypeEngine[Any]) -> None:
    assert is_binary(column_type)


@pytest.mark.parametrize("column_type", [String(64), Text(), postgresql.TEXT(), sqlite.TEXT()])
def test_is_binary_leaves_text_types_alone(column_type: TypeEngine[Any]) -> None:
    assert not is_binary(column_type)


def test_the_models_have_no_column_that_could_hold_media_bytes() -> None:
    binary = [f"{t.name}.{c.name}" for t in Base.metadata.tables.values() for c in t.columns if is_binary(c.type)]
    assert binary == []


async def test_the_migrated_schema_has_no_column_that_could_hold_media_bytes(engine: AsyncEngine) -> None:
    await migrate(engine)
    migrated = await schema(engine)
    binary = [f"{t}.{c}" for t, columns in migrated.items() for c, column_type in columns.items() if is_binary(column_type)]
    assert binary == []

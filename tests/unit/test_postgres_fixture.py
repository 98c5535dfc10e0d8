"""The PostgreSQL fixtures give a reachable, asyncpg-driven database."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def _select_one(url: str) -> tuple[int, str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            one = (await conn.execute(text("select 1"))).scalar_one()
            db = (await conn.execute(text("select current_database()"))).scalar_one()
            return one, db
    finally:
        await engine.dispose()


async def test_postgres_url_answers_select_1(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert await _select_one(postgres_url) == (1, "modbot_test")


async def test_fresh_postgres_url_is_a_new_empty_database(fresh_postgres_url: str) -> None:
    one, db = await _select_one(fresh_postgres_url)
    assert one == 1
    assert db.startswith("modbot_") and db != "modbot_test"
    engine = create_async_engine(fresh_postgres_url)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(text("select count(*) from pg_tables where schemaname = 'public'"))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert tables == 0

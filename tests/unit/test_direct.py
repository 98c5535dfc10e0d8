"""The hot path's one-trip transactions (bot/record/direct.py): several events committing at
once each return only once their own writes are committed, one bad write fails only its own
caller, and a transaction is all or nothing.

Every test runs against an SQLite file (through the runner's own thread) and a real
PostgreSQL (through the async engine), each migrated from empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from bot.model import Hashes, MediaRef
from bot.record.db import create_engine, migrate
from bot.record.direct import AsyncRunner, DatabaseStopped, SqliteThreadRunner, transaction_runner
from bot.record.store import Store
from bot.record.tables import AuditRow, EventMediaRow, MediaRow

ROOM = "!room:example.org"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


def image_event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"$event{n}", "room_id": ROOM, "sender": "@alice:example.org", "type": "m.room.message",
        "content": {"msgtype": "m.image", "body": "a.jpg", "url": f"mxc://example.org/media{n}"},
    }


def ref(n: int) -> MediaRef:
    return MediaRef(mxc=f"mxc://example.org/media{n}", server="example.org", media_id=f"media{n}", source="content.url")


HASHES = Hashes(sha256="a" * 64, md5="b" * 32, size=1000)


async def stored_events(store: Store, count: int) -> list[Any]:
    result = await store.store_transaction("txn1", [image_event(n) for n in range(count)], wanted=lambda _e: True)
    return list(result.queued)


async def test_events_finishing_together_are_each_committed_before_their_commit_returns(store: Store) -> None:
    events = await stored_events(store, 6)

    async def finish(event: Any) -> None:
        journal = store.journal(event)
        journal.link([ref(int(event.event_id.removeprefix("$event")))])
        journal.record_media(ref(int(event.event_id.removeprefix("$event"))), status="hashed", hashes=HASHES)
        journal.audit("verdict", "no_match", "no match")
        await store.commit(journal, finish="done")
        # Returned: its own writes are committed, whoever wrote them.
        assert (await store.load_event(event.event_id)).status == "done"  # type: ignore[union-attr]

    await asyncio.gather(*(finish(e) for e in events))

    assert await store.events_by_status() == {"done": 6}
    for n in range(6):
        media = await store.get_media(ref(n).mxc)
        assert media is not None and media.hashes is not None and media.hashes.sha256 == HASHES.sha256
    async with store.engine.connect() as conn:
        audits = (await conn.execute(select(AuditRow.event_id).where(AuditRow.outcome == "no_match"))).scalars()
        assert sorted(audits) == sorted(e.event_id for e in events)


async def test_a_bad_write_fails_only_its_own_caller(store: Store) -> None:
    events = await stored_events(store, 3)
    never_stored = store.journal()
    never_stored.event_id = "$never-stored"  # its link breaks the foreign key to events
    never_stored.link([ref(99)])

    async def finish(event: Any) -> None:
        journal = store.journal(event)
        journal.audit("verdict", "no_match", "no match")
        await store.commit(journal, finish="done")

    results = await asyncio.gather(
        finish(events[0]), store.commit(never_stored), finish(events[1]), finish(events[2]), return_exceptions=True
    )

    assert [type(r).__name__ for r in results if r is not None] == ["IntegrityError"]
    assert results[0] is None and results[2:] == [None, None]
    assert await store.events_by_status() == {"done": 3}
    assert never_stored.links  # not written, so not cleared: the caller may try again
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(EventMediaRow))).all() == []


async def test_an_sqlite_file_gets_its_own_thread_and_memory_the_async_engine(tmp_path: Path) -> None:
    file_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    memory_engine = create_engine("sqlite+aiosqlite://")
    try:
        assert isinstance(transaction_runner(file_engine), SqliteThreadRunner)
        # A second connection to an in-memory database would see another, empty database.
        assert isinstance(transaction_runner(memory_engine), AsyncRunner)
    finally:
        await file_engine.dispose()
        await memory_engine.dispose()


async def test_a_transaction_is_all_or_nothing_and_seen_by_the_async_engine(store: Store) -> None:
    runner = transaction_runner(store.engine)
    row = {"mxc": "mxc://example.org/one", "status": "hashed", "first_seen": 1.0, "last_scanned": 1.0}

    def half_then_fail(conn: Any) -> None:
        conn.execute(insert(MediaRow), row)
        raise RuntimeError("failed after the first statement")

    with pytest.raises(RuntimeError):
        await runner.run(half_then_fail)
    assert await store.get_media(row["mxc"]) is None

    await runner.run(lambda conn: conn.execute(insert(MediaRow), row))
    async with store.engine.connect() as conn:  # committed when run() returned
        assert (await conn.execute(select(MediaRow.status))).scalars().all() == ["hashed"]


def mxcs_of(event: dict[str, Any]) -> list[str]:
    return [event["content"]["url"]]


async def test_the_intake_reads_what_is_known_of_the_new_events_media_in_its_own_transaction(store: Store) -> None:
    [first] = await stored_events(store, 1)
    journal = store.journal(first)
    journal.record_media(ref(0), status="hashed", hashes=HASHES)
    journal.record_media(ref(2), status="not_scanned", error="too large")  # a row without hashes
    await store.commit(journal, finish="done")

    again = {**image_event(0), "event_id": "$again"}  # media 0 posted again
    result = await store.store_transaction(
        "txn2", [image_event(0), again, image_event(1), image_event(2)], wanted=lambda _e: True,
        media_of=mxcs_of, forgotten=7,
    )

    # $event0 was stored before: not queued, not looked up.
    seen = {e.event_id: e.media_seen for e in result.queued}
    assert list(seen) == ["$again", "$event1", "$event2"]
    assert seen["$again"] is not None and seen["$again"].hashes == {ref(0).mxc: HASHES}
    assert seen["$event1"] is not None and seen["$event1"].hashes == {ref(1).mxc: None}
    assert seen["$event2"] is not None and seen["$event2"].hashes == {ref(2).mxc: None}
    assert {s.forgotten for s in seen.values() if s is not None} == {7}
    # Each event's journal carries what the intake found, for the pipeline.
    assert store.journal(result.queued[0]).seen == seen["$again"]


async def test_without_media_of_nothing_is_read_and_an_event_from_the_database_has_nothing_seen(store: Store) -> None:
    [event] = await stored_events(store, 1)
    assert event.media_seen is None and store.journal(event).seen is None
    loaded = await store.load_event(event.event_id)
    assert loaded is not None and loaded.media_seen is None


async def test_many_events_media_are_read_in_chunks_the_database_takes(store: Store) -> None:
    # More mxcs than one IN (...) holds: 1,200 events, one known.
    [first] = await stored_events(store, 1)
    journal = store.journal(first)
    journal.record_media(ref(1100), status="hashed", hashes=HASHES)
    await store.commit(journal, finish="done")
    result = await store.store_transaction(
        "txn2", [image_event(n) for n in range(1, 1201)], wanted=lambda _e: True, media_of=mxcs_of
    )
    assert len(result.queued) == 1200
    known = [e.event_id for e in result.queued if e.media_seen and any(e.media_seen.hashes.values())]
    assert known == ["$event1100"]


async def test_transactions_queued_before_a_close_complete_and_a_later_one_opens_the_file_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        runner = transaction_runner(engine)
        assert isinstance(runner, SqliteThreadRunner)

        def media(n: int) -> dict[str, Any]:
            return {"mxc": f"mxc://example.org/m{n}", "status": "hashed", "first_seen": 1.0, "last_scanned": 1.0}

        queued = [asyncio.create_task(runner.run(lambda conn, n=n: conn.execute(insert(MediaRow), media(n)))) for n in range(5)]
        await asyncio.sleep(0)  # all five handed to the thread
        runner.close()
        await asyncio.gather(*queued)
        await runner.run(lambda conn: conn.execute(insert(MediaRow), media(9)))
        runner.close()
        async with engine.connect() as conn:
            assert len((await conn.execute(select(MediaRow.mxc))).all()) == 6
    finally:
        await engine.dispose()


# --- stopping: drain ---------------------------------------------------------------------------------


def media_row(n: int) -> dict[str, Any]:
    return {"mxc": f"mxc://example.org/m{n}", "status": "hashed", "first_seen": 1.0, "last_scanned": 1.0}


def committed_mxcs(path: Path) -> list[str]:
    """What another process would read from the file now (no event loop involved)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT mxc FROM media"))


async def test_a_drain_commits_the_transactions_queued_before_it_returns(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        runner = transaction_runner(engine)
        busy = asyncio.create_task(runner.run(lambda conn: time.sleep(0.3)))  # the thread is busy...
        await asyncio.sleep(0)
        queued = [asyncio.create_task(runner.run(lambda conn, n=n: conn.execute(insert(MediaRow), media_row(n)))) for n in range(3)]
        await asyncio.sleep(0)  # ...while three writes wait behind it
        assert committed_mxcs(tmp_path / "modbot.db") == []

        assert await runner.drain(5.0)
        assert committed_mxcs(tmp_path / "modbot.db") == [f"mxc://example.org/m{n}" for n in range(3)]
        await asyncio.gather(busy, *queued)  # and each caller hears so
        # A transaction after a drain opens the file again.
        await runner.run(lambda conn: conn.execute(insert(MediaRow), media_row(9)))
        assert len(committed_mxcs(tmp_path / "modbot.db")) == 4
    finally:
        await engine.dispose()


async def test_a_drain_that_times_out_abandons_the_queued_transactions_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        runner = transaction_runner(engine)
        stuck = threading.Event()  # a transaction that does not end in time (a hung disk, say)

        def hang(conn: Any) -> None:
            stuck.wait(10)
            conn.execute(insert(MediaRow), media_row(0))

        hung = asyncio.create_task(runner.run(hang))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(runner.run(lambda conn, n=n: conn.execute(insert(MediaRow), media_row(n)))) for n in (1, 2)]
        await asyncio.sleep(0)

        with caplog.at_level(logging.WARNING, logger="modbot.record"):
            assert not await runner.drain(0.2)
        assert "did not finish in 0.2 s" in caplog.text and "2 queued are abandoned" in caplog.text
        for task in queued:  # their callers are told, not left waiting
            with pytest.raises(DatabaseStopped):
                await task
        stuck.set()
        await hung  # the one under way ends by itself, and is committed
        assert committed_mxcs(tmp_path / "modbot.db") == ["mxc://example.org/m0"]
    finally:
        await engine.dispose()


async def test_the_async_engines_runner_has_nothing_queued_to_drain(tmp_path: Path) -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        assert await transaction_runner(engine).drain(0.0)
    finally:
        await engine.dispose()

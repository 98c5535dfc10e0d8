"""The work queue: events handed over by the intake, resumed ones read back, each handled once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.intake import queue as queue_module
from bot.intake.queue import WorkQueue
from bot.metrics import Metrics
from bot.record.db import create_engine, migrate
from bot.record.store import Store, StoredEvent


def event(n: int) -> dict[str, Any]:
    return {
        "event_id": f"$event{n}", "room_id": "!room:example.org", "sender": "@alice:example.org",
        "type": "m.room.message", "content": {"msgtype": "m.image", "body": "x", "url": f"mxc://example.org/m{n}"},
    }


class CountingStore(Store):
    """A real store that counts how often an event is read back from the database."""

    reads = 0

    async def load_event(self, event_id: str) -> StoredEvent | None:
        self.reads += 1
        return await super().load_event(event_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield CountingStore(engine)
    finally:
        await engine.dispose()


def handler_into(seen: list[StoredEvent], store: Store):  # noqa: ANN201 - a test helper
    async def handle(e: StoredEvent) -> None:
        seen.append(e)
        await store.finish_event(e.event_id, "done")

    return handle


async def test_events_handed_over_by_the_intake_are_not_read_back(store: CountingStore) -> None:
    result = await store.store_transaction("txn1", [event(n) for n in range(5)], lambda _e: True)
    seen: list[StoredEvent] = []
    queue = WorkQueue(store, handler_into(seen, store), Metrics(), concurrency=2, max_attempts=3)
    queue.submit(result.queued)  # as the endpoint does, which opens before the workers start
    await queue.start()  # resuming what is pending finds them queued already
    try:
        await asyncio.wait_for(queue.join(), 10)
    finally:
        await queue.stop()
    assert sorted(e.event_id for e in seen) == sorted(result.queued_ids)
    assert all(e.from_intake for e in seen)
    assert store.reads == 0


async def test_resumed_events_are_read_back_and_marked_as_possibly_processed_before(store: CountingStore) -> None:
    await store.store_transaction("txn1", [event(1), event(2)], lambda _e: True)  # stored, then a crash
    seen: list[StoredEvent] = []
    queue = WorkQueue(store, handler_into(seen, store), Metrics(), concurrency=1, max_attempts=3)
    assert await queue.start() == 2
    try:
        await asyncio.wait_for(queue.join(), 10)
    finally:
        await queue.stop()
    assert [e.event_id for e in seen] == ["$event1", "$event2"]
    assert not any(e.from_intake for e in seen)
    assert store.reads == 2


async def test_a_backlog_beyond_the_memory_limit_is_read_back_from_the_database(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "MAX_HANDED", 3)
    result = await store.store_transaction("txn1", [event(n) for n in range(8)], lambda _e: True)
    seen: list[StoredEvent] = []
    queue = WorkQueue(store, handler_into(seen, store), Metrics(), concurrency=1, max_attempts=3)
    queue.submit(result.queued)  # before the workers start: the whole backlog waits in the queue
    queue.submit(result.queued)  # submitted twice, queued once
    await queue.start()
    try:
        await asyncio.wait_for(queue.join(), 10)
    finally:
        await queue.stop()
    assert [e.event_id for e in seen] == list(result.queued_ids)
    assert store.reads == 8 - 3

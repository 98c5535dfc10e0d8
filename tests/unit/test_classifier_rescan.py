"""Holds of media whose scan failed (fail_closed): back to the queue when due, given up on at last."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.record.db import create_engine, migrate
from bot.record.scanning import HoldRepo
from bot.record.store import Store
from bot.intake.rescan import Rescanner
from classifier_kit import FakeTime

EVENT = {
    "event_id": "$held", "room_id": "!r:example.org", "sender": "@u:example.org", "type": "m.room.message",
    "content": {"msgtype": "m.image", "url": "mxc://example.org/m1", "body": "x"},
}  # fmt: skip


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Rescanner, Store, FakeTime]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    time = FakeTime()
    store = Store(engine, clock=time.clock)
    rescanner = Rescanner(HoldRepo(engine, clock=time.clock), store, delay=10, max_delay=40, give_up_after=100, clock=time.clock)
    await store.store_transaction("t1", [EVENT], lambda e: True)
    try:
        yield rescanner, store, time
    finally:
        await engine.dispose()


def test_the_delay_doubles_up_to_its_cap() -> None:
    rescanner = Rescanner(None, None, delay=10, max_delay=40)  # type: ignore[arg-type]
    assert [rescanner.delay_for(n) for n in range(1, 6)] == [10, 20, 40, 40, 40]


async def test_a_held_event_goes_back_to_the_queue_when_due(parts: tuple[Rescanner, Store, FakeTime]) -> None:
    rescanner, store, time = parts
    submitted: list[list[str]] = []
    rescanner._submit = submitted.append
    hold = await rescanner.hold("$held", "!r:example.org", ["mxc://example.org/m1"], "arachnid: HTTP 500")
    await store.finish_event("$held", "held")
    assert (hold.attempts, hold.due_at - time.now, hold.mxcs) == (1, 10, ("mxc://example.org/m1",))

    time.advance(9)
    assert await rescanner.run_once() == []
    time.advance(1)
    assert await rescanner.run_once() == ["$held"]
    assert submitted == [["$held"]]
    event = await store.load_event("$held")
    assert event is not None and (event.status, event.attempts) == ("pending", 0)
    # Not handed out twice while the pipeline works on it.
    assert await rescanner.run_once() == []

    # The scan failed again: held once more, the wait doubled, the held media kept.
    again = await rescanner.hold("$held", "!r:example.org", [], "arachnid: circuit open")
    assert (again.attempts, again.due_at - time.now, again.mxcs, again.reason) == (2, 20, ("mxc://example.org/m1",), "arachnid: circuit open")


async def test_a_hold_is_given_up_after_its_time_and_the_media_stays_held(parts: tuple[Rescanner, Store, FakeTime]) -> None:
    rescanner, store, time = parts
    await rescanner.hold("$held", "!r:example.org", ["mxc://example.org/m1"], "arachnid: HTTP 500")
    await store.finish_event("$held", "held")
    time.advance(100)
    assert await rescanner.run_once() == []
    event = await store.load_event("$held")
    assert event is not None and event.status == "failed"
    (row,) = await store.audit_log(event_id="$held", category="scan")
    assert row.outcome == "gave_up" and "stays quarantined" in row.message
    assert await rescanner.held("$held") is None


async def test_a_hold_whose_event_moved_on_is_dropped(parts: tuple[Rescanner, Store, FakeTime]) -> None:
    rescanner, store, time = parts
    await rescanner.hold("$held", "!r:example.org", [], "x")
    await store.finish_event("$held", "done")  # e.g. a moderator resolved it
    time.advance(10)
    assert await rescanner.run_once() == []
    assert await rescanner.held("$held") is None

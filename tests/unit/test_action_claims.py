"""Action claims: two Stores on one database (as two modbot processes would be) race for the
same action and exactly one wins; a crashed claimer's lease expires and another takes over;
pending actions come back when due; moderators give up and retry. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.record.db import create_engine, migrate
from bot.record.store import Store

ROOM = "!room:example.org"
CLAIM = {"kind": "ban", "target": "@spammer:evil.example", "event_id": "$event1", "room_id": ROOM, "decided_by": "known"}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def stores(database_url: str, clock: Clock) -> AsyncIterator[tuple[Store, Store]]:
    """Two Stores, each with its own engine (its own connections), on one database."""
    first, second = create_engine(database_url), create_engine(database_url)
    await migrate(first)
    try:
        yield Store(first, clock, action_lease=60), Store(second, clock, action_lease=60)
    finally:
        await first.dispose()
        await second.dispose()


async def test_two_processes_racing_for_new_actions_each_win_exactly_one_claim(stores: tuple[Store, Store]) -> None:
    a, b = stores
    assert a.action_repo.owner != b.action_repo.owner
    keys = [f"ban:{ROOM}:@user{n}:example.org" for n in range(20)]
    # Each "process" tries every key three times at once: 6 claimers per key.
    claims = [store.claim_action(key, **CLAIM) for key in keys for store in (a, b, a, b, a, b)]
    records = await asyncio.gather(*claims)
    for key in keys:
        winners = [r for r in records if r.key == key and r.claimed]
        assert len(winners) == 1, key
        assert all(r.owner == winners[0].owner for r in records if r.key == key)
    assert len(await a.actions(limit=100)) == len(keys)


async def test_two_processes_racing_for_a_released_pending_action_one_wins(stores: tuple[Store, Store], clock: Clock) -> None:
    # The row exists and nobody holds it (a failed attempt let go of it): the race is on the
    # conditional UPDATE, not on the INSERT.
    a, b = stores
    for n in range(10):
        key = f"redact:$event{n}"
        assert (await a.claim_action(key, **CLAIM)).claimed
        assert await a.finish_action(key, "pending", 1, "HTTP 502", next_attempt_at=clock.now)
        records = await asyncio.gather(*(s.claim_action(key, **CLAIM) for s in (a, b, b, a, b, a)))
        assert sum(r.claimed for r in records) == 1, key


async def test_the_retry_loops_of_two_processes_take_a_due_action_once(stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    key = "quarantine:mxc://example.org/abc"
    await a.claim_action(key, **CLAIM, operation='{"op": "quarantine"}')
    await a.finish_action(key, "pending", 1, "homeserver unreachable", next_attempt_at=clock.now + 30)
    assert await a.action_repo.due() == [] and await b.action_repo.due() == []  # not due yet
    assert not (await b.claim_action(key, **CLAIM, due_only=True)).claimed
    clock.now += 30
    [due] = await b.action_repo.due()
    assert due.key == key and due.operation == '{"op": "quarantine"}'
    records = await asyncio.gather(*(s.claim_action(key, **CLAIM, due_only=True) for s in (a, b, a, b)))
    assert sum(r.claimed for r in records) == 1
    assert await a.action_repo.due() == []  # claimed: not handed out again


async def test_a_held_claim_blocks_others_until_its_lease_expires_then_one_takes_it_over(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    a, b = stores
    key = "ban:!room:example.org:@spammer:evil.example"
    assert (await a.claim_action(key, **CLAIM)).claimed  # and then "a" crashes
    held = await b.claim_action(key, **CLAIM)
    assert not held.claimed and held.owner == a.action_repo.owner and held.status == "pending"

    clock.now += 61  # the lease (60 s) has expired
    taken = await b.claim_action(key, **CLAIM)
    assert taken.claimed and taken.owner == b.action_repo.owner
    [audit] = await b.audit_log(category="action")
    assert audit.outcome == "taken_over" and a.action_repo.owner in audit.message and b.action_repo.owner in audit.message

    # The crashed claimer comes back: its finish is refused, the new owner's goes through.
    assert not await a.finish_action(key, "ok", 1, "banned")
    assert await b.finish_action(key, "ok", 1, "banned")
    [record] = await a.actions()
    assert (record.status, record.owner, record.lease_until, record.attempts) == ("ok", None, None, 1)


async def test_a_crashed_claimers_action_goes_to_the_retry_loop_when_its_lease_ends(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    a, b = stores
    key = "redact:$event1"
    assert (await a.claim_action(key, **CLAIM, operation='{"op": "redact"}')).claimed  # then "a" dies
    assert await b.action_repo.due() == []
    clock.now += 61
    [due] = await b.action_repo.due()
    assert due.key == key and due.owner == a.action_repo.owner
    assert (await b.claim_action(key, **CLAIM, due_only=True)).claimed


async def test_done_and_given_up_actions_are_never_claimed(stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    await a.claim_action("k-ok", **CLAIM)
    await a.finish_action("k-ok", "ok", 1, "done")
    await a.claim_action("k-gone", **CLAIM, operation="{}")
    await a.finish_action("k-gone", "pending", 1, "HTTP 503", next_attempt_at=clock.now)
    [gone] = await a.actions(statuses=["pending"])
    assert (await b.action_repo.give_up(gone.id, "@mod:example.org", "the room is gone")) is not None
    clock.now += 1000
    for key in ("k-ok", "k-gone"):
        for due_only in (False, True):
            assert not (await b.claim_action(key, **CLAIM, due_only=due_only)).claimed
    assert await a.action_repo.due() == []


async def test_give_up_waits_for_an_attempt_under_way_and_retry_requeues(stores: tuple[Store, Store], clock: Clock) -> None:
    a, b = stores
    key = "ban:x"
    await a.claim_action(key, **CLAIM, operation='{"op": "ban"}')
    [record] = await a.actions()
    assert await b.action_repo.give_up(record.id, "@mod:example.org", "no") is None  # "a" is attempting it
    await a.finish_action(key, "failed", 1, "HTTP 403 M_FORBIDDEN: You don't have permission to ban this user")
    given_up = await b.action_repo.give_up(record.id, "@mod:example.org", "a creator; cannot be banned")
    assert given_up is not None and given_up.status == "given_up"
    assert given_up.detail == "given up by @mod:example.org: a creator; cannot be banned"
    assert await b.action_repo.give_up(record.id, "@mod:example.org", "again") is None

    requeued = await b.action_repo.retry(record.id)
    assert requeued is not None and requeued.status == "pending" and requeued.next_attempt_at == clock.now
    assert [d.key for d in await a.action_repo.due()] == [key]
    assert await a.action_repo.retry(record.id) is None  # pending already


async def test_an_action_without_an_operation_cannot_be_requeued(stores: tuple[Store, Store]) -> None:
    a, _ = stores
    await a.claim_action("cmd:$c:kick", **CLAIM)
    await a.finish_action("cmd:$c:kick", "failed", 1, "HTTP 403")
    [record] = await a.actions()
    assert await a.action_repo.retry(record.id) is None


async def test_an_outcomes_audit_row_is_written_with_it_and_also_when_the_claim_was_lost(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    a, b = stores
    key = "ban:!room:example.org:@spammer:evil.example"
    assert (await a.claim_action(key, **CLAIM)).claimed
    clock.now += 61
    assert (await b.claim_action(key, **CLAIM)).claimed  # a's lease expired: b took it over
    late = a.audit_row("action", "ok", "ban @spammer:evil.example: banned", event_id="$event1", room_id=ROOM)
    assert not await a.finish_action(key, "ok", 1, "banned", audit=late)
    done = b.audit_row("action", "ok", "ban @spammer:evil.example: banned again", event_id="$event1", room_id=ROOM)
    assert await b.finish_action(key, "ok", 1, "banned again", audit=done)
    entries = [e for e in await b.audit_log(event_id="$event1") if e.outcome == "ok"]
    # Newest first; each says what its claimer did, whether or not its claim still held.
    assert [e.message for e in entries] == ["ban @spammer:evil.example: banned again", "ban @spammer:evil.example: banned"]
    assert all((e.category, e.room_id, e.ts) == ("action", ROOM, clock.now) for e in entries)
    [record] = await a.actions()
    assert (record.status, record.detail, record.owner) == ("ok", "banned again", None)


async def test_a_retroactive_stores_audit_rows_name_their_source(database_url: str, clock: Clock) -> None:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        store = Store(engine, clock, audit_source="retroactive")
        assert (await store.claim_action("redact:$old", **CLAIM)).claimed
        row = store.audit_row("action", "ok", "redact $old: redacted", event_id="$old")
        assert await store.finish_action("redact:$old", "ok", 1, "redacted", audit=row)
        [entry] = await store.audit_log(category="action")
        assert entry.message == "retroactive: redact $old: redacted"
    finally:
        await engine.dispose()

"""ModerationStore: protected-room overrides, settings, the allowlist, the review queue, and the
append-only, hash-chained incident log that shows any edit or removal.

Every test runs against SQLite and a real PostgreSQL, each migrated from empty.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.record.db import create_engine, migrate
from bot.record.chain import keyed_hash
from bot.record.journal import audit_row
from bot.record.moderation import GENESIS, ChainReport, Incident, ModerationStore

KEY = bytes(range(32))

SHA = "ab" * 32
PDQ = "cd" * 32
MOD = "@mod:example.org"
ROOM = "!room:example.org"


class StepClock:
    """A clock that moves one second each time it is read, so timestamps are distinct."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


MODERATION_TABLES = ("protected_rooms", "settings", "allowlist", "reviews", "incidents", "audit")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated from empty, once per module and backend (migrating takes a second)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('template') / 'modbot.db'}"
        asyncio.run(_migrate(url))
        yield url
        return
    # Through the fixture, so that a missing PostgreSQL is a loud skip, not a pass.
    server = request.getfixturevalue("postgres_server")
    name = f"modbot_moderation_{secrets.token_hex(4)}"
    server.create_database(name)
    try:
        url = server.url(name)
        asyncio.run(_migrate(url))
        yield url
    finally:
        server.drop_database(name)


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def store(migrated: str, tmp_path: Path) -> AsyncIterator[ModerationStore]:
    """A store on empty tables: a copy of the migrated SQLite file, or truncated PostgreSQL tables."""
    if migrated.startswith("sqlite"):
        template = Path(migrated.split(":///", 1)[1])
        shutil.copy(template, tmp_path / template.name)
        url = f"sqlite+aiosqlite:///{tmp_path / template.name}"
    else:
        url = migrated
    engine = create_engine(url)
    if not migrated.startswith("sqlite"):
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(MODERATION_TABLES)} RESTART IDENTITY"))
    try:
        store = ModerationStore(engine, clock=StepClock())
        store.use_chain_key(KEY)
        yield store
    finally:
        await engine.dispose()


async def sql(store: ModerationStore, statement: str, **params: Any) -> None:
    """Tamper with the database behind the store's back."""
    async with store.sessions.begin() as s:
        await s.execute(text(statement), params)


# --- protected rooms and settings -----------------------------------------------------------


async def test_protection_overrides_are_kept_and_the_last_word_wins(store: ModerationStore) -> None:
    assert await store.protection_overrides() == {}
    await store.set_protected(ROOM, True, MOD)
    await store.set_protected("!opaqueV12", True, MOD)
    await store.set_protected(ROOM, False, "@other:example.org")
    assert await store.protection_overrides() == {ROOM: False, "!opaqueV12": True}


async def test_settings_round_trip_json_and_are_read_by_prefix(store: ModerationStore) -> None:
    await store.set_setting("dry_run", True, MOD)
    await store.set_setting(f"dry_run:{ROOM}", False, MOD)
    await store.set_setting("limits", {"n": [1, 2], "name": "ünï"}, MOD)
    await store.set_setting("dry_run", False, MOD)  # replaced, not added
    assert await store.settings() == {"dry_run": False, f"dry_run:{ROOM}": False, "limits": {"n": [1, 2], "name": "ünï"}}
    assert await store.settings("dry_run") == {"dry_run": False, f"dry_run:{ROOM}": False}
    await store.delete_setting("dry_run")
    await store.delete_setting("never-set")
    assert await store.settings("dry_run") == {f"dry_run:{ROOM}": False}


async def test_a_settings_prefix_is_literal_not_a_pattern(store: ModerationStore) -> None:
    await store.set_setting("dry_run", True, MOD)
    await store.set_setting("dryXrun", True, MOD)
    await store.set_setting("100%", 1, MOD)
    await store.set_setting("1000", 2, MOD)
    assert await store.settings("dry_run") == {"dry_run": True}
    assert await store.settings("100%") == {"100%": 1}


# --- allowlist ------------------------------------------------------------------------------


async def test_allowing_is_idempotent(store: ModerationStore) -> None:
    first = await store.allow("sha256", SHA, "our logo", MOD)
    again = await store.allow("sha256", SHA.upper(), "a second reason", "@other:example.org")
    assert again == first
    assert (first.hash_type, first.hash, first.reason, first.added_by) == ("sha256", SHA, "our logo", MOD)
    pdq = await store.allow("pdq", PDQ, "re-encoded logo", MOD)
    assert pdq.id != first.id
    assert await store.allowlist() == [first, pdq]


async def test_the_same_hex_may_be_allowed_as_two_kinds(store: ModerationStore) -> None:
    a = await store.allow("sha256", SHA, "r", MOD)
    b = await store.allow("pdq", SHA, "r", MOD)
    assert a.id != b.id
    assert len(await store.allowlist()) == 2


async def test_removal_by_id_or_by_hash(store: ModerationStore) -> None:
    a = await store.allow("sha256", SHA, "r", MOD)
    b = await store.allow("pdq", PDQ, "r", MOD)
    c = await store.allow("sha256", "ef" * 32, "r", MOD)
    assert await store.remove_allowed(str(a.id)) == 1
    assert await store.remove_allowed(str(a.id)) == 0  # gone already
    assert await store.remove_allowed(PDQ.upper()) == 1
    assert await store.remove_allowed(PDQ) == 0
    assert await store.remove_allowed("999") == 0
    assert await store.remove_allowed("12" * 32) == 0
    assert await store.allowlist() == [c]
    assert b not in await store.allowlist()


# --- review queue ---------------------------------------------------------------------------


async def open_review(store: ModerationStore, event_id: str = "$e1", **extra: Any) -> Any:
    args: dict[str, Any] = {
        "event_id": event_id,
        "room_id": ROOM,
        "sender": "@spam:example.org",
        "rule": "distant",
        "detail": {"media": [{"mxc": "mxc://example.org/abc", "sha256": SHA}], "distance": 40},
        "held": True,
        **extra,
    }
    return await store.open_review(**args)


async def test_an_event_under_review_keeps_its_item(store: ModerationStore) -> None:
    item = await open_review(store)
    assert (item.status, item.held, item.resolved_by, item.resolved_at, item.card_event_id) == ("open", True, None, None, None)
    assert item.detail == {"media": [{"mxc": "mxc://example.org/abc", "sha256": SHA}], "distance": 40}
    again = await open_review(store, rule="other", held=False, detail={})
    assert again == item
    assert await store.review(item.id) == item
    assert await store.review(item.id + 100) is None


@pytest.mark.parametrize(("first", "second"), [("approved", "approved"), ("approved", "rejected"), ("rejected", "approved"), ("rejected", "rejected")])
async def test_a_review_item_is_resolved_once(store: ModerationStore, first: str, second: str) -> None:
    item = await open_review(store)
    assert await store.resolve_review(item.id, first, MOD) is True
    assert await store.resolve_review(item.id, second, "@other:example.org") is False
    resolved = await store.review(item.id)
    assert resolved is not None
    assert (resolved.status, resolved.resolved_by) == (first, MOD)
    assert resolved.resolved_at is not None and resolved.resolved_at > item.created_at


async def test_resolving_an_unknown_item_is_refused(store: ModerationStore) -> None:
    assert await store.resolve_review(42, "approved", MOD) is False


async def test_two_moderators_resolving_at_once_one_wins(store: ModerationStore) -> None:
    item = await open_review(store)
    results = await asyncio.gather(*(store.resolve_review(item.id, s, f"@m{i}:example.org") for i, s in enumerate(["approved", "rejected"] * 3)))
    assert sorted(results) == [False] * 5 + [True]


async def test_the_review_list_by_status(store: ModerationStore) -> None:
    items = [await open_review(store, f"$e{n}") for n in range(4)]
    await store.resolve_review(items[1].id, "approved", MOD)
    await store.resolve_review(items[2].id, "rejected", MOD)
    await store.set_review_card(items[3].id, "$card")
    assert [i.id for i in await store.reviews()] == [items[0].id, items[3].id]
    assert [i.id for i in await store.reviews("approved")] == [items[1].id]
    assert [i.id for i in await store.reviews(None)] == [i.id for i in items]
    assert [i.id for i in await store.reviews(None, limit=2)] == [items[0].id, items[1].id]
    assert (await store.reviews())[1].card_event_id == "$card"


# --- the incident chain ---------------------------------------------------------------------


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record(n: int) -> dict[str, Any]:
    return {
        "incident_type": "test-label",
        "event_id": f"$event{n}",
        "reported_user": "@spam:example.org",
        "media": [{"mxc": f"mxc://example.org/m{n}", "sha256": f"{n:064x}", "pdq": None}],
        "note": "ünïcödé ☃ \"quoted\"",
        "retroactive": False,
    }


async def append(store: ModerationStore, count: int, start: int = 1) -> list[Incident]:
    return [await store.append_incident(f"$event{n}", record(n)) for n in range(start, start + count)]


async def test_appended_incidents_form_a_verifiable_chain(store: ModerationStore) -> None:
    assert await store.verify_chain() == ChainReport(True, 0, None, "0 incidents, chain intact")
    incidents = await append(store, 5)
    assert [i.id for i in incidents] == [1, 2, 3, 4, 5]
    assert incidents[0].prev_hash == GENESIS
    for before, after in zip(incidents, incidents[1:], strict=False):
        assert after.prev_hash == before.row_hash
    for i in incidents:
        assert i.row_hash == keyed_hash(KEY, i.prev_hash, i.id, i.event_id, i.created_at, _canonical(i.record))
    assert await store.verify_chain() == ChainReport(True, 5, None, "5 incidents, chain intact")
    # What was stored is what is read back.
    assert await store.incidents() == incidents
    assert await store.incident(3) == incidents[2]
    assert incidents[2].record == record(3)
    assert await store.incident(99) is None


async def test_the_same_event_twice_is_the_first_incident(store: ModerationStore) -> None:
    first, _ = await append(store, 2)
    again = await store.append_incident("$event1", {"something": "else"})
    assert again == first
    assert len(await store.incidents()) == 2
    assert (await store.verify_chain()).ok


def incident_audit(incident: Incident) -> dict[str, Any]:
    return audit_row(1.0, "incident", "recorded", f"incident #{incident.id}", incident.event_id)


async def audit_messages(store: ModerationStore) -> list[str]:
    async with store.sessions() as s:
        return list((await s.execute(text("SELECT message FROM audit ORDER BY id"))).scalars())


async def test_an_incidents_audit_row_is_written_in_its_transaction_also_for_an_event_recorded_before(
    store: ModerationStore,
) -> None:
    first = await store.append_incident("$event1", record(1), incident_audit)
    again = await store.append_incident("$event1", record(1), incident_audit)
    assert again == first
    assert await audit_messages(store) == ["incident #1", "incident #1"]


async def test_an_incident_whose_audit_row_fails_is_not_recorded(store: ModerationStore) -> None:
    def broken(_incident: Incident) -> dict[str, Any]:
        raise ValueError("no audit row")

    with pytest.raises(ValueError):
        await store.append_incident("$event1", record(1), broken)
    assert await store.incidents() == [] and await audit_messages(store) == []
    assert (await store.append_incident("$event1", record(1), incident_audit)).id == 1
    assert (await store.verify_chain()).ok


async def test_concurrent_appends_keep_one_chain(store: ModerationStore) -> None:
    results = await asyncio.gather(*(store.append_incident(f"$event{n}", record(n)) for n in range(8)))
    assert sorted(i.id for i in results) == list(range(1, 9))
    assert await store.verify_chain() == ChainReport(True, 8, None, "8 incidents, chain intact")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("record_json", '{"incident_type":"nothing to see"}'),
        ("event_id", "$someone-else"),
        ("created_at", 1.0),
        ("row_hash", "f" * 64),
    ],
)
async def test_an_edited_row_is_named(store: ModerationStore, column: str, value: Any) -> None:
    await append(store, 5)
    await sql(store, f"UPDATE incidents SET {column} = :value WHERE id = 3", value=value)
    report = await store.verify_chain()
    assert (report.ok, report.first_bad_id, report.checked) == (False, 3, 2)
    assert report.message == "incident 3: contents do not match its keyed hash (edited, or not the key it was written with)"


async def test_an_edit_that_recomputes_the_rows_hash_breaks_the_next_link(store: ModerationStore) -> None:
    incidents = await append(store, 5)
    forged = '{"incident_type":"nothing to see"}'
    row = incidents[2]
    await sql(
        store,
        "UPDATE incidents SET record_json = :j, row_hash = :h WHERE id = 3",
        j=forged,
        h=keyed_hash(KEY, row.prev_hash, row.id, row.event_id, row.created_at, forged),
    )
    report = await store.verify_chain()
    assert (report.ok, report.first_bad_id) == (False, 4)
    assert "chain broken" in report.message


@pytest.mark.parametrize(("deleted", "broken_at"), [(3, 4), (1, 2), (4, 5)])
async def test_a_removed_row_breaks_the_chain_at_the_next_row(store: ModerationStore, deleted: int, broken_at: int) -> None:
    await append(store, 5)
    await sql(store, "DELETE FROM incidents WHERE id = :id", id=deleted)
    report = await store.verify_chain()
    assert (report.ok, report.first_bad_id, report.checked) == (False, broken_at, broken_at - 2)
    assert report.message == f"incident {broken_at}: chain broken (a row before it was removed or altered)"


async def test_retention_keeps_the_chain_verifiable_and_appends_continue_it(store: ModerationStore) -> None:
    incidents = await append(store, 5)
    assert await store.purge_incidents_before(incidents[0].created_at) == 0  # nothing older
    assert await store.purge_incidents_before(incidents[2].created_at) == 2  # rows 1 and 2
    assert [i.id for i in await store.incidents()] == [3, 4, 5]
    assert await store.verify_chain() == ChainReport(True, 3, None, "3 incidents, chain intact")

    [sixth] = await append(store, 1, start=6)
    assert (sixth.id, sixth.prev_hash) == (6, incidents[4].row_hash)
    assert await store.verify_chain() == ChainReport(True, 4, None, "4 incidents, chain intact")

    # A second purge moves the start again; the kept rows are still checked.
    assert await store.purge_incidents_before(sixth.created_at) == 3
    assert await store.verify_chain() == ChainReport(True, 1, None, "1 incidents, chain intact")

    # Removing the new first row is still seen.
    await append(store, 2, start=7)
    await sql(store, "DELETE FROM incidents WHERE id = 6")
    report = await store.verify_chain()
    assert (report.ok, report.first_bad_id) == (False, 7)


async def test_retention_of_everything_and_the_chain_goes_on(store: ModerationStore) -> None:
    incidents = await append(store, 3)
    assert await store.purge_incidents_before(incidents[-1].created_at + 1) == 3
    assert await store.incidents() == []
    assert await store.verify_chain() == ChainReport(True, 0, None, "0 incidents, chain intact")
    [fourth] = await append(store, 1, start=4)
    assert (fourth.id, fourth.prev_hash) == (4, incidents[-1].row_hash)
    assert (await store.verify_chain()).ok
    # A purged event is a new incident if it comes again (e.g. retroactively).
    again = await store.append_incident("$event1", record(1))
    assert again.id == 5
    assert (await store.verify_chain()).checked == 2


async def test_incidents_since_and_limit(store: ModerationStore) -> None:
    incidents = await append(store, 5)
    assert [i.id for i in await store.incidents(since=incidents[3].created_at)] == [4, 5]
    assert [i.id for i in await store.incidents(limit=2)] == [1, 2]
    assert [i.id for i in await store.incidents(since=incidents[1].created_at, limit=2)] == [2, 3]

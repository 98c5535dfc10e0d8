"""The incident chain against an attacker who holds the database but not the key.

Every attack of issue 10's finding 8 is played on a real, migrated SQLite database: the
newest rows deleted, a row edited and its hash recomputed (plain, or with a wrong key),
everything deleted, rows reordered. `verify_evidence` (what `modbot audit verify` runs)
must catch each, naming the first bad row or the missing rows. Also: rows from before
the key (plain SHA-256) stay verifiable, and the key file is checked at start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.config import Config, load_config
from bot.record.evidence import (
    AnchorFile,
    ChainAnchors,
    ChainKeyError,
    create_chain_key,
    open_chain_key,
    read_chain_key,
    read_room_anchors,
)
from bot.cli.audit import EvidenceReport, verify_evidence
from bot.record.chain import GENESIS, Anchor, ChainReport, canonical_record, keyed_hash, legacy_hash
from bot.record.db import create_engine, migrate
from bot.record.moderation import Incident, ModerationStore


class StepClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Audit:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    async def audit(self, category: str, outcome: str, message: str, **_kw: Any) -> None:
        self.rows.append((category, outcome, message))


class Room:
    """What the management room holds: the notices the bot sent (a homeserver's /messages)."""

    def __init__(self, bot: str = "@modbot:example.org") -> None:
        self.bot = bot
        self.events: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    async def send_message(self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message") -> str:
        if self.fail is not None:
            raise self.fail
        self.events.append({"type": event_type, "sender": self.bot, "room_id": room_id, "content": content,
                            "event_id": f"$e{len(self.events)}"})
        return self.events[-1]["event_id"]

    async def messages(self, room_id: str, *, limit: int = 100, from_token: str | None = None) -> dict[str, Any]:
        newest_first = list(reversed(self.events))
        start = int(from_token or 0)
        chunk = newest_first[start : start + limit]
        return {"chunk": chunk, "end": str(start + len(chunk)) if chunk else None}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "modbot.db"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate(engine)
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture
def config(tmp_path: Path, template: Path) -> Config:
    shutil.copy(template, tmp_path / "modbot.db")
    (tmp_path / "config.yaml").write_text(
        "homeserver: {url: 'http://127.0.0.1:9', domain: example.org}\n"
        "appservice: {as_token: a-real-as-token, hs_token: a-real-hs-token}\n"
        "database: {url: 'sqlite+aiosqlite:///modbot.db'}\n"
    )
    return load_config(tmp_path / "config.yaml")


@pytest.fixture
async def store(config: Config) -> AsyncIterator[ModerationStore]:
    engine = create_engine(config.database.url)
    try:
        yield ModerationStore(engine, clock=StepClock())
    finally:
        await engine.dispose()


@pytest.fixture
async def keyed(store: ModerationStore, config: Config) -> AsyncIterator[tuple[ModerationStore, ChainAnchors, Room]]:
    """The store as the running bot has it: key opened, anchors after every incident."""
    room = Room()
    key = await open_chain_key(config.incidents.chain_key_file, store)
    anchors = ChainAnchors(
        store, AnchorFile(config.incidents.anchor_file), Audit(), sender=lambda: room,
        management_room=lambda: "!mgmt:example.org", clock=StepClock(),
    )
    store.use_chain_key(key, on_incident=anchors.incident_recorded)
    yield store, anchors, room


def record(n: int) -> dict[str, Any]:
    return {"incident_type": "test-label", "reported_user": f"@spam{n}:example.org", "media": [{"sha256": f"{n:064x}"}]}


async def append(store: ModerationStore, count: int, start: int = 1) -> list[Incident]:
    return [await store.append_incident(f"$event{n}", record(n)) for n in range(start, start + count)]


async def sql(store: ModerationStore, statement: str, **params: Any) -> None:
    async with store.sessions.begin() as s:
        await s.execute(text(statement), params)


async def rows(store: ModerationStore) -> list[dict[str, Any]]:
    async with store.sessions() as s:
        result = await s.execute(text("SELECT * FROM incidents ORDER BY id"))
        return [dict(r._mapping) for r in result]


async def verify(config: Config) -> EvidenceReport:
    return await verify_evidence(config, use_homeserver=False)


# --- what holds --------------------------------------------------------------------------------


async def test_each_new_incident_anchors_the_head_it_made(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    made = await append(store, 3)
    # The same event again (a resumed event): no new row, the head anchored again (what a
    # crash between the row and its anchor would have missed).
    assert await store.append_incident("$event2", record(2)) == made[1]
    anchors, bad = AnchorFile(config.incidents.anchor_file).read()
    assert bad == []
    heads = [(i.id, i.row_hash, n, "incident") for n, i in enumerate(made, 1)]
    assert [(a.head_id, a.head_hash, a.count, a.reason) for a in anchors] == [*heads, heads[-1]]
    assert tuple(await store.chain_head()) == (3, made[-1].id, made[-1].row_hash)


async def test_an_untouched_chain_and_its_anchors_verify(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 5)
    report = await verify(config)
    assert report.ok, report.lines
    assert report.lines[0] == "5 incidents, chain intact"
    # One anchor per incident in the file, each a head the chain still has.
    assert "anchors: 5 compared with the chain (5 in the anchor file, 0 in the management room)" in report.lines
    assert report.lines[-1] == "evidence intact"


async def test_new_rows_are_keyed_and_the_key_lives_in_a_0600_file(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    [incident] = await append(store, 1)
    [row] = await rows(store)
    key = read_chain_key(config.incidents.chain_key_file)
    assert key is not None and len(key) == 32
    assert row["chain_scheme"] == "hmac-sha256"
    expected = keyed_hash(key, GENESIS, 1, "$event1", row["created_at"], canonical_record(record(1)))
    assert incident.row_hash == row["row_hash"] == expected
    # Anyone can compute the plain hash; it is not what the row carries.
    assert row["row_hash"] != legacy_hash(GENESIS, 1, "$event1", row["created_at"], row["record_json"])
    for path in (config.incidents.chain_key_file, config.incidents.anchor_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert key.hex() not in json.dumps([dict(r) for r in await rows(store)])


# --- the attacks ------------------------------------------------------------------------------------


async def test_deleting_the_newest_rows_is_caught_by_the_anchors(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 5)
    await sql(store, "DELETE FROM incidents WHERE id >= 4")
    report = await verify(config)
    # What is left is a perfectly linked chain: only the anchors can tell.
    assert report.lines[0] == "3 incidents, chain intact"
    assert not report.ok
    assert any(line.startswith("incidents 4-5 missing: the anchor of ") and "(anchor file)" in line for line in report.lines)
    assert report.lines[-1] == "EVIDENCE NOT INTACT"


async def test_deleting_everything_is_caught_by_the_anchors(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 4)
    await sql(store, "DELETE FROM incidents")
    report = await verify(config)
    assert report.lines[0] == "0 incidents, chain intact"
    assert not report.ok
    assert any(line.startswith("incidents 1-4 missing") for line in report.lines)


async def test_a_row_edited_with_its_plain_hash_recomputed_is_named(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 5)
    row = (await rows(store))[2]
    forged = canonical_record({"incident_type": "nothing to see"})
    # Both ways an attacker without the key can recompute: keep the scheme, or claim a legacy row.
    for scheme in ("hmac-sha256", "sha256"):
        await sql(
            store, "UPDATE incidents SET record_json = :j, row_hash = :h, chain_scheme = :s WHERE id = 3",
            j=forged, s=scheme, h=legacy_hash(row["prev_hash"], 3, row["event_id"], row["created_at"], forged),
        )
        report = await verify(config)
        assert (report.ok, report.first_bad_id) == (False, 3)
        assert report.lines[0] == {
            "hmac-sha256": "incident 3: contents do not match its keyed hash (edited, or not the key it was written with)",
            "sha256": "incident 3: plain SHA-256 after keyed rows (rewritten without the key)",
        }[scheme]


async def test_a_chain_rewritten_with_a_wrong_key_is_named_at_its_first_rewritten_row(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 5)
    wrong = os.urandom(32)
    prev = (await rows(store))[1]["row_hash"]
    for row in (await rows(store))[2:]:  # from row 3 on, every link recomputed consistently
        forged = row["record_json"].replace("@spam", "@someone-else")
        new_hash = keyed_hash(wrong, prev, row["id"], row["event_id"], row["created_at"], forged)
        await sql(store, "UPDATE incidents SET record_json = :j, prev_hash = :p, row_hash = :h WHERE id = :id",
                  j=forged, p=prev, h=new_hash, id=row["id"])
        prev = new_hash
    report = await verify(config)
    assert (report.ok, report.first_bad_id) == (False, 3)
    assert report.lines[0].startswith("incident 3: contents do not match its keyed hash")
    # The anchors see it too: the anchored heads 3-5 are not what the rows now say.
    assert sum("its hash differs from the anchor" in line for line in report.lines) == 3


async def test_a_rewrite_with_the_right_key_is_caught_by_the_anchors(keyed: Any, config: Config) -> None:
    """Someone who has the key too (the machine itself) can relink the chain; anchors kept
    elsewhere still hold the old heads."""
    store, _, _ = keyed
    await append(store, 3)
    key = read_chain_key(config.incidents.chain_key_file)
    assert key is not None
    prev = GENESIS
    for row in await rows(store):
        forged = row["record_json"].replace("@spam", "@someone-else")
        new_hash = keyed_hash(key, prev, row["id"], row["event_id"], row["created_at"], forged)
        await sql(store, "UPDATE incidents SET record_json = :j, prev_hash = :p, row_hash = :h WHERE id = :id",
                  j=forged, p=prev, h=new_hash, id=row["id"])
        prev = new_hash
    report = await verify(config)
    assert report.lines[0] == "3 incidents, chain intact"
    assert not report.ok
    assert any(line.startswith("incident 3: its hash differs from the anchor of ") for line in report.lines)


@pytest.mark.parametrize("swap", ["contents", "ids"])
async def test_reordered_rows_are_named(keyed: Any, config: Config, swap: str) -> None:
    store, _, _ = keyed
    await append(store, 5)
    a, b = (await rows(store))[1:3]
    if swap == "contents":  # rows 2 and 3 trade everything but their ids
        for mine, theirs in ((a, b), (b, a)):
            await sql(store, "UPDATE incidents SET event_id = :e, record_json = :j, created_at = :c, prev_hash = :p, "
                      "row_hash = :h WHERE id = :id", e=theirs["event_id"] + "x", j=theirs["record_json"],
                      c=theirs["created_at"], p=theirs["prev_hash"], h=theirs["row_hash"], id=mine["id"])
    else:  # rows 2 and 3 trade ids
        await sql(store, "UPDATE incidents SET id = 100 WHERE id = 2")
        await sql(store, "UPDATE incidents SET id = 2 WHERE id = 3")
        await sql(store, "UPDATE incidents SET id = 3 WHERE id = 100")
    report = await verify(config)
    assert (report.ok, report.first_bad_id) == (False, 2)


async def test_a_forged_retention_mark_does_not_excuse_deleted_rows(keyed: Any, config: Config) -> None:
    """Passing a deletion off as retention needs a mark authenticated with the key."""
    store, _, _ = keyed
    incidents = await append(store, 4)
    await sql(store, "DELETE FROM incidents")
    forged = json.dumps({"prev_hash": incidents[-1].row_hash, "next_id": 5})
    await sql(store, "INSERT INTO settings (key, value, changed_by, changed_at) VALUES ('incidents.anchor', :v, 'x', 0)", v=forged)
    report = await verify(config)
    assert report.lines[0] == "0 incidents, chain intact"  # the mark makes an empty chain consistent...
    assert not report.ok  # ...but the anchors of rows 1-4 are not excused by it
    assert any(line.startswith("incidents 1-4 missing: ") for line in report.lines)


async def test_retention_is_not_taken_for_truncation(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    incidents = await append(store, 5)
    assert await store.purge_incidents_before(incidents[3].created_at) == 3
    report = await verify(config)
    assert report.ok, report.lines
    assert report.lines[0] == "2 incidents, chain intact"
    assert "anchors: 2 compared with the chain (5 in the anchor file, 0 in the management room)" in report.lines
    # Everything purged: still intact, and appending goes on from the keyed mark.
    assert await store.purge_incidents_before(incidents[-1].created_at + 1) == 2
    [sixth] = await append(store, 1, start=6)
    assert sixth.id == 6
    assert (await verify(config)).ok


# --- rows from before the key ---------------------------------------------------------------------


async def insert_legacy(store: ModerationStore, count: int) -> str:
    """Rows as modbot wrote them before the chain was keyed (the migration marks them sha256)."""
    prev = GENESIS
    for n in range(1, count + 1):
        record_json, created = canonical_record(record(n)), 1_600_000_000.0 + n
        row_hash = legacy_hash(prev, n, f"$old{n}", created, record_json)
        await sql(store, "INSERT INTO incidents (id, event_id, record_json, created_at, prev_hash, row_hash) "
                  "VALUES (:id, :e, :j, :c, :p, :h)", id=n, e=f"$old{n}", j=record_json, c=created, p=prev, h=row_hash)
        prev = row_hash
    return prev


async def test_legacy_rows_stay_verifiable_and_keyed_rows_continue_their_chain(store: ModerationStore, config: Config) -> None:
    legacy_head = await insert_legacy(store, 3)
    assert [r["chain_scheme"] for r in await rows(store)] == ["sha256"] * 3
    # No key file yet and no keyed row: the first start makes the key.
    assert not config.incidents.chain_key_file.exists()
    store.use_chain_key(await open_chain_key(config.incidents.chain_key_file, store))
    [fourth] = await append(store, 1, start=4)
    assert (fourth.id, fourth.prev_hash) == (4, legacy_head)
    report = await verify(config)
    assert report.lines[0] == "4 incidents, chain intact" and report.ok
    # A legacy row is plain SHA-256: recomputable without the key, but the keyed row after
    # it covers the legacy head, so a rewrite of the old rows still shows.
    row = (await rows(store))[1]
    forged = canonical_record({"incident_type": "nothing"})
    new2 = legacy_hash(row["prev_hash"], 2, row["event_id"], row["created_at"], forged)
    row3 = (await rows(store))[2]
    new3 = legacy_hash(new2, 3, row3["event_id"], row3["created_at"], row3["record_json"])
    await sql(store, "UPDATE incidents SET record_json = :j, row_hash = :h WHERE id = 2", j=forged, h=new2)
    await sql(store, "UPDATE incidents SET prev_hash = :p, row_hash = :h WHERE id = 3", p=new2, h=new3)
    report = await verify(config)
    assert (report.ok, report.first_bad_id) == (False, 4)
    assert report.lines[0] == "incident 4: chain broken (a row before it was removed or altered)"


async def test_a_legacy_only_chain_verifies_without_a_key(store: ModerationStore, config: Config) -> None:
    await insert_legacy(store, 2)
    report = await verify(config)
    assert report.ok and report.lines[0] == "2 incidents, chain intact"
    assert any(line.startswith("no chain key file at ") for line in report.lines)


# --- the key file --------------------------------------------------------------------------------


async def test_a_missing_key_file_over_keyed_rows_is_refused(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 2)
    config.incidents.chain_key_file.unlink()
    with pytest.raises(ChainKeyError, match="is missing, but the database holds incidents keyed with it"):
        await open_chain_key(config.incidents.chain_key_file, store)
    assert not config.incidents.chain_key_file.exists()  # no new key made over the chain


async def test_a_missing_key_file_after_everything_was_purged_is_refused(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    incidents = await append(store, 2)
    await store.purge_incidents_before(incidents[-1].created_at + 1)
    config.incidents.chain_key_file.unlink()
    with pytest.raises(ChainKeyError, match="is missing"):
        await open_chain_key(config.incidents.chain_key_file, store)


async def test_a_key_that_does_not_match_the_chain_is_refused(keyed: Any, config: Config) -> None:
    store, _, _ = keyed
    await append(store, 2)
    config.incidents.chain_key_file.unlink()
    create_chain_key(config.incidents.chain_key_file)
    with pytest.raises(ChainKeyError, match="does not verify incident 2"):
        await open_chain_key(config.incidents.chain_key_file, store)
    report = await verify(config)  # and verify names the first row the key does not fit
    assert (report.ok, report.first_bad_id) == (False, 1)


@pytest.mark.parametrize("content", ["", "not hex at all", "ab" * 16, "ab" * 33])
def test_a_key_file_without_a_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "chain.key"
    path.write_text(content)
    with pytest.raises(ChainKeyError, match="does not hold a key"):
        read_chain_key(path)


def test_an_existing_key_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "chain.key"
    key = create_chain_key(path)
    with pytest.raises(FileExistsError):
        create_chain_key(path)
    assert read_chain_key(path) == key


# --- anchors ------------------------------------------------------------------------------------


async def test_an_anchor_goes_to_the_file_and_the_management_room(keyed: Any, config: Config) -> None:
    store, anchors, room = keyed
    incidents = await append(store, 3)
    result = await anchors.anchor("command", by="@mod:example.org")
    assert result.problems == () and result.event_id == "$e0"
    assert (result.anchor.head_id, result.anchor.head_hash, result.anchor.count) == (3, incidents[-1].row_hash, 3)
    [notice] = room.events
    assert notice["content"]["msgtype"] == "m.notice"
    assert "3 incidents held, head incident #3" in notice["content"]["body"]
    assert Anchor.from_json(notice["content"]["modbot.anchor"]) == result.anchor
    assert AnchorFile(config.incidents.anchor_file).last() == result.anchor
    found, read = await read_room_anchors(room.messages, "!mgmt:example.org", room.bot, max_events=50)
    assert (found, read) == ([result.anchor], 1)


async def test_the_room_anchor_alone_catches_truncation(keyed: Any, config: Config) -> None:
    """With the anchor file gone too, the management room's notice still tells."""
    store, anchors, room = keyed
    await append(store, 4)
    await anchors.anchor("daily")
    await sql(store, "DELETE FROM incidents WHERE id = 4")
    config.incidents.anchor_file.unlink()
    found, _ = await read_room_anchors(room.messages, "!mgmt:example.org", room.bot, max_events=50)
    from bot.record.chain import check_anchors

    links, mark = await store.chain()
    check = check_anchors([("management room", a) for a in found], {l.id: l.row_hash for l in links}, mark, None)
    assert not check.ok
    assert check.problems[0].startswith("incident 4 missing: the anchor of ") and "(management room)" in check.problems[0]


async def test_only_the_bots_own_notices_count_as_anchors(keyed: Any) -> None:
    store, anchors, room = keyed
    await append(store, 1)
    await anchors.anchor("command")
    forged = dict(room.events[0], sender="@someone:example.org")
    room.events.append(forged)
    found, read = await read_room_anchors(room.messages, "!mgmt:example.org", room.bot, max_events=50)
    assert (len(found), read) == (1, 2)


async def test_an_unreachable_room_still_anchors_to_the_file(keyed: Any, config: Config) -> None:
    store, anchors, room = keyed
    await append(store, 1)
    room.fail = OSError("connection refused")
    result = await anchors.anchor("daily")
    assert result.event_id is None
    assert result.problems == ("management room: connection refused",)
    assert AnchorFile(config.incidents.anchor_file).last() == result.anchor
    assert anchors._audit.rows[-1][:2] == ("incident", "anchor_partial")  # type: ignore[attr-defined]


def test_a_torn_or_tampered_anchor_file_line_is_reported(tmp_path: Path) -> None:
    file = AnchorFile(tmp_path / "anchors.jsonl")
    good = Anchor(2, "ab" * 32, 2, 1.0, "incident")
    file.append(good)
    with (tmp_path / "anchors.jsonl").open("a") as f:
        f.write('{"v": 1, "head_id": "two"}\n{"head_id": 3, "head_ha')
    assert file.read() == ([good], [2, 3])


@pytest.mark.parametrize(
    "data",
    [None, [], {"head_id": 1}, {"head_id": -1, "head_hash": "a" * 64, "count": 1, "at": 1},
     {"head_id": True, "head_hash": "a" * 64, "count": 1, "at": 1}, {"head_id": 1, "head_hash": "a", "count": 1, "at": 1}],
)
def test_what_is_not_an_anchor_is_none(data: Any) -> None:
    assert Anchor.from_json(data) is None


async def test_verify_says_when_the_management_room_cannot_be_read(keyed: Any, config: Config, tmp_path: Path) -> None:
    store, _, _ = keyed
    await append(store, 2)
    path = tmp_path / "config.yaml"
    path.write_text(path.read_text() + "rooms: {management_room: '!mgmt:example.org'}\n")  # homeserver: a closed port
    report = await verify_evidence(load_config(path))
    assert report.ok, report.lines
    assert any(line.startswith("management room: not reachable (") and line.endswith("checked against the anchor file only")
               for line in report.lines)


async def test_the_anchor_loop_anchors_at_start_when_the_head_moved(keyed: Any, config: Config) -> None:
    store, anchors, room = keyed
    store.use_chain_key(read_chain_key(config.incidents.chain_key_file))  # type: ignore[arg-type]  # no file hook
    await append(store, 2)
    anchors.start(interval=3600)
    try:
        async def posted() -> None:
            while not room.events:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(posted(), timeout=10)
    finally:
        await anchors.stop()
    assert room.events[0]["content"]["modbot.anchor"]["reason"] == "start"
    assert room.events[0]["content"]["modbot.anchor"]["head_id"] == 2


async def test_the_anchor_loop_waits_when_the_file_has_the_head(keyed: Any, config: Config) -> None:
    store, anchors, room = keyed
    await append(store, 2)  # the file learnt the head from each incident
    anchors.start(interval=3600)
    await asyncio.sleep(0.3)
    await anchors.stop()
    assert room.events == []


def test_an_anchor_has_no_floats_for_matrix() -> None:
    """Matrix's canonical JSON has no floats: Synapse refused the notice with M_BAD_JSON."""
    data = Anchor(1, "ab" * 32, 1, 1_700_000_000.75, "daily").to_json()
    assert not any(isinstance(v, float) for v in data.values())
    assert Anchor.from_json(data) == Anchor(1, "ab" * 32, 1, 1_700_000_000.0, "daily")


async def test_an_unwritable_anchor_file_does_not_lose_the_incident(store: ModerationStore, config: Config, tmp_path: Path) -> None:
    unwritable = tmp_path / "anchors-dir"
    unwritable.mkdir()  # a directory where the file should be: every append fails
    audit = Audit()
    anchors = ChainAnchors(store, AnchorFile(unwritable), audit, sender=lambda: None, management_room=lambda: None)
    store.use_chain_key(await open_chain_key(config.incidents.chain_key_file, store), on_incident=anchors.incident_recorded)
    [incident] = await append(store, 1)
    assert await store.incident(1) == incident
    assert [(c, o) for c, o, _ in audit.rows] == [("incident", "anchor_failed")]
    assert str(unwritable) in audit.rows[0][2]


async def test_rows_written_before_migration_0008_are_marked_plain_and_verify(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    try:
        await migrate(engine, "0007")
        prev = GENESIS
        async with engine.begin() as conn:
            for n in (1, 2):
                record_json = canonical_record(record(n))
                row_hash = legacy_hash(prev, n, f"$old{n}", 1.5 + n, record_json)
                await conn.execute(
                    text("INSERT INTO incidents (id, event_id, record_json, created_at, prev_hash, row_hash) "
                         "VALUES (:id, :e, :j, :c, :p, :h)"),
                    {"id": n, "e": f"$old{n}", "j": record_json, "c": 1.5 + n, "p": prev, "h": row_hash},
                )
                prev = row_hash
        await migrate(engine)
        store = ModerationStore(engine)
        links, _ = await store.chain()
        assert [link.scheme for link in links] == ["sha256", "sha256"]
        assert await store.verify_chain() == ChainReport(True, 2, None, "2 incidents, chain intact")
        # The first start after the upgrade makes the key; keyed rows follow the plain ones.
        store.use_chain_key(await open_chain_key(tmp_path / "chain.key", store))
        third = await store.append_incident("$new", record(3))
        assert (third.id, third.prev_hash) == (3, prev)
        assert (await store.verify_chain()).ok
    finally:
        await engine.dispose()

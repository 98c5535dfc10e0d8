"""Store: the durable intake queue, media and verdict records, idempotent actions, the audit log.

Every test runs against SQLite and a real PostgreSQL, each migrated from empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.hashing import compute_hashes
from bot.model import MatchKind, MediaRef, Verdict
from bot.record.db import create_engine, migrate
from bot.record.store import Store
from bot.record.tables import EventRow, VerdictRow
from bot.demo.samples import encode, make_photo

ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"


class StepClock:
    """A clock that moves one second each time it is read, so timestamps are distinct."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield Store(engine, clock=StepClock())
    finally:
        await engine.dispose()


def event(n: int, *, room: str = ROOM, event_type: str = "m.room.message", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"$event{n}",
        "room_id": room,
        "sender": "@alice:example.org",
        "type": event_type,
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {
            "msgtype": "m.image",
            "body": f"photo {n} — ünïcödé ☃",
            "url": f"mxc://example.org/media{n}",
            "info": {"mimetype": "image/png", "w": 800, "h": 600},
        },
        "unsigned": {"age": 12},
        **extra,
    }


def everything(_event: dict[str, Any]) -> bool:
    return True


def ref(media_id: str) -> MediaRef:
    return MediaRef(f"mxc://example.org/{media_id}", "example.org", media_id, "content.url")


# --- intake ------------------------------------------------------------------------------


async def test_a_new_transaction_stores_its_wanted_events(store: Store) -> None:
    result = await store.store_transaction("txn1", [event(1), event(2)], everything)
    assert result.new is True
    assert result.queued_ids == ("$event1", "$event2")
    assert result.duplicates == 0
    assert result.rejected == ()
    assert await store.pending_event_ids() == ["$event1", "$event2"]


async def test_a_repeated_transaction_with_the_same_events_queues_nothing_again(store: Store) -> None:
    await store.store_transaction("txn1", [event(1)], everything)
    await store.finish_event("$event1", "done")
    # Synapse resends a transaction it got no answer for.
    again = await store.store_transaction("txn1", [event(1)], everything)
    assert (again.new, again.queued_ids, again.duplicates, again.rejected) == (False, (), 1, ())
    assert await store.pending_event_ids() == []
    loaded = await store.load_event("$event1")
    assert loaded is not None and loaded.status == "done"


async def test_a_repeated_transaction_id_with_new_events_stores_them(store: Store) -> None:
    # Synapse on SQLite numbers its transactions from 1 again after a restart: the id
    # of an old transaction arrives with new events, which must not be dropped.
    await store.store_transaction("1", [event(1), event(2)], everything)
    await store.finish_event("$event1", "done")
    await store.finish_event("$event2", "done")
    after_restart = await store.store_transaction("1", [event(2), event(3)], everything)
    assert after_restart.new is False
    assert after_restart.queued_ids == ("$event3",)
    assert after_restart.duplicates == 1
    assert await store.pending_event_ids() == ["$event3"]
    kept = await store.load_event("$event2")
    assert kept is not None and kept.status == "done"  # not reset, not processed twice


async def test_an_event_stored_by_an_earlier_transaction_is_not_queued_again(store: Store) -> None:
    await store.store_transaction("txn1", [event(1)], everything)
    await store.finish_event("$event1", "done")
    result = await store.store_transaction("txn2", [event(1), event(2)], everything)
    assert result.new is True
    assert result.queued_ids == ("$event2",)
    assert result.duplicates == 1
    assert await store.pending_event_ids() == ["$event2"]
    first = await store.load_event("$event1")
    assert first is not None and first.status == "done"


async def test_an_event_listed_twice_in_one_transaction_is_queued_once(store: Store) -> None:
    result = await store.store_transaction("txn1", [event(1), event(1)], everything)
    assert result.queued_ids == ("$event1",)
    assert await store.pending_event_ids() == ["$event1"]


MALFORMED: list[tuple[str, Any, str]] = [
    ("a string", "not an event", "not an object (str)"),
    ("null", None, "not an object (NoneType)"),
    ("a list", [event(90)], "not an object (list)"),
    ("no event_id", {k: v for k, v in event(91).items() if k != "event_id"}, "'event_id'"),
    ("numeric event_id", {**event(92), "event_id": 92}, "'event_id'"),
    ("no room_id", {k: v for k, v in event(93).items() if k != "room_id"}, "$event93: missing or invalid 'room_id'"),
    ("empty sender", {**event(94), "sender": ""}, "$event94: missing or invalid 'sender'"),
    ("no type", {k: v for k, v in event(95).items() if k != "type"}, "$event95: missing or invalid 'type'"),
    ("room_id not a string", {**event(96), "room_id": ["!a:b"]}, "$event96: missing or invalid 'room_id'"),
]


async def test_malformed_events_are_rejected_with_a_reason_and_audited(store: Store) -> None:
    raws = [raw for _, raw, _ in MALFORMED]
    # Malformed events among good ones: the good ones are stored all the same.
    result = await store.store_transaction("txn1", [event(1), *raws, event(2)], everything)
    assert result.new is True
    assert result.queued_ids == ("$event1", "$event2")
    assert len(result.rejected) == len(MALFORMED)
    for (name, _, reason), rejected in zip(MALFORMED, result.rejected, strict=True):
        assert reason in rejected, name
    audit = await store.audit_log(category="intake")
    assert [(a.outcome, a.message) for a in reversed(audit)] == [("rejected", r) for r in result.rejected]
    assert await store.pending_event_ids() == ["$event1", "$event2"]


async def test_a_transaction_of_only_malformed_events_is_still_recorded(store: Store) -> None:
    result = await store.store_transaction("txn1", ["x", {"type": "m.room.message"}], everything)
    assert result.new is True and result.queued_ids == () and len(result.rejected) == 2
    assert len(await store.audit_log(category="intake")) == 2
    # A repeated id may carry other events (Synapse restarted): what it rejects is audited.
    assert (await store.store_transaction("txn1", [[]], everything)).new is False
    assert [a.message for a in await store.audit_log(category="intake")][0] == "event is not an object (list)"


async def test_unwanted_events_are_not_stored(store: Store) -> None:
    text = {**event(2), "content": {"msgtype": "m.text", "body": "hello"}}
    wanted_ids = {"$event1"}
    result = await store.store_transaction("txn1", [event(1), text], lambda e: e["event_id"] in wanted_ids)
    assert result.queued_ids == ("$event1",)
    assert await store.load_event("$event2") is None

    nothing = await store.store_transaction("txn2", [event(3)], lambda e: False)
    assert nothing.new is True and nothing.queued == () and nothing.duplicates == 0
    assert await store.load_event("$event3") is None
    assert await store.events_by_status() == {"pending": 1}


async def test_pending_events_come_in_arrival_order(store: Store) -> None:
    # Synapse sends up to 100 events per transaction: order within one counts too.
    first = [event(n) for n in range(20, 0, -1)]
    await store.store_transaction("txn1", first, everything)
    await store.store_transaction("txn2", [event(50), event(40)], everything)
    await store.finish_event("$event3", "done")
    # Retried events keep their place in the queue.
    for n in (20, 17, 11, 5, 1, 40):
        await store.count_attempt(f"$event{n}", "homeserver unreachable")
    expected = [e["event_id"] for e in first if e["event_id"] != "$event3"] + ["$event50", "$event40"]
    assert await store.pending_event_ids() == expected


async def test_load_event_round_trips_the_event_json(store: Store) -> None:
    original = event(1, event_type="m.sticker", redacts=None)
    original["content"]["nested"] = {"list": [1, 2.5, True, None, "ş"], "empty": {}}
    await store.store_transaction("txn1", [original], everything)
    loaded = await store.load_event("$event1")
    assert loaded is not None
    assert loaded.event == original
    assert (loaded.event_id, loaded.room_id, loaded.sender, loaded.type) == (
        "$event1", ROOM, "@alice:example.org", "m.sticker",
    )
    assert (loaded.status, loaded.attempts) == ("pending", 0)
    assert await store.load_event("$missing") is None


async def test_finish_event_and_count_attempt(store: Store) -> None:
    await store.store_transaction("txn1", [event(1), event(2), event(3)], everything)
    assert await store.count_attempt("$event1", "timeout") == 1
    assert await store.count_attempt("$event1", "timeout again") == 2
    assert await store.count_attempt("$missing", "whatever") == 0
    loaded = await store.load_event("$event1")
    assert loaded is not None and (loaded.status, loaded.attempts) == ("pending", 2)

    await store.finish_event("$event1", "failed", "gave up after 2 attempts")
    await store.finish_event("$event2", "done")
    await store.finish_event("$missing", "done")  # a no-op, not an error
    assert await store.pending_event_ids() == ["$event3"]
    assert await store.events_by_status() == {"failed": 1, "done": 1, "pending": 1}


async def test_events_by_status_of_an_empty_queue(store: Store) -> None:
    assert await store.events_by_status() == {}
    assert await store.queue_state() == ({}, None)


async def test_the_queue_state_counts_statuses_and_dates_the_oldest_pending_event(store: Store) -> None:
    # What /health reads, in one trip: the oldest *pending* event, not the oldest event.
    await store.store_transaction("txn1", [event(1)], everything)
    await store.store_transaction("txn2", [event(2), event(3)], everything)
    await store.finish_event("$event1", "done")
    loaded = await store.load_event("$event2")
    assert loaded is not None
    assert await store.queue_state() == ({"done": 1, "pending": 2}, loaded.received_at)
    assert await store.oldest_pending_received_at() == loaded.received_at


# --- media and verdicts ------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_hashes() -> Any:
    return compute_hashes(encode(make_photo(7, (96, 64)), "PNG"))


async def test_record_media_upserts_and_hashes_round_trip(store: Store, image_hashes: Any) -> None:
    media = ref("abc")
    assert await store.get_media(media.mxc) is None

    await store.record_media(media, status="not_scanned", mimetype="image/png", error="download timed out")
    first = await store.get_media(media.mxc)
    assert first is not None
    assert (first.status, first.hashes, first.mimetype, first.error) == (
        "not_scanned", None, "image/png", "download timed out",
    )

    assert image_hashes.pdq and len(image_hashes.pdq_queries) > 1
    await store.record_media(media, status="hashed", hashes=image_hashes, mimetype="image/png")
    second = await store.get_media(media.mxc)
    assert second is not None
    assert (second.status, second.error) == ("hashed", None)
    # Everything but the format and the perceptual error (not kept) comes back.
    assert second.hashes == replace(image_hashes, image_format=None, perceptual_error=None)
    assert second.hashes.pdq_queries == image_hashes.pdq_queries

    # Re-recorded without hashes (quarantined, no longer downloadable): the hashes stay.
    await store.record_media(media, status="not_scanned", error="404")
    third = await store.get_media(media.mxc)
    assert third is not None
    assert (third.status, third.error, third.hashes) == ("not_scanned", "404", second.hashes)


async def test_record_media_of_a_non_image(store: Store) -> None:
    hashes = compute_hashes(b"%PDF-1.4 not an image")
    await store.record_media(ref("doc"), status="hashed", hashes=hashes, mimetype="application/pdf")
    stored = await store.get_media("mxc://example.org/doc")
    assert stored is not None and stored.hashes is not None
    assert stored.hashes.pdq is None and stored.hashes.pdq_queries == ()
    assert (stored.hashes.sha256, stored.hashes.md5, stored.hashes.size) == (hashes.sha256, hashes.md5, hashes.size)


async def _verdict_rows(store: Store) -> int:
    async with store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(VerdictRow))).scalar_one())


def verdict(label: str, kind: MatchKind = MatchKind.EXACT, hash_type: str = "sha256", distance: int = 0) -> Verdict:
    return Verdict(
        classifier="hashlist",
        label=label,
        kind=kind,
        list_name="known",
        hash_type=hash_type,
        distance=distance,
        matched_hash="ab" * 32,
    )


async def test_no_verdicts_are_recorded_as_no_match_once(store: Store) -> None:
    mxc = "mxc://example.org/clean"
    await store.record_verdicts("$event1", mxc, "hashlist", [])
    await store.record_verdicts("$event1", mxc, "hashlist", [])  # a replayed event
    records = await store.verdicts_for(event_id="$event1")
    assert [(r.mxc, r.classifier, r.kind, r.list_name, r.label) for r in records] == [
        (mxc, "hashlist", "no_match", "", ""),
    ]


async def test_replayed_verdicts_are_not_duplicated(store: Store) -> None:
    mxc = "mxc://example.org/known"
    found = [verdict("csam"), verdict("other", MatchKind.NEAR, "pdq", 12)]
    await store.record_verdicts("$event1", mxc, "hashlist", found)
    await store.record_verdicts("$event1", mxc, "hashlist", found)
    await store.record_verdicts("$event2", mxc, "hashlist", found[:1])  # a re-post
    assert await _verdict_rows(store) == 3

    by_event = await store.verdicts_for(event_id="$event1")
    assert [(r.label, r.kind, r.hash_type, r.distance) for r in by_event] == [
        ("csam", "exact", "sha256", 0),
        ("other", "near", "pdq", 12),
    ]
    by_mxc = await store.verdicts_for(mxc=mxc)
    assert [(r.event_id, r.label) for r in by_mxc] == [("$event1", "csam"), ("$event1", "other"), ("$event2", "csam")]
    assert await store.verdicts_for(event_id="$event1", mxc="mxc://example.org/elsewhere") == []


# --- an event's writes, committed together ---------------------------------------------------


async def test_the_intake_hands_over_the_events_it_stored_as_they_were_received(store: Store) -> None:
    result = await store.store_transaction("txn1", [event(1), event(2), event(1)], everything)
    assert [e.event_id for e in result.queued] == ["$event1", "$event2"]
    handed = result.queued[0]
    assert handed.event == event(1) and handed.from_intake
    assert (handed.room_id, handed.sender, handed.type, handed.status, handed.attempts) == (
        ROOM, "@alice:example.org", "m.room.message", "pending", 0,
    )
    loaded = await store.load_event("$event1")
    assert loaded is not None and not loaded.from_intake  # read back: it may have been processed before
    assert replace(handed, from_intake=False) == loaded


async def test_a_journal_is_written_in_one_go_with_the_events_new_status(store: Store, image_hashes: Any) -> None:
    await store.store_transaction("txn1", [event(1)], everything)
    stored = await store.load_event("$event1")
    assert stored is not None
    journal = store.journal(stored)
    media = ref("media1")
    journal.link([media])
    journal.record_media(media, status="hashed", hashes=image_hashes, mimetype="image/png")
    journal.record_verdicts(media.mxc, "hashlist", [])
    journal.audit("verdict", "no_match", "no match", mxc=media.mxc)
    assert journal.pending_hashes(media.mxc) == replace(image_hashes, image_format=None, perceptual_error=None)
    # Nothing is written before the commit: a crash now leaves the event pending, untouched.
    assert await store.get_media(media.mxc) is None
    assert await store.audit_log(event_id="$event1") == []
    assert await store.pending_event_ids() == ["$event1"]

    await store.commit(journal, finish="done")
    assert not journal  # emptied by the commit
    assert await store.pending_event_ids() == []
    assert await store.events_by_status() == {"done": 1}
    assert await store.media_of_event("$event1") == [media.mxc]
    saved = await store.get_media(media.mxc)
    assert saved is not None and saved.hashes == replace(image_hashes, image_format=None, perceptual_error=None)
    assert [(v.kind, v.classifier) for v in await store.verdicts_for(event_id="$event1")] == [("no_match", "hashlist")]
    [entry] = await store.audit_log(event_id="$event1")
    assert (entry.category, entry.outcome, entry.room_id, entry.sender, entry.mxc) == (
        "verdict", "no_match", ROOM, "@alice:example.org", media.mxc,
    )


async def test_a_journal_keeps_audit_order_and_the_latest_state_of_each_media(store: Store, image_hashes: Any) -> None:
    await store.store_transaction("txn1", [event(1)], everything)
    stored = await store.load_event("$event1")
    assert stored is not None
    journal = store.journal(stored)
    broken, fine = ref("broken"), ref("fine")
    journal.record_media(broken, status="not_scanned", error="download timed out")
    journal.record_media(fine, status="hashed", hashes=image_hashes)
    journal.record_media(broken, status="not_scanned", error="404")  # the later state wins
    for n in range(5):
        journal.audit("scan", "step", f"step {n}")
    await store.commit(journal)  # without a status: the event stays pending
    assert await store.pending_event_ids() == ["$event1"]
    assert [e.message for e in reversed(await store.audit_log(event_id="$event1"))] == [f"step {n}" for n in range(5)]
    stored_broken = await store.get_media(broken.mxc)
    assert stored_broken is not None and (stored_broken.status, stored_broken.error) == ("not_scanned", "404")
    stored_fine = await store.get_media(fine.mxc)
    assert stored_fine is not None and stored_fine.hashes is not None

    # Re-processed later (a replay): links and verdicts are not duplicated, hashes are kept.
    again = store.journal(stored)
    again.link([fine])
    again.link([fine])
    again.record_media(fine, status="not_scanned", error="404")
    again.record_verdicts(fine.mxc, "hashlist", [verdict("csam")])
    again.record_verdicts(fine.mxc, "hashlist", [verdict("csam")])
    await store.commit(again, finish="failed", error="gave up")
    assert await store.media_of_event("$event1") == [fine.mxc]
    assert len(await store.verdicts_for(event_id="$event1")) == 1
    kept = await store.get_media(fine.mxc)
    assert kept is not None and kept.hashes == stored_fine.hashes and kept.status == "not_scanned"
    assert await store.events_by_status() == {"failed": 1}


async def test_an_empty_journal_writes_nothing_but_can_still_finish_the_event(store: Store) -> None:
    await store.store_transaction("txn1", [event(1)], everything)
    stored = await store.load_event("$event1")
    assert stored is not None
    await store.commit(store.journal(stored))
    assert await store.pending_event_ids() == ["$event1"]
    await store.commit(store.journal(stored), finish="ignored")
    assert await store.events_by_status() == {"ignored": 1}


# --- actions -------------------------------------------------------------------------------


async def test_claim_action_is_idempotent(store: Store) -> None:
    key = "$event1/redact"
    claim = {"kind": "redact", "target": "$event1", "event_id": "$event1", "room_id": ROOM, "decided_by": "known-csam"}
    first = await store.claim_action(key, **claim)
    assert first.claimed and first.owner == store.action_repo.owner
    assert (first.key, first.kind, first.target, first.status, first.attempts) == (key, "redact", "$event1", "pending", 0)
    assert (first.event_id, first.room_id, first.decided_by, first.detail) == ("$event1", ROOM, "known-csam", None)

    await store.finish_action(key, "ok", 2, "redacted as $redaction")
    second = await store.claim_action(key, **claim)
    assert not second.claimed and second.owner is None
    assert (second.status, second.attempts, second.detail) == ("ok", 2, "redacted as $redaction")
    assert second.updated_at > first.updated_at

    # A failed action may be claimed again by a new decision; its attempts add up.
    failed = "$event1/ban"
    await store.claim_action(failed, **claim)
    await store.finish_action(failed, "failed", 1, "M_FORBIDDEN")
    third = await store.claim_action(failed, **claim)
    assert third.claimed and (third.status, third.attempts, third.detail) == ("pending", 1, "M_FORBIDDEN")
    await store.finish_action(failed, "ok", 1, "banned")
    assert [(a.key, a.status, a.attempts) for a in await store.actions()] == [(failed, "ok", 2), (key, "ok", 2)]
    # Only the claimer finishes: a finish without a claim writes nothing.
    assert not await store.finish_action(key, "failed", 1, "late")


async def test_actions_are_listed_newest_first_and_filtered_by_event(store: Store) -> None:
    for n, kind in [(1, "redact"), (1, "ban"), (2, "redact")]:
        await store.claim_action(
            f"$event{n}/{kind}", kind=kind, target=f"$event{n}", event_id=f"$event{n}", room_id=ROOM, decided_by=None
        )
    assert [a.key for a in await store.actions()] == ["$event2/redact", "$event1/ban", "$event1/redact"]
    assert [a.key for a in await store.actions(event_id="$event1")] == ["$event1/ban", "$event1/redact"]
    assert [a.key for a in await store.actions(limit=1)] == ["$event2/redact"]


# --- audit ---------------------------------------------------------------------------------


async def test_audit_log_is_newest_first_and_filters(store: Store) -> None:
    await store.audit("scan", "hashed", "hashed mxc://example.org/a", event_id="$event1", room_id=ROOM,
                      sender="@alice:example.org", mxc="mxc://example.org/a")
    await store.audit("verdict", "exact", "matched list known", event_id="$event1")
    await store.audit("scan", "not_scanned", "encrypted", event_id="$event2", room_id=OTHER_ROOM)
    await store.audit("action", "ok", "banned @alice:example.org", event_id="$event1")

    entries = await store.audit_log()
    assert [e.message for e in entries] == [
        "banned @alice:example.org", "encrypted", "matched list known", "hashed mxc://example.org/a",
    ]
    assert [e.ts for e in entries] == sorted((e.ts for e in entries), reverse=True)
    oldest = entries[-1]
    assert (oldest.category, oldest.outcome, oldest.event_id, oldest.room_id, oldest.sender, oldest.mxc) == (
        "scan", "hashed", "$event1", ROOM, "@alice:example.org", "mxc://example.org/a",
    )

    assert [e.category for e in await store.audit_log(event_id="$event1")] == ["action", "verdict", "scan"]
    assert [e.event_id for e in await store.audit_log(category="scan")] == ["$event2", "$event1"]
    assert [e.outcome for e in await store.audit_log(event_id="$event1", category="scan")] == ["hashed"]
    assert [e.message for e in await store.audit_log(limit=2)] == ["banned @alice:example.org", "encrypted"]
    assert await store.audit_log(event_id="$nobody") == []


async def test_a_store_with_an_audit_source_names_it_in_every_message(store: Store) -> None:
    retro = Store(store.engine, clock=StepClock(), audit_source="retroactive")
    await retro.audit("action", "ok", "banned @alice:example.org", event_id="$event1")
    await retro.audit("retro", "started", "retroactive matching: list known has 2 new entries")
    await store.audit("action", "ok", "redacted $event1", event_id="$event1")

    assert [e.message for e in await store.audit_log()] == [
        "redacted $event1",
        "retroactive matching: list known has 2 new entries",  # named already: not prefixed twice
        "retroactive: banned @alice:example.org",
    ]
    # The repositories behind the Store hand back the same plain records.
    assert await store.audit_repo.log(event_id="$event1") == await store.audit_log(event_id="$event1")


async def test_the_queue_keeps_the_event_json_and_its_transaction(store: Store) -> None:
    # The queue keeps the event as JSON text, so that a restart can resume the work.
    await store.store_transaction("txn1", [event(1)], everything)
    async with store.sessions() as session:
        row = await session.get(EventRow, "$event1")
        assert row is not None
        assert json.loads(row.event_json) == event(1)
        assert row.txn_id == "txn1"

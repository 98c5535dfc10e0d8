"""Executor: each action once, in order, notify last; dry run; failures recorded and retried.

A fake homeserver records what the bot asked of it; the store is real (SQLite, migrated).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from bot.act.executor import Executor, txn_id_for
from bot.act.homeserver import HomeserverError
from bot.act.notices import ActionResult, compose_notice
from bot.metrics import Metrics
from bot.model import ActionKind, Decision, EventContext, Outcome, PlannedAction
from bot.record.store import Store

from action_kit import (  # the shared fake homeserver and values
    ALL,
    BOT,
    MANAGEMENT,
    OTHER,
    ROOM,
    SPAMMER,
    THIRD,
    FakeHomeserver,
    ctx,
    decision,
    media,
    outcomes,
)


@pytest.fixture
def hs() -> FakeHomeserver:
    return FakeHomeserver()


class Rooms:
    def __init__(self) -> None:
        self.protected = [ROOM, OTHER, THIRD]
        self.management: str | None = MANAGEMENT


@pytest.fixture
def rooms() -> Rooms:
    return Rooms()


@pytest.fixture
def executor(hs: FakeHomeserver, store: Store, rooms: Rooms) -> Executor:
    return Executor(
        hs,  # type: ignore[arg-type]
        store,
        Metrics(),
        protected_rooms=lambda: rooms.protected,
        management_room=lambda: rooms.management,
    )


# --- once, in order ----------------------------------------------------------------------------


async def test_every_action_is_carried_out_once_in_order_with_notify_last(
    executor: Executor, hs: FakeHomeserver, store: Store
) -> None:
    # Notify listed first on purpose: it still goes last, so it can report the rest.
    d = decision(ActionKind.NOTIFY, ActionKind.QUARANTINE, ActionKind.REDACT, ActionKind.BAN)
    results = await executor.carry_out(d, ctx(), [media()])

    assert outcomes(results) == [
        ("quarantine", Outcome.OK),
        ("redact", Outcome.OK),
        ("ban", Outcome.OK),
        ("notify", Outcome.OK),
    ]
    assert hs.kinds() == ["quarantine", "redact", "ban", "notify"]
    assert hs.calls[0] == ("quarantine", "example.org", "media1")
    assert hs.calls[1] == ("redact", ROOM, "$event1:example.org", "modbot: known-media", txn_id_for("redact:$event1:example.org"))
    assert hs.calls[2] == ("ban", ROOM, SPAMMER, "modbot: known-media")
    assert hs.calls[3][1] == MANAGEMENT

    actions = {a.kind: a for a in await store.actions(event_id="$event1:example.org")}
    assert set(actions) == {"quarantine", "redact", "ban", "notify"}
    assert all(a.status == "ok" and a.attempts == 1 for a in actions.values())
    assert actions["quarantine"].target == "mxc://example.org/media1"
    assert actions["ban"].target == SPAMMER and actions["ban"].room_id == ROOM
    assert actions["notify"].room_id == MANAGEMENT
    assert all(a.decided_by == "known-media" for a in actions.values())

    audit = await store.audit_log(event_id="$event1:example.org", category="action")
    assert sorted(e.outcome for e in audit) == ["ok"] * 4
    assert all(e.sender == SPAMMER for e in audit)
    [quarantined] = [e for e in audit if e.mxc]
    assert quarantined.mxc == "mxc://example.org/media1" and "quarantined" in quarantined.message


async def test_each_matched_media_is_quarantined(executor: Executor, hs: FakeHomeserver) -> None:
    results = await executor.carry_out(decision(ActionKind.QUARANTINE), ctx(), [media(1), media(2)])
    assert outcomes(results) == [("quarantine", Outcome.OK)] * 2
    assert hs.calls == [("quarantine", "example.org", "media1"), ("quarantine", "example.org", "media2")]


async def test_running_a_decision_again_does_nothing_new(
    executor: Executor, hs: FakeHomeserver, store: Store
) -> None:
    await executor.carry_out(decision(*ALL), ctx(), [media()])
    calls = list(hs.calls)

    again = await executor.carry_out(decision(*ALL), ctx(), [media()])

    assert hs.calls == calls  # no second homeserver call
    assert [r.outcome for r in again] == [Outcome.SKIPPED] * 4
    assert all("already done" in r.detail for r in again)
    actions = await store.actions(event_id="$event1:example.org")
    assert len(actions) == 4 and all(a.status == "ok" and a.attempts == 1 for a in actions)


async def test_ban_everywhere_bans_in_every_protected_room(
    executor: Executor, hs: FakeHomeserver, rooms: Rooms
) -> None:
    rooms.protected = [OTHER, ROOM, THIRD]  # the event's room is banned first and once
    results = await executor.carry_out(decision((ActionKind.BAN, "all")), ctx(), [media()])
    assert [(r.room_id, r.outcome) for r in results] == [(ROOM, Outcome.OK), (OTHER, Outcome.OK), (THIRD, Outcome.OK)]
    assert [c[1] for c in hs.calls] == [ROOM, OTHER, THIRD]


async def test_ban_in_the_room_only(executor: Executor, hs: FakeHomeserver) -> None:
    await executor.carry_out(decision((ActionKind.BAN, "room")), ctx(room=OTHER), [media()])
    assert hs.calls == [("ban", OTHER, SPAMMER, "modbot: known-media")]


# --- dry run ------------------------------------------------------------------------------------


async def test_dry_run_touches_nothing_but_still_tells_the_moderators(
    executor: Executor, hs: FakeHomeserver, store: Store
) -> None:
    results = await executor.carry_out(decision(*ALL, dry_run=True), ctx(), [media()])

    assert outcomes(results) == [
        ("quarantine", Outcome.DRY_RUN),
        ("redact", Outcome.DRY_RUN),
        ("ban", Outcome.DRY_RUN),
        ("notify", Outcome.OK),
    ]
    assert hs.kinds() == ["notify"]
    [notice] = hs.notices()
    assert "DRY RUN" in notice
    assert "quarantine mxc://example.org/media1: dry_run" in notice
    statuses = {a.kind: a.status for a in await store.actions(event_id="$event1:example.org")}
    assert statuses == {"quarantine": "dry_run", "redact": "dry_run", "ban": "dry_run", "notify": "ok"}


async def test_a_dry_run_does_not_stop_a_later_real_run(executor: Executor, hs: FakeHomeserver) -> None:
    await executor.carry_out(decision(ActionKind.QUARANTINE, ActionKind.BAN, dry_run=True), ctx(), [media()])
    assert hs.calls == []
    results = await executor.carry_out(decision(ActionKind.QUARANTINE, ActionKind.BAN), ctx(), [media()])
    assert outcomes(results) == [("quarantine", Outcome.OK), ("ban", Outcome.OK)]
    assert hs.kinds() == ["quarantine", "ban"]


# --- failures -----------------------------------------------------------------------------------


async def test_a_failed_ban_is_recorded_the_rest_done_and_a_rerun_retries_it(
    executor: Executor, hs: FakeHomeserver, store: Store
) -> None:
    hs.fail["ban"] = HomeserverError("HTTP 403 M_FORBIDDEN: not allowed to ban", status=403, errcode="M_FORBIDDEN")
    results = await executor.carry_out(decision(*ALL), ctx(), [media()])

    assert outcomes(results) == [
        ("quarantine", Outcome.OK),
        ("redact", Outcome.OK),
        ("ban", Outcome.FAILED),
        ("notify", Outcome.OK),
    ]
    assert "M_FORBIDDEN" in results[2].detail
    assert f"ban {SPAMMER}: failed" in hs.notices()[0]
    ban = next(a for a in await store.actions(event_id="$event1:example.org") if a.kind == "ban")
    assert ban.status == "failed" and ban.detail is not None and "M_FORBIDDEN" in ban.detail
    failed = [e for e in await store.audit_log(event_id="$event1:example.org") if e.outcome == "failed"]
    assert len(failed) == 1 and "M_FORBIDDEN" in failed[0].message

    del hs.fail["ban"]
    hs.calls.clear()
    again = await executor.carry_out(decision(*ALL), ctx(), [media()])

    assert hs.kinds() == ["ban"]  # only the failed action is tried again
    assert outcomes(again) == [
        ("quarantine", Outcome.SKIPPED),
        ("redact", Outcome.SKIPPED),
        ("ban", Outcome.OK),
        ("notify", Outcome.SKIPPED),
    ]
    ban = next(a for a in await store.actions(event_id="$event1:example.org") if a.kind == "ban")
    assert ban.status == "ok" and ban.attempts == 2


async def test_a_failed_notice_is_recorded(executor: Executor, hs: FakeHomeserver) -> None:
    hs.fail["notify"] = HomeserverError("HTTP 403 M_FORBIDDEN: not in room", status=403, errcode="M_FORBIDDEN")
    results = await executor.carry_out(decision(ActionKind.REDACT, ActionKind.NOTIFY), ctx(), [media()])
    assert outcomes(results) == [("redact", Outcome.OK), ("notify", Outcome.FAILED)]


# --- what is never done -------------------------------------------------------------------------


async def test_the_bot_never_bans_itself(executor: Executor, hs: FakeHomeserver, store: Store) -> None:
    results = await executor.carry_out(decision((ActionKind.BAN, "all")), ctx(sender=BOT), [media()])
    assert hs.calls == []
    assert {r.outcome for r in results} == {Outcome.SKIPPED}
    assert all("never bans itself" in r.detail for r in results)
    assert await store.actions() == []
    audit = await store.audit_log(category="action")
    assert audit and all(e.outcome == "skipped" for e in audit)


async def test_without_a_management_room_notify_is_skipped_with_a_reason(
    executor: Executor, hs: FakeHomeserver, rooms: Rooms, store: Store
) -> None:
    rooms.management = None
    results = await executor.carry_out(decision(ActionKind.REDACT, ActionKind.NOTIFY), ctx(), [media()])
    assert outcomes(results) == [("redact", Outcome.OK), ("notify", Outcome.SKIPPED)]
    assert "no management room" in results[1].detail
    assert hs.kinds() == ["redact"]
    skipped = [e for e in await store.audit_log(category="action") if e.outcome == "skipped"]
    assert len(skipped) == 1 and "no management room" in skipped[0].message


async def test_an_exempt_sender_is_not_banned_but_the_media_is_removed_and_the_moderators_told(
    executor: Executor, hs: FakeHomeserver, store: Store
) -> None:
    # What decide() gives for an exempt sender: the ban spared, the rest kept.
    exempt = Decision(
        "known-media", (PlannedAction(ActionKind.QUARANTINE), PlannedAction(ActionKind.REDACT), PlannedAction(ActionKind.NOTIFY)),
        exempt_reason="a creator of the room (unlimited power in room version 12; exempt.power_level is 100)",
        spared=(PlannedAction(ActionKind.BAN, "room"),),
    )
    results = await executor.carry_out(exempt, ctx(), [media()])
    assert outcomes(results) == [("quarantine", Outcome.OK), ("redact", Outcome.OK), ("notify", Outcome.OK)]
    assert "ban" not in hs.kinds()
    [notice] = hs.notices()
    assert notice.startswith("modbot: known media detected (sender exempt)")
    assert f"Sender: {SPAMMER}" in notice
    assert "The sender is exempt: a creator of the room (unlimited power in room version 12" in notice
    assert "Spared: ban (room)" in notice
    assert {a.kind for a in await store.actions()} == {"quarantine", "redact", "notify"}


async def test_a_decision_without_actions_does_nothing(executor: Executor, hs: FakeHomeserver, store: Store) -> None:
    assert await executor.carry_out(Decision(None), ctx(), [media()]) == []
    assert hs.calls == [] and await store.audit_log() == []


# --- concurrency --------------------------------------------------------------------------------


async def test_two_events_by_one_sender_at_once_ban_once(
    executor: Executor, hs: FakeHomeserver, store: Store, rooms: Rooms, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the first ban is under way, give the other event every chance to claim the same
    # ban: without the executor's lock it would (and ban again); with it, it waits its turn.
    other_claimed = asyncio.Event()
    ban_claims: list[str] = []
    claim_action = store.claim_action

    async def claim(key: str, **kwargs: Any) -> Any:
        if key.startswith("ban:"):
            ban_claims.append(key)
            if ban_claims.count(key) == 2:
                other_claimed.set()
        return await claim_action(key, **kwargs)

    monkeypatch.setattr(store, "claim_action", claim)
    ban = hs.ban

    async def slow_ban(room_id: str, user_id: str, reason: str) -> None:
        if len(hs.kinds()) < 3:  # the first ban, after both redactions
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(other_claimed.wait(), 0.3)
        await ban(room_id, user_id, reason)

    monkeypatch.setattr(hs, "ban", slow_ban)

    d = decision(ActionKind.REDACT, (ActionKind.BAN, "all"))
    first, second = await asyncio.gather(
        executor.carry_out(d, ctx(1), [media(1)]),
        executor.carry_out(d, ctx(2), [media(2)]),
    )
    bans = [c for c in hs.calls if c[0] == "ban"]
    assert sorted(c[1] for c in bans) == sorted(rooms.protected)  # once per room, not twice
    assert sorted(c[2] for c in hs.calls if c[0] == "redact") == ["$event1:example.org", "$event2:example.org"]
    ban_outcomes = [r.outcome for r in (*first, *second) if r.kind == "ban"]
    assert ban_outcomes.count(Outcome.OK) == 3 and ban_outcomes.count(Outcome.SKIPPED) == 3
    assert executor._locks == {} and executor._lock_users == {}  # no lock left behind


async def test_a_failed_ban_is_retried_by_one_waiting_event_at_a_time(
    executor: Executor, hs: FakeHomeserver, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Event 1 bans and fails while event 2 waits for the same ban; event 2 then retries it,
    # and event 3 arrives during that retry: it must wait too, not retry in parallel.
    d = decision(ActionKind.BAN)
    arrivals = 0
    second_waiting = asyncio.Event()
    third_claimed = asyncio.Event()
    third: list[asyncio.Task[list[ActionResult]]] = []

    def bot_user_id(_self: FakeHomeserver) -> str:
        nonlocal arrivals
        arrivals += 1  # read first thing by each event's ban step
        if arrivals == 2:
            second_waiting.set()
        return BOT

    monkeypatch.setattr(FakeHomeserver, "bot_user_id", property(bot_user_id))
    claim_action = store.claim_action
    claims = 0

    async def claim(key: str, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        if claims == 3:
            third_claimed.set()
        return await claim_action(key, **kwargs)

    monkeypatch.setattr(store, "claim_action", claim)
    ban = hs.ban

    async def scripted_ban(room_id: str, user_id: str, reason: str) -> None:
        calls = len(hs.calls)
        await ban(room_id, user_id, reason)
        if calls == 0:
            await second_waiting.wait()
            raise HomeserverError("HTTP 502: Bad Gateway", status=502)
        if calls == 1:
            third.append(asyncio.create_task(executor.carry_out(d, ctx(3), [media(3)])))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(third_claimed.wait(), 0.3)

    monkeypatch.setattr(hs, "ban", scripted_ban)
    first, second = await asyncio.gather(
        executor.carry_out(d, ctx(1), [media(1)]), executor.carry_out(d, ctx(2), [media(2)])
    )
    last = await third[0]

    assert outcomes(first) == [("ban", Outcome.PENDING)]  # a 502 is retried later...
    assert outcomes(second) == [("ban", Outcome.OK)]  # ...or by the next event that wants it
    assert outcomes(last) == [("ban", Outcome.SKIPPED)]
    assert len(hs.calls) == 2
    assert executor._locks == {} and executor._lock_users == {}


# --- the notice ---------------------------------------------------------------------------------


async def test_the_notice_says_where_who_what_matched_and_what_was_done(
    executor: Executor, hs: FakeHomeserver
) -> None:
    hs.fail["ban"] = HomeserverError("HTTP 403 M_FORBIDDEN: no", status=403, errcode="M_FORBIDDEN")
    await executor.carry_out(decision(*ALL), ctx(), [media()])
    [(_, room, body, html, txn)] = [c for c in hs.calls if c[0] == "notify"]

    assert room == MANAGEMENT
    assert txn == txn_id_for("notify:$event1:example.org")
    assert "DRY RUN" not in body
    for expected in (
        f"Room: {ROOM}",
        "Event: $event1:example.org",
        f"Sender: {SPAMMER}",
        "Rule: known-media",
        "mxc://example.org/media1",
        "list benign-list, label test-label (near, pdq distance 12)",
        "list exact-list, label other-label (exact sha256)",
        "quarantine mxc://example.org/media1: ok",
        "redact $event1:example.org: ok",
        f"ban {SPAMMER}: failed",
    ):
        assert expected in body
    assert "<b>" in html and "known-media" in html


def test_the_notice_never_contains_media_bytes_and_escapes_html() -> None:
    data = b"\x89PNG\r\n\x1a\nRAW-PIXELS"
    hostile = EventContext("$e:x", ROOM, "@<script>alert(1)</script>:x", 0)
    results = [ActionResult("redact", "$e:x", ROOM, Outcome.OK, "redacted")]
    body, html = compose_notice(hostile, decision(ActionKind.REDACT), [media()], results)
    for text in (body, html):
        assert "RAW-PIXELS" not in text and "PNG" not in text and "\x00" not in text
        assert data.decode("latin-1") not in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Actions: redact $e:x: ok" in body


def test_a_notice_without_actions_says_so() -> None:
    body, _ = compose_notice(ctx(), decision(ActionKind.NOTIFY, dry_run=True), [media()], [])
    assert body.startswith("modbot [DRY RUN]")
    assert body.endswith("Actions: none")

"""The executor's server-admin actions: durable and once per key like the rest, dry-run
aware, and a server denied in the rooms' ACL only after enough incidents from it.

A fake homeserver records what the bot asked of it; the store is real (SQLite, migrated).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.act.executor import Executor
from bot.act.homeserver import HomeserverError
from bot.errors import MNotFound
from bot.metrics import Metrics
from bot.model import ActionKind, Outcome
from bot.record.db import create_engine, migrate
from bot.record.store import Store

from action_kit import MANAGEMENT, OTHER, ROOM, SPAMMER, FakeHomeserver, ctx, decision


class AdminHomeserver(FakeHomeserver):
    def __init__(self) -> None:
        super().__init__()
        self.state: dict[tuple[str, str], dict[str, Any]] = {}

    async def suspend(self, user_id: str, suspend: bool = True) -> None:
        await self._record("suspend", user_id, suspend)

    async def quarantine_user_media(self, user_id: str) -> int:
        await self._record("quarantine_user_media", user_id)
        return 3

    async def state_event(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        if (room_id, event_type) not in self.state:
            raise MNotFound("HTTP 404 M_NOT_FOUND", status=404, errcode="M_NOT_FOUND")
        return self.state[(room_id, event_type)]

    async def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> str:
        await self._record("put_state", room_id, event_type, content)
        self.state[(room_id, event_type)] = content
        return "$state"


@pytest.fixture
def hs() -> AdminHomeserver:
    return AdminHomeserver()


@pytest.fixture
def executor(hs: AdminHomeserver, store: Store) -> Executor:
    return Executor(hs, store, Metrics(), protected_rooms=lambda: [ROOM, OTHER], management_room=lambda: MANAGEMENT)  # type: ignore[arg-type]


async def test_suspension_and_media_quarantine_run_once_per_event(executor: Executor, hs: AdminHomeserver) -> None:
    d = decision(ActionKind.SUSPEND, ActionKind.QUARANTINE_USER_MEDIA)
    first = await executor.carry_out(d, ctx(1), [])
    again = await executor.carry_out(d, ctx(1), [])  # the same event replayed
    assert [(r.kind, r.outcome) for r in first] == [("quarantine_user_media", Outcome.OK), ("suspend", Outcome.OK)]
    assert {r.outcome for r in again} == {Outcome.SKIPPED}
    assert hs.kinds() == ["quarantine_user_media", "suspend"]


async def test_dry_run_suspends_nobody(executor: Executor, hs: AdminHomeserver) -> None:
    results = await executor.carry_out(decision(ActionKind.SUSPEND, dry_run=True), ctx(2), [])
    assert [r.outcome for r in results] == [Outcome.DRY_RUN] and hs.calls == []


async def test_a_transient_failure_leaves_the_suspension_pending_and_the_retry_does_it(hs: AdminHomeserver, tmp_path: Path) -> None:
    now = [1000.0]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'retry.db'}")
    await migrate(engine)
    try:
        store = Store(engine, clock=lambda: now[0])
        executor = Executor(hs, store, Metrics(), protected_rooms=lambda: [ROOM], management_room=lambda: MANAGEMENT, clock=lambda: now[0])  # type: ignore[arg-type]
        hs.fail["suspend"] = HomeserverError("HTTP 502", status=502)
        (result,) = await executor.carry_out(decision(ActionKind.SUSPEND), ctx(3), [])
        assert result.outcome is Outcome.PENDING
        del hs.fail["suspend"]
        now[0] += 60  # past the first retry delay (30 s)
        (record,) = [a for a in await store.actions() if a.kind == "suspend"]
        retried = await executor.retry(record)
        assert retried is not None and retried.outcome is Outcome.OK
        assert hs.calls[-1] == ("suspend", SPAMMER, True)
    finally:
        await engine.dispose()


async def test_a_server_is_denied_only_after_enough_incidents(executor: Executor, hs: AdminHomeserver) -> None:
    d = replace(decision(ActionKind.SERVER_ACL), server_acl_after=(2, 3600.0))
    (first,) = await executor.carry_out(d, ctx(4), [])
    assert first.outcome is Outcome.SKIPPED and "1 of 2 incidents from evil.example" in first.detail
    assert "put_state" not in hs.kinds()
    second = await executor.carry_out(d, ctx(5, sender="@other:evil.example"), [])
    assert [(r.room_id, r.outcome) for r in second] == [(ROOM, Outcome.OK), (OTHER, Outcome.OK)]
    assert hs.state[(ROOM, "m.room.server_acl")] == {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": True}
    # A third incident: the server is denied already, once per room for good.
    third = await executor.carry_out(d, ctx(6), [])
    assert {r.outcome for r in third} == {Outcome.SKIPPED}
    assert hs.kinds().count("put_state") == 2


async def test_the_acl_keeps_what_the_room_had(executor: Executor, hs: AdminHomeserver) -> None:
    hs.state[(ROOM, "m.room.server_acl")] = {"allow": ["*"], "deny": ["old.example"], "allow_ip_literals": False}
    d = replace(decision(ActionKind.SERVER_ACL), server_acl_after=(1, 3600.0))
    await executor.carry_out(d, ctx(7), [])
    assert hs.state[(ROOM, "m.room.server_acl")] == {"allow": ["*"], "deny": ["old.example", "evil.example"], "allow_ip_literals": False}

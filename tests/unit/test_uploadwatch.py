"""Suspended users' uploads (bot/act/uploadwatch.py): quarantined while modbot holds them
suspended, from the suspension on, never twice, remembered across restarts, stopped on unsuspend.

Real: the storage (SQLite, migrated), the executor and its action rows, the repository. The
homeserver is the recording fake of tests/action_kit.py with a user's media list in the
admin API's format (`GET /_synapse/admin/v1/users/<user_id>/media`, newest first).
"""

from __future__ import annotations

from typing import Any

from bot.act.executor import Executor
from bot.act.operations import Operation
from bot.act.uploadwatch import MARGIN, UploadWatch, WatchSettings
from bot.metrics import Metrics
from bot.model import Decision, EventContext
from bot.record.store import Store
from bot.record.suspensions import SuspendedUploadRepo

from action_kit import MANAGEMENT, ROOM, FakeHomeserver

OFFENDER = "@offender:example.org"
OTHER_USER = "@bystander:example.org"
REMOTE = "@someone:elsewhere.org"


class MediaHomeserver(FakeHomeserver):
    """Users' uploads and suspensions, as Synapse's admin API reports them."""

    def __init__(self) -> None:
        super().__init__()
        self.media: dict[str, list[dict[str, Any]]] = {}
        self.suspended: set[str] = set()
        self.pages = 0

    def upload(self, user: str, media_id: str, created_ts: int) -> None:
        self.media.setdefault(user, []).append({"media_id": media_id, "created_ts": created_ts, "quarantined_by": None})

    async def suspend(self, user_id: str, suspend: bool = True) -> None:
        await self._record("suspend", user_id, suspend)
        (self.suspended.add if suspend else self.suspended.discard)(user_id)

    async def is_suspended(self, user_id: str) -> bool:
        return user_id in self.suspended

    async def user_media(self, user_id: str, *, start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        self.pages += 1
        ordered = sorted(self.media.get(user_id, []), key=lambda m: -m["created_ts"])
        page = [dict(m) for m in ordered[start:start + limit]]
        return page, start + len(page) if start + limit < len(ordered) else None

    async def quarantine(self, server: str, media_id: str) -> None:
        await super().quarantine(server, media_id)
        for items in self.media.values():
            for m in items:
                if m["media_id"] == media_id:
                    m["quarantined_by"] = "@modbot:example.org"

    def quarantined(self) -> list[str]:
        return [c[2] for c in self.calls if c[0] == "quarantine"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Kit:
    def __init__(self, db: Store, hs: MediaHomeserver | None = None, **settings: Any) -> None:
        self.clock = Clock()
        # The same database, on the test's clock: action times and upload times agree.
        self.store = store = Store(db.engine, clock=self.clock)
        self.hs = hs or MediaHomeserver()
        self.executor = Executor(self.hs, store, Metrics(), protected_rooms=lambda: [ROOM],  # type: ignore[arg-type]
                                 management_room=lambda: MANAGEMENT, clock=self.clock)
        self.watch = self.new_watch(**settings)

    def new_watch(self, **settings: Any) -> UploadWatch:
        """A watch as after a (re)start: nothing in memory, everything from the database."""
        values = {"interval": 10.0, "page_size": 3, "max_pages": 10, "max_users": 10} | settings
        return UploadWatch(self.hs, self.executor, SuspendedUploadRepo(self.store.engine), self.store,  # type: ignore[arg-type]
                           own_server="example.org", settings=WatchSettings(**values))

    async def policy_suspends(self, user: str, n: int = 1) -> None:
        """The policy's `suspend` action for an incident (bot/act/admin.py's step)."""
        op = Operation("suspend", {"user_id": user, "suspend": "true"}, user)
        await self.executor.perform(f"suspend:{user}:$e{n}", op, target=user, room_id=None,
                                    ctx=EventContext(event_id=f"$e{n}", room_id=ROOM, sender=user, sender_power=0),
                                    decision=Decision(rule="local offender"))

    async def command(self, kind: str, user: str, n: int) -> None:
        """`suspend`/`unsuspend` by a moderator (bot/commands/accounts.py)."""
        async def do() -> str:
            await self.hs.suspend(user, kind == "suspend")
            return f"{kind}ed {user}"

        await self.executor.manual(kind, user, None, by="@mod:example.org", command_event_id=f"$cmd{n}", do=do)

    def ms(self, offset: float = 0.0) -> int:
        return int((self.clock.now + offset) * 1000)


async def audit(store: Store) -> list[tuple[str, str]]:
    return [(e.outcome, e.message) for e in await store.audit_log(category="suspension")]


async def test_uploads_made_after_a_suspension_are_quarantined_and_earlier_ones_are_not(store: Store) -> None:
    k = Kit(store)
    k.hs.upload(OFFENDER, "before", k.ms(-3600))
    k.hs.upload(OTHER_USER, "someone-else", k.ms(60))
    await k.policy_suspends(OFFENDER)
    k.hs.upload(OFFENDER, "after1", k.ms(5))
    k.hs.upload(OFFENDER, "after2", k.ms(6))
    assert await k.watch.poll() == 2
    assert sorted(k.hs.quarantined()) == ["after1", "after2"]
    # Through the executor: one keyed, audited action per mxc, like every quarantine.
    assert {a.target for a in await store.actions() if a.kind == "quarantine"} == {
        "mxc://example.org/after1", "mxc://example.org/after2"}
    assert any(o == "upload_quarantined" and "mxc://example.org/after1" in m for o, m in await audit(store))
    assert any(o == "watching" and OFFENDER in m for o, m in await audit(store))


async def test_an_upload_racing_the_suspension_counts_as_new(store: Store) -> None:
    k = Kit(store)
    await k.policy_suspends(OFFENDER)
    k.hs.upload(OFFENDER, "racing", k.ms(-MARGIN / 2))
    await k.watch.poll()
    assert k.hs.quarantined() == ["racing"]


async def test_nothing_is_quarantined_twice_and_a_restart_resumes_from_the_stored_watermark(store: Store) -> None:
    k = Kit(store)
    await k.policy_suspends(OFFENDER)
    k.hs.upload(OFFENDER, "one", k.ms(1))
    await k.watch.poll()
    await k.watch.poll()
    restarted = k.new_watch()
    k.hs.upload(OFFENDER, "two", k.ms(2))
    pages = k.hs.pages
    assert await restarted.poll() == 1
    assert k.hs.quarantined() == ["one", "two"]
    assert k.hs.pages - pages == 1  # the first page reached older uploads: no more asked for
    [watched] = await SuspendedUploadRepo(store.engine).watched()
    assert watched.quarantined == 2 and watched.watermark_ms == k.ms(2)


async def test_many_uploads_are_read_page_by_page_within_the_bound_and_the_rest_next_poll(store: Store) -> None:
    k = Kit(store, max_pages=2)  # 2 pages of 3 a poll
    await k.policy_suspends(OFFENDER)
    for i in range(8):
        k.hs.upload(OFFENDER, f"m{i}", k.ms(1 + i))
    assert await k.watch.poll() == 6
    assert any(o == "limited" for o, _ in await audit(store))
    assert await k.watch.poll() == 2  # the newest are quarantined now; the older come next
    assert len(k.hs.quarantined()) == 8


async def test_an_unsuspend_by_command_stops_the_watch_and_a_new_suspension_starts_it_again(store: Store) -> None:
    k = Kit(store)
    await k.command("suspend", OFFENDER, 1)
    k.hs.upload(OFFENDER, "while-suspended", k.ms(1))
    await k.watch.poll()
    k.clock.now += 60
    await k.command("unsuspend", OFFENDER, 2)
    k.hs.upload(OFFENDER, "after-unsuspend", k.ms(1))
    await k.watch.poll()
    assert k.hs.quarantined() == ["while-suspended"]
    assert any(o == "stopped" and "unsuspended by modbot" in m for o, m in await audit(store))
    k.clock.now += 60
    await k.command("suspend", OFFENDER, 3)
    k.hs.upload(OFFENDER, "suspended-again", k.ms(1))
    await k.watch.poll()
    assert k.hs.quarantined() == ["while-suspended", "suspended-again"]


async def test_a_suspension_lifted_by_someone_else_stops_the_watch(store: Store) -> None:
    k = Kit(store)
    await k.policy_suspends(OFFENDER)
    k.hs.suspended.discard(OFFENDER)  # another admin, another tool
    k.hs.upload(OFFENDER, "later", k.ms(1))
    assert await k.watch.poll() == 0 and k.hs.quarantined() == []
    assert any(o == "stopped" and "no longer suspended" in m for o, m in await audit(store))
    await k.watch.poll()  # the same suspension does not start the watch again
    assert [o for o, _ in await audit(store)].count("watching") == 1


async def test_remote_users_and_the_policys_dry_run_are_not_watched(store: Store) -> None:
    k = Kit(store)
    op = Operation("suspend", {"user_id": REMOTE, "suspend": "true"}, REMOTE)
    await k.executor.perform(f"suspend:{REMOTE}:$r", op, target=REMOTE, room_id=None,
                             ctx=EventContext(event_id="$r", room_id=ROOM, sender=REMOTE, sender_power=0),
                             decision=Decision(rule="x"))
    dry = Operation("suspend", {"user_id": OTHER_USER, "suspend": "true"}, OTHER_USER)
    await k.executor.perform(f"suspend:{OTHER_USER}:$d", dry, target=OTHER_USER, room_id=None,
                             ctx=EventContext(event_id="$d", room_id=ROOM, sender=OTHER_USER, sender_power=0),
                             decision=Decision(rule="x", dry_run=True))
    await k.watch.poll()
    assert await SuspendedUploadRepo(store.engine).watched() == []

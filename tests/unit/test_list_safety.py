"""List safety: a reloaded list file that is garbage, empty, mostly rejected lines or much
shorter than the version in use is held (the previous version keeps matching), told to the
management room and to `modbot check`, and loads only once `modbot hashes accept` says so."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.classify.hashlist import HashListClassifier
from bot.cli import main
from bot.lists.guard import ListRecord, hold_reason
from bot.lists.registry import ListRegistry, ReloadResult
from bot.model import Hashes
from bot.record.db import create_engine, migrate
from bot.record.liststate import ListStateRepo
from bot.record.store import Store

RNG = random.Random(1010)
SHARE = 0.25


def sha() -> str:
    return f"{RNG.getrandbits(256):064x}"


@dataclass
class ListConfig:
    name: str
    path: Path
    label: str = "csam"
    enabled: bool = True
    thresholds: Any = field(default_factory=dict)


def write(path: Path, text: str | bytes) -> None:
    """Replace the file atomically, with an mtime of its own even on coarse clocks."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(tmp, path)
    write.mtime += 1_000_000_000
    os.utime(path, ns=(write.mtime, write.mtime))


write.mtime = 10**18  # type: ignore[attr-defined]


def csv(hashes: list[str], extra: str = "") -> str:
    return "type,hash,label\n" + "".join(f"sha256,{h},csam\n" for h in hashes) + extra


def media(sha256: str) -> Hashes:
    return Hashes(sha256=sha256, md5=None, size=1)


def matches(registry: ListRegistry, sha256: str) -> bool:
    return bool(HashListClassifier(registry).match(media(sha256)).verdicts)


@dataclass
class Db:
    url: str
    repo: ListStateRepo
    store: Store


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}"
    engine = create_engine(url)
    await migrate(engine)
    yield Db(url, ListStateRepo(engine), Store(engine))
    await engine.dispose()


class Recorder:
    """The registry's on_reload: keeps every result and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.results: list[ReloadResult] = []
        self.event = asyncio.Event()

    async def __call__(self, result: ReloadResult) -> None:
        self.results.append(result)
        self.event.set()

    async def next(self, timeout: float = 30) -> ReloadResult:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        return self.results[-1]


# --- the judgement itself --------------------------------------------------------------------------

LAST = ListRecord("l", entries=100, digest="d-last", accepted_digest="d-accepted", accepted_by="ops")


@pytest.mark.parametrize(
    ("entries", "rejected", "digest", "record", "held_because"),
    [
        (100, 0, "d-new", LAST, None),  # same size
        (75, 0, "d-new", LAST, None),  # 25% fewer: exactly the share allowed
        (74, 0, "d-new", LAST, "it would drop 26 of the 100 entries last loaded (26%"),
        (0, 0, "d-new", LAST, "it would leave the list empty"),
        (0, 4000, "d-new", LAST, "it would leave the list empty (4000 lines rejected)"),
        (90, 91, "d-new", LAST, "most of its lines are rejected (91 of 181)"),
        (90, 90, "d-new", LAST, None),  # half is not most
        (0, 0, "d-last", LAST, None),  # the version last loaded
        (3, 0, "d-accepted", LAST, None),  # the version an operator accepted
        (0, 0, "d-new", None, "it would leave the list empty"),  # a new list
        (1, 5, "d-new", None, "most of its lines are rejected"),
        (5, 0, "d-new", None, None),
        (5, 0, "d-new", ListRecord("l", entries=0, digest="d-empty"), None),  # was empty: nothing to drop
    ],
)
def test_which_versions_are_held(entries: int, rejected: int, digest: str, record: ListRecord | None, held_because: str | None) -> None:
    reason = hold_reason(entries, rejected, digest, record, SHARE)
    if held_because is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(held_because)


# --- reloads while the bot runs ----------------------------------------------------------------------

HOSTILE = {
    "garbage": (lambda good: bytes(RNG.getrandbits(8) for _ in range(64 * 1024)), "it would leave the list empty"),
    "truncated to nothing": (lambda good: b"", "it would leave the list empty"),
    "mostly invalid lines": (
        lambda good: csv(good[:10], "".join(f"sha256,{h[:40]},csam\n" for h in good[10:])).encode(),
        "most of its lines are rejected (90 of 100)",
    ),
    "shrunk beyond the share": (lambda good: csv(good[:60]).encode(), "it would drop 40 of the 100 entries last loaded (40%"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_hostile_reload_is_held_and_the_previous_version_keeps_matching(kind: str, tmp_path: Path, db: Db) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    told = Recorder()
    registry = ListRegistry([ListConfig("known", path)], tmp_path, on_reload=told, history=db.repo, max_drop_share=SHARE)
    assert (await registry.reload()).reloaded == ("known",)
    in_use = registry.lists[0]

    hostile, why = HOSTILE[kind]
    data = hostile(good)
    write(path, data)
    result = await registry.reload()

    (change,) = result.changes
    assert change.outcome == "held" and result.reloaded == ()
    assert change.reason is not None and change.reason.startswith(why)
    assert change.previous_kept and change.previous_entries == 100
    assert "NOT loaded" in change.describe() and "modbot hashes accept known" in change.describe()
    assert told.results[-1] is result  # what the bot turns into an audit row and a notice
    assert registry.lists[0] is in_use
    assert all(matches(registry, h) for h in (good[0], good[-1]))
    assert registry.snapshot.get("known").hold is not None  # type: ignore[union-attr]
    # Not judged again until the file changes or an operator accepts it.
    assert registry.changed() == [] and (await registry.reload()).changes == ()
    assert await registry.newly_accepted() == []
    write(path, data)  # the same content written again: not news, no second notice
    assert (await registry.reload()).changes == () and len(told.results) == 2
    # Restoring the file loads it again, as the version already known.
    write(path, csv(good))
    assert (await registry.reload()).reloaded == ("known",)
    assert registry.snapshot.held == ()


async def test_a_small_legitimate_edit_loads_and_becomes_the_version_compared_with(tmp_path: Path, db: Db) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    registry = ListRegistry([ListConfig("known", path)], tmp_path, history=db.repo, max_drop_share=SHARE)
    await registry.reload()

    added = [sha() for _ in range(3)]
    edited = good[5:] + added  # five removed, three added
    write(path, csv(edited, "# a comment\nsha256,not-a-hash,x\n"))  # and one bad line
    (change,) = (await registry.reload()).changes
    assert change.outcome == "loaded"
    assert matches(registry, added[0]) and not matches(registry, good[0])
    record = (await db.repo.records())["known"]
    assert record.entries == 98 and record.digest == change.digest

    # The next reload compares with 98, not 100: 73 entries is a drop of 25 (26%).
    write(path, csv(edited[:73]))
    (change,) = (await registry.reload()).changes
    assert change.outcome == "held" and change.reason and "drop 25 of the 98" in change.reason


async def test_reloads_are_still_judged_when_the_database_cannot_be_read(tmp_path: Path, db: Db) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    registry = ListRegistry([ListConfig("known", path)], tmp_path, history=db.repo, max_drop_share=SHARE)
    await registry.reload()
    async with db.store.engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE hash_list_state")

    write(path, b"")
    (change,) = (await registry.reload()).changes  # judged by what this process last loaded
    assert change.outcome == "held" and matches(registry, good[0])
    assert await registry.newly_accepted() == []
    write(path, csv(good[:90]))
    assert (await registry.reload()).reloaded == ("known",)


# --- accepting, end to end through the command line -----------------------------------------------

CONFIG = """\
homeserver:
  url: {hs}
  domain: example.org
appservice:
  as_token: secret-as
  hs_token: secret-hs
database:
  url: {db}
rooms:
  management_room: "!mgmt:example.org"
hashlist:
  reload_interval: 0.05
hash_lists:
  - name: known
    path: {path}
    label: csam
"""


def run_cli(*argv: str) -> tuple[int, str]:
    """`modbot ...` in-process, its output captured; call it in a thread from async tests."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(argv))
        except SystemExit as e:  # a message for the user, as the interpreter would print it
            code = e.code if isinstance(e.code, int) else 1
            out.write("" if isinstance(e.code, int) else f"{e.code}\n")
    return code, out.getvalue()


async def test_accept_reaches_the_running_bot_and_covers_only_that_version(tmp_path: Path, db: Db) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(hs="http://127.0.0.1:9", db=db.url, path=path), encoding="utf-8")
    told = Recorder()
    registry = ListRegistry([ListConfig("known", path)], tmp_path, on_reload=told, history=db.repo, max_drop_share=SHARE)
    await registry.reload()
    await told.next()
    registry.start_watching(interval=0.05)
    try:
        smaller = good[:10]  # an operator really did replace the list with a much smaller one
        write(path, csv(smaller))
        held = await told.next()
        assert [c.outcome for c in held.changes] == ["held"]
        assert matches(registry, good[50])

        code, out = await asyncio.to_thread(run_cli, "hashes", "accept", "known", "-c", str(config))
        assert code == 0, out
        assert "with 10 entries (last loaded: 100), 0 lines rejected; accepted although it would drop 90 of the 100" in out

        loaded = await told.next()  # the watcher found the acceptance in the database
        (change,) = loaded.changes
        assert change.outcome == "loaded" and change.accepted_by and change.accepted_by.endswith("(command line)")
        assert "(accepted by " in change.describe()
        assert matches(registry, smaller[0]) and not matches(registry, good[50])
        accepted = [a for a in await db.store.audit_log(category="lists") if a.outcome == "accepted"]
        assert len(accepted) == 1 and "accepted although it would drop 90 of the 100 entries" in accepted[0].message

        # The acceptance named that content: the next garbled version is held again.
        write(path, b"")
        again = await told.next()
        assert [c.outcome for c in again.changes] == ["held"] and matches(registry, smaller[0])
    finally:
        await registry.stop_watching()


async def test_accept_refuses_an_unreadable_file_and_names_an_unknown_list(tmp_path: Path, db: Db) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(hs="http://127.0.0.1:9", db=db.url, path=tmp_path / "missing.csv"), encoding="utf-8")
    code, out = await asyncio.to_thread(run_cli, "hashes", "accept", "known", "-c", str(config))
    assert code == 2 and "file not found" in out
    code, out = await asyncio.to_thread(run_cli, "hashes", "accept", "nope", "-c", str(config))
    assert code != 0 and "no hash list named 'nope'" in out
    assert await db.repo.records() == {}


# --- at start --------------------------------------------------------------------------------------


async def started(tmp_path: Path, path: Path, db: Db, told: Recorder | None = None) -> tuple[ListRegistry, ReloadResult]:
    """What ModBot does: load the lists before the database is open, then judge them against it."""
    registry = ListRegistry([ListConfig("known", path)], tmp_path, on_reload=told, history=db.repo, max_drop_share=SHARE)
    registry.load()
    return registry, await registry.check_history()


async def test_a_list_garbled_while_the_bot_was_down_is_held_at_start(tmp_path: Path, db: Db) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    first, result = await started(tmp_path, path, db)
    assert result.changes == () and first.snapshot.held == ()
    assert (await db.repo.records())["known"].entries == 100

    write(path, csv(good[:30]))  # cut short while the bot was stopped
    told = Recorder()
    second, result = await started(tmp_path, path, db, told)
    (change,) = result.changes
    assert change.outcome == "held" and change.reason and change.reason.startswith("it would drop 70 of the 100")
    assert not change.previous_kept and "matching uses the 30 entries that could be read" in change.describe()
    assert told.results == [result]
    assert matches(second, good[0]) and not matches(second, good[99])  # what could be read; nothing earlier in memory
    assert (await db.repo.records())["known"].entries == 100  # not taken as the version to compare with

    # The operator restores the file: the watcher loads it as the known version.
    write(path, csv(good))
    assert (await second.reload()).reloaded == ("known",) and second.snapshot.held == ()

    # Accepted while the bot is down, a shorter version loads at the next start.
    write(path, csv(good[:30]))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(hs="http://127.0.0.1:9", db=db.url, path=path), encoding="utf-8")
    code, out = await asyncio.to_thread(run_cli, "hashes", "accept", "known", "-c", str(config))
    assert code == 0, out
    third, result = await started(tmp_path, path, db)
    assert result.changes == () and third.snapshot.held == ()
    assert (await db.repo.records())["known"].entries == 30


@pytest.mark.parametrize(("text", "held"), [("", True), ("type,hash,label\n", True), ("sha256:zz\nsha256:yy\n", True), (None, False)])
async def test_a_new_list_is_held_only_when_empty_or_mostly_rejected(tmp_path: Path, db: Db, text: str | None, held: bool) -> None:
    path = tmp_path / "known.csv"
    write(path, text if text is not None else csv([sha(), sha()]))
    registry, result = await started(tmp_path, path, db)
    assert [c.outcome for c in result.changes] == (["held"] if held else [])
    assert ("known" in await db.repo.records()) is not held


# --- what the running bot does with a held list: audit row, notice; its own edits ---------------


class FakeHomeserver:
    """Just enough of the client API for `modbot check` and for notices, on loopback."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        app = web.Application()
        ok = {"/_matrix/client/versions": {"versions": ["v1.11"]},
              "/_matrix/client/v3/account/whoami": {"user_id": "@modbot:example.org"},
              "/_synapse/admin/v1/users/@modbot:example.org/admin": {"admin": True},
              "/_matrix/client/v3/joined_rooms": {"joined_rooms": ["!mgmt:example.org"]},
              "/_matrix/client/v3/rooms/!mgmt:example.org/state/m.room.member/@modbot:example.org": {"membership": "join"},
              "/_matrix/client/v3/rooms/!mgmt:example.org/state/m.room.power_levels/": {"users": {"@modbot:example.org": 100}},
              "/_matrix/client/v3/rooms/!mgmt:example.org/state/m.room.create/": {
                  "sender": "@admin:example.org", "content": {"room_version": "10"}}}
        for route, answer in ok.items():
            app.router.add_get(route, lambda _r, answer=answer: web.json_response(answer))
        app.router.add_put("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", self._send)
        self.runner = web.AppRunner(app)

    async def _send(self, request: web.Request) -> web.Response:
        self.notices.append(await request.json())
        return web.json_response({"event_id": f"$notice{len(self.notices)}"})

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.fixture
async def homeserver() -> AsyncIterator[tuple[FakeHomeserver, str]]:
    hs = FakeHomeserver()
    url = await hs.start()
    yield hs, url
    await hs.runner.cleanup()


async def test_modbot_check_fails_on_a_held_list_until_it_is_accepted(
    tmp_path: Path, db: Db, homeserver: tuple[FakeHomeserver, str]
) -> None:
    good = [sha() for _ in range(100)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    await db.repo.record_loaded("known", 100, "digest-of-the-version-the-bot-loaded")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(hs=homeserver[1], db=db.url, path=path), encoding="utf-8")
    code, out = await asyncio.to_thread(run_cli, "check", "-c", str(config))
    assert code == 0 and "all checks passed" in out, out

    write(path, csv(good[:50]))
    code, out = await asyncio.to_thread(run_cli, "check", "-c", str(config))
    assert code == 1, out
    assert "FAIL  hash list known: this version is held, the bot does not load it: it would drop 50 of the 100" in out
    assert "fix: restore" in out and "modbot hashes accept known -c <config>" in out
    assert "1 problem(s) found" in out

    code, out = await asyncio.to_thread(run_cli, "hashes", "accept", "known", "-c", str(config))
    assert code == 0, out
    code, out = await asyncio.to_thread(run_cli, "check", "-c", str(config))
    assert code == 0 and "all checks passed" in out, out


async def test_the_bot_audits_a_held_reload_and_tells_the_management_room(
    tmp_path: Path, db: Db, homeserver: tuple[FakeHomeserver, str]
) -> None:
    from bot.act.homeserver import Homeserver
    from bot.app import ModBot
    from bot.cli.check import homeserver_for
    from bot.config import load_config

    hs, url = homeserver
    good = [sha() for _ in range(8)]
    path = tmp_path / "known.csv"
    write(path, csv(good))
    config_path = tmp_path / "config.yaml"
    config_path.write_text(CONFIG.format(hs=url, db=db.url, path=path), encoding="utf-8")
    bot = ModBot(load_config(config_path), config_path=config_path)
    try:
        async with __import__("aiohttp").ClientSession() as session:
            bot.homeserver = Homeserver(homeserver_for(bot.config, session).api, bot.bot_user_id, retries=1)
            bot.management_room = "!mgmt:example.org"
            assert (await bot.lists.check_history()).changes == ()

            write(path, b"\x00\xff garbage \x89PNG\r\n" * 100)
            await bot.controls.reload_lists()
            (held,) = [a for a in await bot.store.audit_log(category="lists") if a.outcome == "held"]
            assert "it would leave the list empty (100 lines rejected)" in held.message
            (notice,) = hs.notices
            assert notice["msgtype"] == "m.notice" and notice["body"].startswith("Hash list known not reloaded")
            assert "modbot hashes accept known" in notice["body"]
            assert all(matches(bot.lists, h) for h in good)

            # A moderator's own removal through the bot shrinks the list by half: the bot
            # accepts the file it wrote itself (audited), and loads it.
            write(path, csv(good))
            await bot.controls.reload_lists()
            from bot.lists.format import remove_entries

            assert remove_entries(path, good[:4]) == 4
            await bot.controls.accept_list("known", by="@mod:example.org")
            result = await bot.controls.reload_lists()
            assert [c.outcome for c in result.changes] == ["loaded"]
            assert not matches(bot.lists, good[0]) and matches(bot.lists, good[7])
            accepted = [a for a in await bot.store.audit_log(category="lists") if a.outcome == "accepted"]
            assert len(accepted) == 1 and accepted[0].sender == "@mod:example.org"
            assert len(hs.notices) == 1
    finally:
        await bot.sandbox.stop()  # never started here; stopping is safe
        await bot.engine.dispose()

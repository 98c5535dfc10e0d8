"""`modbot check`: can the bot do its job? Says what is missing and how to fix it."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
from mautrix.api import HTTPAPI
from sqlalchemy.engine import make_url

from ..act.homeserver import Homeserver, HomeserverError
from ..lists.loaded import load_list
from ..config import Config
from ..filemodes import loose_files
from ..record.db import create_engine, current_revision, head_revision, sqlite_database_path
from ..record.liststate import ListStateRepo
from ..record.policyrules import PolicyRuleRepo, WatchedList
from ..policylists.service import list_status
from ..record.presend import PresendStat, PresendStatsRepo
from ..lists.guard import ListRecord, judge
from .adminapis import check_admin_apis
from .common import load


def homeserver_for(config: Config, session: aiohttp.ClientSession) -> Homeserver:
    bot = f"@{config.appservice.bot_localpart}:{config.homeserver.domain}"
    api = HTTPAPI(
        base_url=str(config.homeserver.url).rstrip("/"),
        token=config.appservice.as_token,
        client_session=session,
        as_user_id=bot,
    )
    return Homeserver(api, bot, retries=1)


async def check(config: Config, *, config_path: Path | None = None, registration_path: Path | None = None) -> int:
    """Print one line per check; returns 0 when the bot has everything it needs.

    Files readable by more people than what they hold allows are warned about (`WARN`),
    without failing the check: the bot works, but its secrets or its users' data are exposed.
    """
    problems = 0

    def ok(msg: str) -> None:
        print(f"  ok    {msg}")

    def bad(msg: str, fix: str) -> None:
        nonlocal problems
        problems += 1
        print(f"  FAIL  {msg}\n        fix: {fix}")

    for loose in loose_files(
        config, config_path=config_path, registration_path=registration_path,
        database=sqlite_database_path(config.database.url),
    ):
        print(f"  WARN  {loose.describe()}\n        fix: {loose.fix}")

    records, watched, note = await _list_records(config)
    if note:
        print(f"  note  {note}")
    for list_config in config.hash_lists:
        _, r, columns = load_list(list_config, Path.cwd())
        if r.errors:
            bad(f"hash list {r.name}: {len(r.errors)} lines rejected (line {r.errors[0][0]}: {r.errors[0][1]})",
                f"correct {r.path}")
        else:
            ok(f"hash list {r.name}: {r.entries} entries" + ("" if r.enabled else " (disabled)"))
        # The same judgement as the running bot's (bot/lists/guard.py), against what it last loaded;
        # an unreadable file is already reported above.
        hold = None if r.failed else judge(r, columns.digest, records.get(r.name), config.hashlist.max_drop_share)
        if hold is not None:
            bad(f"hash list {r.name}: this version is held, the bot does not load it: {hold.reason}",
                f"restore {r.path}, or load it as it is with `modbot hashes accept {r.name} -c <config>`")
    ok(f"policy: {len(config.policy.rules)} rules, dry_run={config.policy.dry_run}")
    for w in watched:
        if w.error is None:
            ok(f"policy list {list_status(w).describe()}")
        else:
            print(f"  WARN  policy list {list_status(w).describe()}")
    for room in config.policy_lists.watch:
        if not any(w.room_id == room for w in watched):
            print(f"  note  policy list {room}: configured, not read yet (the bot reads it at start)")
    if config.presend.enabled:
        for good, msg, fix in presend_report(await _presend_stats(config), time.time()):
            if good:
                ok(msg)
            else:
                bad(msg, fix)

    async with aiohttp.ClientSession() as session:
        hs = homeserver_for(config, session)
        try:
            await hs.versions()
            ok(f"homeserver reachable at {config.homeserver.url}")
        except HomeserverError as e:
            bad(f"homeserver not reachable: {e}", "check homeserver.url")
            return 1
        try:
            me = await hs.whoami()
            ok(f"appservice token accepted, bot is {me}")
        except HomeserverError as e:
            bad(
                f"the homeserver refuses the appservice token ({e})",
                "add the registration file to app_service_config_files in homeserver.yaml and restart Synapse",
            )
            return 1
        if await hs.is_server_admin():
            ok("bot is a server admin (can quarantine media)")
        else:
            bad(
                f"{hs.bot_user_id} is not a server admin, so it cannot quarantine media",
                "an appservice token gives no admin rights; as an existing admin run:\n"
                f"        curl -X PUT -H 'Authorization: Bearer <admin token>' -d '{{\"admin\": true}}' "
                f"{config.homeserver.url}/_synapse/admin/v2/users/{hs.bot_user_id}",
            )
        await check_admin_apis(hs, config, ok, bad, lambda msg: print(f"  note  {msg}"))
        rooms = [(r, "protected") for r in config.rooms.protected]
        if config.rooms.management_room:
            rooms.append((config.rooms.management_room, "management"))
        else:
            bad("no management room configured: nobody is told what modbot does", "set rooms.management_room")
        for room, role in rooms:
            problems += await _check_room(hs, room, role, ok, bad)
    print("all checks passed" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1


CHECK_OUTCOMES = ("allowed", "blocked", "dry_run", "pending_upload", "timed_out", "failed", "unchecked")


def presend_report(stats: dict[str, PresendStat] | None, now: float) -> list[tuple[bool, str, str]]:
    """Whether Synapse calls the pre-send endpoint: (ok, message, fix) lines from what it saw."""
    fix = (
        "add the `modules:` block `modbot generate-registration` prints to homeserver.yaml, install "
        "synapse-http-antispam where Synapse runs, restart Synapse (it pings modbot at start)"
    )
    if stats is None:
        return [(False, "pre-send: no database yet, so no sign of Synapse calling the endpoint", fix)]

    def ago(outcome: str) -> str:
        return f"{now - stats[outcome].last_at:.0f} s ago" if outcome in stats else "never"

    lines = []
    if "ping" in stats:
        lines.append((True, f"pre-send: last ping from synapse-http-antispam {ago('ping')}", ""))
    else:
        lines.append((False, "pre-send: synapse-http-antispam has never pinged modbot", fix))
    checks = [stats[o] for o in CHECK_OUTCOMES if o in stats]
    counts = ", ".join(f"{o} {stats[o].count}" for o in CHECK_OUTCOMES if o in stats) or "none"
    last = f"{now - max(c.last_at for c in checks):.0f} s ago" if checks else "never"
    lines.append((True, f"pre-send: last check_event_for_spam {last}; counts: {counts}", ""))
    if "unauthorized" in stats and stats["unauthorized"].last_at > max([c.last_at for c in checks] + [0.0]):
        lines.append((
            False, f"pre-send: calls with a wrong secret, last {ago('unauthorized')} (they fail open)",
            "the module's `authorization` must equal presend.antispam_secret",
        ))
    return lines


async def _presend_stats(config: Config) -> dict[str, PresendStat] | None:
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return None
    engine = create_engine(config.database.url)
    try:
        if await current_revision(engine) != head_revision():
            return None
        return await PresendStatsRepo(engine).all()
    except Exception:  # the other checks are still worth running
        return None
    finally:
        await engine.dispose()


async def _list_records(config: Config) -> tuple[dict[str, ListRecord], list[WatchedList], str | None]:
    """What each hash list last loaded, and the policy lists watched, from the database; empty
    (with why) when there is none yet."""
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return {}, [], "no database yet: lists judged as new"
    engine = create_engine(config.database.url)
    try:
        if await current_revision(engine) != head_revision():
            return {}, [], "the database is not at the current schema (start the bot once): lists judged as new"
        return await ListStateRepo(engine).records(), await PolicyRuleRepo(engine).lists(), None
    except Exception as e:  # the other checks are still worth running
        return {}, [], f"cannot read what the lists last loaded: {type(e).__name__}: {e}"
    finally:
        await engine.dispose()


async def _check_room(hs: Homeserver, room: str, role: str, ok, bad) -> int:
    before = 0
    try:
        room_id = await hs.resolve_room(room)
    except HomeserverError as e:
        bad(f"{role} room {room}: cannot resolve ({e})", "check the alias or use the room ID")
        return 1
    membership = await hs.membership(room_id, hs.bot_user_id) if await _can_see(hs, room_id) else None
    if membership != "join":
        bad(f"{role} room {room}: bot is not joined (membership: {membership})",
            f"invite {hs.bot_user_id}; modbot joins invited rooms it is configured for at start")
        return 1
    power = await hs.room_power(room_id)
    mine = power.of(hs.bot_user_id)
    if role == "management":
        ok(f"management room {room}: joined")
        return before
    missing = [name for name, need in (("ban", power.ban), ("redact", power.redact)) if mine < need]
    if missing:
        bad(
            f"protected room {room}: bot has power {mine}, needs {max(power.ban, power.redact)} for {' and '.join(missing)}",
            f"give {hs.bot_user_id} power level {max(power.ban, power.redact)} or more in {room}",
        )
        return 1
    ok(f"protected room {room}: joined, power {mine} (ban {power.ban}, redact {power.redact})")
    return before


async def _can_see(hs: Homeserver, room_id: str) -> bool:
    try:
        return room_id in await hs.joined_rooms()
    except HomeserverError:
        return False


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    print(f"config {args.config}: valid")
    registration = Path(args.registration) if args.registration else Path(args.config).parent / "registration.yaml"
    return asyncio.run(check(config, config_path=Path(args.config), registration_path=registration))

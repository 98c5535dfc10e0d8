"""`modbot audit verify`: the incident chain checked with its key and against its anchors.

The rows are checked link by link (each row's hash under its scheme, keyed rows with the
key), then against every anchor kept outside the database: the anchor file, and the bot's
anchor notices in the management room, read through the homeserver. When the homeserver
cannot be reached (or the bot cannot read the room) that is said, and the check rests on
the anchor file alone; the exit status is then that of the chain and the file.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import aiohttp

from ..act.homeserver import HomeserverError
from ..config import Config
from ..record.evidence import AnchorFile, ChainKeyError, read_chain_key, read_room_anchors
from ..record.chain import Anchor, check_anchors, verify_links
from ..record.db import create_engine, migrate
from ..record.moderation import ModerationStore
from .check import homeserver_for
from .common import load


@dataclass(frozen=True)
class EvidenceReport:
    ok: bool
    first_bad_id: int | None
    lines: tuple[str, ...]


async def verify_evidence(config: Config, *, use_homeserver: bool = True, max_room_events: int = 5000) -> EvidenceReport:
    """Raises ChainKeyError when the key file exists but is unusable."""
    key = read_chain_key(config.incidents.chain_key_file)
    engine = create_engine(config.database.url)
    try:
        await migrate(engine)
        links, mark = await ModerationStore(engine).chain()
    finally:
        await engine.dispose()
    report = verify_links(links, key, mark)
    lines = [report.message]
    if key is None:
        lines.append(f"no chain key file at {config.incidents.chain_key_file}: only plain SHA-256 rows can be checked")

    sourced: list[tuple[str, Anchor]] = []
    file_anchors, bad_lines = AnchorFile(config.incidents.anchor_file).read()
    sourced += [("anchor file", a) for a in file_anchors]
    if bad_lines:
        lines.append(f"warning: anchor file {config.incidents.anchor_file}: lines {', '.join(map(str, bad_lines[:10]))} are not anchors")
    room_anchors, room_note = await _room_anchors(config, use_homeserver, max_room_events)
    sourced += [("management room", a) for a in room_anchors]
    lines.append(room_note)

    check = check_anchors(sourced, {link.id: link.row_hash for link in links}, mark, key)
    lines += check.problems
    lines.append(
        f"anchors: {check.checked} compared with the chain ({len(file_anchors)} in the anchor file, "
        f"{len(room_anchors)} in the management room)"
    )
    if not sourced and links:
        lines.append("warning: no anchors found, so deleted newest rows could not be seen (`!mod audit anchor` posts one)")
    ok = report.ok and check.ok
    lines.append("evidence intact" if ok else "EVIDENCE NOT INTACT")
    return EvidenceReport(ok, report.first_bad_id, tuple(lines))


async def _room_anchors(config: Config, use_homeserver: bool, max_events: int) -> tuple[list[Anchor], str]:
    room = config.rooms.management_room
    if room is None:
        return [], "management room: none configured, not checked"
    if not use_homeserver:
        return [], "management room: not checked (--no-homeserver)"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            hs = homeserver_for(config, session)
            room_id = await hs.resolve_room(room)
            anchors, read = await read_room_anchors(hs.messages, room_id, hs.bot_user_id, max_events=max_events)
    except (HomeserverError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        return [], f"management room: not reachable ({e}); checked against the anchor file only"
    return anchors, f"management room {room}: {len(anchors)} anchors in the last {read} events"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    config = load(args.config)
    try:
        report = asyncio.run(
            verify_evidence(config, use_homeserver=not args.no_homeserver, max_room_events=args.room_events)
        )
    except ChainKeyError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines))
    return 0 if report.ok else 1

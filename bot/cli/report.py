"""`modbot report export`: the incidents with the fields a CyberTipline-style report needs (no media), as JSON or CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..act.incidents import export
from ..config import Config
from ..filemodes import write_private
from ..record.db import create_engine, migrate
from ..record.moderation import ModerationStore
from .common import load


async def _with_moderation(config: Config, work):  # type: ignore[no-untyped-def]
    engine = create_engine(config.database.url)
    try:
        await migrate(engine)
        return await work(ModerationStore(engine))
    finally:
        await engine.dispose()


def cmd_report_export(args: argparse.Namespace) -> int:
    config = load(args.config)
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            print(f"modbot: --since: expected a date like 2026-01-31, got {args.since!r}", file=sys.stderr)
            return 2
    incidents = asyncio.run(_with_moderation(config, lambda m: m.incidents(since=since)))
    text = export([(i.id, i.record, i.row_hash) for i in incidents], args.format)
    if args.output:
        write_private(Path(args.output), text)  # user IDs, rooms and hashes: 0600
        print(f"wrote {len(incidents)} incidents to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0

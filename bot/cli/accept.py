"""`modbot hashes accept NAME`: put a held version of a hash list in use as it is, from the command line.

What accepting means and records is in bot/lists/accept.py; this reads the list with a progress
bar, records the acceptance in the database and says when the bot will load it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

from ..lists.accept import Acceptance, AcceptError, record_acceptance
from ..lists.columns import Progress
from ..record.db import create_engine, migrate
from ..record.liststate import ListStateRepo
from ..record.store import Store
from .common import load
from .hashes import ProgressBar, list_config


def cmd_accept(args: argparse.Namespace) -> int:
    config = load(args.config)
    target = list_config(config, args.name)
    bar = ProgressBar(f"reading {target.name}")
    try:
        acceptance = asyncio.run(_accept(config, target, bar))
    except AcceptError as e:
        print(f"modbot: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(acceptance.describe())
    print(
        f"The running bot loads it within {config.hashlist.reload_interval:g} s; a stopped one at its next start. "
        "A file changed after this is judged again."
    )
    return 0


async def _accept(config: Any, target: Any, progress: Progress) -> Acceptance:
    engine = create_engine(config.database.url)
    try:
        await migrate(engine)
        return await record_acceptance(
            ListStateRepo(engine), Store(engine), target, Path.cwd(),
            by=f"{_user()} (command line)", max_drop_share=config.hashlist.max_drop_share, progress=progress,
        )
    finally:
        await engine.dispose()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown user"

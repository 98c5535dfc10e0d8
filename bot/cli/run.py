"""`modbot run`: run the appservice until it is stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from ..app import ModBot
from ..config import Config, ConfigError
from ..record.instance import EXIT_ALREADY_RUNNING, EXIT_LOCK_LOST, AlreadyRunning, instance_lock
from .common import load, setup_logging

log = logging.getLogger("modbot")


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args.config)
    setup_logging(config.logging.level)
    try:
        return asyncio.run(run(config, args.config))
    except ConfigError as e:  # e.g. a classifier whose secret is missing from the environment
        print(f"modbot: cannot start:\n{e}", file=sys.stderr)
        return 2
    except AlreadyRunning as e:
        print(f"modbot: cannot start: {e}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING


async def run(config: Config, config_path: str | Path | None = None) -> int:
    """Run until SIGINT/SIGTERM (exit status 0) or until the instance lock is lost (4).

    The instance lock is taken before anything else, so a second bot on the same database
    is refused at once (AlreadyRunning), before it loads lists or touches the database.
    """
    lock = instance_lock(config.database.url)
    await lock.acquire()
    stop = asyncio.Event()
    lock.on_lost(stop.set)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bot = ModBot(config, config_path=config_path, lock=lock)
    except BaseException:
        await lock.release()
        raise
    await bot.start()  # if it fails, the process exits, and the lock goes with it
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await bot.stop()
    return EXIT_LOCK_LOST if lock.lost.is_set() else 0

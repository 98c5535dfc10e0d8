"""`modbot run`: run the appservice until it is stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..app import run
from ..config import ConfigError
from ..record.instance import EXIT_ALREADY_RUNNING, AlreadyRunning
from .common import load, setup_logging


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

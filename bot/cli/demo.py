"""`modbot demo`: boot a throwaway Synapse and show modbot at work (the work itself is in bot/demo/)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ..demo.run import demo


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(demo(Path(args.workdir) if args.workdir else None, keep=args.keep))

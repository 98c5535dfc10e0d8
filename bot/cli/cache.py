"""`modbot cache flush`: forget the classifiers' cached verdicts, so that files are sent to the services again."""

from __future__ import annotations

import argparse
import asyncio

from ..classify.cache import VerdictCache
from ..record.db import create_engine, migrate
from ..record.scanning import VerdictCacheRepo
from .common import load


def cmd_cache_flush(args: argparse.Namespace) -> int:
    config = load(args.config)

    async def flush() -> int:
        engine = create_engine(config.database.url)
        try:
            await migrate(engine)
            return await VerdictCache(VerdictCacheRepo(engine)).flush(classifier=args.classifier, sha256=args.sha256)
        finally:
            await engine.dispose()

    flushed = asyncio.run(flush())
    print(f"flushed {flushed} cached verdict{'s' if flushed != 1 else ''}")
    return 0

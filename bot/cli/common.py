"""What the `modbot` commands share: loading the config (exit 2 with a message when it is not valid) and logging.

Every command module under bot/cli/ imports these; none imports bot/cli/__init__.py, which only
builds the parser and dispatches.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..config import Config, ConfigError, HashListConfig, load_config


def load(path: str, **kwargs: Any) -> Config:
    """The config at `path`; on an invalid or missing file, say why on stderr and exit 2."""
    try:
        return load_config(path, **kwargs)
    except ConfigError as e:
        print(f"modbot: the configuration is not valid:\n{e}", file=sys.stderr)
        raise SystemExit(2) from e
    except FileNotFoundError as e:
        print(f"modbot: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # mautrix logs every request at INFO/DEBUG; the bot's own log says what matters.
    logging.getLogger("mau").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def configured_list(config: Config, name: str) -> HashListConfig:
    """The hash list of the config named `name`; KeyError naming the lists there are."""
    lists = {lst.name: lst for lst in config.hash_lists}
    if name not in lists:
        raise KeyError(f"no hash list named {name!r} in the config (have: {', '.join(lists) or 'none'})")
    return lists[name]

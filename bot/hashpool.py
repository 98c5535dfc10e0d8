"""The threads that decode and hash media: as many as events processed at once, niced.

Decoding and hashing are the bot's CPU-heavy work (they release the GIL for most of it).
On a small server modbot shares its cores with the homeserver, whose event persistence is
a serial path: under a flood of media, hashing at full priority steals time slices from
that path and slows every user's messages. Niced threads take the cores' spare time
instead, and the events they have not reached yet wait in the durable queue.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("modbot.hashpool")


def hash_pool(workers: int, nice: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="modbot-hash", initializer=lower_priority, initargs=(nice,)
    )


def lower_priority(nice: int) -> None:
    """Give the calling thread at least niceness `nice` (Linux: a thread has its own)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:  # never ask for a higher priority than the process has
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as e:
        log.warning("could not lower the priority of a hashing thread: %s", e)

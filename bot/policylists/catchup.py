"""Catching up at start until it is done: the watched lists' state and the protected rooms' members.

At start modbot reads every watched policy room's state (the rules that changed while it was
away) and checks the members of the protected rooms against the user rules (joins Synapse
never delivered). Synapse is often not up yet when modbot starts (a host's reboot starts
both), or goes away for a while: what could not be read is tried again, first after
FIRST_RETRY seconds, then twice as long each time up to MOST_RETRY, until every list is read
and every room checked. Each failure is audited where it happens (bot/policylists/service.py,
enforce.py); a retry acts on nothing twice (rules and bans are keyed by the rule's event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from .service import PolicyLists

log = logging.getLogger("modbot.policylists")

FIRST_RETRY = 30.0
MOST_RETRY = 600.0


async def catch_up(
    lists: PolicyLists,
    protected: Callable[[], Iterable[str]],
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    first: float = FIRST_RETRY,
    most: float = MOST_RETRY,
) -> int:
    """Read the watched lists and check the members of the rooms `protected` names at the time;
    again for what failed, after `first` seconds, doubling up to `most`, until nothing is left.
    Returns how many attempts it took. Never raises but for cancellation: an error is logged
    and the attempt counts as failed."""
    lists_left: set[str] | None = None  # None: all of them
    rooms_left: set[str] | None = None
    delay = first
    attempt = 0
    while True:
        attempt += 1
        try:
            lists_left = await lists.watch_configured(lists_left)
            rooms = [r for r in sorted(protected()) if rooms_left is None or r in rooms_left]
            rooms_left = {check.room_id for check in await lists.check_members(rooms) if check.error is not None}
        except Exception:  # a crash here must be seen, and must not take the bot down
            log.exception("policy lists: catching up failed (attempt %d)", attempt)
        else:
            if not lists_left and not rooms_left:
                return attempt
            log.warning("policy lists: %d lists not read and %d rooms' members not checked; trying again in %.0f s",
                        len(lists_left), len(rooms_left), delay)
        await sleep(delay)
        delay = min(delay * 2, most)

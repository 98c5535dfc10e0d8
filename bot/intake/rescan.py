"""Re-scans of media held because a scan failed (a policy rule's `on_failure: fail_closed`).

The pipeline holds an event (its media quarantined, the event redacted) and records the
hold with the time its next scan is due; the event leaves the work queue as "held". The
Rescanner puts due events back in the queue, so they go through the whole pipeline again:
a scan that succeeds with a match acts as usual, one that succeeds without a match
releases the media (unquarantined; a redaction cannot be undone), one that fails again
pushes the next attempt further out: rescan_delay doubling up to rescan_max_delay. After
rescan_give_up_after the event is marked failed and its media stays held for a moderator.
Holds live in the database, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from ..record.scanning import HoldRepo, ScanHold
from ..record.store import Store

log = logging.getLogger("modbot.rescan")


class Rescanner:
    def __init__(
        self,
        holds: HoldRepo,
        store: Store,
        *,
        delay: float = 60.0,
        max_delay: float = 3600.0,
        give_up_after: float = 7 * 24 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.holds = holds
        self.store = store
        self.delay = delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self._clock = clock
        self._submit: Callable[[list[str]], None] | None = None
        self._task: asyncio.Task[None] | None = None

    def delay_for(self, attempts: int) -> float:
        """Seconds before the next scan after `attempts` failed ones."""
        return min(self.max_delay, self.delay * 2 ** max(0, attempts - 1))

    async def hold(self, event_id: str, room_id: str, mxcs: Sequence[str], reason: str) -> ScanHold:
        return await self.holds.hold(event_id, room_id, mxcs, reason, self.delay_for)

    async def held(self, event_id: str) -> ScanHold | None:
        return await self.holds.get(event_id)

    async def release(self, event_id: str) -> None:
        await self.holds.release(event_id)

    async def run_once(self) -> list[str]:
        """Requeue the holds that are due; give up on those held too long. Returns the requeued."""
        requeued: list[str] = []
        for hold in await self.holds.due():
            if self._clock() - hold.held_at >= self.give_up_after:
                await self._give_up(hold)
                continue
            if await self.holds.requeue(hold.event_id):
                requeued.append(hold.event_id)
                # Not due again until the pipeline says when; a crash meanwhile retries later.
                await self.holds.postpone(hold.event_id, self.delay_for(hold.attempts + 1))
            else:  # the event is not held any more (a moderator acted, or it was purged)
                await self.holds.release(hold.event_id)
        if requeued and self._submit is not None:
            self._submit(requeued)
        return requeued

    async def _give_up(self, hold: ScanHold) -> None:
        message = (
            f"no scan succeeded in {self.give_up_after / 3600:g} h ({hold.attempts} attempts, last: {hold.reason});"
            " the media stays quarantined for a moderator to decide"
        )
        await self.store.finish_event(hold.event_id, "failed", message)
        await self.store.audit("scan", "gave_up", message, event_id=hold.event_id, room_id=hold.room_id)
        await self.holds.release(hold.event_id)
        log.warning("event %s: %s", hold.event_id, message)

    def start(self, submit: Callable[[list[str]], None]) -> None:
        self._submit = submit
        self._task = asyncio.create_task(self._loop(), name="rescanner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        # Often enough that a hold is not kept much past its due time, at most every 5 s.
        interval = min(5.0, max(0.2, self.delay / 2))
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("re-scanning held media failed; trying again")
            await asyncio.sleep(interval)

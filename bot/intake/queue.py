"""The work queue: event ids in memory, the events themselves in the database.

On start every event still pending in the database is queued again, so work survives a
crash or a restart; bounded concurrency keeps memory under concurrency x size cap. Events
the intake has just stored are handed over with their content, which saves reading back
what was written a moment ago; anything else (a resumed or re-queued event) is read from
the database when its turn comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from ..metrics import Metrics
from ..record.store import Store, StoredEvent

log = logging.getLogger("modbot.queue")

# Events kept in memory with their content at most; beyond, a backlog is read back from the
# database one by one, so that a flood does not grow the bot's memory.
MAX_HANDED = 5000



class WorkQueue:
    def __init__(
        self,
        store: Store,
        handler: Callable[[StoredEvent], Awaitable[None]],
        metrics: Metrics,
        *,
        concurrency: int,
        max_attempts: int,
        retry_exceptions: tuple[type[BaseException], ...] = (),
        base_delay: float = 2.0,
        max_delay: float = 300.0,
    ) -> None:
        self.store = store
        self._handler = handler
        self._metrics = metrics
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._retry_exceptions = retry_exceptions
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._handed: dict[str, StoredEvent] = {}  # queued with their content by the intake
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self.last_errors: list[str] = []

    @property
    def depth(self) -> int:
        return len(self._queued)

    def submit(self, items: Iterable[str | StoredEvent]) -> None:
        """Queue events by id, or as the intake stored them."""
        for item in items:
            event_id = item if isinstance(item, str) else item.event_id
            if event_id not in self._queued:
                self._queued.add(event_id)
                if not isinstance(item, str) and len(self._handed) < MAX_HANDED:
                    self._handed[event_id] = item
                self._queue.put_nowait(event_id)
        self._metrics.queue_depth.set(self.depth)

    async def start(self) -> int:
        """Queue what was left pending (by a crash or a stop) and start the workers."""
        pending = await self.store.pending_event_ids()
        self.submit(pending)
        self._workers = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self._concurrency)]
        return len(pending)

    async def stop(self) -> None:
        for task in [*self._workers, *self._timers]:
            task.cancel()
        await asyncio.gather(*self._workers, *self._timers, return_exceptions=True)
        self._workers.clear()
        self._timers.clear()

    async def join(self) -> None:
        """Wait until nothing is queued or running (for tests and the demo)."""
        while self._queued or self._timers:
            await asyncio.sleep(0.05)

    async def _work(self) -> None:
        while True:
            event_id = await self._queue.get()
            try:
                await self._run(event_id)
            finally:
                self._queued.discard(event_id)
                self._handed.pop(event_id, None)
                self._metrics.queue_depth.set(self.depth)

    async def _run(self, event_id: str) -> None:
        try:
            event = self._handed.pop(event_id, None) or await self.store.load_event(event_id)
            if event is None or event.status != "pending":
                return
            await self._handler(event)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            retry = isinstance(e, self._retry_exceptions)
            if not retry:
                log.exception("processing event %s failed", event_id)
            await self._failed(event_id, f"{type(e).__name__}: {e}")

    async def _failed(self, event_id: str, error: str) -> None:
        self.last_errors = [*self.last_errors[-9:], f"{event_id}: {error}"]
        try:
            attempts = await self.store.count_attempt(event_id, error)
            if attempts >= self._max_attempts:
                await self.store.finish_event(event_id, "failed", error)
                await self.store.audit(
                    "scan", "failed", f"gave up after {attempts} attempts: {error}", event_id=event_id
                )
                return
            await self.store.audit("scan", "retry", f"attempt {attempts} failed, will retry: {error}", event_id=event_id)
        except Exception:
            log.exception("could not record the failure of event %s; it stays pending", event_id)
            attempts = 1
        delay = min(self._base_delay * 2 ** (attempts - 1), self._max_delay)
        timer = asyncio.create_task(self._resubmit(event_id, delay))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _resubmit(self, event_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.submit([event_id])

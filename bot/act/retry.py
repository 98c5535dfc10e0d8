"""Retries of actions the homeserver could not take yet (no answer, 429, 5xx).

The executor leaves such an action `pending` with its next attempt time and how to redo it
(bot/act/operations.py) in the database. The ActionRetrier claims the due ones, one claimer
per action across processes (bot/record/actions.py), and tries each again; a failure
pushes the next attempt further out, doubling from `processing.action_retry_delay` up to
`processing.action_retry_max_delay`. There is no automatic end: an action that cannot be
taken is a moderator's to give up (`actions giveup`). Everything is in the database, so
retries survive restarts. When retried actions end (done, or refused), the management room
gets one follow-up notice per event saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict

from ..model import EventContext, Outcome
from ..record.store import Store
from .executor import Executor
from .notices import ActionResult, describe_result

log = logging.getLogger("modbot.act.retry")

# Follow-up notices are actions too (so they are retried), but they get no follow-up.
FOLLOW_UP = "followup:"


class ActionRetrier:
    def __init__(self, executor: Executor, store: Store, *, batch: int = 100) -> None:
        self.executor = executor
        self.store = store
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[ActionResult]:
        """Try every due pending action once; returns the outcomes of those this process took."""
        results: list[ActionResult] = []
        ended: dict[str, list[ActionResult]] = defaultdict(list)
        for record in await self.store.action_repo.due(self.batch):
            try:
                result = await self.executor.retry(record)
            except ValueError as e:  # an operation this version cannot read
                log.error("action %s cannot be retried: %s", record.key, e)
                continue
            if result is None:
                continue  # another process claimed it first
            results.append(result)
            if result.outcome in (Outcome.OK, Outcome.FAILED) and not record.key.startswith(FOLLOW_UP):
                ended[record.event_id or ""].append(result)
        for event_id, done in ended.items():
            await self._follow_up(event_id, done)
        return results

    async def _follow_up(self, event_id: str, done: list[ActionResult]) -> None:
        lines = [f"Event: {event_id}", *(describe_result(r) for r in done)]
        room = next((r.room_id for r in done if r.kind != "notify" and r.room_id), None)
        if room:
            lines.insert(0, f"Room: {room}")
        # The same outcomes give the same key: a follow-up is never sent twice.
        digest = hashlib.sha256("\n".join(sorted(f"{r.kind}:{r.target}:{r.room_id}:{r.outcome.value}" for r in done)).encode())
        ctx = EventContext(event_id=event_id, room_id=room or "", sender="", sender_power=0)
        title = "modbot: actions retried after a homeserver failure"
        await self.executor.notice(f"{FOLLOW_UP}{event_id}:{digest.hexdigest()[:16]}", title, lines, ctx, "action retry")

    def start(self, interval: float) -> None:
        self._task = asyncio.create_task(self._loop(interval), name="action-retrier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retrying pending actions failed; trying again")
            await asyncio.sleep(interval)

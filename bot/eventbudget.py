"""The work one event may cost: how many references, how many at once, and for how long.

An event's references are scanned concurrently, at most `fetch_concurrency` at a time,
all within one deadline; what is not done by then is cancelled and reported, so the
pipeline can audit it and hand it to the policy's failure handling. The per-event cap on
references is applied earlier, by extraction itself (`extract_media_refs(max_refs=...)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .model import ExtractResult

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class EventBudget:
    max_refs: int = 20  # references scanned per event; the rest audited as not scanned
    deadline: float = 60.0  # seconds for all of an event's references
    fetch_concurrency: int = 4  # references of one event downloaded and scanned at once

    @property
    def late(self) -> str:
        """The audit line for a reference not scanned by the deadline."""
        return f"not scanned: event deadline ({self.deadline:g} s, processing.event_deadline) passed"

    def overflow(self, extracted: ExtractResult) -> list[str]:
        """The audit lines for what extraction left out: one per kind, with the count."""
        lines = []
        if extracted.dropped:
            lines.append(
                f"not scanned: too many references: {extracted.dropped} beyond the first"
                f" {self.max_refs} (processing.max_refs_per_event)"
            )
        if extracted.problems_dropped:
            lines.append(f"malformed event content: {extracted.problems_dropped} more problems not listed")
        return lines


@dataclass(frozen=True)
class Finished(Generic[T, R]):
    item: T
    result: R


@dataclass(frozen=True)
class Unfinished(Generic[T]):
    item: T  # not done when the deadline passed; its work was cancelled


async def run_within(
    items: Sequence[T],
    work: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    deadline: float,
) -> list[Finished[T, R] | Unfinished[T]]:
    """`work` on every item, `concurrency` at a time, for at most `deadline` seconds in all.

    Results come back in the order of `items`. An exception in `work` propagates (after the
    other items' work is cancelled): it is a bug or a transient failure the caller retries.
    """
    if not items:
        return []
    if len(items) == 1:
        return [await _one_within(items[0], work, deadline)]
    slots = asyncio.Semaphore(concurrency)

    async def one(item: T) -> R:
        async with slots:
            return await work(item)

    tasks = [asyncio.create_task(one(item)) for item in items]
    try:
        done, _ = await asyncio.wait(tasks, timeout=deadline, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((t for t in done if not t.cancelled() and t.exception() is not None), None)
        if failed is not None:
            raise failed.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        # Let the cancelled work unwind (close its download, leave its semaphore) before
        # the caller goes on.
        await asyncio.gather(*tasks, return_exceptions=True)
    return [
        Finished(item, task.result())
        if task.done() and not task.cancelled() and task.exception() is None
        else Unfinished(item)
        for item, task in zip(items, tasks)
    ]


async def _one_within(item: T, work: Callable[[T], Awaitable[R]], deadline: float) -> Finished[T, R] | Unfinished[T]:
    """run_within for the usual event, of one reference: its work in the caller's task, as
    the general case would do it, without a task of its own to start, watch and gather."""
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            result = await work(item)
    except TimeoutError:
        if not scope.expired():
            raise  # the work's own timeout, not the deadline: it propagates like any exception
        return Unfinished(item)
    return Finished(item, result)

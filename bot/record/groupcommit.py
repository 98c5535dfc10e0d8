"""Group commit: the writes of events that finish at about the same time, in one database
transaction.

Each commit of an event's journal cost a transaction of its own: a trip to the database
(direct.py) and a sync to disk. With several events in flight, the ones that finish while a commit is being
written now wait for it and are written together by the next one: one transaction, one
statement per table for all of them. Every caller still returns only once its own writes
are committed, so "stored, then acknowledged" and "found, then acted on" hold as before.

A batch that fails is written again one item at a time, so that one bad item fails only
its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection

from .direct import TransactionRunner

T = TypeVar("T")


@dataclass(eq=False)
class _Waiting(Generic[T]):
    item: T
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit(Generic[T]):
    """Items written by `write(conn, items)` in one transaction with the others waiting."""

    def __init__(self, runner: TransactionRunner, write: Callable[[Connection, Sequence[T]], None]) -> None:
        self.runner = runner
        self._write = write
        self._waiting: list[_Waiting[T]] = []
        self._writer = asyncio.Lock()  # one transaction at a time; the others gather meanwhile
        self.transactions = 0  # for tests and benchmarks: how many transactions were written
        self.items = 0

    async def write(self, item: T) -> None:
        """Write `item`, with whatever else is waiting; returns once it is committed."""
        mine = _Waiting(item)
        self._waiting.append(mine)
        async with self._writer:
            if not mine.done.done():
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        await mine.done  # raises what failed this item's write

    async def _commit(self, batch: list[_Waiting[T]]) -> None:
        try:
            try:
                await self._transaction([w.item for w in batch])
            except Exception as e:
                if len(batch) == 1:
                    batch[0].done.set_exception(e)
                    return
                for one in batch:  # alone, so that one bad item fails only its own caller
                    try:
                        await self._transaction([one.item])
                    except Exception as alone:
                        one.done.set_exception(alone)
                    else:
                        one.done.set_result(None)
                return
            for one in batch:
                one.done.set_result(None)
        finally:
            # Cancelled mid-write (the bot stopping): the transaction was rolled back, and
            # what it held waits for the next writer, if any comes.
            unwritten = [w for w in batch if not w.done.done()]
            if unwritten:
                self._waiting[:0] = unwritten

    async def _transaction(self, items: list[T]) -> None:
        await self.runner.run(lambda conn: self._write(conn, items))
        self.transactions += 1
        self.items += len(items)

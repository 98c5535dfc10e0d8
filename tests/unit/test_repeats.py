"""bot.hashing.repeats: the same bytes under another mxc are hashed once.

A raid posts one file from many accounts, each upload a new mxc: the hashes of bytes seen
before come from memory, copies arriving while the first is hashed wait for its job, a
refusal the bytes decide (a decompression bomb) is remembered too, and an answer the sandbox
gave because a worker was killed is not. The worker reuses the SHA-256 taken to look them up.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from images import encode, make_photo, make_png_bomb

from bot.config import ProcessingConfig
from bot.hashing import compute_hashes
from bot.hashing.pool import HashSandbox
from bot.hashing.repeats import INLINE_BYTES, RepeatedContent, sha256_of
from bot.model import Hashes

PHOTO = encode(make_photo(41, (320, 240)), "JPEG", quality=85)


class Counting:
    """A sandbox that hashes in process and counts its jobs; `gate` holds them until set."""

    def __init__(self, answer: str | None = None) -> None:
        self.jobs: list[str | None] = []
        self.answer = answer  # a perceptual_error to give instead of hashing
        self.gate = asyncio.Event()
        self.gate.set()

    async def hash(self, data: bytes, *, urgent: bool = False, sha256: str | None = None) -> Hashes:
        self.jobs.append(sha256)
        await self.gate.wait()
        hashes = compute_hashes(bytes(data))
        return replace(hashes, perceptual_error=self.answer) if self.answer else hashes


def held() -> tuple[Counting, RepeatedContent]:
    """A sandbox holding its jobs until its gate is set, and the wrapper around it."""
    sandbox = Counting()
    sandbox.gate.clear()
    return sandbox, RepeatedContent(sandbox)


async def test_bytes_hashed_before_are_answered_from_memory_and_counted() -> None:
    sandbox, told = Counting(), []
    repeats = RepeatedContent(sandbox, on_repeat=lambda: told.append(1))
    first = await repeats.hash(PHOTO)
    assert await repeats.hash(PHOTO) == first == compute_hashes(PHOTO)
    assert sandbox.jobs == [hashlib.sha256(PHOTO).hexdigest()]  # the worker is given the SHA-256
    assert repeats.repeats == 1 and told == [1]
    other = PHOTO[:-1] + bytes([PHOTO[-1] ^ 1])  # one byte apart: other bytes, another job
    assert (await repeats.hash(other)).sha256 != first.sha256 and len(sandbox.jobs) == 2


async def test_copies_arriving_while_the_first_is_hashed_wait_for_its_job() -> None:
    sandbox, repeats = held()
    raid = [asyncio.create_task(repeats.hash(PHOTO)) for _ in range(5)]
    await asyncio.sleep(0.01)
    sandbox.gate.set()
    assert len({h.sha256 for h in await asyncio.gather(*raid)}) == 1
    assert len(sandbox.jobs) == 1 and repeats.repeats == 4


async def test_an_urgent_copy_does_not_wait_behind_an_ordinary_job_but_ordinary_ones_wait_for_it() -> None:
    # The pre-send check's jobs go before those queued: it must not wait for a queued one.
    sandbox, repeats = held()
    ordinary = asyncio.create_task(repeats.hash(PHOTO))
    await asyncio.sleep(0.01)
    urgent = asyncio.create_task(repeats.hash(PHOTO, urgent=True))
    await asyncio.sleep(0.01)
    assert len(sandbox.jobs) == 2
    sandbox.gate.set()
    assert (await urgent) == (await ordinary)
    sandbox.gate.clear()
    other = PHOTO + b"\0"
    first_urgent = asyncio.create_task(repeats.hash(other, urgent=True))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(repeats.hash(other, urgent=u)) for u in (False, True)]
    await asyncio.sleep(0.01)
    sandbox.gate.set()
    await asyncio.gather(first_urgent, *later)
    assert len(sandbox.jobs) == 3 and repeats.repeats == 2


async def test_a_waiter_hashes_for_itself_when_the_first_job_is_cancelled() -> None:
    sandbox, repeats = held()
    first = asyncio.create_task(repeats.hash(PHOTO))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(repeats.hash(PHOTO))
    await asyncio.sleep(0.01)
    first.cancel()  # its event ran out of time, say
    await asyncio.sleep(0.01)
    sandbox.gate.set()
    assert (await second) == compute_hashes(PHOTO)
    assert len(sandbox.jobs) == 2 and repeats.repeats == 0


async def test_a_killed_workers_answer_is_not_remembered() -> None:
    sandbox = Counting(answer="not scanned: resource limit (cpu): over 10 s")
    repeats = RepeatedContent(sandbox)
    for _ in range(2):
        assert (await repeats.hash(PHOTO)).perceptual_error.startswith("not scanned:")  # type: ignore[union-attr]
    assert len(sandbox.jobs) == 2 and repeats.repeats == 0


async def test_memory_is_bounded_least_recently_used_first() -> None:
    sandbox = Counting()
    repeats = RepeatedContent(sandbox, size=2)
    images = [encode(make_photo(50 + n, (64, 48)), "PNG") for n in range(3)]
    for data in (images[0], images[1], images[0], images[2]):  # images[1] is the least recently used
        await repeats.hash(data)
    await repeats.hash(images[0])
    await repeats.hash(images[1])
    assert len(sandbox.jobs) == 4 and repeats.repeats == 2


async def test_large_media_is_digested_off_the_event_loop() -> None:
    data = bytes(INLINE_BYTES + 1)
    assert await sha256_of(data) == hashlib.sha256(data).hexdigest() == await sha256_of(bytearray(data))


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[HashSandbox]:
    async with HashSandbox.from_config(ProcessingConfig(), workers=1) as sb:
        yield sb


@pytest.mark.parametrize("make", [lambda: PHOTO, lambda: make_png_bomb(30_000, 30_000)], ids=["photo", "bomb"])
async def test_through_the_real_sandbox_the_hashes_are_compute_hashes_and_a_bomb_is_refused_once(
    sandbox: HashSandbox, make: object
) -> None:
    data = make()  # type: ignore[operator]
    repeats = RepeatedContent(sandbox)
    restarts = sandbox.restarts
    assert await repeats.hash(data) == compute_hashes(data)
    assert await repeats.hash(data) == compute_hashes(data) and repeats.repeats == 1
    assert sandbox.restarts == restarts

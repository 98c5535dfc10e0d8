"""Media seen before under another mxc: its hashes again, without decoding it again.

The pipeline remembers hashes by mxc (an mxc's content never changes, bot/record/media.py),
but the same bytes uploaded again get a new mxc: one image posted from many accounts in a
raid, a meme re-posted, a hostile file sent again and again to keep the workers busy. The
hashes are a function of the bytes (and of the limits, fixed for a process), so the SHA-256
of the bytes, taken in the bot before the job, finds them: a repeat costs that SHA-256
(~0.1 ms for a 1 MP photo), not a decode (~7 ms). For new bytes the worker reuses that
SHA-256 instead of computing its own, so they cost what they did.

Copies that arrive while the first is being hashed wait for its job rather than start
their own (but a pre-send check, whose jobs go first, does not wait behind an ordinary one).
What is remembered: hashes only, never bytes; at most `size` entries, the least recently
used forgotten first. Not remembered: an answer the sandbox gave because the worker was
killed or crashed ("not scanned: ..." over a resource limit or the wall clock, which a busy
machine can cause), so that media is hashed again when it comes again. Refusals decided by
the bytes (a decompression bomb, an unsupported format, a truncated file) are remembered: a
flood of one hostile file costs one job.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from bot.model import Hashes

# Up to this size the SHA-256 is taken on the event loop (~0.6 ms at most on a slow core);
# larger media in a thread, which hashlib runs without the GIL.
INLINE_BYTES = 1 << 20
# How many distinct media are remembered: hashes are a few kB each (more for animations and
# videos, whose frames they list).
REMEMBERED = 1024


class Hasher(Protocol):
    async def hash(self, data: bytes, *, urgent: bool = False, sha256: str | None = None) -> Hashes: ...


class RepeatedContent:
    """`hash` as the sandbox's, answered from memory for bytes hashed before."""

    def __init__(self, sandbox: Hasher, size: int = REMEMBERED, on_repeat: Callable[[], object] | None = None) -> None:
        self.sandbox = sandbox
        self.size = size
        self.repeats = 0  # answers given from memory
        self._on_repeat = on_repeat  # told of each (the metric modbot_media_repeats)
        self._seen: OrderedDict[str, Hashes] = OrderedDict()
        # Jobs under way, by SHA-256: their answer to come, and whether they are urgent.
        self._pending: dict[str, tuple[asyncio.Future[Hashes | None], bool]] = {}

    async def hash(self, data: bytes, *, urgent: bool = False) -> Hashes:
        digest = await sha256_of(data)
        known = self._seen.get(digest)
        if known is not None and known.size == len(data):
            self._seen.move_to_end(digest)
            return self._repeat(known)
        pending, pending_urgent = self._pending.get(digest, (None, False))
        if pending is not None and (pending_urgent or not urgent):
            # The same bytes in flight (a raid posts them at once): wait for that job, shielded
            # so that this caller's cancellation leaves it to the others. An urgent caller (a
            # sender waiting on the pre-send check) does not wait behind a queued ordinary job.
            shared = await asyncio.shield(pending)
            if shared is not None and shared.size == len(data):
                return self._repeat(shared)
            return await self.hash(data, urgent=urgent)  # that job failed or was cancelled: our own
        future: asyncio.Future[Hashes | None] | None = None
        if pending is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[digest] = (future, urgent)
        hashes = None
        try:
            hashes = await self.sandbox.hash(data, urgent=urgent, sha256=digest)
        finally:
            if future is not None:
                del self._pending[digest]
                future.set_result(hashes if hashes is not None and hashes.sha256 == digest else None)
        if hashes.sha256 == digest and not (hashes.perceptual_error or "").startswith("not scanned:"):
            self._seen[digest] = hashes
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
        return hashes

    def _repeat(self, hashes: Hashes) -> Hashes:
        self.repeats += 1
        if self._on_repeat is not None:
            self._on_repeat()
        return hashes


async def sha256_of(data: bytes) -> str:
    if len(data) <= INLINE_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())

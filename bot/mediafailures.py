"""Remembered download failures per mxc URI, so a dead reference costs one timeout, not one per event.

A reference that timed out, or whose upload never came (MSC2246 `M_NOT_YET_UPLOADED`), is
remembered for `expiry` seconds; until then every event that names it is told at once that
it was not scanned, and why, instead of waiting for the same failure again.

The memory is in the process, not the database, on purpose:
- it is a cache of transient failures with an expiry of minutes; losing it at a restart
  costs at most one more timeout per dead reference, and nothing depends on it for
  correctness (each event still goes through the policy's failure handling);
- anyone who can post can create dead references at will: rows written for them would be
  a write per hostile reference and a table to purge, where this costs a bounded dict;
- a second modbot process on the same database is refused at start (issue 10), so there is
  no other process to share it with.
It is bounded (`max_entries`): when full the oldest failure is forgotten first, which only
means that reference may cost one more timeout.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .fetch import BodySlots, Fetched, Lease, MediaFetcher
from .model import MediaRef


@dataclass(frozen=True)
class RememberedFailure:
    error: str  # what the download said, as audited the first time
    at: float  # monotonic time of the failure
    pending_upload: bool = False  # MSC2246: created but not uploaded (yet)


class MediaFailureMemory:
    def __init__(
        self, *, expiry: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.expiry = expiry
        self.max_entries = max_entries
        self._clock = clock  # monotonic: a wall-clock jump must not forget or pin failures
        self._failures: OrderedDict[str, RememberedFailure] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def remember(self, mxc: str, error: str, *, pending_upload: bool = False) -> None:
        self._failures.pop(mxc, None)
        self._failures[mxc] = RememberedFailure(error, self._clock(), pending_upload)
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def recall(self, mxc: str) -> RememberedFailure | None:
        """The failure remembered for `mxc`, or None when there is none or it has expired."""
        failure = self._failures.get(mxc)
        if failure is None:
            return None
        if self._clock() - failure.at >= self.expiry:
            del self._failures[mxc]
            return None
        return failure

    def forget(self, mxc: str) -> None:
        """The reference was downloaded after all."""
        self._failures.pop(mxc, None)


class RememberingFetcher:
    """A MediaFetcher that answers at once, from memory, for references that recently died.

    A dead reference (a timeout, an upload that never came) is remembered for `expiry`
    seconds, for every caller: events naming it, their retries and the rescanner's re-scans
    of held events alike (however many held events name it, it costs one download per
    expiry).
    """

    def __init__(self, fetcher: MediaFetcher, memory: MediaFailureMemory) -> None:
        self.fetcher = fetcher
        self.memory = memory

    @property
    def slots(self) -> BodySlots:
        return self.fetcher.slots

    async def fetch(self, ref: MediaRef, *, bypass_quarantine: bool = False, lease: Lease | None = None) -> Fetched:
        remembered = self.memory.recall(ref.mxc)
        if remembered is not None:
            error = (
                f"{remembered.error} (a remembered failure: tried again"
                f" {self.memory.expiry:g} s after it, processing.failure_memory)"
            )
            return Fetched(None, error=error, dead=True, pending_upload=remembered.pending_upload)
        fetched = await self.fetcher.fetch(ref, bypass_quarantine=bypass_quarantine, lease=lease)
        if fetched.dead:
            self.memory.remember(ref.mxc, fetched.error or "download failed", pending_upload=fetched.pending_upload)
        elif fetched.data is not None:
            self.memory.forget(ref.mxc)
        return fetched


class DeadReference(str):
    """The error of a dead reference: a failed scan for the policy, not a reason to retry the event."""

    pending_upload: bool

    def __new__(cls, error: str, *, pending_upload: bool = False) -> DeadReference:
        self = super().__new__(cls, error)
        self.pending_upload = pending_upload
        return self

"""Running the configured classifiers on one piece of media.

The runner gives each classifier only what it may see (the bytes go to `needs_data`
classifiers alone), answers from the verdict cache when it can, makes concurrent scans of
the same file share one call, bounds each classifier by a deadline, and turns a crash of
a plugin into a failed scan. It never raises for a classifier's sake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.classify.base import Classifier, MediaInput
from bot.classify.cache import VerdictCache
from bot.classify.registry import ClassifierSlot
from bot.classify.resilience import ServiceGuard
from bot.model import Classification

log = logging.getLogger("modbot.classify")


@dataclass(frozen=True)
class RunResult:
    classification: Classification
    cached: bool = False  # answered from the verdict cache, no call made

    @property
    def failed(self) -> bool:
        return self.classification.error is not None


def slot_for(classifier: Classifier) -> ClassifierSlot:
    """A slot for a classifier built by hand (tests, `modbot scan`): no cache, no deadline."""
    return ClassifierSlot(classifier, classifier.name, "", 0, None, ServiceGuard(classifier.name))


class ClassifierRunner:
    def __init__(self, slots: Sequence[ClassifierSlot | Classifier], cache: VerdictCache | None = None) -> None:
        self.slots = [s if isinstance(s, ClassifierSlot) else slot_for(s) for s in slots]
        self.cache = cache
        self._in_flight: dict[tuple[str, str], asyncio.Future[RunResult]] = {}

    @property
    def classifiers(self) -> list[Classifier]:
        return [slot.classifier for slot in self.slots]

    async def start(self) -> None:
        for slot in self.slots:
            await slot.classifier.start()

    async def close(self) -> None:
        for slot in self.slots:
            try:
                await slot.classifier.close()
            except Exception:
                log.exception("closing classifier %s failed", slot.name)

    async def wants_data(self, sha256: str) -> bool:
        """Whether some classifier would need this file's bytes (no fresh cached answer)."""
        for slot in self.slots:
            if slot.classifier.needs_data and await self._cached(slot, sha256) is None:
                return True
        return False

    async def run(self, media: MediaInput, *, hash_only: bool = False) -> list[RunResult]:
        """Every classifier's answer for `media`, in configuration order; with `hash_only`,
        only the classifiers that work from hashes (when no bytes are at hand)."""
        hashes_only = dataclasses.replace(media, data=None) if media.data is not None else media
        slots = [s for s in self.slots if not (hash_only and s.classifier.needs_data)]
        if len(slots) == 1:  # the usual setup, a hash list alone: no task to start and gather
            return [await self._run_one(slots[0], media if slots[0].classifier.needs_data else hashes_only)]
        return list(
            await asyncio.gather(
                *(self._run_one(slot, media if slot.classifier.needs_data else hashes_only) for slot in slots)
            )
        )

    async def _cached(self, slot: ClassifierSlot, sha256: str) -> Classification | None:
        if self.cache is None or slot.cache_ttl <= 0:
            return None
        try:
            return await self.cache.get(slot.name, slot.fingerprint, sha256)
        except Exception:  # the cache is an optimisation: a database hiccup means a call
            log.exception("reading the verdict cache for %s failed", slot.name)
            return None

    async def _run_one(self, slot: ClassifierSlot, media: MediaInput) -> RunResult:
        sha256 = media.hashes.sha256
        if self.cache is None or slot.cache_ttl <= 0:
            return await self._call(slot, media)
        # One call per file at a time: a second scan of the same file waits for the first,
        # and one that comes after it finds its answer in the cache.
        key = (slot.name, sha256)
        running = self._in_flight.get(key)
        if running is not None:
            shared = await asyncio.shield(running)
            return RunResult(shared.classification, cached=not shared.failed)
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            cached = await self._cached(slot, sha256)
            if cached is not None:
                hit = RunResult(cached, cached=True)
                future.set_result(hit)
                return hit
            result = await self._call(slot, media)
            if not result.failed and not result.classification.skipped:
                try:
                    await self.cache.put(slot.name, slot.fingerprint, sha256, result.classification, slot.cache_ttl)
                except Exception:
                    log.exception("writing the verdict cache for %s failed", slot.name)
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved here, so an unawaited future does not warn
            raise
        finally:
            del self._in_flight[key]

    async def _call(self, slot: ClassifierSlot, media: MediaInput) -> RunResult:
        try:
            async with asyncio.timeout(slot.deadline):
                result = await slot.classifier.classify(media)
        except TimeoutError:
            result = Classification(slot.name, error=f"no answer within {slot.deadline:g} s")
        except Exception as e:
            # A plugin broke its contract; the message is the type only, as it may hold anything.
            log.exception("classifier %s raised instead of returning an error", slot.name)
            result = Classification(slot.name, error=f"classifier crashed ({type(e).__name__})")
        if result.classifier != slot.name or any(v.classifier != slot.name for v in result.verdicts):
            # Verdicts carry the configured name: that is what policy rules and the audit use.
            result = dataclasses.replace(
                result,
                classifier=slot.name,
                verdicts=tuple(dataclasses.replace(v, classifier=slot.name) for v in result.verdicts),
            )
        return RunResult(result)

"""The verdict cache: what a classifier said of a file, kept by SHA-256 for a while.

A file is sent to a service once per TTL however many times it is posted, in however many
rooms. Only successful scans are kept (an error is worth retrying; a skipped scan costs
nothing). Each entry carries a fingerprint of the classifier's type and settings, so that
pointing a classifier at other banks or another mode is a miss rather than a stale hit.
Operators flush it with `modbot cache flush`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from bot.model import Classification, MatchKind, Verdict
from bot.record.scanning import VerdictCacheRepo


def settings_fingerprint(type_name: str, settings: BaseModel) -> str:
    """A digest of a classifier's type and settings (secrets are masked by pydantic)."""
    dumped = json.dumps({"type": type_name, "settings": settings.model_dump(mode="json")}, sort_keys=True, default=str)
    return hashlib.sha256(dumped.encode()).hexdigest()


def verdicts_to_json(verdicts: Sequence[Verdict]) -> str:
    return json.dumps(
        [
            {
                "label": v.label,
                "kind": v.kind.value,
                "list_name": v.list_name,
                "hash_type": v.hash_type,
                "distance": v.distance,
                "matched_hash": v.matched_hash,
                "score": v.score,
                "details": v.details,
            }
            for v in verdicts
        ],
        separators=(",", ":"),
        default=str,
    )


def verdicts_from_json(text: str, classifier: str, cached_at: float) -> tuple[Verdict, ...]:
    items: list[dict[str, Any]] = json.loads(text)
    return tuple(
        Verdict(
            classifier=classifier,
            label=item["label"],
            kind=MatchKind(item["kind"]),
            list_name=item.get("list_name"),
            hash_type=item.get("hash_type"),
            distance=item.get("distance"),
            matched_hash=item.get("matched_hash"),
            score=item.get("score"),
            details={**(item.get("details") or {}), "cached_at": cached_at},
        )
        for item in items
    )


class VerdictCache:
    def __init__(self, repo: VerdictCacheRepo, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self._clock = clock

    async def get(self, classifier: str, fingerprint: str, sha256: str) -> Classification | None:
        """The cached classification, if there is a fresh one made with these settings."""
        entry = await self.repo.get(classifier, sha256)
        if entry is None or entry.fingerprint != fingerprint or entry.expires_at <= self._clock():
            return None
        try:
            verdicts = verdicts_from_json(entry.verdicts_json, classifier, entry.created_at)
        except (ValueError, KeyError, TypeError):
            return None  # written by another version: ask again
        return Classification(classifier, verdicts)

    async def put(self, classifier: str, fingerprint: str, sha256: str, result: Classification, ttl: float) -> None:
        if result.error or result.skipped or ttl <= 0:
            return
        await self.repo.put(classifier, sha256, fingerprint, verdicts_to_json(result.verdicts), ttl)

    async def flush(self, *, classifier: str | None = None, sha256: str | None = None) -> int:
        return await self.repo.flush(classifier=classifier, sha256=sha256)

    async def purge_expired(self) -> int:
        return await self.repo.flush(expired_only=True)

"""Hasher-Matcher-Actioner (HMA) / OpenMediaMatch, Meta's open-source matching service.

HMA keeps the banks of known hashes and the indexes over them, so that matching scales
beyond one machine and is shared by several homeservers. Two modes:

- `hashes`: modbot hashes the media and looks each hash up:
  `GET /m/lookup?signal_type=pdq&signal=<hex>` answers `{"BANK": [{"bank_content_id": 1,
  "distance": "0"}]}` (banks without a match are absent). Our hash types map to HMA
  signal types through `signal_types` (default: pdq -> pdq, md5 -> video_md5).
- `media`: the media is sent to be hashed and matched: `POST /m/lookup` with the file as
  multipart field `photo` or `video`, answered `{"pdq": {"BANK": [...]}}` by signal type.

Every lookup passes `seed=<sha256>`, so that banks matched on a fraction of lookups
(HMA's `matching_enabled_ratio`) give the same answer for the same file every time.
HMA has no authentication of its own; `token`/`token_env` is sent as a bearer token for
a reverse proxy in front of it. Errors come back as `{"message": "..."}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from bot.classify.base import ClassifierContext, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, expect, media_type
from bot.model import Classification, Hashes, MatchKind, Verdict

ExactType = Literal["md5", "sha256"]
_EXACT_SIGNALS = ("md5", "sha256")


class HmaSettings(RemoteSettings):
    mode: Literal["hashes", "media"] = "hashes"
    # modbot hash type -> HMA signal type looked up, in `hashes` mode.
    signal_types: dict[Literal["pdq", "md5", "sha256"], str] = {"pdq": "pdq", "md5": "video_md5"}
    # hashes mode: also look up the rotated/flipped/trimmed PDQ variants (one request each).
    pdq_variants: bool = False
    pdq_min_quality: int = Field(default=50, ge=0, le=100)
    # Only these banks (HMA's `banks` parameter); null: every bank enabled for matching.
    banks: tuple[str, ...] | None = Field(default=None, min_length=1)
    # Bank name -> verdict label; banks not listed give their own name as the label.
    labels: dict[str, str] = {}
    # PDQ matches farther than this are dropped (HMA's index has its own threshold too).
    max_distance: int | None = Field(default=None, ge=0, le=256)
    # media mode: MIME type prefix -> HMA content type (the multipart field name).
    content_types: dict[str, str] = {"image/": "photo", "video/": "video"}
    token: SecretStr | None = None
    token_env: str | None = None

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")  # paths are appended


class HmaClassifier(RemoteClassifier):
    """Looks media (or its hashes) up in an HMA instance's banks."""

    Settings = HmaSettings
    settings: HmaSettings

    @classmethod
    def from_settings(cls, settings: HmaSettings, context: ClassifierContext) -> HmaClassifier:
        token = resolve_secret(settings.token, settings.token_env, context.environ, "token")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return cls.connect(settings, context, headers=headers, secrets=[token])

    def _params(self, hashes: Hashes, **extra: str) -> dict[str, str]:
        params = {**extra, "seed": hashes.sha256}
        if self.settings.banks:
            params["banks"] = ",".join(self.settings.banks)
        return params

    async def scan(self, media: MediaInput) -> Classification:
        if self.settings.mode == "media":
            return await self._scan_media(media)
        return await self._scan_hashes(media.hashes)

    # --- hashes ------------------------------------------------------------------------------

    def _queries(self, hashes: Hashes) -> tuple[list[tuple[str, str, str]], str | None]:
        """(our hash type, HMA signal type, value) to look up, and why PDQ was left out."""
        queries: list[tuple[str, str, str]] = []
        skipped_pdq = None
        for hash_type, signal_type in self.settings.signal_types.items():
            if hash_type in _EXACT_SIGNALS:
                queries.append((hash_type, signal_type, getattr(hashes, hash_type)))
            elif not hashes.pdq or hashes.pdq_quality is None:
                skipped_pdq = hashes.perceptual_error or "no PDQ hash (not an image)"
            elif hashes.pdq_quality < self.settings.pdq_min_quality:
                skipped_pdq = f"PDQ quality {hashes.pdq_quality} < {self.settings.pdq_min_quality}"
            else:
                values = [hashes.pdq.lower()]
                if self.settings.pdq_variants:
                    values += [h.lower() for h in hashes.pdq_queries if h.lower() not in values]
                queries += [(hash_type, signal_type, value) for value in values]
        return queries, skipped_pdq

    async def _scan_hashes(self, hashes: Hashes) -> Classification:
        queries, skipped_pdq = self._queries(hashes)
        if not queries:
            return Classification(self.name, skipped=skipped_pdq or "no hash type configured")
        # Every lookup runs to its end before an error is raised: none is left in flight.
        answers = await asyncio.gather(
            *(
                self.client.request("GET", "/m/lookup", params=self._params(hashes, signal_type=signal_type, signal=value))
                for _, signal_type, value in queries
            ),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        original_pdq = hashes.pdq.lower() if hashes.pdq else None
        verdicts: list[Verdict] = []
        for (hash_type, signal_type, value), answer in zip(queries, answers, strict=True):
            variant = hash_type == "pdq" and value != original_pdq
            verdicts += self._verdicts(hash_type, signal_type, _banks(answer), query_hash=value if variant else None)
        return Classification(self.name, _best_per_bank(verdicts))

    # --- media -------------------------------------------------------------------------------

    async def _scan_media(self, media: MediaInput) -> Classification:
        mimetype = media_type(media) or ""
        content_type = next((ct for prefix, ct in self.settings.content_types.items() if mimetype.startswith(prefix)), None)
        if content_type is None:
            return Classification(self.name, skipped=f"{mimetype or 'unknown type'} is not sent to HMA")
        if media.data is None:
            return Classification(self.name, error="the media's bytes were not available to send")
        form = aiohttp.FormData()
        form.add_field(content_type, media.data, filename="media", content_type=mimetype)
        answer = await self.client.request("POST", "/m/lookup", params=self._params(media.hashes), data=form)
        expect(isinstance(answer, dict), "matches by signal type")
        by_signal = {signal: hash_type for hash_type, signal in self.settings.signal_types.items()}
        verdicts: list[Verdict] = []
        for signal_type, banks in answer.items():
            hash_type = by_signal.get(signal_type, signal_type)
            verdicts += self._verdicts(hash_type, signal_type, _banks(banks))
        return Classification(self.name, _best_per_bank(verdicts))

    # --- answers -----------------------------------------------------------------------------

    def _verdicts(
        self, hash_type: str, signal_type: str, banks: Mapping[str, list[dict[str, Any]]], query_hash: str | None = None
    ) -> list[Verdict]:
        exact = any(name in signal_type for name in _EXACT_SIGNALS)
        verdicts = []
        for bank, matches in banks.items():
            best: tuple[int | None, dict[str, Any]] | None = None
            for match in matches:
                distance = _distance(match["distance"])
                if not exact and self.settings.max_distance is not None:
                    if distance is None or distance > self.settings.max_distance:
                        continue
                if best is None or (distance is not None and (best[0] is None or distance < best[0])):
                    best = (distance, match)
            if best is None:
                continue
            details: dict[str, Any] = {
                "service": "hma",
                "signal_type": signal_type,
                "bank_content_ids": [m["bank_content_id"] for m in matches][:10],
            }
            if query_hash is not None:
                details.update(query="variant", query_hash=query_hash)
            verdicts.append(
                Verdict(
                    classifier=self.name,
                    label=self.settings.labels.get(bank, bank),
                    kind=MatchKind.EXACT if exact else MatchKind.NEAR,
                    list_name=bank,
                    hash_type=hash_type,
                    distance=0 if exact else best[0],
                    details=details,
                )
            )
        return verdicts


def _banks(answer: Any) -> dict[str, list[dict[str, Any]]]:
    """Check the shape of a `{"BANK": [{"bank_content_id": 1, "distance": "0"}]}` answer."""
    expect(isinstance(answer, dict), "matches by bank")
    for bank, matches in answer.items():
        expect(isinstance(bank, str) and isinstance(matches, list), "a list of matches per bank")
        for match in matches:
            expect(
                isinstance(match, dict) and isinstance(match.get("bank_content_id"), int) and "distance" in match,
                "matches with bank_content_id and distance",
            )
    return answer


def _distance(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _best_per_bank(verdicts: list[Verdict]) -> tuple[Verdict, ...]:
    """One verdict per (bank, label): exact before near, then the nearest, then the original query."""
    best: dict[tuple[str | None, str], Verdict] = {}
    for v in verdicts:
        key = (v.list_name, v.label)
        rank = (v.kind is not MatchKind.EXACT, v.distance if v.distance is not None else 999, "query" in v.details)
        if key not in best:
            best[key] = v
            continue
        old = best[key]
        if rank < (old.kind is not MatchKind.EXACT, old.distance if old.distance is not None else 999, "query" in old.details):
            best[key] = v
    return tuple(best.values())

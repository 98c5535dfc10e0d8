"""Hive's Combined CSAM Detection API (with Thorn's Safer): hash matching, and a classifier
for unknown material when no hash matched.

`POST <url>/api/v2/task/sync` with header `Authorization: Token KEY` and the image as the
multipart form field `media`. The answer wraps the task:
`{"status": [{"status": {"code": 200, "message": "SUCCESS"}, "response": {"output":
{"file": {"fileType", "reasons", "classifierPrediction"}, "hashes": [...]}}}]}`.

- Each entry of `hashes` (`hashType` saferhashv0, md5, videoSaferhashv0) that has
  `matchTypes` (CSAM, SE) and `sources` (`hashSet`, `matches[{sourceId, matchDistance}]`)
  is a match verdict per match type and hash set: label from `labels` (CSAM -> csam,
  SE -> sexual-exploitation), list the hash set, EXACT for md5, NEAR with the smallest
  `matchDistance` otherwise (Safer's distance, not PDQ bits).
- The classifier's `csam` score (`classifierPrediction.csam_classifier.csam`, 0..1; Hive
  runs it only when no hash matched, on images of 100x100 or more) at or above
  `csam_threshold` is a verdict labelled `classifier_label` with that score. It may only
  lead to a review: `review_only_verdicts` declares it (bot/reviewonly.py).

Images under Hive's hashing minimum (50x50) are skipped; images over `max_bytes` are
reduced in the hashing sandbox first. Errors: `{"return_code": 429, "message": ...}` with
the HTTP status; a task that failed has another status code in `status[0].status`.
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator, model_validator

from bot.classify.base import ClassifierContext, ClassifierSetupError, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, expect, media_type
from bot.classify.resilience import Rejected
from bot.hashing.fitting import FitSpec
from bot.model import Classification, MatchKind, Verdict

DEFAULT_URL = "https://api.thehive.ai"
_SUCCESS = {200, "200", 0, "0"}
_EXACT_HASHES = {"md5"}


class HiveSettings(RemoteSettings):
    url: str = DEFAULT_URL
    mode: Literal["media"] = "media"
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    # Hive matchTypes -> verdict label; a match type not listed is its own label, lower-cased.
    labels: dict[str, str] = {"CSAM": "csam", "SE": "sexual-exploitation"}
    max_distance: int | None = Field(default=None, ge=0)  # drop perceptual matches farther than this
    csam_threshold: float = Field(default=0.9, gt=0, le=1)  # classifier score that makes a verdict
    classifier_label: str = Field(default="csam-classifier", min_length=1, max_length=255)
    min_side: int = Field(default=50, ge=1)  # Hive hashes images of 50x50 or more
    max_bytes: int = Field(default=20_000_000, ge=10_000)

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @model_validator(mode="after")
    def _classifier_label_apart(self) -> HiveSettings:
        # Review-only verdicts are told apart from hash matches by their label.
        if self.classifier_label in self.labels.values():
            raise ValueError(f"classifier_label {self.classifier_label!r} must differ from the hash match labels")
        return self


class HiveClassifier(RemoteClassifier):
    """Sends images to Hive: hash matches as match verdicts, the CSAM score as a review verdict."""

    Settings = HiveSettings
    settings: HiveSettings
    sandbox: Any = None

    @classmethod
    def review_only_verdicts(cls, settings: HiveSettings, name: str) -> tuple[Verdict, ...]:
        return (_score_verdict(name, settings.classifier_label, 1.0, {}),)

    @classmethod
    def from_settings(cls, settings: HiveSettings, context: ClassifierContext) -> HiveClassifier:
        key = resolve_secret(settings.api_key, settings.api_key_env, context.environ, "api_key")
        if not key:
            raise ClassifierSetupError("api_key or api_key_env is required")
        headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
        instance = cls.connect(settings, context, headers=headers, secrets=[key])
        instance.sandbox = context.sandbox
        return instance

    async def scan(self, media: MediaInput) -> Classification:
        mimetype = media_type(media) or ""
        if not mimetype.startswith("image/"):
            return Classification(self.name, skipped=f"{mimetype or 'unknown type'}: only images are sent to Hive")
        h = media.hashes
        if h.width is not None and h.height is not None and min(h.width, h.height) < self.settings.min_side:
            return Classification(self.name, skipped=f"{h.width}x{h.height} is under Hive's {self.settings.min_side} px hashing minimum")
        if media.data is None:
            return Classification(self.name, error="the media's bytes were not available to send")
        data, sent, note = media.data, "sent as posted", None
        if len(data) > self.settings.max_bytes:
            if self.sandbox is None:
                return Classification(self.name, error="the image must be reduced to be sent, and no hashing sandbox is available here")
            fitted = await self.sandbox.fit(data, FitSpec(self.settings.min_side, self.settings.max_bytes))
            if isinstance(fitted, str):
                return Classification(self.name, error=f"not sent to Hive: {fitted}")
            data, mimetype = fitted.data, fitted.mimetype
            sent = note = f"reduced: {len(media.data)} bytes -> JPEG {fitted.width}x{fitted.height}, {len(fitted.data)} bytes"
        form = aiohttp.FormData()
        form.add_field("media", data, filename="media", content_type=mimetype)
        answer = await self.client.request("POST", "/api/v2/task/sync", data=form)
        output = _output(answer)
        verdicts = self._hash_verdicts(output.get("hashes") or [], sent)
        if not verdicts:
            verdicts = self._score_verdicts(output.get("file"), sent)
        return Classification(self.name, tuple(verdicts), note=note)

    def _hash_verdicts(self, hashes: Any, sent: str) -> list[Verdict]:
        expect(isinstance(hashes, list) and all(isinstance(h, dict) for h in hashes), "hashes list")
        best: dict[tuple[str, str], Verdict] = {}
        for entry in hashes:
            hash_type, match_types, sources = entry.get("hashType"), entry.get("matchTypes") or [], entry.get("sources") or []
            expect(isinstance(hash_type, str) and isinstance(match_types, list) and isinstance(sources, list), "hashes[] fields")
            exact = hash_type in _EXACT_HASHES
            for source in sources:
                expect(isinstance(source, dict) and isinstance(source.get("hashSet"), str), "sources[].hashSet")
                matches = source.get("matches") or []
                expect(isinstance(matches, list) and all(isinstance(m, dict) for m in matches), "sources[].matches")
                distances = [m["matchDistance"] for m in matches if isinstance(m.get("matchDistance"), int) and m["matchDistance"] >= 0]
                distance = 0 if exact else min(distances, default=None)
                if not exact and self.settings.max_distance is not None and (distance is None or distance > self.settings.max_distance):
                    continue
                for match_type in match_types:
                    expect(isinstance(match_type, str), "matchTypes[]")
                    label = self.settings.labels.get(match_type, match_type.lower())
                    verdict = Verdict(
                        classifier=self.name, label=label, kind=MatchKind.EXACT if exact else MatchKind.NEAR,
                        list_name=source["hashSet"][:255], hash_type=hash_type[:16], distance=distance,
                        details={
                            "service": "hive", "match_type": match_type, "hash_set": source["hashSet"], "sent": sent,
                            "source_ids": [str(m.get("sourceId")) for m in matches][:10],
                        },
                    )  # fmt: skip
                    key = (source["hashSet"], label)
                    if key not in best or _rank(verdict) < _rank(best[key]):
                        best[key] = verdict
        return list(best.values())

    def _score_verdicts(self, file: Any, sent: str) -> list[Verdict]:
        expect(file is None or isinstance(file, dict), "output.file object")
        prediction = (file or {}).get("classifierPrediction")
        if prediction is None:  # a hash matched, or the image was too small for the classifier
            return []
        expect(isinstance(prediction, dict) and isinstance(prediction.get("csam_classifier"), dict), "csam_classifier")
        scores = prediction["csam_classifier"]
        expect(all(isinstance(scores.get(k), int | float) for k in ("csam", "pornography", "other")), "classifier scores")
        if scores["csam"] < self.settings.csam_threshold:
            return []
        details = {"scores": {k: float(scores[k]) for k in ("csam", "pornography", "other")}, "sent": sent}
        return [_score_verdict(self.name, self.settings.classifier_label, float(scores["csam"]), details)]


def _output(answer: Any) -> dict[str, Any]:
    """The task's output, or a Rejected naming the task's error."""
    expect(isinstance(answer, dict) and isinstance(answer.get("status"), list) and answer["status"], "a status list")
    task = answer["status"][0]
    expect(isinstance(task, dict) and isinstance(task.get("status"), dict), "status[0].status")
    code, message = task["status"].get("code"), task["status"].get("message")
    if code not in _SUCCESS:
        raise Rejected(f"Hive task failed: {code} {message or ''}".rstrip())
    response = task.get("response")
    expect(isinstance(response, dict) and isinstance(response.get("output"), dict), "response.output")
    return response["output"]


def _rank(v: Verdict) -> tuple[bool, int]:
    return (v.kind is not MatchKind.EXACT, v.distance if v.distance is not None else 1 << 30)


def _score_verdict(name: str, label: str, score: float, details: dict[str, Any]) -> Verdict:
    return Verdict(
        classifier=name, label=label, kind=MatchKind.NEAR, score=score, details={"service": "hive", **details}
    )

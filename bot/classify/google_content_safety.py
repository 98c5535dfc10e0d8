"""Google's Content Safety API: a classifier of unknown material, for human review only.

`POST <url>/images:classify?key=KEY` with `{"images": ["<base64>"]}` answers
`{"reviewPriorities": ["VERY_LOW"|"LOW"|"MEDIUM"|"HIGH"|"VERY_HIGH"], "modelVersion": ...}`,
one priority per image. Google's terms require a person to review what it flags, so its
verdicts may only lead to a `review` (a hold or a flag): `review_only_verdicts` declares
them, and the config refuses a policy rule that would quarantine, redact or ban on one
(bot/reviewonly.py). A priority at or above `min_priority` is a verdict (label `label`,
score 0, 0.25, 0.5, 0.75 or 1 for VERY_LOW..VERY_HIGH, so that rules can tell them apart
with `min_score`); below it, none. Errors follow Google's JSON error format
(`{"error": {"code", "message", "status", "details"}}`); a wrong API key is answered 400
with reason API_KEY_INVALID, which counts as an authentication failure here.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from bot.classify.base import ClassifierContext, ClassifierSetupError, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, expect, media_type
from bot.classify.resilience import AuthFailed, ServiceError
from bot.hashing.fitting import FitSpec
from bot.model import Classification, MatchKind, Verdict

DEFAULT_URL = "https://contentsafety.googleapis.com/v1beta1"
PRIORITIES = ("VERY_LOW", "LOW", "MEDIUM", "HIGH", "VERY_HIGH")
Priority = Literal["VERY_LOW", "LOW", "MEDIUM", "HIGH", "VERY_HIGH"]
# Google lists these formats; modbot identifies BMP and TIFF by their first bytes.
_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "PPM"}


class GoogleContentSafetySettings(RemoteSettings):
    url: str = DEFAULT_URL
    mode: Literal["media"] = "media"
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    min_priority: Priority = "MEDIUM"  # lower priorities give no verdict
    label: str = Field(default="csam-suspected", min_length=1, max_length=255)
    # The JSON body may not exceed 10 MB; base64 adds a third: larger images are reduced
    # (to about 512 px, in the hashing sandbox) before they are sent.
    max_bytes: int = Field(default=7_000_000, ge=10_000, le=7_500_000)

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")


def _google_error_kind(status: int, body: Any) -> type[ServiceError] | None:
    """Google answers a wrong or restricted API key with a 400: that is no request problem."""
    error = body.get("error") if isinstance(body, dict) else None
    if status == 400 and isinstance(error, dict):
        reasons = [d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)]
        if "API_KEY_INVALID" in reasons or "API key not valid" in str(error.get("message")):
            return AuthFailed
    return None


class GoogleContentSafetyClassifier(RemoteClassifier):
    """Asks Google's Content Safety API how urgently a person should look at an image."""

    name = "google_content_safety"
    Settings = GoogleContentSafetySettings
    settings: GoogleContentSafetySettings
    sandbox: Any = None
    _key: SecretStr

    @classmethod
    def review_only_verdicts(cls, settings: GoogleContentSafetySettings, name: str) -> tuple[Verdict, ...]:
        return (_verdict(name, settings.label, "VERY_HIGH", None),)

    @classmethod
    def from_settings(
        cls, settings: GoogleContentSafetySettings, context: ClassifierContext
    ) -> GoogleContentSafetyClassifier:
        key = resolve_secret(settings.api_key, settings.api_key_env, context.environ, "api_key")
        if not key:
            raise ClassifierSetupError("api_key or api_key_env is required")
        instance = cls.connect(
            settings, context, headers={"Accept": "application/json"}, secrets=[key], error_kind=_google_error_kind
        )
        instance._key = SecretStr(key)  # sent as the `key` parameter; hidden in reprs
        instance.sandbox = context.sandbox
        return instance

    async def scan(self, media: MediaInput) -> Classification:
        mimetype = media_type(media) or ""
        fmt = (media.hashes.image_format or "").upper()
        if not mimetype.startswith("image/"):
            return Classification(self.name, skipped=f"{mimetype or 'unknown type'}: the Content Safety API classifies images only")
        if media.data is None:
            return Classification(self.name, error="the media's bytes were not available to send")
        data, sent, note = media.data, "sent as posted", None
        if fmt and fmt not in _FORMATS:
            return Classification(self.name, skipped=f"{fmt} is not a format the Content Safety API takes")
        if len(data) > self.settings.max_bytes:
            if self.sandbox is None:
                return Classification(self.name, error="the image must be reduced to be sent, and no hashing sandbox is available here")
            fitted = await self.sandbox.fit(data, FitSpec(1, self.settings.max_bytes))
            if isinstance(fitted, str):
                return Classification(self.name, error=f"not sent to the Content Safety API: {fitted}")
            sent = note = f"reduced: {len(media.data)} bytes -> JPEG {fitted.width}x{fitted.height}, {len(fitted.data)} bytes"
            data = fitted.data
        body = {"images": [base64.b64encode(data).decode("ascii")]}
        answer = await self.client.request("POST", "/images:classify", params={"key": self._key.get_secret_value()}, json_body=body)
        expect(isinstance(answer, dict) and isinstance(answer.get("reviewPriorities"), list), "reviewPriorities")
        priorities = answer["reviewPriorities"]
        expect(len(priorities) == 1 and priorities[0] in PRIORITIES, "one review priority per image sent")
        priority = priorities[0]
        if PRIORITIES.index(priority) < PRIORITIES.index(self.settings.min_priority):
            return Classification(self.name, note=note)
        model = answer.get("modelVersion") if isinstance(answer.get("modelVersion"), str) else None
        verdict = _verdict(self.name, self.settings.label, priority, model)
        verdict.details["sent"] = sent
        return Classification(self.name, (verdict,), note=note)


def _verdict(name: str, label: str, priority: str, model: str | None) -> Verdict:
    return Verdict(
        classifier=name,
        label=label,
        kind=MatchKind.NEAR,
        score=PRIORITIES.index(priority) / (len(PRIORITIES) - 1),
        details={"service": "google-content-safety", "review_priority": priority, "model_version": model},
    )

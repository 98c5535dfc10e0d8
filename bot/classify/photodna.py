"""Microsoft's PhotoDNA Cloud Service: the image is sent and matched against the hash sets
Microsoft holds (NCMEC's, industry sharing, a `Test` set for integration).

`POST <url>/Match[?enhance=true]` with header `Ocp-Apim-Subscription-Key` and the image
bytes as the body, `Content-Type: image/gif|jpeg|png|bmp|tiff`. The service takes images
of at least 160x160 pixels and at most 4 MB: anything else (WebP, a sticker under
160 px, a photo over 4 MB) is re-encoded as JPEG in the hashing sandbox first (every
decode runs there: bot/hashing/fitting.py), and the verdict's details, the error and the
log say so. The answer always comes with HTTP 200: `Status.Code` 3000 is OK; 3002 (invalid
or missing parameter), 3206 (not an image) and 3208 (size out of range) are about this
request; 3004 (unknown error) is the service's trouble and is retried. A match gives one
NEAR verdict (hash type `photodna`; PhotoDNA reports no distance) per `MatchFlags`
source, with its `Violations` and the `TrackingId` Microsoft asks for in support requests.
Errors from the API gateway in front (wrong key, quota, rate) come as
`{"statusCode": 401, "message": ...}` with the HTTP status. Microsoft documents a limit
of 5 requests a second (10 in older pages): 5 is the default `rate_limit`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from bot.classify.base import ClassifierContext, ClassifierSetupError, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, expect, media_type
from bot.classify.resilience import BadResponse, Rejected, ServerFailed
from bot.hashing.fitting import FitSpec, Fitted
from bot.model import Classification, MatchKind, Verdict

log = logging.getLogger("modbot.classify")

DEFAULT_URL = "https://api.microsoftmoderator.com/photodna/v1.0"
OK = 3000
# Status codes about the request sent (the service is fine), and the service's own failure.
REQUEST_ERRORS = {
    3002: "invalid or missing request parameter",
    3206: "the file could not be verified as an image",
    3208: "image size out of range",
}
SERVICE_ERROR = 3004
# Pillow's names of the formats PhotoDNA takes as they are, and their MIME types.
ACCEPTED = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif"}
# BMP and TIFF are accepted too, but modbot does not decode them: known by their first bytes.
_MAGIC = ((b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


class PhotoDnaSettings(RemoteSettings):
    url: str = DEFAULT_URL
    mode: Literal["media"] = "media"  # PhotoDNA Cloud hashes the image itself
    subscription_key: SecretStr | None = None
    subscription_key_env: str | None = None
    enhance: bool = False  # PhotoDNA's broader matching (slower answers)
    # What the service accepts; images outside are re-encoded (JPEG) in the hashing sandbox.
    min_side: int = Field(default=160, ge=1)
    # 4 MB as 4,000,000 bytes: the documentation does not say which megabyte it means.
    max_bytes: int = Field(default=4_000_000, ge=10_000)
    label: str = Field(default="csam", min_length=1, max_length=255)  # the verdicts' label
    labels: dict[str, str] = {}  # MatchFlags Source -> label, for sources with another meaning

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")  # /Match is appended


class PhotoDnaClassifier(RemoteClassifier):
    """Sends images to PhotoDNA Cloud, fitted to its size limits when they are not."""

    Settings = PhotoDnaSettings
    settings: PhotoDnaSettings
    default_rate_limit: ClassVar[float | None] = 5.0
    sandbox: Any = None

    @classmethod
    def from_settings(cls, settings: PhotoDnaSettings, context: ClassifierContext) -> PhotoDnaClassifier:
        key = resolve_secret(settings.subscription_key, settings.subscription_key_env, context.environ, "subscription_key")
        if not key:
            raise ClassifierSetupError("subscription_key or subscription_key_env is required")
        headers = {"Ocp-Apim-Subscription-Key": key, "Accept": "application/json"}
        instance = cls.connect(settings, context, headers=headers, secrets=[key])
        instance.sandbox = context.sandbox
        return instance

    async def scan(self, media: MediaInput) -> Classification:
        mimetype = media_type(media)
        if not mimetype or not mimetype.startswith("image/"):
            return Classification(self.name, skipped=f"{mimetype or 'unknown type'}: PhotoDNA matches images only")
        if media.data is None:
            return Classification(self.name, error="the media's bytes were not available to send")
        body, content_type, fitted = await self._fit(media)
        if body is None:
            return Classification(self.name, error=content_type)
        params = {"enhance": "true"} if self.settings.enhance else None
        sent = _describe(media, fitted)
        try:
            answer = await self.client.request(
                "POST", "/Match", params=params, data=body, headers={"Content-Type": content_type}, check=_check_status
            )
            result = self._verdicts(answer, sent)
            return result if fitted is None else dataclasses.replace(result, note=sent)
        except (Rejected, ServerFailed, BadResponse) as e:
            if fitted is not None:
                e.args = (f"{e} ({sent})",)
            raise

    async def _fit(self, media: MediaInput) -> tuple[bytes | None, str, Fitted | None]:
        """The body to send, its Content-Type and how it was re-encoded; or (None, why not)."""
        assert media.data is not None
        hashes = media.hashes
        fmt = (hashes.image_format or "").upper()
        content_type = ACCEPTED.get(fmt) or next((m for magic, m in _MAGIC if media.data.startswith(magic)), None)
        small = hashes.width is not None and hashes.height is not None and min(hashes.width, hashes.height) < self.settings.min_side
        if content_type and not small and len(media.data) <= self.settings.max_bytes:
            return media.data, content_type, None
        if self.sandbox is None:
            return None, "the image must be re-encoded for PhotoDNA, and no hashing sandbox is available here", None
        fitted = await self.sandbox.fit(media.data, FitSpec(self.settings.min_side, self.settings.max_bytes))
        if isinstance(fitted, str):
            return None, f"not sent to PhotoDNA: {fitted}", None
        log.info("%s: %s sent as %s", self.name, hashes.sha256, _describe(media, fitted))
        return fitted.data, fitted.mimetype, fitted

    def _verdicts(self, answer: Any, sent: str) -> Classification:
        is_match = answer.get("IsMatch")
        expect(isinstance(is_match, bool), "IsMatch")
        if not is_match:
            return Classification(self.name)
        details = answer.get("MatchDetails") or {}
        expect(isinstance(details, dict), "MatchDetails object")
        flags = details.get("MatchFlags") or []
        expect(isinstance(flags, list) and all(isinstance(f, dict) for f in flags), "MatchFlags list")
        tracking = answer.get("TrackingId") if isinstance(answer.get("TrackingId"), str) else None
        by_source: dict[str | None, list[dict[str, Any]]] = {}
        for flag in flags or [{}]:  # a match without flags still is one
            source = flag.get("Source")
            expect(source is None or isinstance(source, str), "MatchFlags[].Source")
            by_source.setdefault(source, []).append(flag)
        verdicts = []
        for source, source_flags in by_source.items():
            violations = sorted({v for f in source_flags for v in (f.get("Violations") or []) if isinstance(v, str)})
            match_ids = [
                i.get("Value") for f in source_flags for i in (f.get("AdvancedInfo") or [])
                if isinstance(i, dict) and i.get("Key") == "MatchId"
            ][:10]  # fmt: skip
            verdicts.append(
                Verdict(
                    classifier=self.name,
                    label=self.settings.labels.get(source or "", self.settings.label),
                    kind=MatchKind.NEAR,
                    list_name=source[:255] if source else None,
                    hash_type="photodna",
                    details={
                        "service": "photodna", "source": source, "violations": violations,
                        "match_ids": match_ids, "tracking_id": tracking, "enhance": self.settings.enhance, "sent": sent,
                    },
                )  # fmt: skip
            )
        return Classification(self.name, tuple(verdicts))


def _check_status(answer: Any) -> None:
    """Status.Code as an error (inside the guarded attempt: 3004 is retried)."""
    expect(isinstance(answer, dict) and isinstance(answer.get("Status"), dict), "a Status object")
    code, description = answer["Status"].get("Code"), answer["Status"].get("Description")
    expect(isinstance(code, int), "Status.Code")
    if code == SERVICE_ERROR:
        raise ServerFailed(f"PhotoDNA status {code}: {description or 'unknown error'}")
    if code in REQUEST_ERRORS:
        raise Rejected(f"PhotoDNA status {code} ({REQUEST_ERRORS[code]}): {description or ''}".rstrip(": "))
    if code != OK:
        raise BadResponse(f"PhotoDNA status {code} is not documented: {description or ''}".rstrip(": "))


def _describe(media: MediaInput, fitted: Fitted | None) -> str:
    """What was sent, in words for the audit: the file as posted, or how it was re-encoded."""
    h = media.hashes
    original = f"{h.image_format or 'image'} {h.width}x{h.height}" if h.width else (h.image_format or "image")
    if fitted is None:
        return f"sent as posted ({original}, {h.size} bytes)"
    how = "enlarged and re-encoded" if fitted.enlarged else "re-encoded"
    return f"{how}: {original}, {h.size} bytes -> JPEG {fitted.width}x{fitted.height}, {len(fitted.data)} bytes"

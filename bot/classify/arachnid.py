"""Arachnid Shield, the Canadian Centre for Child Protection's scanning API.

Two modes:

- `media`: the media itself is sent (`POST /v1/media/`, the raw bytes with their MIME
  type as Content-Type) and matched by SHA-1 (exact) and PhotoDNA (near).
- `pdq`: only PDQ hashes leave the server (`POST /v1/pdq/` with `{"hashes": [base64]}`);
  the media never does. Files without a usable PDQ hash (not an image, a near-uniform
  image) are skipped, not failed.

Authentication is HTTP Basic. Answers map onto verdicts: the classification (`csam`,
`harmful-abusive-material`, or any future one) is the label (renamable with `labels`),
`no-known-match` gives no verdict; `match_type` exact is an EXACT verdict in media mode.
A PDQ match is NEAR whatever its match type, as for every perceptual hash in modbot.
Errors come back as `{"detail": "..."}` with the HTTP status.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from bot.classify.base import ClassifierContext, ClassifierSetupError, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, expect, media_type
from bot.classify.resilience import BadResponse
from bot.model import Classification, Hashes, MatchKind, Verdict

NO_MATCH = "no-known-match"
DEFAULT_URL = "https://shield.projectarachnid.com"
_NEAR_DETAILS_KEPT = 5


class ArachnidSettings(RemoteSettings):
    url: str = DEFAULT_URL
    mode: Literal["media", "pdq"] = "media"
    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    # media mode: MIME type prefixes that are sent; other files are skipped.
    mimetypes: tuple[str, ...] = ("image/", "video/")
    # pdq mode: also send the rotations, flips and border-trimmed variants (one request).
    pdq_variants: bool = True
    # pdq mode: hashes of lower quality match unrelated images; such files are skipped.
    pdq_min_quality: int = Field(default=50, ge=0, le=100)
    # Arachnid classification -> verdict label, for those you want renamed.
    labels: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")  # paths are appended


class ArachnidClassifier(RemoteClassifier):
    """Asks Arachnid Shield about media (upload) or its PDQ hashes (hash-only)."""

    Settings = ArachnidSettings
    settings: ArachnidSettings

    @classmethod
    def from_settings(cls, settings: ArachnidSettings, context: ClassifierContext) -> ArachnidClassifier:
        password = resolve_secret(settings.password, settings.password_env, context.environ, "password")
        if not password:
            raise ClassifierSetupError("password or password_env is required")
        basic = aiohttp.BasicAuth(settings.username, password).encode()
        headers = {"Authorization": basic, "Accept": "application/json"}
        return cls.connect(settings, context, headers=headers, secrets=[password])

    async def scan(self, media: MediaInput) -> Classification:
        if self.settings.mode == "pdq":
            return await self._scan_pdq(media.hashes)
        return await self._scan_media(media)

    # --- media upload ----------------------------------------------------------------------

    async def _scan_media(self, media: MediaInput) -> Classification:
        mimetype = media_type(media)
        if not mimetype or not mimetype.startswith(self.settings.mimetypes):
            return Classification(self.name, skipped=f"{mimetype or 'unknown type'} is not sent to Arachnid Shield")
        if media.data is None:
            return Classification(self.name, error="the media's bytes were not available to send")
        answer = await self.client.request("POST", "/v1/media/", data=media.data, headers={"Content-Type": mimetype})
        expect(isinstance(answer, dict), "a scanned-media object")
        expect(isinstance(answer.get("sha256_hex"), str), "sha256_hex")
        if answer["sha256_hex"].lower() != media.hashes.sha256:
            # A proxy's cache, or a mix-up: this answer is not about what we sent.
            raise BadResponse("the answer is about another file (sha256_hex differs)")
        classification = answer.get("classification")
        if classification is None or classification == NO_MATCH:
            return Classification(self.name)
        expect(isinstance(classification, str), "classification")
        near = answer.get("near_match_details") or []
        expect(isinstance(near, list) and all(isinstance(n, dict) for n in near), "near_match_details list")
        exact = answer.get("match_type") == "exact"
        details: dict[str, Any] = {
            "service": "arachnid-shield",
            "classification": classification,
            "match_type": answer.get("match_type"),
            "sha1_base32": answer.get("sha1_base32"),
            "near_matches": [_near(n) for n in near[:_NEAR_DETAILS_KEPT]],
        }
        matched = media.hashes.sha256 if exact else _str(near[0].get("sha256_hex")) if near else None
        verdict = Verdict(
            classifier=self.name,
            label=self.settings.labels.get(classification, classification),
            kind=MatchKind.EXACT if exact else MatchKind.NEAR,
            hash_type="sha1" if exact else "photodna",
            distance=0 if exact else None,
            matched_hash=matched,
            details=details,
        )
        return Classification(self.name, (verdict,))

    # --- PDQ hashes only --------------------------------------------------------------------

    async def _scan_pdq(self, hashes: Hashes) -> Classification:
        if not hashes.pdq or hashes.pdq_quality is None:
            return Classification(self.name, skipped=hashes.perceptual_error or "no PDQ hash (not an image)")
        if hashes.pdq_quality < self.settings.pdq_min_quality:
            return Classification(
                self.name, skipped=f"PDQ quality {hashes.pdq_quality} < {self.settings.pdq_min_quality}"
            )
        queries = [hashes.pdq.lower()]
        if self.settings.pdq_variants:
            queries += [h.lower() for h in hashes.pdq_queries if h.lower() not in queries]
        encoded = {base64.b64encode(bytes.fromhex(h)).decode(): h for h in queries}
        answer = await self.client.request("POST", "/v1/pdq/", json_body={"hashes": list(encoded)})
        expect(isinstance(answer, dict) and isinstance(answer.get("scanned_hashes"), dict), "scanned_hashes")
        scanned = answer["scanned_hashes"]
        best: dict[str, Verdict] = {}
        for b64, hex_hash in encoded.items():  # the original first: it wins ties
            expect(b64 in scanned, "an answer for every hash sent")
            result = scanned[b64]
            if result is None:
                continue
            expect(isinstance(result, dict), "a PDQ match object")
            classification = result.get("classification")
            if classification is None or classification == NO_MATCH:
                continue
            expect(isinstance(classification, str), "classification")
            near = result.get("near_match_details")
            expect(near is None or isinstance(near, dict), "near_match_details object")
            label = self.settings.labels.get(classification, classification)
            if label in best:
                continue
            details: dict[str, Any] = {
                "service": "arachnid-shield",
                "classification": classification,
                "match_type": result.get("match_type"),
                "query": "original" if hex_hash == queries[0] else "variant",
            }
            if hex_hash != queries[0]:
                details["query_hash"] = hex_hash
            if near:
                details["near_match"] = _near(near)
            best[label] = Verdict(
                classifier=self.name,
                label=label,
                kind=MatchKind.NEAR,
                hash_type="pdq",
                matched_hash=_str(near.get("sha256_hex")) if near else None,
                details=details,
            )
        return Classification(self.name, tuple(best.values()))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _near(detail: dict[str, Any]) -> dict[str, Any]:
    keys = ("classification", "sha256_hex", "sha1_base32", "timestamp")
    return {k: detail.get(k) for k in keys if detail.get(k) is not None}

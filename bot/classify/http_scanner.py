"""The generic HTTP scanner: any in-house service that answers a small JSON protocol.

Request, `POST <url>`:

- `mode: hashes` (the default; the media never leaves the server): a JSON body
  `{"sha256": "...", "md5": "...", "size": 1234, "mimetype": "image/png" | null,
  "pdq": "<64 hex>" | null, "pdq_quality": 0-100 | null, "pdq_variants": ["<64 hex>", ...],
  "phash": "<16 hex>" | null}`.
- `mode: media`: the media's bytes as the body, `Content-Type` its MIME type, and the
  headers `X-Modbot-Sha256` and `X-Modbot-Md5`.

Answer, `200` with `{"verdicts": [...]}` (an empty list: no match), each verdict
`{"label": "csam", "kind": "exact" | "near", "distance": 3, "score": 0.97, "list": "...",
"hash_type": "...", "matched_hash": "...", "details": {...}}` where only `label` and
`kind` are required. `{"verdicts": [], "skipped": "why"}` says the service had nothing to
check. Any other status is an error; 429 and 5xx are retried (Retry-After honoured), and
`{"error": "..."}` in an error body is shown in the audit log. docs/classifiers.md has the
details and an example service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from bot.classify.base import ClassifierContext, MediaInput, resolve_secret
from bot.classify.remote import RemoteClassifier, RemoteSettings, media_type
from bot.classify.resilience import BadResponse
from bot.model import Classification, MatchKind, Verdict


class HttpScannerSettings(RemoteSettings):
    # The URL is called as given (no path is appended to it).
    mode: Literal["hashes", "media"] = "hashes"
    # media mode: MIME type prefixes that are sent; other files are skipped.
    mimetypes: tuple[str, ...] = ("image/", "video/")
    token: SecretStr | None = None
    token_env: str | None = None
    # The header the token goes in, and the scheme before it ("" for none: `X-Api-Key: <token>`).
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    headers: dict[str, str] = {}  # extra headers (not secret: they are not scrubbed from errors)


class ScannerVerdict(BaseModel):
    """One verdict of the protocol's answer."""

    model_config = ConfigDict(extra="ignore")

    label: str = Field(min_length=1, max_length=255)
    kind: MatchKind
    distance: int | None = Field(default=None, ge=0)
    score: float | None = None
    list: str | None = Field(default=None, max_length=255)
    hash_type: str | None = Field(default=None, max_length=16)
    matched_hash: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = {}


class ScannerAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdicts: list[ScannerVerdict]
    skipped: str | None = None


class HttpScannerClassifier(RemoteClassifier):
    """POSTs media or its hashes to a configured URL and reads verdicts back."""

    name = "http"
    Settings = HttpScannerSettings

    settings: HttpScannerSettings

    @classmethod
    def from_settings(cls, settings: HttpScannerSettings, context: ClassifierContext) -> HttpScannerClassifier:
        token = resolve_secret(settings.token, settings.token_env, context.environ, "token")
        headers = {"Accept": "application/json", **settings.headers}
        if token:
            headers[settings.auth_header] = f"{settings.auth_scheme} {token}".strip()
        # The URL is called as given: the client's base is the URL and the path is empty.
        return cls.connect(settings, context, headers=headers, secrets=[token])

    async def scan(self, media: MediaInput) -> Classification:
        hashes = media.hashes
        if self.settings.mode == "media":
            mimetype = media_type(media) or ""
            if not mimetype.startswith(self.settings.mimetypes):
                return Classification(self.name, skipped=f"{mimetype or 'unknown type'} is not sent to the scanner")
            if media.data is None:
                return Classification(self.name, error="the media's bytes were not available to send")
            headers = {"Content-Type": mimetype, "X-Modbot-Sha256": hashes.sha256, "X-Modbot-Md5": hashes.md5}
            answer = await self.client.request("POST", "", data=media.data, headers=headers)
        else:
            body = {
                "sha256": hashes.sha256,
                "md5": hashes.md5,
                "size": hashes.size,
                "mimetype": media.mimetype,
                "pdq": hashes.pdq,
                "pdq_quality": hashes.pdq_quality,
                "pdq_variants": [h for h in hashes.pdq_queries if h != hashes.pdq],
                "phash": hashes.phash,
            }
            answer = await self.client.request("POST", "", json_body=body)
        try:
            parsed = ScannerAnswer.model_validate(answer)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise BadResponse(f"unexpected answer: {where + ': ' if where else ''}{first['msg']}") from None
        verdicts = tuple(
            Verdict(
                classifier=self.name,
                label=v.label,
                kind=v.kind,
                list_name=v.list,
                hash_type=v.hash_type,
                distance=v.distance,
                matched_hash=v.matched_hash,
                score=v.score,
                details={"service": "http", **v.details},
            )
            for v in parsed.verdicts
        )
        if not verdicts and parsed.skipped:
            return Classification(self.name, skipped=parsed.skipped[:300])
        return Classification(self.name, verdicts)

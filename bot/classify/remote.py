"""Talking to a scanning service over HTTP: one ServiceClient per remote classifier.

The client turns every way a request can fail into a ServiceError from resilience.py
(status codes, unreadable or oversized answers, connection problems) and runs each request
through the classifier's ServiceGuard. Error messages name the method and path, the status
and the service's own explanation, and pass through a scrubber that blanks every
credential the client knows: nothing a service echoes back can leak a password into the
audit log, a notice or a log line.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.classify.base import Classifier, ClassifierContext, MediaInput
from bot.classify.resilience import (
    AuthFailed,
    BadResponse,
    Overloaded,
    Rejected,
    ServerFailed,
    ServiceError,
    ServiceGuard,
    Unreachable,
    parse_retry_after,
)
from bot.model import Classification

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
_DETAIL_CHARS = 300


class Scrubber:
    """Replaces known secrets in text with ***."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so that a secret containing another is blanked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def default_error_detail(body: Any) -> str | None:
    """The explanation in an error body: `detail` (Arachnid Shield, FastAPI), `message`
    (HMA), `error` (the generic scanner's protocol), or None."""
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value
            if value is not None:
                return json.dumps(value)[:_DETAIL_CHARS]
    return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ServiceClient:
    """JSON over HTTP to one service, with the guard's resilience and capped answers."""

    def __init__(
        self,
        name: str,
        base_url: str,
        guard: ServiceGuard,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        error_detail: Callable[[Any], str | None] = default_error_detail,
        error_kind: Callable[[int, Any], type[ServiceError] | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.base_url = _without_userinfo(base_url)
        self.guard = guard
        self._headers = dict(headers or {})
        self.scrub = Scrubber([*secrets, *self._headers.values()])
        self.max_response_bytes = max_response_bytes
        self._error_detail = error_detail
        # A service's own meaning of a status (Google answers a wrong API key with a 400).
        self._error_kind = error_kind
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # headers may hold credentials
        return f"ServiceClient({self.name!r}, {self.base_url!r})"

    async def start(self) -> None:
        if self._session is None:
            # The guard times each attempt; aiohttp's own total timeout would fight it.
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send a request (retried as the guard says) and return the decoded JSON answer.

        `check` sees each answer inside the attempt: a service that reports its errors in
        a 200 answer (PhotoDNA's Status codes) raises them there, to be retried or counted
        by the breaker like an HTTP status. Raises a ServiceError; its message is safe to
        log and audit.
        """

        async def attempt() -> Any:
            answer = await self._once(method, path, params, json_body, data, headers)
            if check is not None:
                check(answer)
            return answer

        try:
            return await self.guard.call(attempt)
        except ServiceError as e:
            # Scrubbed once more at the boundary, whatever raised it.
            e.args = (self.scrub(str(e)),)
            raise

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
    ) -> Any:
        if self._session is None:
            await self.start()
        assert self._session is not None
        # An empty path calls the base URL exactly as configured.
        url = self.base_url.rstrip("/") + path if path else self.base_url
        what = f"{method} {urlsplit(url).path or '/'}"
        try:
            async with self._session.request(
                method, url, params=params, json=json_body, data=data, headers=headers
            ) as resp:
                body = await self._read(resp, what)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._clock())
        except aiohttp.ClientError as e:
            raise Unreachable(self.scrub(f"{what}: {type(e).__name__}: {e}")) from None
        if status >= 400:
            raise self._http_error(status, body, what, retry_after)
        if status == 204 or not body:
            raise BadResponse(f"{what}: HTTP {status} with an empty body", status=status)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadResponse(f"{what}: HTTP {status} with a body that is not JSON ({e})", status=status) from None

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The body, refusing more than max_response_bytes (a misbehaving proxy, a loop)."""
        declared = resp.content_length
        if declared is not None and declared > self.max_response_bytes:
            raise BadResponse(f"{what}: answer of {declared} bytes, over the {self.max_response_bytes}-byte cap")
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            buf += chunk
            if len(buf) > self.max_response_bytes:
                raise BadResponse(f"{what}: answer over the {self.max_response_bytes}-byte cap")
        return bytes(buf)

    def _http_error(self, status: int, body: bytes, what: str, retry_after: float | None) -> ServiceError:
        detail = None
        parsed: Any = None
        try:
            parsed = json.loads(body)
            detail = self._error_detail(parsed)
        except (UnicodeDecodeError, json.JSONDecodeError):
            text = body[:_DETAIL_CHARS].decode("utf-8", "replace").strip()
            detail = " ".join(text.split()) or None
        message = self.scrub(f"{what}: HTTP {status}" + (f": {detail[:_DETAIL_CHARS]}" if detail else ""))
        kind = self._error_kind(status, parsed) if self._error_kind else None
        if kind is not None:
            return kind(message, status=status, retry_after=retry_after)
        if status in (401, 403):
            return AuthFailed(message, status=status)
        if status == 429:
            return Overloaded(message, status=status, retry_after=retry_after)
        if status >= 500:
            return ServerFailed(message, status=status, retry_after=retry_after)
        if status in (404, 405):
            # The URL or the API version is wrong: every request will fail the same way.
            return BadResponse(message, status=status)
        return Rejected(message, status=status)


class RemoteSettings(BaseModel):
    """What every service's settings have: where it is, what is sent, how much answer is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    mode: str  # each service narrows this; "media" sends the bytes
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1024)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        return url


class RemoteClassifier(Classifier):
    """A classifier that asks a service. Subclasses implement `scan`, which may raise
    ServiceError; `classify` turns it into a Classification error."""

    default_cache_ttl: ClassVar[float] = 24 * 3600
    client: ServiceClient

    def __init__(self, settings: RemoteSettings, client: ServiceClient) -> None:
        self.settings = settings
        self.client = client
        self.needs_data = settings.mode == "media"

    @classmethod
    def connect(
        cls, settings: RemoteSettings, context: ClassifierContext, *, headers: Mapping[str, str],
        secrets: Iterable[str | None], **client_options: Any,
    ) -> Self:
        """The classifier with its client, named as configured."""
        client = ServiceClient(
            context.name,
            settings.url,
            context.guard,
            headers=headers,
            secrets=secrets,
            max_response_bytes=settings.max_response_bytes,
            **client_options,
        )
        instance = cls(settings, client)
        instance.name = context.name
        return instance

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    def health(self) -> str:
        """The state of the service as the circuit breaker sees it (for `status`)."""
        state = self.client.guard.breaker.state.value.replace("_", "-")
        return f"{self.client.base_url}, circuit {state}"

    async def classify(self, media: MediaInput) -> Classification:
        try:
            return await self.scan(media)
        except ServiceError as e:
            return Classification(self.name, error=self.client.scrub(str(e)))

    @abstractmethod
    async def scan(self, media: MediaInput) -> Classification:
        """Ask the service about `media`; raise ServiceError when it cannot answer."""


# Pillow's format names for the image types services accept.
_FORMAT_MIME = {
    "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
    "BMP": "image/bmp", "TIFF": "image/tiff", "AVIF": "image/avif", "HEIF": "image/heif",
}  # fmt: skip


def media_type(media: MediaInput) -> str | None:
    """The MIME type to send: the decoded image's own format first, since the type in the
    event is whatever the sender said (an image labelled application/pdf must not slip by)."""
    detected = media.hashes.image_format
    if detected:
        return _FORMAT_MIME.get(detected.upper(), f"image/{detected.lower()}")
    return media.mimetype


def expect(condition: bool, what: str) -> None:
    """Shape checks of a service's answer: a failed one is a BadResponse, never an assert."""
    if not condition:
        raise BadResponse(f"unexpected answer: {what}")

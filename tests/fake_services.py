"""Loopback stand-ins for the scanning services modbot talks to, for tests.

Each fake follows its vendor's published request and answer formats (see the adapters'
docstrings for where they come from): Arachnid Shield (`POST /v1/media/`, `POST /v1/pdq/`,
HTTP Basic, errors as `{"detail": ...}`), HMA / OpenMediaMatch (`GET` and `POST /m/lookup`,
errors as `{"message": ...}`), and modbot's own generic scanner protocol. What they know is
set by the test: hashes of benign generated images stand in for known media.

Every fake can be told to misbehave, for the next requests or until told otherwise:
`fail_next(Fault(...))`, `fail_always(...)`. It records each request (never the body).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.hashing import compute_hashes

PDQ_THRESHOLD = 31
_pdq_memo: dict[str, str | None] = {}


def pdq_of(data: bytes) -> str | None:
    """The PDQ of an upload (memoised: tests send the same few images again and again)."""
    key = hashlib.sha256(data).hexdigest()
    if key not in _pdq_memo:
        _pdq_memo[key] = compute_hashes(data).pdq
    return _pdq_memo[key]


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True)
class Fault:
    """One bad answer: a status with an error body, a delay, or a raw body."""

    status: int = 500
    detail: str = "internal error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a timeout when long enough)
    raw: bytes | None = None  # the exact body (malformed JSON, a huge answer), sent with 200
    echo_auth: bool = False  # put the request's Authorization header in the detail (a careless service)


def unauthorized(detail: str = "Invalid username/password.") -> Fault:
    return Fault(401, detail)


def rate_limited(retry_after: str = "1") -> Fault:
    return Fault(429, "Too many requests", headers={"Retry-After": retry_after})


def server_error() -> Fault:
    return Fault(500, "Internal Server Error")


def slow(seconds: float = 30.0) -> Fault:
    return Fault(200, delay=seconds)


def malformed() -> Fault:
    return Fault(200, raw=b'{"classification": "csam", "match_type": ')


def huge(size: int = 4 * 1024 * 1024) -> Fault:
    # Valid JSON, just far too much of it.
    return Fault(200, raw=b'{"pad": "' + b"x" * size + b'"}')


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    content_type: str | None
    body_sha256: str | None  # of the request body, to check what left the server


class FakeService:
    """An aiohttp server on 127.0.0.1 with fault injection and request recording."""

    error_key = "detail"
    record_json = True  # False for services whose JSON requests carry the media itself
    credential_header = "Authorization"  # where the service expects its credential

    def credential(self, request: web.Request) -> str | None:
        """The credential a request carried (recorded as `Seen.authorization`)."""
        return request.headers.get(self.credential_header)

    def __init__(self) -> None:
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.requests: list[Seen] = []
        self.json_bodies: list[Any] = []  # the JSON requests' bodies (hashes, never media)
        # When set, answers every request in place of the service (odd answers, lies).
        self.override: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self._next: list[Fault] = []
        self._always: Fault | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None  # when set, requests wait for it (concurrency tests)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        # A short shutdown: a test that made the fake hang up must not wait for it at the end.
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def fail_next(self, *faults: Fault) -> None:
        self._next.extend(faults)

    def fail_always(self, fault: Fault | None) -> None:
        self._always = fault

    @property
    def calls(self) -> int:
        return len(self.requests)

    def error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({self.error_key: detail}, status=status, headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        # A multipart body is left for the handler to parse (aiohttp reads a stream once).
        body = b"" if request.content_type.startswith("multipart/") else await request.read()
        self.requests.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                self.credential(request),
                request.headers.get("Content-Type"),
                hashlib.sha256(body).hexdigest() if body else None,
            )
        )
        if body and request.content_type == "application/json" and self.record_json:
            self.json_bodies.append(json.loads(body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            fault = self._next.pop(0) if self._next else self._always
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.raw is not None:
                    return web.Response(body=fault.raw, content_type="application/json")
                if fault.status >= 400:
                    detail = fault.detail
                    if fault.echo_auth:
                        detail += f" (credential: {self.credential(request)})"
                    return self.error(fault.status, detail, fault.headers)
            if self.override is not None:
                return await self.override(request)
            return await handler(request)
        finally:
            self.in_flight -= 1


# --- Arachnid Shield -----------------------------------------------------------------------


@dataclass(frozen=True)
class KnownMedia:
    """Media the fake services know: cryptographic hashes match exactly, PDQ near."""

    sha256: str
    md5: str
    pdq: str | None
    label: str  # Arachnid classification, HMA bank, scanner label

    @classmethod
    def of(cls, data: bytes, label: str) -> KnownMedia:
        hashes = compute_hashes(data)
        return cls(hashes.sha256, hashes.md5, hashes.pdq, label)


class FakeArachnid(FakeService):
    """Arachnid Shield: HTTP Basic; POST /v1/media/ (raw bytes) and POST /v1/pdq/."""

    error_key = "detail"

    def __init__(self, username: str = "modbot", password: str = "arachnid-secret-pw") -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.known: list[KnownMedia] = []
        self.app.router.add_post("/v1/media/", self._media)
        self.app.router.add_post("/v1/pdq/", self._pdq)

    def _authorised(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    def _near(self, pdq: str | None) -> KnownMedia | None:
        if pdq is None:
            return None
        scored = [(hamming(pdq, k.pdq), k) for k in self.known if k.pdq]
        scored = [(d, k) for d, k in scored if d <= PDQ_THRESHOLD]
        return min(scored, key=lambda item: item[0])[1] if scored else None

    @staticmethod
    def _near_detail(known: KnownMedia) -> dict[str, Any]:
        return {
            "timestamp": 0.0,
            "sha1_base32": base64.b32encode(hashlib.sha1(known.sha256.encode()).digest()).decode(),
            "sha256_hex": known.sha256,
            "classification": known.label,
        }

    async def _media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self.error(401, "Invalid username/password.")
        mime = request.headers.get("Content-Type", "")
        if not mime.startswith(("image/", "video/")):
            return self.error(415, f"Unsupported media type: {mime}")
        body = await request.read()
        sha256 = hashlib.sha256(body).hexdigest()
        answer: dict[str, Any] = {
            "sha1_base32": base64.b32encode(hashlib.sha1(body).digest()).decode(),
            "sha256_hex": sha256,
            "size_bytes": len(body),
            "classification": "no-known-match",
            "match_type": None,
            "near_match_details": [],
        }
        exact = next((k for k in self.known if k.sha256 == sha256), None)
        if exact is not None:
            answer.update(classification=exact.label, match_type="exact")
        else:
            near = self._near(pdq_of(body))
            if near is not None:
                answer.update(classification=near.label, match_type="near", near_match_details=[self._near_detail(near)])
        return web.json_response(answer)

    async def _pdq(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self.error(401, "Invalid username/password.")
        try:
            hashes = (await request.json())["hashes"]
            decoded = {h: base64.b64decode(h, validate=True) for h in hashes}
        except (ValueError, KeyError, TypeError):
            return self.error(422, "hashes must be a list of base64-encoded PDQ hashes")
        if any(len(raw) != 32 for raw in decoded.values()):
            return self.error(422, "a PDQ hash is 32 bytes")
        scanned: dict[str, Any] = {}
        for b64, raw in decoded.items():
            near = self._near(raw.hex())
            if near is None:
                scanned[b64] = {"classification": "no-known-match", "match_type": None, "near_match_details": None}
            else:
                scanned[b64] = {"classification": near.label, "match_type": "near", "near_match_details": self._near_detail(near)}
        return web.json_response({"scanned_hashes": scanned})


# --- HMA / OpenMediaMatch ------------------------------------------------------------------


class FakeHma(FakeService):
    """HMA: GET /m/lookup by signal, POST /m/lookup with a photo/video upload."""

    error_key = "message"

    def __init__(self) -> None:
        super().__init__()
        self.banks: dict[str, list[tuple[int, str, str]]] = {}  # bank -> (content id, signal type, value)
        self.signal_types = {"pdq", "video_md5"}
        self.hasher_role = True
        self.index_ready = True
        self._next_id = 1000
        self.app.router.add_get("/m/lookup", self._lookup_get)
        self.app.router.add_post("/m/lookup", self._lookup_post)

    def add(self, bank: str, signal_type: str, value: str) -> int:
        self._next_id += 1
        self.banks.setdefault(bank, []).append((self._next_id, signal_type, value))
        return self._next_id

    def add_media(self, bank: str, known: KnownMedia) -> None:
        if known.pdq:
            self.add(bank, "pdq", known.pdq)
        self.add(bank, "video_md5", known.md5)

    def _lookup(self, signal_type: str, signal: str, banks: set[str] | None) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for bank, contents in self.banks.items():
            if banks is not None and bank not in banks:
                continue
            for content_id, st, value in contents:
                if st != signal_type:
                    continue
                distance = hamming(signal, value) if st == "pdq" else (0 if signal == value else None)
                if distance is not None and distance <= PDQ_THRESHOLD:
                    result.setdefault(bank, []).append({"bank_content_id": content_id, "distance": str(distance)})
        return result

    def _check_signal(self, signal_type: str, signal: str) -> web.Response | None:
        if signal_type not in self.signal_types:
            return self.error(400, f"No such SignalType '{signal_type}'")
        length = 64 if signal_type == "pdq" else 32
        try:
            int(signal, 16)
        except ValueError:
            return self.error(400, f"invalid signal: not hex: {signal!r}")
        if len(signal) != length:
            return self.error(400, f"invalid signal: {signal_type} is {length} hex digits")
        if not self.index_ready:
            return self.error(503, "index not yet ready")
        return None

    async def _lookup_get(self, request: web.Request) -> web.Response:
        signal, signal_type = request.query.get("signal"), request.query.get("signal_type")
        if not signal or not signal_type:
            return self.error(400, "Either url or both signal and signal_type are required")
        bad = self._check_signal(signal_type, signal)
        if bad is not None:
            return bad
        banks = set(request.query["banks"].split(",")) if request.query.get("banks") else None
        # With signal_type given, HMA elides the outer level: {"BANK": [...]}.
        return web.json_response(self._lookup(signal_type, signal.lower(), banks))

    async def _lookup_post(self, request: web.Request) -> web.Response:
        if not self.hasher_role:
            return self.error(403, "Hashing is disabled, missing role")
        form = await request.post()
        files = [(name, value) for name, value in form.items() if hasattr(value, "file")]
        if not files:
            return self.error(400, "Missing multipart/form-data file upload")
        if len(files) > 1:
            return self.error(400, "Only one file allowed per request")
        content_type, upload = files[0]
        if content_type not in ("photo", "video"):
            return self.error(400, f"no such content_type: '{content_type}'")
        data = upload.file.read()  # type: ignore[union-attr]
        banks = set(request.query["banks"].split(",")) if request.query.get("banks") else None
        if not self.index_ready:
            return self.error(503, "index not yet ready")
        if content_type == "photo":
            pdq = pdq_of(data)
            if pdq is None:
                return self.error(400, "could not hash the photo")
            return web.json_response({"pdq": self._lookup("pdq", pdq, banks)})
        return web.json_response({"video_md5": self._lookup("video_md5", hashlib.md5(data).hexdigest(), banks)})


# --- the generic scanner protocol ----------------------------------------------------------


class FakeScanner(FakeService):
    """modbot's generic HTTP scanner protocol, at POST /scan, with a bearer token."""

    error_key = "error"

    def __init__(self, token: str = "scanner-secret-token") -> None:
        super().__init__()
        self.token = token
        self.known: list[KnownMedia] = []
        self.answer_override: dict[str, Any] | None = None
        self.app.router.add_post("/scan", self._scan)

    async def _scan(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.error(401, "bad token")
        if self.answer_override is not None:
            return web.json_response(self.answer_override)
        if request.content_type == "application/json":
            body = await request.json()
            sha256, pdq = body["sha256"], body.get("pdq")
        else:
            data = await request.read()
            sha256 = hashlib.sha256(data).hexdigest()
            if sha256 != request.headers.get("X-Modbot-Sha256"):
                return self.error(400, "X-Modbot-Sha256 does not match the body")
            pdq = pdq_of(data)
        verdicts = []
        for known in self.known:
            if known.sha256 == sha256:
                verdicts.append({"label": known.label, "kind": "exact", "list": "in-house", "hash_type": "sha256", "score": 1.0})
            elif pdq and known.pdq and hamming(pdq, known.pdq) <= PDQ_THRESHOLD:
                distance = hamming(pdq, known.pdq)
                verdicts.append({"label": known.label, "kind": "near", "distance": distance, "hash_type": "pdq", "score": 0.9})
        return web.json_response({"verdicts": verdicts})


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)

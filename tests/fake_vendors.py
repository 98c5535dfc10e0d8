"""Loopback stand-ins for PhotoDNA Cloud, Google's Content Safety API and Hive's CSAM API,
following each vendor's published request and answer formats (the adapters' docstrings and
docs/classifiers.md say where they come from). Built on tests/fake_services.py: the same
fault injection (`fail_next`, `fail_always`) and request recording.

What they know is set by the test with benign generated images: PhotoDNA and Hive match
an upload whose PDQ is near a known one (standing in for PhotoDNA and Safer hashes), Hive
also by MD5; Content Safety gives the priority the test assigned to a known image.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import uuid
from typing import Any

from aiohttp import web
from PIL import Image

from fake_services import PDQ_THRESHOLD, FakeService, KnownMedia, hamming, pdq_of


def _size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


def _pdq(data: bytes) -> str | None:
    """PDQ of any image Pillow reads (modbot decodes fewer formats: BMP and TIFF go via PNG)."""
    pdq = pdq_of(data)
    if pdq is None and _size(data) is not None:
        with Image.open(io.BytesIO(data)) as img:
            out = io.BytesIO()
            img.convert("RGB").save(out, "PNG")
        pdq = pdq_of(out.getvalue())
    return pdq


def _near(known: list[KnownMedia], data: bytes) -> tuple[KnownMedia, int] | None:
    pdq = _pdq(data)
    if pdq is None:
        return None
    scored = sorted((hamming(pdq, k.pdq), i) for i, k in enumerate(known) if k.pdq)
    return (known[scored[0][1]], scored[0][0]) if scored and scored[0][0] <= PDQ_THRESHOLD else None


class FakePhotoDna(FakeService):
    """PhotoDNA Cloud: POST /photodna/v1.0/Match; Status codes in a 200 answer."""

    error_key = "message"
    credential_header = "Ocp-Apim-Subscription-Key"
    CONTENT_TYPES = ("image/gif", "image/jpeg", "image/png", "image/bmp", "image/tiff")

    def __init__(self, key: str = "photodna-subscription-key") -> None:
        super().__init__()
        self.key = key
        self.known: list[KnownMedia] = []
        self.max_bytes = 4_000_000
        self.status_next: list[int] = []  # Status.Code to answer next (3004...), instead of matching
        self.bodies: list[tuple[str, int, tuple[int, int] | None]] = []  # content type, size, pixels
        self.app.router.add_post("/photodna/v1.0/Match", self._match)

    @property
    def base(self) -> str:
        return self.url + "/photodna/v1.0"

    def error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        # Azure API Management, in front of the service, answers in its own format.
        return web.json_response({"statusCode": status, "message": detail}, status=status, headers=headers)

    @staticmethod
    def answer(code: int, description: str, *, is_match: bool | None = None, flags: list[dict[str, Any]] | None = None) -> web.Response:
        return web.json_response({
            "Status": {"Code": code, "Description": description, "Exception": None},
            "ContentId": None,
            "IsMatch": is_match,
            "MatchDetails": None if is_match is None else {"AdvancedInfo": [], "MatchFlags": flags or []},
            "XPartnerCustomerId": None,
            "TrackingId": f"WUS_{uuid.uuid4().hex}",
            "EvaluateResponse": None,
        })  # fmt: skip

    async def _match(self, request: web.Request) -> web.Response:
        if request.headers.get("Ocp-Apim-Subscription-Key") != self.key:
            return self.error(401, "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")
        body = await request.read()
        size = _size(body)
        self.bodies.append((request.content_type, len(body), size))
        if self.status_next:
            code = self.status_next.pop(0)
            return self.answer(code, {3004: "Unknown scenario or unhandled error occurred while processing request"}.get(code, "error"))
        if request.content_type not in self.CONTENT_TYPES or not body:
            return self.answer(3002, "Invalid or missing request parameter(s)")
        if size is None:
            return self.answer(3206, "The given file could not be verified as an image")
        if min(size) < 160 or len(body) > self.max_bytes:
            return self.answer(3208, "Image size in pixels is not within allowed range (minimum size is 160x160 pixels; maximum size is 4MB)")
        near = _near(self.known, body)
        if near is None:
            return self.answer(3000, "OK", is_match=False)
        flag = {"AdvancedInfo": [{"Key": "MatchId", "Value": "104149"}], "Source": near[0].label, "Violations": ["A1"]}
        return self.answer(3000, "OK", is_match=True, flags=[flag])


class FakeContentSafety(FakeService):
    """Google's Content Safety API: POST /v1beta1/images:classify?key=KEY."""

    record_json = False  # the requests carry the images

    def credential(self, request: web.Request) -> str | None:
        return request.query.get("key")  # the API key is a query parameter

    def __init__(self, key: str = "google-content-safety-api-key") -> None:
        super().__init__()
        self.key = key
        self.priorities: list[tuple[KnownMedia, str]] = []  # near a known image -> its priority
        self.images_sent: list[tuple[int, tuple[int, int] | None]] = []  # size, pixels
        self.app.router.add_post("/v1beta1/images:classify", self._classify)

    def error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        names = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
        body = {"error": {"code": status, "message": detail, "status": names.get(status, "UNKNOWN")}}
        return web.json_response(body, status=status, headers=headers)

    async def _classify(self, request: web.Request) -> web.Response:
        if request.query.get("key") != self.key:
            body = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                              "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                           "domain": "googleapis.com", "metadata": {"service": "contentsafety.googleapis.com"}}]}}
            return web.json_response(body, status=400)
        try:
            images = (await request.json())["images"]
            decoded = [base64.b64decode(i, validate=True) for i in images]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return self.error(400, "Invalid JSON payload: images must be a list of base64-encoded images")
        if not 1 <= len(decoded) <= 32:
            return self.error(400, "between 1 and 32 images may be classified at once")
        priorities = []
        for data in decoded:
            size = _size(data)
            self.images_sent.append((len(data), size))
            if size is None:
                return self.error(400, "Request contains an invalid argument: not an image")
            near = _near([k for k, _ in self.priorities], data)
            priorities.append(next(p for k, p in self.priorities if k is near[0]) if near else "VERY_LOW")
        return web.json_response({"reviewPriorities": priorities, "modelVersion": "fake-1"})


class FakeHive(FakeService):
    """Hive's Combined CSAM Detection API: POST /api/v2/task/sync, form field `media`."""

    error_key = "message"

    def __init__(self, key: str = "hive-api-key") -> None:
        super().__init__()
        self.key = key
        self.known: list[KnownMedia] = []  # matched by PDQ (for Safer's hash) and MD5
        self.scores: dict[str, float] = {}  # sha256 -> the classifier's csam score (0.01 if absent)
        self.task_error_next: list[tuple[int, str]] = []
        self.uploads: list[tuple[str | None, int]] = []  # content type, size
        self.app.router.add_post("/api/v2/task/sync", self._sync)

    def error(self, status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"return_code": status, "message": detail}, status=status, headers=headers)

    @staticmethod
    def task(output: dict[str, Any] | None, code: int = 200, message: str = "SUCCESS") -> web.Response:
        response = {"input": {"id": uuid.uuid4().hex, "created_on": "2026-11-30T00:00:00.000Z", "user_id": 1, "project_id": 2}}
        if output is not None:
            response["output"] = output
        return web.json_response({"status": [{"status": {"code": code, "message": message}, "response": response}]})

    async def _sync(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Token {self.key}":
            return self.error(401, "Unauthorized: invalid API key")
        form = await request.post()
        media = form.get("media")
        if not hasattr(media, "file"):
            return self.error(400, "Either media or url is required")
        data = media.file.read()  # type: ignore[union-attr]
        self.uploads.append((media.content_type, len(data)))  # type: ignore[union-attr]
        if self.task_error_next:
            code, message = self.task_error_next.pop(0)
            return self.task(None, code, message)
        size = _size(data)
        if size is None:
            return self.task(None, 3100, "CLASSIFIER_ERROR_UNSUPPORTED_MEDIA_TYPE")
        hashes = []
        md5 = hashlib.md5(data).hexdigest()
        exact = [k for k in self.known if k.md5 == md5]
        near = _near(self.known, data)
        if exact:
            hashes.append(self._hash("md5", exact[0], 0))
        if near:
            hashes.append(self._hash("saferhashv0", near[0], near[1]))
        prediction = None
        if not hashes and min(size) >= 100:
            csam = self.scores.get(hashlib.sha256(data).hexdigest(), 0.01)
            prediction = {"csam_classifier": {"csam": csam, "pornography": (1 - csam) / 2, "other": (1 - csam) / 2}}
        file = {"fileType": "image", "reasons": ["matched"] if hashes else [], "classifierPrediction": prediction}
        return self.task({"file": file, "hashes": hashes})

    @staticmethod
    def _hash(hash_type: str, known: KnownMedia, distance: int) -> dict[str, Any]:
        return {
            "hashType": hash_type, "matchTypes": [known.label], "reasons": ["matched"],
            "sources": [{"hashSet": "test", "matches": [
                {"sourceId": known.sha256[:12], "matchDistance": distance, "matchMetadata": None, "matchTransformations": []}
            ]}],
            "classifierPrediction": None, "isLetterboxed": False, "startTimestamp": None, "endTimestamp": None, "frameIndex": None,
        }  # fmt: skip

"""Google's Content Safety API against its loopback fake: the request, priorities as review
verdicts, its error format (a wrong key is a 400), oversized images. Timeouts, 429, 5xx and
the circuit are in test_classifier_adapters.py."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from images import encode, make_photo
from PIL import Image

from bot.classify.registry import ClassifierSlot
from bot.hashing.pool import HashSandbox
from bot.model import Classification, MatchKind
from classifier_kit import CLEAN, KNOWN, NEAR, FakeTime, build, media
from fake_services import Fault, KnownMedia
from fake_vendors import FakeContentSafety

KEY = "google-content-safety-api-key"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeContentSafety]:
    async with FakeContentSafety(KEY) as service:
        yield service  # type: ignore[misc]


def slot(fake: FakeContentSafety, sandbox: HashSandbox | None = None, config: dict[str, object] | None = None, **settings: object) -> ClassifierSlot:
    return build(
        "google_content_safety", {"url": fake.url + "/v1beta1", "api_key": KEY, **settings},
        name="gcs", sandbox=sandbox, time=FakeTime(), **(config or {}),
    )  # fmt: skip


async def scan(s: ClassifierSlot, data: bytes, mimetype: str = "image/png") -> Classification:
    await s.classifier.start()
    try:
        return await s.classifier.classify(media(data, mimetype))
    finally:
        await s.classifier.close()


@pytest.mark.parametrize(
    ("priority", "score"), [("VERY_LOW", None), ("LOW", None), ("MEDIUM", 0.5), ("HIGH", 0.75), ("VERY_HIGH", 1.0)]
)
async def test_a_priority_at_or_above_the_minimum_is_a_verdict_scored_by_priority(
    fake: FakeContentSafety, priority: str, score: float | None
) -> None:
    fake.priorities.append((KnownMedia.of(KNOWN, "x"), priority))
    result = await scan(slot(fake), NEAR, "image/jpeg")
    assert result.error is None
    if score is None:
        assert result.verdicts == ()
        return
    (verdict,) = result.verdicts
    assert (verdict.classifier, verdict.label, verdict.kind, verdict.score) == ("gcs", "csam-suspected", MatchKind.NEAR, score)
    assert verdict.details["review_priority"] == priority and verdict.details["model_version"] == "fake-1"


async def test_the_minimum_priority_is_a_setting(fake: FakeContentSafety) -> None:
    fake.priorities.append((KnownMedia.of(KNOWN, "x"), "HIGH"))
    assert (await scan(slot(fake, min_priority="VERY_HIGH"), KNOWN)).verdicts == ()


async def test_the_image_goes_base64_in_a_json_body_with_the_key_as_a_parameter(fake: FakeContentSafety) -> None:
    assert await scan(slot(fake), CLEAN) == Classification("gcs")
    (seen,) = fake.requests
    assert (seen.path, seen.content_type, seen.query["key"]) == ("/v1beta1/images:classify", "application/json", KEY)
    assert fake.images_sent == [(len(CLEAN), Image.open(io.BytesIO(CLEAN)).size)]


async def test_a_wrong_api_key_is_an_authentication_failure_though_google_answers_400(fake: FakeContentSafety) -> None:
    s = build("google_content_safety", {"url": fake.url + "/v1beta1", "api_key": "wrong-key-123"}, name="gcs",
              time=FakeTime(), circuit_breaker={"failures": 1})  # fmt: skip
    await s.classifier.start()
    try:
        first = await s.classifier.classify(media(KNOWN))
        assert first.error is not None and "HTTP 400: " in first.error and "API key not valid" in first.error
        assert "wrong-key-123" not in first.error and fake.calls == 1
        second = await s.classifier.classify(media(KNOWN))
        assert second.error is not None and "circuit open" in second.error  # every request would fail the same way
    finally:
        await s.classifier.close()


async def test_another_400_is_about_this_request_only(fake: FakeContentSafety) -> None:
    fake.fail_next(Fault(400, "Request contains an invalid argument."))
    s = slot(fake, config={"circuit_breaker": {"failures": 1}})
    await s.classifier.start()
    try:
        first = await s.classifier.classify(media(KNOWN))
        assert first.error == "POST /v1beta1/images:classify: HTTP 400: " + '{"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}'
        assert (await s.classifier.classify(media(CLEAN))).error is None  # the circuit stayed closed
    finally:
        await s.classifier.close()


async def test_403_permission_denied_fails_the_scan(fake: FakeContentSafety) -> None:
    fake.fail_always(Fault(403, "The caller does not have permission"))
    result = await scan(slot(fake), KNOWN)
    assert result.error is not None and "HTTP 403" in result.error and fake.calls == 1


@pytest.mark.parametrize("answer", [{"reviewPriorities": []}, {"reviewPriorities": ["URGENT"]}, {"priorities": ["HIGH"]}])
async def test_an_answer_outside_the_documented_format_is_an_error(fake: FakeContentSafety, answer: dict[str, object]) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response(answer)

    fake.override = odd
    result = await scan(slot(fake), KNOWN)
    assert result.error is not None and result.error.startswith("unexpected answer")


async def test_non_images_are_skipped(fake: FakeContentSafety) -> None:
    result = await scan(slot(fake), b"\x00\x00\x00\x18ftypmp42 video", "video/mp4")
    assert result.skipped is not None and fake.calls == 0


async def test_an_oversized_image_is_reduced_in_the_sandbox(fake: FakeContentSafety) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    big = encode(Image.fromarray(pixels), "PNG")
    async with HashSandbox(workers=1, memory_bytes=256 << 20, cpu_seconds=10) as sandbox:
        result = await scan(slot(fake, sandbox, max_bytes=50_000), big)
    assert result.error is None and result.note is not None and result.note.startswith(f"reduced: {len(big)} bytes -> JPEG")
    ((size, pixels_sent),) = fake.images_sent
    assert size <= 50_000 < len(big) and pixels_sent is not None


async def test_small_images_are_sent_as_they_are(fake: FakeContentSafety) -> None:
    small = encode(make_photo(3, (64, 48)), "PNG")  # Google: never enlarge an image
    await scan(slot(fake), small)
    assert fake.images_sent == [(len(small), (64, 48))]

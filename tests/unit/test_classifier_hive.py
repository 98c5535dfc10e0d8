"""Hive's Combined CSAM API against its loopback fake: hash matches as match verdicts, the
classifier's csam score as a review verdict over a threshold, task errors, image sizes.
Timeouts, 401, 429, 5xx and the circuit are in test_classifier_adapters.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from images import encode, make_photo
from PIL import Image

from bot.classify.base import ClassifierSetupError
from bot.classify.registry import ClassifierSlot
from bot.hashing.pool import HashSandbox
from bot.model import Classification, MatchKind
from classifier_kit import CLEAN, KNOWN, NEAR, FakeTime, build, media
from fake_services import KnownMedia
from fake_vendors import FakeHive

KEY = "hive-api-key"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeHive]:
    async with FakeHive(KEY) as service:
        yield service  # type: ignore[misc]


def slot(fake: FakeHive, sandbox: HashSandbox | None = None, **settings: object) -> ClassifierSlot:
    return build("hive", {"url": fake.url, "api_key": KEY, **settings}, sandbox=sandbox, time=FakeTime())


async def scan(s: ClassifierSlot, data: bytes, mimetype: str = "image/png") -> Classification:
    await s.classifier.start()
    try:
        return await s.classifier.classify(media(data, mimetype))
    finally:
        await s.classifier.close()


async def test_the_file_goes_as_form_field_media_with_a_token(fake: FakeHive) -> None:
    assert await scan(slot(fake), CLEAN) == Classification("hive")
    (seen,) = fake.requests
    assert (seen.path, seen.authorization) == ("/api/v2/task/sync", f"Token {KEY}")
    assert seen.content_type is not None and seen.content_type.startswith("multipart/form-data")
    assert fake.uploads == [("image/png", len(CLEAN))]


async def test_an_md5_match_is_exact_and_a_safer_hash_match_near_with_its_distance(fake: FakeHive) -> None:
    fake.known.append(KnownMedia.of(KNOWN, "CSAM"))
    (exact,) = (await scan(slot(fake), KNOWN)).verdicts
    assert (exact.label, exact.kind, exact.list_name, exact.hash_type, exact.distance) == ("csam", MatchKind.EXACT, "test", "md5", 0)
    (near,) = (await scan(slot(fake), NEAR, "image/jpeg")).verdicts
    assert (near.label, near.kind, near.hash_type) == ("csam", MatchKind.NEAR, "saferhashv0")
    assert near.distance is not None and 0 < near.distance <= 31 and near.score is None


async def test_match_types_map_to_labels(fake: FakeHive) -> None:
    fake.known.append(KnownMedia.of(KNOWN, "SE"))
    (verdict,) = (await scan(slot(fake), KNOWN)).verdicts
    assert verdict.label == "sexual-exploitation" and verdict.details["match_type"] == "SE"


async def test_max_distance_drops_far_perceptual_matches(fake: FakeHive) -> None:
    fake.known.append(KnownMedia.of(KNOWN, "CSAM"))
    assert (await scan(slot(fake, max_distance=0), NEAR, "image/jpeg")).verdicts == ()


@pytest.mark.parametrize(("score", "threshold", "expected"), [(0.95, 0.9, True), (0.5, 0.9, False), (0.5, 0.4, True)])
async def test_the_classifier_score_over_the_threshold_is_a_review_verdict(
    fake: FakeHive, score: float, threshold: float, expected: bool
) -> None:
    fake.scores[media(CLEAN).hashes.sha256] = score
    result = await scan(slot(fake, csam_threshold=threshold), CLEAN)
    assert result.error is None
    if not expected:
        assert result.verdicts == ()
        return
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.kind, verdict.score, verdict.list_name) == ("csam-classifier", MatchKind.NEAR, score, None)
    assert verdict.details["scores"]["csam"] == score


def test_the_classifier_label_must_differ_from_the_match_labels() -> None:
    with pytest.raises(ClassifierSetupError, match="must differ from the hash match labels"):
        build("hive", {"api_key": KEY, "classifier_label": "csam"})


async def test_a_failed_task_fails_the_scan_without_retry(fake: FakeHive) -> None:
    fake.task_error_next = [(3100, "CLASSIFIER_ERROR_UNSUPPORTED_MEDIA_TYPE")]
    result = await scan(slot(fake), KNOWN)
    assert result.error == "Hive task failed: 3100 CLASSIFIER_ERROR_UNSUPPORTED_MEDIA_TYPE" and fake.calls == 1


async def test_rate_limited_is_retried_after_retry_after(fake: FakeHive) -> None:
    from fake_services import rate_limited

    fake.fail_next(rate_limited("3"))
    time = FakeTime()
    s = build("hive", {"url": fake.url, "api_key": KEY}, time=time)
    assert (await scan(s, CLEAN)).error is None and time.sleeps == [3.0] and fake.calls == 2


async def test_images_under_hives_hashing_minimum_are_skipped(fake: FakeHive) -> None:
    result = await scan(slot(fake), encode(make_photo(3, (40, 40)), "PNG"))
    assert result.skipped == "40x40 is under Hive's 50 px hashing minimum" and fake.calls == 0


async def test_an_image_too_small_for_the_classifier_gives_no_score_and_no_error(fake: FakeHive) -> None:
    result = await scan(slot(fake), encode(make_photo(3, (80, 60)), "PNG"))
    assert result == Classification("hive") and fake.calls == 1


async def test_an_oversized_image_is_reduced_in_the_sandbox(fake: FakeHive) -> None:
    big = encode(Image.fromarray(np.random.default_rng(4).integers(0, 256, (300, 400, 3), dtype=np.uint8)), "PNG")
    async with HashSandbox(workers=1, memory_bytes=256 << 20, cpu_seconds=10) as sandbox:
        result = await scan(slot(fake, sandbox, max_bytes=50_000), big)
    assert result.error is None and result.note is not None and result.note.startswith(f"reduced: {len(big)} bytes")
    ((content_type, size),) = fake.uploads
    assert content_type == "image/jpeg" and size <= 50_000 < len(big)


async def test_non_images_are_skipped(fake: FakeHive) -> None:
    assert (await scan(slot(fake), b"plain text", "text/plain")).skipped is not None and fake.calls == 0

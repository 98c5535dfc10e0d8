"""PhotoDNA Cloud against its loopback fake: what is sent (the image, fitted to 160x160..4 MB
in the hashing sandbox when it is not), what a match says, every Status code, the default
rate limit. Timeouts, 401, 429, 5xx and the circuit are in test_classifier_adapters.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from images import encode, make_photo
from PIL import Image

from bot.classify.registry import ClassifierSlot
from bot.hashing.pool import HashSandbox
from bot.model import Classification, MatchKind
from classifier_kit import CLEAN, KNOWN, LABEL, FakeTime, build, media
from fake_services import KnownMedia
from fake_vendors import FakePhotoDna

KEY = "photodna-subscription-key"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakePhotoDna]:
    async with FakePhotoDna(KEY) as service:
        yield service  # type: ignore[misc]


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[HashSandbox]:
    async with HashSandbox(workers=1, memory_bytes=256 << 20, cpu_seconds=10) as sb:
        yield sb


def slot(
    fake: FakePhotoDna, sandbox: HashSandbox | None = None, time: FakeTime | None = None,
    config: dict[str, object] | None = None, **settings: object,
) -> ClassifierSlot:
    """The classifier as configured with `settings` (and the classifier entry's `config`)."""
    return build("photodna", {"url": fake.base, "subscription_key": KEY, **settings}, time=time, sandbox=sandbox, **(config or {}))


async def scan(s: ClassifierSlot, data: bytes, mimetype: str = "image/png") -> Classification:
    await s.classifier.start()
    try:
        return await s.classifier.classify(media(data, mimetype))
    finally:
        await s.classifier.close()


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """Benign random pixels: they do not compress, so a small image makes a large PNG."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --- what is sent and what a match says -----------------------------------------------------


async def test_a_match_is_a_near_photodna_verdict_per_source_with_violations_and_tracking_id(fake: FakePhotoDna) -> None:
    fake.known.append(KnownMedia.of(KNOWN, "NCMEC"))
    result = await scan(slot(fake), KNOWN)
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.kind, verdict.list_name, verdict.hash_type, verdict.distance) == (
        "csam", MatchKind.NEAR, "NCMEC", "photodna", None,
    )  # fmt: skip
    assert verdict.details["violations"] == ["A1"] and verdict.details["match_ids"] == ["104149"]
    assert verdict.details["tracking_id"].startswith("WUS_")
    assert verdict.details["sent"].startswith("sent as posted (PNG")
    (seen,) = fake.requests
    assert (seen.path, seen.content_type, seen.body_sha256) == ("/photodna/v1.0/Match", "image/png", media(KNOWN).hashes.sha256)
    assert seen.query == {}  # enhance is off by default


async def test_enhance_is_asked_for_when_configured(fake: FakePhotoDna) -> None:
    assert await scan(slot(fake, enhance=True), CLEAN) == Classification("photodna")
    assert fake.requests[0].query == {"enhance": "true"}


async def test_a_source_can_be_given_its_own_label(fake: FakePhotoDna) -> None:
    fake.known.append(KnownMedia.of(KNOWN, "Test"))
    (verdict,) = (await scan(slot(fake, labels={"Test": "photodna-test"}), KNOWN)).verdicts
    assert (verdict.label, verdict.list_name) == ("photodna-test", "Test")


async def test_files_that_are_not_images_are_skipped_and_not_sent(fake: FakePhotoDna) -> None:
    result = await scan(slot(fake), b"%PDF-1.4 not an image", "application/pdf")
    assert result.skipped == "application/pdf: PhotoDNA matches images only" and fake.calls == 0


async def test_bmp_which_modbot_does_not_decode_is_sent_as_it_is(fake: FakePhotoDna) -> None:
    bmp = encode(make_photo(5, (200, 180)), "BMP")
    fake.known.append(KnownMedia.of(encode(make_photo(5, (200, 180)), "PNG"), LABEL))  # the same picture
    result = await scan(slot(fake), bmp, "image/bmp")
    assert result.verdicts and fake.bodies == [("image/bmp", len(bmp), (200, 180))]


# --- fitting the image to the service's limits ----------------------------------------------


async def test_an_undersized_image_is_enlarged_in_the_sandbox_and_still_matches(fake: FakePhotoDna, sandbox: HashSandbox) -> None:
    small = encode(make_photo(6, (120, 90)), "PNG")
    fake.known.append(KnownMedia.of(encode(make_photo(6, (800, 600)), "PNG"), LABEL))
    result = await scan(slot(fake, sandbox), small)
    assert result.error is None, result.error
    (verdict,) = result.verdicts
    assert verdict.details["sent"].startswith("enlarged and re-encoded: PNG 120x90")
    assert result.note == verdict.details["sent"]  # the pipeline audits it
    ((content_type, _, pixels),) = fake.bodies
    assert content_type == "image/jpeg" and pixels is not None and min(pixels) == 160
    assert sandbox.restarts == 0


async def test_an_oversized_image_is_reduced_under_the_byte_limit(fake: FakePhotoDna, sandbox: HashSandbox) -> None:
    big = encode(noise((400, 300)), "PNG")  # ~360 kB of noise
    fake.max_bytes = 100_000  # the fake refuses anything larger, as the service does over 4 MB
    result = await scan(slot(fake, sandbox, max_bytes=100_000), big)
    assert result.error is None and result.verdicts == ()
    assert result.note is not None and result.note.startswith("re-encoded: PNG 400x300")
    ((content_type, size, _),) = fake.bodies
    assert content_type == "image/jpeg" and size <= 100_000 < len(big)


async def test_a_webp_is_re_encoded_since_photodna_does_not_take_webp(fake: FakePhotoDna, sandbox: HashSandbox) -> None:
    webp = encode(make_photo(7, (640, 480)), "WEBP")
    fake.known.append(KnownMedia.of(KNOWN, LABEL))
    result = await scan(slot(fake, sandbox), webp, "image/webp")
    assert result.error is None and result.verdicts  # make_photo(7) is KNOWN's picture
    assert [b[0] for b in fake.bodies] == ["image/jpeg"]


async def test_without_a_sandbox_an_image_that_needs_fitting_is_an_error_not_a_decode(fake: FakePhotoDna) -> None:
    result = await scan(slot(fake), encode(make_photo(6, (120, 90)), "PNG"))
    assert result.error is not None and "no hashing sandbox" in result.error and fake.calls == 0


async def test_an_image_the_sandbox_cannot_fit_is_an_error_and_not_sent(fake: FakePhotoDna, sandbox: HashSandbox) -> None:
    truncated = encode(make_photo(6, (120, 90)), "PNG")[:300]
    result = await scan(slot(fake, sandbox), truncated)
    assert result.error is not None and result.error.startswith("not sent to PhotoDNA: cannot be re-encoded") and fake.calls == 0


async def test_a_strip_too_elongated_to_enlarge_is_refused(fake: FakePhotoDna, sandbox: HashSandbox) -> None:
    strip = encode(make_photo(6, (512, 4)), "PNG")
    result = await scan(slot(fake, sandbox), strip)
    assert result.error is not None and "too elongated" in result.error and fake.calls == 0


# --- Status codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [3002, 3206, 3208])
async def test_request_errors_fail_the_scan_without_retry_or_blame_on_the_service(fake: FakePhotoDna, code: int) -> None:
    fake.status_next = [code, code, code]
    s = slot(fake, config={"circuit_breaker": {"failures": 1}})
    await s.classifier.start()
    try:
        first = await s.classifier.classify(media(KNOWN))
        assert first.error is not None and f"PhotoDNA status {code}" in first.error and first.verdicts == ()
        assert fake.calls == 1  # not retried
        second = await s.classifier.classify(media(KNOWN))
        assert "circuit open" not in (second.error or "")  # the service itself is fine
    finally:
        await s.classifier.close()


async def test_the_service_refusing_a_real_undersized_image_is_status_3208(fake: FakePhotoDna) -> None:
    # BMP is sent as it is (modbot does not decode it to know its size): PhotoDNA says 3208.
    result = await scan(slot(fake), encode(make_photo(5, (100, 100)), "BMP"), "image/bmp")
    assert result.error is not None and "PhotoDNA status 3208 (image size out of range)" in result.error


async def test_3004_is_the_services_trouble_and_is_retried(fake: FakePhotoDna) -> None:
    fake.status_next = [3004]
    time = FakeTime()
    result = await scan(slot(fake, time=time), CLEAN)
    assert result.error is None and fake.calls == 2 and time.sleeps == [0.5]
    fake.status_next = [3004] * 3
    failed = await scan(slot(fake, time=FakeTime()), CLEAN)
    assert failed.error is not None and "PhotoDNA status 3004" in failed.error


async def test_an_undocumented_status_code_is_a_bad_answer(fake: FakePhotoDna) -> None:
    fake.status_next = [3999]
    result = await scan(slot(fake), CLEAN)
    assert result.error == "PhotoDNA status 3999 is not documented: error" and fake.calls == 1


async def test_an_answer_without_status_is_a_bad_answer(fake: FakePhotoDna) -> None:
    async def odd(request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        return web.json_response({"IsMatch": True})

    fake.override = odd
    result = await scan(slot(fake), CLEAN)
    assert result.error == "unexpected answer: a Status object"


# --- rate limit -------------------------------------------------------------------------------


async def test_five_requests_a_second_is_the_default_rate_limit(fake: FakePhotoDna) -> None:
    time = FakeTime()
    s = slot(fake, time=time)
    await s.classifier.start()
    try:
        for _ in range(8):
            assert (await s.classifier.classify(media(CLEAN))).error is None
    finally:
        await s.classifier.close()
    assert fake.calls == 8
    # A burst of five, then each request waits for its token: a fifth of a second apiece.
    assert sum(time.sleeps) == pytest.approx(3 * 0.2)


async def test_the_config_may_set_another_rate(fake: FakePhotoDna) -> None:
    time = FakeTime()
    s = build("photodna", {"url": fake.base, "subscription_key": KEY}, time=time, rate_limit=10)
    await s.classifier.start()
    try:
        for _ in range(12):
            await s.classifier.classify(media(CLEAN))
    finally:
        await s.classifier.close()
    assert sum(time.sleeps) == pytest.approx(2 * 0.1)

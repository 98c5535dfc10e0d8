"""Every service adapter, in every mode, against a loopback fake of its service: matches,
near matches, no match, and each way the service can fail.

Retries and backoff run on a fake clock (the test sees the waits asked for, nobody waits);
only the timeout test waits, for a fraction of a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.classify.base import Classifier, MediaInput
from bot.classify.cache import VerdictCache
from bot.classify.registry import ClassifierSlot
from bot.classify.runner import ClassifierRunner
from bot.model import Classification, MatchKind
from bot.record.db import create_engine, migrate
from bot.record.scanning import VerdictCacheRepo
from classifier_kit import ADAPTERS, CLEAN, KNOWN, LABEL, NEAR, AdapterCase, FakeTime, media, start_case
from fake_services import Fault, huge, malformed, rate_limited, server_error, slow, unauthorized


@pytest.fixture(params=ADAPTERS)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[AdapterCase]:
    c = await start_case(request.param)
    try:
        yield c
    finally:
        await c.fake.stop()


@asynccontextmanager
async def running(slot: ClassifierSlot) -> AsyncIterator[Classifier]:
    await slot.classifier.start()
    try:
        yield slot.classifier
    finally:
        await slot.classifier.close()


async def classify(slot: ClassifierSlot, item: MediaInput) -> Classification:
    async with running(slot) as classifier:
        return await classifier.classify(item)


def requests_per_scan(case: AdapterCase) -> int:
    # HMA in hashes mode looks up the PDQ and the MD5: two requests for one image.
    return 2 if case.id == "hma-hashes" else 1


# --- answers ---------------------------------------------------------------------------------


async def test_a_known_image_matches(case: AdapterCase) -> None:
    case.teach(KNOWN)
    result = await classify(case.build(), media(KNOWN))
    assert result.error is None
    (verdict,) = result.verdicts
    assert (verdict.classifier, verdict.label, verdict.kind) == (case.id, LABEL, case.exact_kind)


async def test_an_altered_copy_is_a_near_match(case: AdapterCase) -> None:
    case.teach(KNOWN)
    result = await classify(case.build(), media(NEAR, "image/jpeg"))
    assert result.error is None
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.kind) == (LABEL, MatchKind.NEAR)


async def test_an_unknown_image_does_not_match(case: AdapterCase) -> None:
    case.teach(KNOWN)
    assert await classify(case.build(), media(CLEAN)) == Classification(case.id)


async def test_bytes_go_only_to_upload_modes(case: AdapterCase) -> None:
    case.teach(KNOWN)
    slot = case.build()
    assert slot.classifier.needs_data is case.sends_media
    item = media(KNOWN)
    without_bytes = MediaInput(item.hashes, None, item.mimetype)
    result = await classify(slot, without_bytes)
    if case.sends_media:
        assert result.error == "the media's bytes were not available to send"
        assert case.fake.calls == 0
    else:
        assert result.verdicts and result.error is None
        # The media never left: no request carried its bytes.
        assert all(seen.body_sha256 != item.hashes.sha256 for seen in case.fake.requests)


# --- failures --------------------------------------------------------------------------------


async def test_401_is_an_error_at_once_and_not_retried(case: AdapterCase) -> None:
    case.fake.fail_always(unauthorized())
    result = await classify(case.build(), media(KNOWN))
    assert result.error is not None and "HTTP 401" in result.error
    assert result.verdicts == ()
    assert case.fake.calls == requests_per_scan(case)


async def test_credentials_never_appear_in_an_error(case: AdapterCase) -> None:
    # A careless service (or proxy) that repeats the credentials it was sent.
    case.fake.fail_always(Fault(401, f"refused {case.secret}", echo_auth=True))
    result = await classify(case.build(), media(KNOWN))
    assert result.error is not None and "HTTP 401" in result.error and "***" in result.error
    assert case.secret not in result.error
    assert case.fake.requests[0].authorization is not None
    assert case.fake.requests[0].authorization not in result.error


async def test_429_waits_as_long_as_retry_after_says_then_succeeds(case: AdapterCase) -> None:
    case.teach(KNOWN)
    case.fake.fail_next(rate_limited("7"))
    time = FakeTime()
    result = await classify(case.build(time), media(KNOWN))
    assert result.error is None and result.verdicts
    assert time.sleeps == [7.0]
    assert case.fake.calls == requests_per_scan(case) + 1


async def test_429_with_a_long_retry_after_fails_now_and_leaves_the_service_alone(case: AdapterCase) -> None:
    case.fake.fail_always(rate_limited("3600"))
    time = FakeTime()
    slot = case.build(time, max_backoff=30)
    async with running(slot) as classifier:
        first = await classifier.classify(media(KNOWN))
        assert first.error is not None and "HTTP 429" in first.error
        assert time.sleeps == []
        calls = case.fake.calls
        second = await classifier.classify(media(KNOWN))
        assert second.error is not None and "circuit open" in second.error
        assert case.fake.calls == calls


async def test_500_is_retried_with_growing_jittered_backoff_then_reported(case: AdapterCase) -> None:
    case.fake.fail_always(server_error())
    time = FakeTime()
    result = await classify(case.build(time, retries=2, backoff=0.5, circuit_breaker={"failures": 100}), media(KNOWN))
    assert result.error is not None and "HTTP 500" in result.error
    assert case.fake.calls == 3 * requests_per_scan(case)
    # rand() is 1.0 in the kit: each wait is its ceiling, which doubles.
    assert sorted(set(time.sleeps)) == [0.5, 1.0]


async def test_a_500_then_an_answer_is_a_success(case: AdapterCase) -> None:
    case.teach(KNOWN)
    case.fake.fail_next(server_error())
    result = await classify(case.build(), media(KNOWN))
    assert result.error is None and result.verdicts


async def test_no_answer_within_the_timeout_is_an_error(case: AdapterCase) -> None:
    case.fake.fail_always(slow(30))
    result = await classify(case.build(timeout=0.2, retries=0), media(KNOWN))
    assert result.error is not None and "no answer within 0.2 s" in result.error


async def test_malformed_json_is_an_error_and_not_retried(case: AdapterCase) -> None:
    case.fake.fail_always(malformed())
    result = await classify(case.build(), media(KNOWN))
    assert result.error is not None and "not JSON" in result.error
    assert case.fake.calls == requests_per_scan(case)


async def test_a_huge_answer_is_refused(case: AdapterCase) -> None:
    case.fake.fail_always(huge(4 * 1024 * 1024))
    result = await classify(case.build(), media(KNOWN))
    assert result.error is not None and "byte cap" in result.error


async def test_the_circuit_opens_after_repeated_failures_and_a_probe_closes_it(case: AdapterCase) -> None:
    case.teach(KNOWN)
    case.fake.fail_always(server_error())
    time = FakeTime()
    failures = 2 * requests_per_scan(case)
    slot = case.build(time, retries=0, circuit_breaker={"failures": failures, "reset_after": 60})
    async with running(slot) as classifier:
        for _ in range(2):
            assert "HTTP 500" in ((await classifier.classify(media(KNOWN))).error or "")
        assert case.fake.calls == failures
        failing_calls = case.fake.calls
        refused = await classifier.classify(media(KNOWN))
        assert refused.error is not None and "circuit open" in refused.error
        assert case.fake.calls == failing_calls  # the dead service was not called

        case.fake.fail_always(None)  # it comes back
        time.advance(59)
        assert "circuit open" in ((await classifier.classify(media(KNOWN))).error or "")
        time.advance(2)
        probe = await classifier.classify(media(KNOWN))
        assert probe.error is None and probe.verdicts
        assert case.fake.calls > failing_calls
        assert (await classifier.classify(media(KNOWN))).verdicts


async def test_a_failed_probe_keeps_the_circuit_open(case: AdapterCase) -> None:
    case.fake.fail_always(server_error())
    time = FakeTime()
    slot = case.build(time, retries=0, circuit_breaker={"failures": 1, "reset_after": 10})
    async with running(slot) as classifier:
        await classifier.classify(media(KNOWN))
        time.advance(11)
        await classifier.classify(media(KNOWN))  # the probe fails
        calls = case.fake.calls
        assert "circuit open" in ((await classifier.classify(media(KNOWN))).error or "")
        assert case.fake.calls == calls


async def test_no_more_requests_in_flight_than_the_concurrency_limit(case: AdapterCase) -> None:
    case.teach(KNOWN)
    case.fake.gate = asyncio.Event()
    slot = case.build(concurrency=2)
    async with running(slot) as classifier:
        tasks = [asyncio.create_task(classifier.classify(media(KNOWN))) for _ in range(5)]
        for _ in range(500):  # until two requests are waiting at the gate
            if case.fake.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # room for a third, if the limit let one through
        assert case.fake.max_in_flight == 2
        case.fake.gate.set()
        results = await asyncio.gather(*tasks)
    assert all(r.verdicts for r in results)
    assert case.fake.max_in_flight == 2


async def test_the_rate_limit_spaces_requests_out(case: AdapterCase) -> None:
    time = FakeTime()
    slot = case.build(time, rate_limit=2)  # two a second, bursts of two
    async with running(slot) as classifier:
        for _ in range(3):
            assert (await classifier.classify(media(CLEAN))).error is None
    requests = case.fake.calls
    # Beyond the burst, each request waited for its token: half a second apiece.
    assert sum(time.sleeps) == pytest.approx((requests - 2) * 0.5)


async def test_a_cache_hit_does_not_call_the_service_again(case: AdapterCase, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'cache.db'}")
    await migrate(engine)
    try:
        case.teach(KNOWN)
        runner = ClassifierRunner([case.build()], VerdictCache(VerdictCacheRepo(engine)))
        await runner.start()
        try:
            (first,) = await runner.run(media(KNOWN))
            calls = case.fake.calls
            (second,) = await runner.run(media(KNOWN))
            assert not first.cached and second.cached
            assert case.fake.calls == calls
            assert second.classification.verdicts == first.classification.verdicts
            assert not await runner.wants_data(media(KNOWN).hashes.sha256)
        finally:
            await runner.close()
    finally:
        await engine.dispose()

"""The verdict cache and the runner that uses it: one call per file per TTL, bytes only
where declared, and a misbehaving classifier contained."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.classify.base import Classifier, MediaInput
from bot.classify.cache import VerdictCache, settings_fingerprint
from bot.classify.http_scanner import HttpScannerSettings
from bot.classify.registry import ClassifierSlot
from bot.classify.resilience import ServiceGuard
from bot.classify.runner import ClassifierRunner
from bot.model import Classification, MatchKind, Verdict
from bot.record.db import create_engine, migrate
from bot.record.scanning import VerdictCacheRepo
from classifier_kit import CLEAN, KNOWN, FakeTime, media


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[VerdictCacheRepo]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'modbot.db'}")
    await migrate(engine)
    try:
        yield VerdictCacheRepo(engine)
    finally:
        await engine.dispose()


class Counting(Classifier):
    """Says `label` of every file; counts calls and what it was given."""

    def __init__(self, name: str = "svc", label: str | None = "csam-test", *, needs_data: bool = False) -> None:
        self.name = name
        self.label = label
        self.needs_data = needs_data
        self.calls = 0
        self.seen_data: list[bytes | None] = []
        self.gate: asyncio.Event | None = None

    async def classify(self, media: MediaInput) -> Classification:
        self.calls += 1
        self.seen_data.append(media.data)
        if self.gate is not None:
            await self.gate.wait()
        if self.label is None:
            return Classification(self.name)
        return Classification(
            self.name, (Verdict(self.name, self.label, MatchKind.NEAR, distance=3, score=0.8, details={"why": "test"}),)
        )


def slot(classifier: Classifier, *, ttl: float = 3600, fingerprint: str = "f1", deadline: float | None = None) -> ClassifierSlot:
    return ClassifierSlot(classifier, "test", fingerprint, ttl, deadline, ServiceGuard(classifier.name))


async def test_a_verdict_comes_back_from_the_cache_whole(repo: VerdictCacheRepo) -> None:
    time = FakeTime()
    cache = VerdictCache(repo, clock=time.clock)
    verdict = Verdict("svc", "csam-test", MatchKind.NEAR, list_name="bank", hash_type="pdq", distance=4,
                      matched_hash="ab" * 32, score=0.75, details={"bank_content_ids": [1, 2]})  # fmt: skip
    await cache.put("svc", "f1", "aa" * 32, Classification("svc", (verdict,)), ttl=60)
    hit = await cache.get("svc", "f1", "aa" * 32)
    assert hit == Classification("svc", (verdict,))
    assert hit is not None and hit.verdicts[0].details["bank_content_ids"] == [1, 2]
    assert await cache.get("other", "f1", "aa" * 32) is None
    assert await cache.get("svc", "f1", "bb" * 32) is None


async def test_no_match_is_cached_too_but_errors_and_skipped_scans_are_not(repo: VerdictCacheRepo) -> None:
    cache = VerdictCache(repo)
    await cache.put("svc", "f1", "aa" * 32, Classification("svc"), ttl=60)
    assert await cache.get("svc", "f1", "aa" * 32) == Classification("svc")
    await cache.put("svc", "f1", "bb" * 32, Classification("svc", error="HTTP 500"), ttl=60)
    await cache.put("svc", "f1", "cc" * 32, Classification("svc", skipped="not an image"), ttl=60)
    assert await cache.get("svc", "f1", "bb" * 32) is None
    assert await cache.get("svc", "f1", "cc" * 32) is None


async def test_entries_expire_and_a_changed_setup_misses(repo: VerdictCacheRepo) -> None:
    time = FakeTime()
    cache = VerdictCache(repo, clock=time.clock)
    repo._clock = time.clock
    await cache.put("svc", "f1", "aa" * 32, Classification("svc"), ttl=60)
    assert await cache.get("svc", "f2", "aa" * 32) is None  # other settings
    time.advance(59)
    assert await cache.get("svc", "f1", "aa" * 32) is not None
    time.advance(1)
    assert await cache.get("svc", "f1", "aa" * 32) is None
    assert await cache.purge_expired() == 1


def test_the_fingerprint_follows_the_settings_but_not_the_secrets() -> None:
    a = HttpScannerSettings(url="http://scanner/a", token="one")
    assert settings_fingerprint("http", a) == settings_fingerprint("http", HttpScannerSettings(url="http://scanner/a", token="two"))
    assert settings_fingerprint("http", a) != settings_fingerprint("http", HttpScannerSettings(url="http://scanner/b"))
    assert settings_fingerprint("http", a) != settings_fingerprint("other", a)


async def test_an_operator_flushes_all_one_classifier_or_one_file(repo: VerdictCacheRepo) -> None:
    cache = VerdictCache(repo)
    for name in ("a", "b"):
        for sha in ("11" * 32, "22" * 32):
            await cache.put(name, "f", sha, Classification(name), ttl=60)
    assert await cache.flush(classifier="a", sha256="11" * 32) == 1
    assert await cache.flush(classifier="a") == 1
    assert await cache.flush(sha256="22" * 32) == 1
    assert await cache.flush() == 1
    assert await cache.get("b", "f", "11" * 32) is None


# --- the runner ------------------------------------------------------------------------------


async def test_a_second_scan_of_the_same_file_is_answered_from_the_cache(repo: VerdictCacheRepo) -> None:
    svc = Counting()
    runner = ClassifierRunner([slot(svc)], VerdictCache(repo))
    (first,) = await runner.run(media(KNOWN))
    (second,) = await runner.run(media(KNOWN))
    assert svc.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.classification.verdicts == first.classification.verdicts
    assert "cached_at" in second.classification.verdicts[0].details
    (other,) = await runner.run(media(CLEAN))
    assert svc.calls == 2 and not other.cached


async def test_a_ttl_of_zero_is_no_cache(repo: VerdictCacheRepo) -> None:
    svc = Counting()
    runner = ClassifierRunner([slot(svc, ttl=0)], VerdictCache(repo))
    await runner.run(media(KNOWN))
    await runner.run(media(KNOWN))
    assert svc.calls == 2


async def test_scans_of_one_file_at_the_same_time_share_one_call(repo: VerdictCacheRepo) -> None:
    svc = Counting()
    svc.gate = asyncio.Event()
    runner = ClassifierRunner([slot(svc)], VerdictCache(repo))
    tasks = [asyncio.create_task(runner.run(media(KNOWN))) for _ in range(4)]
    for _ in range(100):
        await asyncio.sleep(0)
    svc.gate.set()
    results = [r for (r,) in await asyncio.gather(*tasks)]
    assert svc.calls == 1
    assert all(r.classification.verdicts for r in results)


async def test_the_bytes_go_only_to_classifiers_that_need_them() -> None:
    uploader, hasher = Counting("up", needs_data=True), Counting("hash")
    runner = ClassifierRunner([uploader, hasher])
    await runner.run(media(KNOWN))
    assert uploader.seen_data == [KNOWN]
    assert hasher.seen_data == [None]


async def test_wants_data_until_every_uploading_classifier_has_a_cached_answer(repo: VerdictCacheRepo) -> None:
    runner = ClassifierRunner([slot(Counting("up", needs_data=True)), slot(Counting("hash"))], VerdictCache(repo))
    sha256 = media(KNOWN).hashes.sha256
    assert await runner.wants_data(sha256)
    await runner.run(media(KNOWN))
    assert not await runner.wants_data(sha256)
    assert not await ClassifierRunner([Counting("hash")]).wants_data(sha256)


async def test_a_classifier_that_raises_is_a_failed_scan_not_a_crash() -> None:
    class Broken(Classifier):
        async def classify(self, media: MediaInput) -> Classification:
            raise RuntimeError("token=abc123 leaked in a message")

    (result,) = await ClassifierRunner([Broken()]).run(media(KNOWN))
    assert result.classification == Classification("broken", error="classifier crashed (RuntimeError)")


async def test_a_classifier_over_its_deadline_is_a_failed_scan() -> None:
    svc = Counting()
    svc.gate = asyncio.Event()  # never set
    (result,) = await ClassifierRunner([slot(svc, ttl=0, deadline=0.05)]).run(media(KNOWN))
    assert result.failed and result.classification.error == "no answer within 0.05 s"


async def test_verdicts_carry_the_configured_name() -> None:
    class Careless(Classifier):
        async def classify(self, media: MediaInput) -> Classification:
            return Classification("whatever", (Verdict("whatever", "x", MatchKind.EXACT),))

    careless = Careless()
    careless.name = "configured-name"
    (result,) = await ClassifierRunner([careless]).run(media(KNOWN))
    assert result.classification.classifier == "configured-name"
    assert [v.classifier for v in result.classification.verdicts] == ["configured-name"]


def test_an_operator_flushes_the_cache_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    db = tmp_path / "modbot.db"
    config = tmp_path / "config.yaml"
    config.write_text(
        "homeserver: {url: 'http://127.0.0.1:8008', domain: example.org}\n"
        "appservice: {as_token: secret-as, hs_token: secret-hs}\n"
        f"database: {{url: 'sqlite+aiosqlite:///{db}'}}\n"
    )

    async def fill() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        await migrate(engine)
        cache = VerdictCache(VerdictCacheRepo(engine))
        for name in ("arachnid", "hma"):
            await cache.put(name, "f", "ab" * 32, Classification(name), ttl=60)
        await engine.dispose()

    asyncio.run(fill())
    assert main(["cache", "flush", "-c", str(config), "--classifier", "arachnid"]) == 0
    assert capsys.readouterr().out == "flushed 1 cached verdict\n"
    assert main(["cache", "flush", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "flushed 1 cached verdict\n"

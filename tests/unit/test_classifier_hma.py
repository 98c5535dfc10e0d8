"""HMA / OpenMediaMatch specifics: lookups, banks and labels, and HMA's own error answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.classify.registry import ClassifierSlot
from bot.hashing import compute_hashes
from bot.model import Classification, MatchKind
from classifier_kit import CLEAN, KNOWN, NEAR, build, media
from fake_services import FakeHma, KnownMedia


@pytest.fixture
async def hma() -> AsyncIterator[FakeHma]:
    fake = FakeHma()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def make(hma: FakeHma, *, retries: int = 2, **settings: Any) -> ClassifierSlot:
    return build("hma", {"url": hma.url, **settings}, retries=retries)


async def scan(slot: ClassifierSlot, data: bytes, mimetype: str = "image/png") -> Classification:
    await slot.classifier.start()
    try:
        return await slot.classifier.classify(media(data, mimetype))
    finally:
        await slot.classifier.close()


async def test_hash_lookups_name_the_signal_type_the_hash_and_a_seed(hma: FakeHma) -> None:
    hma.add_media("CSAM_BANK", KnownMedia.of(KNOWN, "CSAM_BANK"))
    hashes = compute_hashes(KNOWN)
    result = await scan(make(hma, labels={"CSAM_BANK": "csam"}), KNOWN)
    queries = sorted((r.query["signal_type"], r.query["signal"], r.query["seed"]) for r in hma.requests)
    assert queries == [("pdq", hashes.pdq, hashes.sha256), ("video_md5", hashes.md5, hashes.sha256)]
    assert all(r.method == "GET" and r.path == "/m/lookup" for r in hma.requests)
    # The MD5 matched exactly and the PDQ at distance 0: one verdict per bank, the exact one.
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.list_name, verdict.kind, verdict.hash_type) == ("csam", "CSAM_BANK", MatchKind.EXACT, "md5")
    assert verdict.details["signal_type"] == "video_md5" and verdict.details["bank_content_ids"]


async def test_a_pdq_match_has_hmas_distance(hma: FakeHma) -> None:
    hma.add_media("BANK", KnownMedia.of(KNOWN, "BANK"))
    (verdict,) = (await scan(make(hma), NEAR, "image/jpeg")).verdicts
    expected = bin(int(compute_hashes(NEAR).pdq or "0", 16) ^ int(compute_hashes(KNOWN).pdq or "0", 16)).count("1")
    assert (verdict.kind, verdict.hash_type, verdict.distance, verdict.label) == (MatchKind.NEAR, "pdq", expected, "BANK")


async def test_max_distance_drops_farther_pdq_matches(hma: FakeHma) -> None:
    hma.add_media("BANK", KnownMedia.of(KNOWN, "BANK"))
    assert (await scan(make(hma, max_distance=0), NEAR, "image/jpeg")).verdicts == ()


async def test_banks_restrict_the_lookup(hma: FakeHma) -> None:
    hma.add_media("A", KnownMedia.of(KNOWN, "A"))
    hma.add_media("B", KnownMedia.of(KNOWN, "B"))
    result = await scan(make(hma, banks=["B"]), KNOWN)
    assert {v.list_name for v in result.verdicts} == {"B"}
    assert all(r.query["banks"] == "B" for r in hma.requests)


async def test_only_the_configured_signal_types_are_looked_up(hma: FakeHma) -> None:
    hma.add_media("BANK", KnownMedia.of(KNOWN, "BANK"))
    result = await scan(make(hma, signal_types={"pdq": "pdq"}), KNOWN)
    assert [r.query["signal_type"] for r in hma.requests] == ["pdq"]
    assert [v.kind for v in result.verdicts] == [MatchKind.NEAR]


async def test_pdq_variants_are_looked_up_when_asked(hma: FakeHma) -> None:
    result = await scan(make(hma, pdq_variants=True, signal_types={"pdq": "pdq"}), CLEAN)
    assert result.verdicts == ()
    assert len(hma.requests) == len({compute_hashes(CLEAN).pdq, *compute_hashes(CLEAN).pdq_queries})


async def test_a_signal_type_hma_does_not_have_is_its_400(hma: FakeHma) -> None:
    result = await scan(make(hma, signal_types={"md5": "photo_md5"}), KNOWN)
    assert result.error == "GET /m/lookup: HTTP 400: No such SignalType 'photo_md5'"
    assert len(hma.requests) == 1  # a 400 is about the request: not retried


async def test_an_index_not_yet_ready_is_retried(hma: FakeHma) -> None:
    hma.index_ready = False
    slot = make(hma, signal_types={"pdq": "pdq"}, retries=1)
    result = await scan(slot, KNOWN)
    assert result.error == "GET /m/lookup: HTTP 503: index not yet ready"
    assert len(hma.requests) == 2


async def test_media_mode_uploads_a_photo_and_reads_matches_by_signal_type(hma: FakeHma) -> None:
    hma.add_media("BANK", KnownMedia.of(KNOWN, "BANK"))
    result = await scan(make(hma, mode="media"), NEAR, "image/jpeg")
    (seen,) = hma.requests
    assert (seen.method, seen.path) == ("POST", "/m/lookup") and seen.content_type.startswith("multipart/form-data")
    assert seen.query["seed"] == compute_hashes(NEAR).sha256
    (verdict,) = result.verdicts
    assert (verdict.kind, verdict.hash_type, verdict.list_name) == (MatchKind.NEAR, "pdq", "BANK")


async def test_media_mode_without_the_hasher_role_is_refused(hma: FakeHma) -> None:
    hma.hasher_role = False
    result = await scan(make(hma, mode="media"), KNOWN)
    assert result.error == "POST /m/lookup: HTTP 403: Hashing is disabled, missing role"


async def test_media_mode_skips_other_types(hma: FakeHma) -> None:
    result = await scan(make(hma, mode="media"), b"%PDF-1.4", "application/pdf")
    assert result.skipped and hma.calls == 0


async def test_a_bank_answer_of_the_wrong_shape_is_an_error(hma: FakeHma) -> None:
    from aiohttp import web

    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"BANK": [{"id": 1}]})

    hma.override = odd
    result = await scan(make(hma, retries=0, signal_types={"pdq": "pdq"}), KNOWN)
    assert result.error == "unexpected answer: matches with bank_content_id and distance"

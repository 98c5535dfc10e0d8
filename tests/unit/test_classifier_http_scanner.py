"""The generic HTTP scanner's protocol: what is sent, what answers are accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.classify.registry import ClassifierSlot
from bot.hashing import compute_hashes
from bot.model import Classification, MatchKind
from classifier_kit import KNOWN, build, media
from fake_services import FakeScanner, KnownMedia


@pytest.fixture
async def scanner() -> AsyncIterator[FakeScanner]:
    fake = FakeScanner()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def make(scanner: FakeScanner, **settings: Any) -> ClassifierSlot:
    return build("http", {"url": scanner.url + "/scan", "token": scanner.token, **settings}, name="inhouse", retries=0)


async def scan(slot: ClassifierSlot, data: bytes = KNOWN, mimetype: str = "image/png") -> Classification:
    await slot.classifier.start()
    try:
        return await slot.classifier.classify(media(data, mimetype))
    finally:
        await slot.classifier.close()


async def test_hashes_mode_posts_the_documented_json(scanner: FakeScanner) -> None:
    scanner.known.append(KnownMedia.of(KNOWN, "csam"))
    result = await scan(make(scanner))
    hashes = compute_hashes(KNOWN)
    (body,) = scanner.json_bodies
    assert body == {
        "sha256": hashes.sha256,
        "md5": hashes.md5,
        "size": hashes.size,
        "mimetype": "image/png",
        "pdq": hashes.pdq,
        "pdq_quality": hashes.pdq_quality,
        "pdq_variants": [h for h in hashes.pdq_queries if h != hashes.pdq],
        "phash": hashes.phash,
    }
    assert scanner.requests[0].authorization == f"Bearer {scanner.token}"
    (verdict,) = result.verdicts
    assert (verdict.classifier, verdict.label, verdict.kind, verdict.list_name, verdict.score) == (
        "inhouse", "csam", MatchKind.EXACT, "in-house", 1.0,
    )


async def test_media_mode_posts_the_bytes_with_their_hashes_in_headers(scanner: FakeScanner) -> None:
    scanner.known.append(KnownMedia.of(KNOWN, "csam"))
    result = await scan(make(scanner, mode="media"))
    (seen,) = scanner.requests
    assert seen.content_type == "image/png" and seen.body_sha256 == compute_hashes(KNOWN).sha256
    assert result.verdicts and result.verdicts[0].label == "csam"


async def test_a_token_in_another_header(scanner: FakeScanner) -> None:
    async def check(request: web.Request) -> web.Response:
        ok = request.headers.get("X-Api-Key") == scanner.token and "Authorization" not in request.headers
        return web.json_response({"verdicts": []} if ok else {"error": "no key"}, status=200 if ok else 401)

    scanner.override = check
    assert await scan(make(scanner, auth_header="X-Api-Key", auth_scheme="")) == Classification("inhouse")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"matches": []}, "unexpected answer: verdicts: Field required"),
        ({"verdicts": [{"label": "x", "kind": "maybe"}]}, "unexpected answer: verdicts.0.kind: Input should be 'exact' or 'near'"),
        ({"verdicts": [{"kind": "exact"}]}, "unexpected answer: verdicts.0.label: Field required"),
        ({"verdicts": [{"label": "x", "kind": "near", "matched_hash": "f" * 65}]},
         "unexpected answer: verdicts.0.matched_hash: String should have at most 64 characters"),
        ([1, 2], "unexpected answer: Input should be a valid dictionary or instance of ScannerAnswer"),
    ],
)  # fmt: skip
async def test_answers_outside_the_protocol_are_errors(scanner: FakeScanner, answer: Any, error: str) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response(answer)

    scanner.override = odd
    assert (await scan(make(scanner))).error == error


async def test_a_service_may_say_it_had_nothing_to_check(scanner: FakeScanner) -> None:
    async def skip(request: web.Request) -> web.Response:
        return web.json_response({"verdicts": [], "skipped": "videos are not supported"})

    scanner.override = skip
    assert await scan(make(scanner)) == Classification("inhouse", skipped="videos are not supported")


async def test_extra_fields_are_ignored_and_details_kept(scanner: FakeScanner) -> None:
    async def rich(request: web.Request) -> web.Response:
        return web.json_response(
            {"verdicts": [{"label": "x", "kind": "near", "distance": 4, "score": 0.5, "details": {"model": "v2"}, "extra": 1}], "version": 3}
        )

    scanner.override = rich
    (verdict,) = (await scan(make(scanner))).verdicts
    assert (verdict.distance, verdict.score, verdict.details) == (4, 0.5, {"service": "http", "model": "v2"})


async def test_the_error_field_of_an_error_answer_is_shown(scanner: FakeScanner) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "quota exhausted for today"}, status=403)

    scanner.override = refuse
    assert (await scan(make(scanner))).error == "POST /scan: HTTP 403: quota exhausted for today"

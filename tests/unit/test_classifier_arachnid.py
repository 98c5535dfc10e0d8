"""Arachnid Shield specifics: what is sent in each mode and how answers map onto verdicts."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.classify.registry import ClassifierSlot
from bot.hashing import compute_hashes
from bot.model import Classification, MatchKind
from classifier_kit import CLEAN, KNOWN, NEAR, build, media
from fake_services import FakeArachnid, KnownMedia


@pytest.fixture
async def shield() -> AsyncIterator[FakeArachnid]:
    fake = FakeArachnid()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def make(shield: FakeArachnid, *, retries: int = 2, **settings: Any) -> ClassifierSlot:
    base = {"url": shield.url, "username": shield.username, "password": shield.password}
    return build("arachnid", {**base, **settings}, retries=retries)


async def scan(slot: ClassifierSlot, *args: Any, **kwargs: Any) -> Classification:
    await slot.classifier.start()
    try:
        return await slot.classifier.classify(media(*args, **kwargs))
    finally:
        await slot.classifier.close()


async def test_media_mode_sends_the_file_with_its_type_and_basic_auth(shield: FakeArachnid) -> None:
    shield.known.append(KnownMedia.of(KNOWN, "csam"))
    result = await scan(make(shield), KNOWN)
    (seen,) = shield.requests
    assert (seen.method, seen.path, seen.content_type) == ("POST", "/v1/media/", "image/png")
    assert seen.body_sha256 == compute_hashes(KNOWN).sha256
    assert seen.authorization == "Basic " + base64.b64encode(f"{shield.username}:{shield.password}".encode()).decode()
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.kind, verdict.hash_type, verdict.distance) == ("csam", MatchKind.EXACT, "sha1", 0)
    assert verdict.matched_hash == compute_hashes(KNOWN).sha256
    assert verdict.details["classification"] == "csam" and verdict.details["match_type"] == "exact"


async def test_a_near_match_in_media_mode_names_the_known_file(shield: FakeArachnid) -> None:
    known = KnownMedia.of(KNOWN, "harmful-abusive-material")
    shield.known.append(known)
    (verdict,) = (await scan(make(shield, labels={"harmful-abusive-material": "harmful"}), NEAR, "image/jpeg")).verdicts
    assert (verdict.label, verdict.kind, verdict.hash_type, verdict.distance) == ("harmful", MatchKind.NEAR, "photodna", None)
    assert verdict.matched_hash == known.sha256
    assert verdict.details["near_matches"][0]["classification"] == "harmful-abusive-material"


async def test_media_mode_skips_what_it_does_not_send(shield: FakeArachnid) -> None:
    result = await scan(make(shield), b"%PDF-1.4 not an image", "application/pdf")
    assert result == Classification("arachnid", skipped="application/pdf is not sent to Arachnid Shield")
    assert shield.calls == 0


async def test_pdq_mode_sends_only_base64_pdq_hashes(shield: FakeArachnid) -> None:
    shield.known.append(KnownMedia.of(KNOWN, "csam"))
    hashes = compute_hashes(NEAR)
    result = await scan(make(shield, mode="pdq"), NEAR, "image/jpeg")
    (seen,) = shield.requests
    assert (seen.path, seen.content_type) == ("/v1/pdq/", "application/json")
    (body,) = shield.json_bodies
    assert list(body) == ["hashes"]
    decoded = [base64.b64decode(h).hex() for h in body["hashes"]]
    assert decoded[0] == hashes.pdq and set(decoded) == {hashes.pdq, *hashes.pdq_queries}
    (verdict,) = result.verdicts
    assert (verdict.label, verdict.kind, verdict.hash_type) == ("csam", MatchKind.NEAR, "pdq")
    assert verdict.details["query"] == "original"


async def test_pdq_mode_without_variants_sends_one_hash(shield: FakeArachnid) -> None:
    assert (await scan(make(shield, mode="pdq", pdq_variants=False), CLEAN)).verdicts == ()
    assert len(shield.json_bodies[0]["hashes"]) == 1


async def test_pdq_mode_skips_files_without_a_usable_pdq(shield: FakeArachnid) -> None:
    not_image = await scan(make(shield, mode="pdq"), b"just some text", "text/plain")
    assert not_image.skipped and not not_image.error and not not_image.verdicts
    from bot.demo.samples import encode
    from PIL import Image

    flat = encode(Image.new("RGB", (64, 64), (128, 128, 128)), "PNG")  # quality 0: matches anything flat
    low = await scan(make(shield, mode="pdq"), flat)
    assert low.skipped is not None and low.skipped.startswith("PDQ quality")
    assert shield.calls == 0


async def test_an_answer_about_another_file_is_refused(shield: FakeArachnid) -> None:
    async def lie(request: web.Request) -> web.Response:
        return web.json_response(
            {"sha1_base32": "X", "sha256_hex": "0" * 64, "size_bytes": 1, "classification": "no-known-match",
             "match_type": None, "near_match_details": []}  # fmt: skip
        )

    shield.override = lie
    result = await scan(make(shield, retries=0), KNOWN)
    assert result.error == "the answer is about another file (sha256_hex differs)"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ([], "unexpected answer: a scanned-media object"),
        ({"classification": "csam"}, "unexpected answer: sha256_hex"),
    ],
)
async def test_answers_of_the_wrong_shape_are_errors(shield: FakeArachnid, answer: Any, error: str) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response(answer)

    shield.override = odd
    assert (await scan(make(shield, retries=0), KNOWN)).error == error


async def test_a_future_classification_is_a_verdict_under_its_own_name(shield: FakeArachnid) -> None:
    shield.known.append(KnownMedia.of(KNOWN, "some-new-category"))
    (verdict,) = (await scan(make(shield), KNOWN)).verdicts
    assert verdict.label == "some-new-category"


async def test_wrong_credentials_are_a_401_from_the_service(shield: FakeArachnid) -> None:
    slot = build("arachnid", {"url": shield.url, "username": shield.username, "password": "not-the-password"})
    result = await scan(slot, KNOWN)
    assert result.error == "POST /v1/media/: HTTP 401: Invalid username/password."


async def test_an_image_sent_under_another_type_is_still_sent_as_the_image_it_is(shield: FakeArachnid) -> None:
    # The type in the event is the sender's word; the decoded format is the file's.
    shield.known.append(KnownMedia.of(KNOWN, "csam"))
    result = await scan(make(shield), KNOWN, "application/pdf")
    assert shield.requests[0].content_type == "image/png"
    assert result.verdicts and result.verdicts[0].label == "csam"

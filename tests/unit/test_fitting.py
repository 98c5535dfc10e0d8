"""bot.hashing.fitting through the sandbox (pool.fit): images fitted to a service's limits
in a worker process, the same limits as hashing applied first; hostile files are refused
with a reason, and no worker has to be replaced."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hostile import HOSTILE, hostile_bytes
from images import encode, make_photo
from PIL import Image

from bot.config import ProcessingConfig
from bot.hashing import compute_hashes, hamming
from bot.hashing.fitting import FitSpec, Fitted
from bot.hashing.pool import HashSandbox

PHOTODNA = FitSpec(min_side=160, max_bytes=4_000_000)


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[HashSandbox]:
    async with HashSandbox.from_config(ProcessingConfig(), workers=1) as sb:
        yield sb


async def fitted(sandbox: HashSandbox, data: bytes, spec: FitSpec = PHOTODNA) -> Fitted:
    result = await sandbox.fit(data, spec)
    assert isinstance(result, Fitted), result
    with Image.open(io.BytesIO(result.data)) as img:
        assert (img.format, img.size) == ("JPEG", (result.width, result.height))
    assert len(result.data) <= spec.max_bytes
    return result


async def test_a_small_image_is_enlarged_to_the_minimum_side_and_keeps_its_look(sandbox: HashSandbox) -> None:
    small = encode(make_photo(3, (120, 90)), "PNG")
    result = await fitted(sandbox, small)
    assert (result.width, result.height, result.enlarged) == (213, 160, True)
    original, enlarged = compute_hashes(small).pdq, compute_hashes(result.data).pdq
    assert original and enlarged and hamming(original, enlarged) <= 31


async def test_a_webp_is_re_encoded_at_the_reduced_size_hashing_uses(sandbox: HashSandbox) -> None:
    result = await fitted(sandbox, encode(make_photo(3, (1600, 1200)), "WEBP"))
    assert (result.width, result.height, result.enlarged) == (400, 300, False)


async def test_the_byte_limit_is_kept_by_lowering_quality_then_size(sandbox: HashSandbox) -> None:
    result = await fitted(sandbox, encode(make_photo(3, (800, 600)), "PNG"), FitSpec(160, 12_000))
    assert result.quality < 90


async def test_what_cannot_fit_is_refused_with_a_reason(sandbox: HashSandbox) -> None:
    assert await sandbox.fit(encode(make_photo(3, (800, 600)), "PNG"), FitSpec(160, 10)) == (
        "cannot be re-encoded: ValueError: cannot encode the image within 10 bytes"
    )
    strip = await sandbox.fit(encode(make_photo(3, (600, 3)), "PNG"), PHOTODNA)
    assert isinstance(strip, str) and "too elongated" in strip


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.expected], ids=lambda h: h.name)
async def test_hostile_files_are_refused_by_the_hashing_limits(sandbox: HashSandbox, hostile) -> None:  # type: ignore[no-untyped-def]
    result = await sandbox.fit(hostile_bytes(hostile.name), PHOTODNA)
    assert isinstance(result, str) and hostile.expected in result
    assert sandbox.restarts == 0


async def test_a_colour_jpeg_is_fitted_in_colour(sandbox: HashSandbox) -> None:
    data = encode(make_photo(4, (1152, 864)), "JPEG", quality=90)

    result = await fitted(sandbox, data)

    with Image.open(io.BytesIO(result.data)) as img:
        assert img.mode == "RGB"
        chroma = img.convert("YCbCr").getextrema()[1:]
    assert all(high - low > 40 for low, high in chroma)


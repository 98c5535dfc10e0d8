"""bot.commands.imagecrops: what `hash add` lists of a posted image besides its own hashes.

The image is downloaded again (with the admin's quarantine bypass when the plain download
fails: media a moderator lists is often quarantined already) and its crops are hashed in the
real sandbox, as `hashes add-image` hashes a file. Bytes other than those scanned, or media
the sandbox refuses, give no crops and say why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from hostile import hostile_bytes
from images import encode, make_photo

from bot.commands.imagecrops import SandboxCrops
from bot.config import ProcessingConfig
from bot.fetch import Fetched
from bot.hashing import compute_hashes, named_crop_hashes
from bot.hashing.pool import HashSandbox
from bot.lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS, CROP_MIN_QUALITY
from bot.model import MediaRef

REF = MediaRef(mxc="mxc://example.org/abc", server="example.org", media_id="abc", source="content.url")
PHOTO = encode(make_photo(31, (640, 480)), "JPEG", quality=90)


class Homeserver:
    """Serves `data`, or refuses unless the quarantine is bypassed (quarantined media)."""

    def __init__(self, data: bytes, *, quarantined: bool = False) -> None:
        self.data, self.quarantined, self.asked = data, quarantined, []  # type: list[bool]

    async def fetch(self, ref: MediaRef, *, bypass_quarantine: bool = False) -> Fetched:
        self.asked.append(bypass_quarantine)
        if self.quarantined and not bypass_quarantine:
            return Fetched(None, error="HTTP 404 M_NOT_FOUND", status=404)
        return Fetched(self.data, "image/jpeg")


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[HashSandbox]:
    async with HashSandbox.from_config(ProcessingConfig(), workers=1) as sb:
        yield sb


async def test_the_crops_are_those_add_image_lists(sandbox: HashSandbox) -> None:
    homeserver = Homeserver(PHOTO)
    crops, why = await SandboxCrops(homeserver, sandbox).crops_of(REF, compute_hashes(PHOTO).sha256)  # type: ignore[arg-type]
    assert why is None and homeserver.asked == [False]
    assert crops == named_crop_hashes(PHOTO, ADD_IMAGE_CROPS, min_quality=CROP_MIN_QUALITY, gains=ADD_IMAGE_GAINS)


async def test_quarantined_media_is_read_with_the_admins_bypass(sandbox: HashSandbox) -> None:
    homeserver = Homeserver(PHOTO, quarantined=True)
    crops, why = await SandboxCrops(homeserver, sandbox).crops_of(REF, compute_hashes(PHOTO).sha256)  # type: ignore[arg-type]
    assert why is None and len(crops) == len(ADD_IMAGE_CROPS) + len(ADD_IMAGE_GAINS)
    assert homeserver.asked == [False, True]


async def test_media_that_cannot_be_read_or_is_not_what_was_scanned_gives_no_crops(sandbox: HashSandbox) -> None:
    gone = Homeserver(b"", quarantined=True)
    gone.fetch = _refusing  # type: ignore[method-assign]
    assert await SandboxCrops(gone, sandbox).crops_of(REF, "ab" * 32) == ((), "cannot download it again: HTTP 404")  # type: ignore[arg-type]
    other = Homeserver(PHOTO)
    assert await SandboxCrops(other, sandbox).crops_of(REF, "ab" * 32) == (  # type: ignore[arg-type]
        (), "the homeserver served other bytes than those scanned",
    )


async def test_a_hostile_image_gives_no_crops_and_says_which_limit(sandbox: HashSandbox) -> None:
    bomb = hostile_bytes("lossless WebP, 64 MP flat")
    crops, why = await SandboxCrops(Homeserver(bomb), sandbox).crops_of(REF, compute_hashes(bomb).sha256)  # type: ignore[arg-type]
    assert crops == () and why is not None and why.startswith("decoded image too large"), why


async def _refusing(ref: MediaRef, *, bypass_quarantine: bool = False) -> Fetched:
    return Fetched(None, error="HTTP 404", status=404)

"""The crops and brightened copy of a posted image that `hash add` lists, as `modbot hashes
add-image` lists a local file's (bot/lists/imagerows.py): downloaded again and hashed in the
sandbox, in memory only, like any scanned media."""

from __future__ import annotations

from ..fetch import MediaFetcher
from ..hashing.pool import HashSandbox
from ..lists.imagerows import ADD_IMAGE_CROPS, ADD_IMAGE_GAINS, CROP_MIN_QUALITY
from ..mediafailures import RememberingFetcher
from ..model import MediaRef


class SandboxCrops:
    """`crops_of` for the command services: the download and the sandbox the pipeline uses."""

    def __init__(self, fetcher: MediaFetcher | RememberingFetcher, sandbox: HashSandbox) -> None:
        self._fetcher = fetcher
        self._sandbox = sandbox

    async def crops_of(self, ref: MediaRef, sha256: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
        """The image's listed crops ((PDQ, what it is of) pairs) and, when there are none to
        list, why. `sha256` is the image's as scanned: bytes that are not those are not used."""
        fetched = await self._fetcher.fetch(ref)
        if fetched.data is None:
            # Media a moderator wants listed is often quarantined already (by modbot or an
            # admin): a server admin reads it all the same, as the pipeline does to rescan.
            fetched = await self._fetcher.fetch(ref, bypass_quarantine=True)
        if fetched.data is None:
            return (), f"cannot download it again: {fetched.error or 'download failed'}"
        data = fetched.data
        del fetched
        hashes, crops = await self._sandbox.hash_with_crops(
            data, ADD_IMAGE_CROPS, min_quality=CROP_MIN_QUALITY, gains=ADD_IMAGE_GAINS
        )
        del data
        if hashes.sha256 != sha256:
            return (), "the homeserver served other bytes than those scanned"
        if not crops:
            return (), hashes.perceptual_error or "no crop of it has a usable PDQ"
        return crops, None

"""Authenticated media download, in memory only, with a size cap and a timeout.

The bytes live in a bytearray for as long as the caller hashes them; nothing here writes
to disk, and nothing hands the bytes to anything but the hashing stage.

Media created but not uploaded yet (MSC2246 async uploads) is asked for with a short
`timeout_ms`: Synapse waits that long for the upload (polling every 500 ms), then answers
504 `M_NOT_YET_UPLOADED`, instead of holding the request for its default 20 s.

Media bytes in memory are bounded across all events by `BodySlots`: a slot is taken once
the homeserver answers 200 and kept until the caller is done with the bytes. Waiting for
the answer holds no slot, so references that never answer cannot starve the ones that do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from .errors import HomeserverError, MNotYetUploaded, matrix_error
from .model import MediaRef

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Fetched:
    data: bytes | None
    mimetype: str | None = None
    error: str | None = None
    # A retryable error (timeout, 5xx, connection) is worth trying again later;
    # a permanent one (404, over the size cap) is not.
    retryable: bool = False
    status: int | None = None  # the homeserver's HTTP status, when it answered with an error
    # A failure of this reference rather than of the homeserver (a timeout, an upload that
    # never came): remembered per mxc, and not worth retrying the event for.
    dead: bool = False
    pending_upload: bool = False  # MSC2246: created, not uploaded within the wait

    def __repr__(self) -> str:  # never print the bytes, even in a traceback
        size = None if self.data is None else len(self.data)
        return f"Fetched(size={size}, mimetype={self.mimetype!r}, error={self.error!r})"


class Lease:
    """One caller's claim on a body slot: taken when bytes start to arrive, released by
    `BodySlots.lease` when the caller is done with them (or earlier, with `release`)."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        if not self._held:
            await self._slots.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


class BodySlots:
    """Media bodies downloaded and held at once, across all events (`processing.max_downloads`):
    media bytes in memory stay under that many times the size cap."""

    def __init__(self, count: int) -> None:
        self._slots = asyncio.Semaphore(count)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        lease = Lease(self._slots)
        try:
            yield lease
        finally:
            lease.release()


class MediaFetcher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        homeserver_url: str,
        as_token: str,
        user_id: str,
        max_bytes: int,
        timeout: float,
        pending_upload_wait: float = 1.0,
        max_downloads: int = 4,
    ) -> None:
        self._session = session
        self._base = homeserver_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {as_token}"}
        self._user_id = user_id
        self.max_bytes = max_bytes
        self._timeout = timeout
        self.pending_upload_wait = pending_upload_wait
        self.slots = BodySlots(max_downloads)

    def url(self, ref: MediaRef) -> str:
        return (
            f"{self._base}/_matrix/client/v1/media/download/"
            f"{quote(ref.server, safe=':[]')}/{quote(ref.media_id, safe='')}"
        )

    async def fetch(self, ref: MediaRef, *, bypass_quarantine: bool = False, lease: Lease | None = None) -> Fetched:
        """Download `ref`. `bypass_quarantine` (the bot is a server admin) reads media the bot
        itself quarantined while a scan was failing, to scan it again.

        With a `lease` (from `self.slots.lease()`), the body slot stays taken until the
        caller's lease ends; without one, the slot is given back as soon as the bytes are in.
        """
        if lease is None:
            async with self.slots.lease() as own:
                return await self.fetch(ref, bypass_quarantine=bypass_quarantine, lease=own)
        phase = _Phase()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._download(ref, bypass_quarantine, phase, lease)
        except TimeoutError:
            if phase.waiting_for_slot:
                # Other downloads had every slot: the bot is busy, the reference may be fine.
                return Fetched(None, error=f"no download slot free within {self._timeout:g} s", retryable=True)
            return Fetched(None, error=f"download timed out after {self._timeout:g} s", dead=True)
        except aiohttp.ClientError as e:
            return Fetched(None, error=f"download failed: {type(e).__name__}: {e}", retryable=True)
        except MNotYetUploaded as e:
            return Fetched(
                None,
                error=f"not uploaded yet (M_NOT_YET_UPLOADED after waiting {self.pending_upload_wait:g} s)",
                status=e.status, dead=True, pending_upload=True,
            )
        except HomeserverError as e:
            return _http_error(e.status or 0, e.errcode or "")

    async def _download(self, ref: MediaRef, bypass_quarantine: bool, phase: _Phase, lease: Lease) -> Fetched:
        params = {
            "user_id": self._user_id,
            "allow_redirect": "true",
            "timeout_ms": str(int(self.pending_upload_wait * 1000)),
        }
        if bypass_quarantine:
            params["admin_unsafely_bypass_quarantine"] = "true"
        async with self._session.get(self.url(ref), headers=self._headers, params=params) as resp:
            if resp.status != 200:
                errcode = await _errcode(resp)
                raise matrix_error(f"HTTP {resp.status} {errcode}".strip(), status=resp.status, errcode=errcode or None)
            mimetype = resp.headers.get("Content-Type", "").split(";")[0].strip() or None
            declared = resp.content_length
            if declared is not None and declared > self.max_bytes:
                return Fetched(None, mimetype, error=self._too_large(declared))
            phase.waiting_for_slot = True
            await lease.take()
            phase.waiting_for_slot = False
            return await self._read(resp, mimetype)

    async def _read(self, resp: aiohttp.ClientResponse, mimetype: str | None) -> Fetched:
        if resp.content_length is not None and "Content-Encoding" not in resp.headers:
            # The length on the wire is the body's, and within the cap (checked above): read
            # whole, its pieces joined once rather than gathered and copied again (~20% of a
            # 1 MP photo's download CPU). A compressed body may grow past what it declared,
            # so it is read piece by piece below, stopping at the cap.
            data = await resp.content.read()
            if len(data) > self.max_bytes:  # cannot be longer than declared; checked all the same
                return Fetched(None, mimetype, error=self._too_large(None))
            return Fetched(data, mimetype)
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            buf += chunk
            if len(buf) > self.max_bytes:
                # Stop reading at once: a lying or missing Content-Length must not
                # make us hold more than the cap.
                return Fetched(None, mimetype, error=self._too_large(None))
        return Fetched(bytes(buf), mimetype)

    def _too_large(self, size: int | None) -> str:
        actual = f"{size} bytes" if size is not None else "more bytes"
        return f"file over the size cap ({actual} > {self.max_bytes} bytes), not scanned"


class _Phase:
    """Where a download is, so that a timeout can say whose fault it was."""

    waiting_for_slot = False


async def _errcode(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.json(content_type=None)
        return str(body.get("errcode") or "")
    except (ValueError, aiohttp.ClientError, AttributeError):
        return ""


def _http_error(status: int, errcode: str) -> Fetched:
    code = f" {errcode}" if errcode else ""
    if status == 404:
        return Fetched(None, error=f"media not found on the homeserver (404{code}): deleted or quarantined", status=404)
    if status == 429 or status >= 500:
        return Fetched(None, error=f"homeserver error {status}{code} while downloading", retryable=True, status=status)
    return Fetched(None, error=f"download refused: HTTP {status}{code}", status=status)

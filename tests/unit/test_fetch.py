"""MediaFetcher against a real local HTTP server standing in for the homeserver's media repo.

Nothing leaves loopback. Handlers that must "hang" wait on an event the test releases at
teardown, so no test depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.demo.waiting import free_port
from bot.fetch import Fetched, MediaFetcher
from bot.model import MediaRef

AS_TOKEN = "as-token-for-tests"
BOT = "@modbot:example.org"
CAP = 64 * 1024
REF = MediaRef("mxc://example.org/abcDEF123", "example.org", "abcDEF123", "content.url")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class MediaRepo:
    """The test server: one catch-all route dispatching to the handler the test sets."""

    server: TestServer
    handler: Handler | None = None
    requests: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets hanging handlers end

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def repo() -> AsyncIterator[MediaRepo]:
    app = web.Application()
    holder: list[MediaRepo] = []

    async def dispatch(request: web.Request) -> web.StreamResponse:
        r = holder[0]
        r.requests.append(request)
        assert r.handler is not None, "test forgot to set a handler"
        return await r.handler(request)

    app.router.add_route("*", "/{tail:.*}", dispatch)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    r = MediaRepo(server)
    holder.append(r)
    try:
        yield r
    finally:
        r.release.set()
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def fetcher(
    session: aiohttp.ClientSession, url: str, *, max_bytes: int = CAP, timeout: float = 5.0, **options: Any
) -> MediaFetcher:
    return MediaFetcher(
        session, homeserver_url=url + "/", as_token=AS_TOKEN, user_id=BOT, max_bytes=max_bytes, timeout=timeout,
        **options,
    )


def matrix_error(status: int, errcode: str, error: str) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"errcode": errcode, "error": error}, status=status)

    return handler


# --- success -------------------------------------------------------------------------------


async def test_download_is_authenticated_as_the_bot_and_returns_bytes_and_mimetype(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png", charset="binary")

    repo.handler = handler
    got = await fetcher(session, repo.url).fetch(REF)

    assert got.error is None
    assert got.data == PNG
    assert got.mimetype == "image/png"  # parameters after ";" dropped
    [request] = repo.requests
    assert request.method == "GET"
    assert request.path == "/_matrix/client/v1/media/download/example.org/abcDEF123"
    assert request.headers["Authorization"] == f"Bearer {AS_TOKEN}"
    assert request.query["user_id"] == BOT


async def test_a_body_exactly_at_the_cap_is_accepted(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    body = b"x" * CAP

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/octet-stream")

    repo.handler = handler
    got = await fetcher(session, repo.url).fetch(REF)
    assert got.error is None and got.data == body


async def test_media_ids_are_escaped_in_the_path(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"ok")

    repo.handler = handler
    ref = MediaRef("mxc://[::1]:8448/a%2Fb", "[::1]:8448", "a/b", "content.url")
    await fetcher(session, repo.url).fetch(ref)
    [request] = repo.requests
    *prefix, server, media_id = request.raw_path.split("?")[0].split("/")
    assert "/".join(prefix) == "/_matrix/client/v1/media/download"
    assert unquote(server) == "[::1]:8448"
    assert media_id == "a%2Fb"  # the slash in the media id stays inside its segment


# --- the size cap --------------------------------------------------------------------------


async def test_declared_length_over_the_cap_is_refused_before_reading_the_body(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = CAP * 100
        await resp.prepare(request)
        # The body never comes until teardown: a client that tried to read it would
        # time out instead of answering "size cap".
        await repo.release.wait()
        return resp

    repo.handler = handler
    got = await fetcher(session, repo.url, timeout=2).fetch(REF)

    assert got.data is None
    assert got.error is not None and "size cap" in got.error
    assert str(CAP * 100) in got.error
    assert not got.retryable
    assert got.mimetype == "image/png"


async def test_chunked_body_without_length_stops_as_soon_as_it_passes_the_cap(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    total = 64 * 1024 * 1024
    chunk = b"\0" * (16 * 1024)
    sent = 0
    interrupted = False
    finished = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal sent, interrupted
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while sent < total:
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            interrupted = True
        except asyncio.CancelledError:
            # aiohttp cancels a handler whose client has gone away.
            interrupted = True
            raise
        finally:
            finished.set()
        return resp

    repo.handler = handler
    got = await fetcher(session, repo.url).fetch(REF)

    assert got.data is None
    assert got.error is not None and "size cap" in got.error
    assert not got.retryable
    # The client hung up: the server's write loop broke off far short of the whole body
    # (what it got out is only what the socket buffers could hold).
    await asyncio.wait_for(finished.wait(), timeout=10)
    assert interrupted
    assert sent < total // 4


async def test_a_compressed_body_that_inflates_past_the_cap_is_refused(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    # Hostile: a small declared length (the gzip on the wire) that inflates to 64 MiB. The
    # declared length says nothing of the body the client unpacks, which is capped as it comes.
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < CAP

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})

    repo.handler = handler
    tracemalloc.start()
    try:
        got = await fetcher(session, repo.url).fetch(REF)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert got.data is None
    assert got.error is not None and "size cap" in got.error
    assert not got.retryable
    assert peak < 16 * 1024 * 1024  # never the whole inflated body in memory


# --- errors --------------------------------------------------------------------------------


async def test_404_is_permanent(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    repo.handler = matrix_error(404, "M_NOT_FOUND", "Not found")
    got = await fetcher(session, repo.url).fetch(REF)
    assert got.data is None
    assert got.error is not None and "404" in got.error and "M_NOT_FOUND" in got.error
    assert not got.retryable


async def test_403_is_permanent(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    repo.handler = matrix_error(403, "M_FORBIDDEN", "nope")
    got = await fetcher(session, repo.url).fetch(REF)
    assert got.error is not None and "403" in got.error and "M_FORBIDDEN" in got.error
    assert not got.retryable


@pytest.mark.parametrize(("status", "errcode"), [(500, "M_UNKNOWN"), (502, ""), (429, "M_LIMIT_EXCEEDED")])
async def test_server_errors_and_rate_limits_are_retryable(
    repo: MediaRepo, session: aiohttp.ClientSession, status: int, errcode: str
) -> None:
    if errcode:
        repo.handler = matrix_error(status, errcode, "try later")
    else:

        async def bare(_request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, text="<html>Bad Gateway</html>", content_type="text/html")

        repo.handler = bare
    got = await fetcher(session, repo.url).fetch(REF)
    assert got.data is None
    assert got.error is not None and str(status) in got.error
    assert got.retryable


async def test_a_reference_slower_than_the_timeout_is_dead_not_retryable(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    # A timeout is this reference's failure: retrying the event would only wait again.
    async def handler(_request: web.Request) -> web.StreamResponse:
        await repo.release.wait()  # past any timeout: released only at teardown
        return web.Response(body=b"too late")

    repo.handler = handler
    got = await fetcher(session, repo.url, timeout=0.05).fetch(REF)
    assert got.data is None
    assert got.error is not None and "timed out" in got.error
    assert got.dead and not got.retryable and not got.pending_upload


# --- media created but not uploaded (MSC2246) ------------------------------------------------


async def test_the_homeserver_is_told_how_long_to_wait_for_a_pending_upload(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    repo.handler = handler
    await fetcher(session, repo.url, pending_upload_wait=1.5).fetch(REF)
    assert repo.requests[0].query["timeout_ms"] == "1500"


async def test_not_yet_uploaded_is_a_dead_reference_marked_pending(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    # What Synapse answers once timeout_ms has passed without the upload.
    repo.handler = matrix_error(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet")
    got = await fetcher(session, repo.url, pending_upload_wait=0.5).fetch(REF)
    assert got.data is None
    assert got.dead and got.pending_upload and not got.retryable
    assert got.error == "not uploaded yet (M_NOT_YET_UPLOADED after waiting 0.5 s)"


async def test_another_504_is_still_a_retryable_homeserver_error(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    repo.handler = matrix_error(504, "M_UNKNOWN", "gateway timeout")
    got = await fetcher(session, repo.url).fetch(REF)
    assert got.retryable and not got.dead


# --- bodies read at once (max_downloads) ---------------------------------------------------


async def test_references_that_never_answer_do_not_take_the_body_slots(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.match_info["tail"].endswith("/dead"):
            await repo.release.wait()  # never answers (released at teardown)
        return web.Response(body=PNG, content_type="image/png")

    repo.handler = handler
    f = fetcher(session, repo.url, timeout=30, max_downloads=1)
    dead = MediaRef("mxc://example.org/dead", "example.org", "dead", "content.url")
    stuck = [asyncio.create_task(f.fetch(dead)) for _ in range(3)]
    try:
        await asyncio.sleep(0.05)
        got = await asyncio.wait_for(f.fetch(REF), timeout=10)
        assert got.data == PNG
    finally:
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


async def test_a_download_that_waits_too_long_for_a_body_slot_is_retryable_not_dead(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    repo.handler = handler
    f = fetcher(session, repo.url, timeout=0.2, max_downloads=1)
    async with f.slots.lease() as other:  # the only slot, held by another scan's bytes
        await other.take()
        got = await f.fetch(REF)
    # The bot was busy; the reference is not at fault and is not remembered as dead.
    assert got.retryable and not got.dead
    assert got.error is not None and "no download slot" in got.error


async def test_a_body_that_trickles_past_the_timeout_is_dead(repo: MediaRepo, session: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await response.write(b"x")
        await repo.release.wait()
        return response

    repo.handler = handler
    got = await fetcher(session, repo.url, timeout=0.2).fetch(REF)
    assert got.dead and not got.retryable


# --- repr ----------------------------------------------------------------------------------


def test_fetched_repr_never_shows_the_bytes() -> None:
    data = b"SECRET-MEDIA-BYTES" * 10
    f = Fetched(data, "image/png")
    for text in (repr(f), str(f), f"{f}", repr([f])):
        assert "SECRET" not in text
        assert "size=180" in text
    assert "size=None" in repr(Fetched(None, error="x"))


async def test_a_lease_keeps_the_slot_until_the_caller_is_done_with_the_bytes(
    repo: MediaRepo, session: aiohttp.ClientSession
) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    repo.handler = handler
    f = fetcher(session, repo.url, timeout=0.3, max_downloads=1)
    async with f.slots.lease() as lease:
        assert (await f.fetch(REF, lease=lease)).data == PNG
        # Still hashing these bytes: another download must wait for the slot.
        assert (await f.fetch(REF)).retryable
    assert (await f.fetch(REF)).data == PNG  # the lease ended: the slot is free again
    assert (await f.fetch(REF)).data == PNG  # and a fetch without a lease gives it back itself

"""Remembered dead references: one timeout per mxc, not one per event or per retry.

The clock is injected; the downloads go to a real loopback server that never answers for
the dead reference, so each wasted wait shows up as a request the server received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.demo.waiting import free_port
from bot.fetch import MediaFetcher
from bot.mediafailures import DeadReference, MediaFailureMemory, RememberingFetcher
from bot.model import MediaRef

DEAD = MediaRef("mxc://example.org/dead", "example.org", "dead", "content.formatted_body")
PENDING = MediaRef("mxc://example.org/pending", "example.org", "pending", "content.url")
LIVE = MediaRef("mxc://example.org/live", "example.org", "live", "content.url")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the memory ---------------------------------------------------------------------------


def test_a_failure_is_recalled_until_it_expires() -> None:
    clock = Clock()
    memory = MediaFailureMemory(expiry=600, clock=clock)
    memory.remember(DEAD.mxc, "download timed out after 30 s")
    clock.now += 599.9
    recalled = memory.recall(DEAD.mxc)
    assert recalled is not None and recalled.error == "download timed out after 30 s"
    clock.now += 0.1
    assert memory.recall(DEAD.mxc) is None
    assert len(memory) == 0  # an expired failure is dropped when looked up


def test_a_new_failure_restarts_the_expiry() -> None:
    clock = Clock()
    memory = MediaFailureMemory(expiry=10, clock=clock)
    memory.remember(DEAD.mxc, "first")
    clock.now += 8
    memory.remember(DEAD.mxc, "second")
    clock.now += 8
    recalled = memory.recall(DEAD.mxc)
    assert recalled is not None and recalled.error == "second"


def test_the_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    # Anyone who can post can make dead references: they must not grow the bot's memory.
    memory = MediaFailureMemory(expiry=600, max_entries=100, clock=Clock())
    for i in range(5000):
        memory.remember(f"mxc://example.org/m{i}", "timed out")
    assert len(memory) == 100
    assert memory.recall("mxc://example.org/m4899") is None
    assert memory.recall("mxc://example.org/m4900") is not None


def test_zero_expiry_remembers_nothing() -> None:
    memory = MediaFailureMemory(expiry=0, clock=Clock())
    memory.remember(DEAD.mxc, "timed out")
    assert memory.recall(DEAD.mxc) is None


def test_a_dead_reference_error_is_the_message_and_says_whether_an_upload_is_awaited() -> None:
    error = DeadReference("not uploaded yet", pending_upload=True)
    assert error == "not uploaded yet" and error.pending_upload
    assert not DeadReference("timed out").pending_upload


# --- the fetcher that uses it ---------------------------------------------------------------


class Repo:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        media_id = request.path.rsplit("/", 1)[-1]
        self.requests.append(media_id)
        if media_id == "dead":
            await self.release.wait()  # never answers within the timeout
        if media_id == "pending":
            return web.json_response({"errcode": "M_NOT_YET_UPLOADED", "error": "not yet"}, status=504)
        return web.Response(body=b"\x89PNG...", content_type="image/png")


@pytest.fixture
async def repo_url() -> AsyncIterator[tuple[Repo, str]]:
    repo = Repo()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", repo.handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield repo, str(server.make_url("")).rstrip("/")
    finally:
        repo.release.set()
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def remembering(session: aiohttp.ClientSession, url: str, clock: Clock, expiry: float = 600) -> RememberingFetcher:
    fetcher = MediaFetcher(session, homeserver_url=url, as_token="t", user_id="@modbot:example.org",
                           max_bytes=1 << 20, timeout=0.1, pending_upload_wait=0)
    return RememberingFetcher(fetcher, MediaFailureMemory(expiry=expiry, clock=clock))


async def test_a_dead_reference_costs_one_timeout_however_many_events_name_it(
    repo_url: tuple[Repo, str], session: aiohttp.ClientSession
) -> None:
    repo, url = repo_url
    fetcher = remembering(session, url, Clock())
    first = await fetcher.fetch(DEAD)
    assert first.dead and "timed out" in (first.error or "")
    for _ in range(20):  # 20 more events (or retries) naming it
        again = await fetcher.fetch(DEAD)
        assert again.dead and again.data is None
        assert "remembered failure" in (again.error or "") and "timed out" in (again.error or "")
    assert repo.requests.count("dead") == 1


async def test_after_the_expiry_the_reference_is_tried_again(
    repo_url: tuple[Repo, str], session: aiohttp.ClientSession
) -> None:
    repo, url = repo_url
    clock = Clock()
    fetcher = remembering(session, url, clock, expiry=300)
    await fetcher.fetch(DEAD)
    clock.now += 299
    await fetcher.fetch(DEAD)
    assert repo.requests.count("dead") == 1
    clock.now += 1
    await fetcher.fetch(DEAD)
    assert repo.requests.count("dead") == 2


async def test_a_not_yet_uploaded_reference_is_remembered_as_pending(
    repo_url: tuple[Repo, str], session: aiohttp.ClientSession
) -> None:
    repo, url = repo_url
    fetcher = remembering(session, url, Clock())
    assert (await fetcher.fetch(PENDING)).pending_upload
    again = await fetcher.fetch(PENDING)
    assert again.pending_upload and again.dead
    assert repo.requests.count("pending") == 1


async def test_a_quarantine_bypassing_re_scan_is_answered_from_memory_too(
    repo_url: tuple[Repo, str], session: aiohttp.ClientSession
) -> None:
    # However many held events name a dead reference, their re-scans cost one download.
    repo, url = repo_url
    fetcher = remembering(session, url, Clock())
    await fetcher.fetch(DEAD)
    for _ in range(10):
        assert (await fetcher.fetch(DEAD, bypass_quarantine=True)).dead
    assert repo.requests.count("dead") == 1


async def test_a_success_is_not_remembered(repo_url: tuple[Repo, str], session: aiohttp.ClientSession) -> None:
    repo, url = repo_url
    fetcher = remembering(session, url, Clock())
    await fetcher.fetch(DEAD)
    for _ in range(3):
        assert (await fetcher.fetch(LIVE)).data is not None
    assert repo.requests.count("live") == 3
    assert len(fetcher.memory) == 1


async def test_a_reference_that_comes_back_after_the_expiry_is_downloaded_and_not_remembered(
    session: aiohttp.ClientSession,
) -> None:
    clock = Clock()
    memory = MediaFailureMemory(expiry=600, clock=clock)
    memory.remember(LIVE.mxc, "timed out")

    async def ok(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"data")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", ok)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        fetcher = RememberingFetcher(
            MediaFetcher(session, homeserver_url=str(server.make_url("")), as_token="t", user_id="@b:example.org",
                         max_bytes=1024, timeout=5),
            memory,
        )
        assert (await fetcher.fetch(LIVE)).dead  # still remembered
        clock.now += 600  # expired: downloaded again, and this time it comes
        assert (await fetcher.fetch(LIVE)).data == b"data"
        assert len(memory) == 0
    finally:
        await server.close()

"""run_within: an event's references scanned a few at a time, within one deadline.

The slow work is real downloads from a loopback media server that never answers for
some references; the deadline is what ends them, not their own (long) timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.demo.waiting import free_port
from bot.eventbudget import EventBudget, Finished, Unfinished, run_within
from bot.fetch import Fetched, MediaFetcher
from bot.model import MediaRef


def ref(media_id: str) -> MediaRef:
    return MediaRef(f"mxc://example.org/{media_id}", "example.org", media_id, "content.formatted_body")


class Repo:
    """Answers at once, except for media ids starting with "hang", which never answer."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if request.path.rsplit("/", 1)[-1].startswith("hang"):
                await self.release.wait()
            else:
                await asyncio.sleep(0.05)  # long enough for concurrent requests to overlap
            return web.Response(body=b"data", content_type="image/png")
        finally:
            self.in_flight -= 1


@pytest.fixture
async def media() -> AsyncIterator[tuple[Repo, MediaFetcher]]:
    repo = Repo()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", repo.handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        # A download timeout far longer than the deadline: the deadline must end the wait.
        fetcher = MediaFetcher(session, homeserver_url=str(server.make_url("")), as_token="t",
                               user_id="@modbot:example.org", max_bytes=1024, timeout=600)
        try:
            yield repo, fetcher
        finally:
            repo.release.set()
            await server.close()


def fetch_with(fetcher: MediaFetcher):  # type: ignore[no-untyped-def]
    async def work(r: MediaRef) -> Fetched:
        return await fetcher.fetch(r)

    return work


async def test_references_that_never_answer_are_cut_at_the_deadline(media: tuple[Repo, MediaFetcher]) -> None:
    repo, fetcher = media
    refs = [ref("a"), ref("hang1"), ref("b"), ref("hang2")]
    started = time.monotonic()
    outcomes = await run_within(refs, fetch_with(fetcher), concurrency=4, deadline=0.5)
    assert time.monotonic() - started < 60  # not the 600 s download timeout
    assert [type(o) for o in outcomes] == [Finished, Unfinished, Finished, Unfinished]
    assert [o.item for o in outcomes] == refs  # in the order given
    assert all(o.result.data == b"data" for o in outcomes if isinstance(o, Finished))
    # The bot let go of both: its connections are closed, which ends the server's waits.
    for _ in range(100):
        if repo.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert repo.in_flight == 0


async def test_no_more_than_the_concurrency_run_at_once(media: tuple[Repo, MediaFetcher]) -> None:
    repo, fetcher = media
    refs = [ref(f"m{i}") for i in range(12)]
    outcomes = await run_within(refs, fetch_with(fetcher), concurrency=3, deadline=60)
    assert all(isinstance(o, Finished) for o in outcomes)
    assert repo.most_in_flight == 3


async def test_work_queued_behind_hanging_references_is_unfinished_too(media: tuple[Repo, MediaFetcher]) -> None:
    _repo, fetcher = media
    refs = [ref("hang1"), ref("hang2"), ref("queued")]
    outcomes = await run_within(refs, fetch_with(fetcher), concurrency=2, deadline=0.3)
    assert all(isinstance(o, Unfinished) for o in outcomes)


async def test_an_exception_in_the_work_propagates_and_cancels_the_rest(media: tuple[Repo, MediaFetcher]) -> None:
    repo, fetcher = media
    cancelled: list[str] = []

    async def work(r: MediaRef) -> Fetched:
        if r.media_id == "boom":
            raise RuntimeError("a bug")
        try:
            return await fetcher.fetch(r)
        except asyncio.CancelledError:
            cancelled.append(r.media_id)
            raise

    with pytest.raises(RuntimeError, match="a bug"):
        await run_within([ref("hang1"), ref("boom")], work, concurrency=2, deadline=60)
    assert cancelled == ["hang1"]


async def test_a_single_reference_is_cut_at_the_deadline_like_many(media: tuple[Repo, MediaFetcher]) -> None:
    # One reference (the usual event) is worked on in the caller's task: the same outcomes.
    repo, fetcher = media
    [done] = await run_within([ref("a")], fetch_with(fetcher), concurrency=4, deadline=60)
    assert isinstance(done, Finished) and done.item == ref("a") and done.result.data == b"data"
    started = time.monotonic()
    [late] = await run_within([ref("hang1")], fetch_with(fetcher), concurrency=4, deadline=0.3)
    assert isinstance(late, Unfinished) and late.item == ref("hang1")
    assert time.monotonic() - started < 60
    for _ in range(100):
        if repo.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert repo.in_flight == 0


async def test_a_timeout_of_the_work_itself_propagates_rather_than_passing_for_the_deadline() -> None:
    async def work(_r: MediaRef) -> None:
        raise TimeoutError("the work's own")

    with pytest.raises(TimeoutError, match="the work's own"):
        await run_within([ref("a")], work, concurrency=1, deadline=60)


async def test_nothing_to_do_is_done_at_once() -> None:
    async def work(_r: MediaRef) -> None:
        raise AssertionError("not called")

    assert await run_within([], work, concurrency=1, deadline=0.001) == []


def test_the_deadline_audit_line_names_the_setting() -> None:
    assert EventBudget(deadline=12.5).late == "not scanned: event deadline (12.5 s, processing.event_deadline) passed"

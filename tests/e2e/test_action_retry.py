"""A homeserver outage longer than the in-call retries, against a real Synapse: the actions
stay pending, and once Synapse is back they are done.

modbot reaches Synapse through a small reverse proxy, as it would through nginx in
production. The first quarantine request that passes through it stops Synapse for longer
than the old retry window (about 7.5 s); meanwhile the proxy answers 502, as nginx does
with its upstream down. Then Synapse is started again on the same data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from bot.demo.synapse import ThrowawaySynapse
from bot.demo.waiting import free_port, wait_for
from bot.cli.scan import add_images
from botproc import BotProcess, StoreReader, bot_running, staged
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN = encode(make_photo(seed=606), "PNG")
OUTAGE = 15.0  # seconds Synapse is down: twice the old retry window
# Hop-by-hop and length headers are the proxy's own business, not forwarded.
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class OutageProxy:
    """Forwards every request to Synapse; the first whose path contains `trigger` (once
    armed) stops Synapse for `outage` seconds, with 502 answered meanwhile."""

    def __init__(self, synapse: ThrowawaySynapse, trigger: str, outage: float) -> None:
        self.synapse = synapse
        self.trigger = trigger
        self.outage = outage
        self.armed = False
        self.down = False
        self.refused = 0  # requests answered 502 during the outage
        self.over = asyncio.Event()
        self.stopped_for = 0.0
        self.port = free_port()
        self._task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.armed and not self.down and self._task is None and self.trigger in request.path:
            self.down = True
            self._task = asyncio.create_task(self._outage())
        if self.down:
            self.refused += 1
            return web.Response(status=502, text="502 Bad Gateway", content_type="text/html")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.synapse.base_url + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(status=upstream.status, body=body, headers=out)

    async def _outage(self) -> None:
        started = time.monotonic()
        await self.synapse.stop()
        await asyncio.sleep(self.outage)
        self.stopped_for = time.monotonic() - started
        await self.synapse.start()
        self.down = False
        self.over.set()


@pytest_asyncio.fixture(loop_scope="session")
async def outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[object, OutageProxy, BotProcess, StoreReader]]:
    workdir = tmp_path_factory.mktemp("outage")
    async with staged(workdir) as stage:
        proxy = OutageProxy(stage.synapse, "/media/quarantine/", OUTAGE)
        try:
            known = workdir / "known.png"
            known.write_bytes(KNOWN)
            add_images([known], stage.config(), "known", None)
            known.unlink()
            await proxy.start()
            stage.write_config(
                homeserver={**stage.config_data["homeserver"], "url": proxy.url},
                # One quick in-call retry: the durable retries have to do the work.
                processing={**stage.config_data["processing"], "action_retries": 1, "action_retry_delay": 1, "action_retry_max_delay": 4},
            )
            async with bot_running(stage) as (bot, db):
                yield stage, proxy, bot, db
        finally:
            await proxy.stop()


async def test_actions_failed_during_an_outage_are_done_once_synapse_is_back(outage) -> None:  # type: ignore[no-untyped-def]
    stage, proxy, bot, db = outage
    offender = await stage.new_user("offender", join=stage.room)
    proxy.armed = True
    mxc = await offender.upload(KNOWN, "image/png", "known.png")
    event_id = await offender.send_image(stage.room, mxc, mimetype="image/png", size=len(KNOWN))

    await asyncio.wait_for(proxy.over.wait(), timeout=120)
    assert proxy.stopped_for >= OUTAGE > 7.5 and proxy.refused > 0
    # While Synapse was down every action was tried, failed, and kept pending.
    pending = [a for a in await db.store.audit_log(event_id=event_id, category="action") if a.outcome == "pending"]
    assert {a.message.split()[0] for a in pending} >= {"quarantine", "redact", "ban"}
    assert all("HTTP 502" in a.message for a in pending)

    async def done() -> bool:
        statuses = {(a.kind, a.status) for a in await db.store.actions(event_id=event_id)}
        return statuses == {("quarantine", "ok"), ("redact", "ok"), ("ban", "ok"), ("notify", "ok")}

    await wait_for(done, timeout=60, description="every action done after the outage")
    assert all(a.attempts >= 2 for a in await db.store.actions(event_id=event_id) if a.kind != "notify")
    assert await stage.admin.download_status(mxc) == 404
    assert await stage.moderator.get_membership(stage.room, offender.user_id) == "ban"
    assert "redacted_because" in (await stage.moderator.get_event(stage.room, event_id)).get("unsigned", {})

    # The moderators hear what became of the actions (one follow-up per retry round).
    expected = [f"quarantine {mxc}: ok", f"redact {event_id}: ok", f"ban {offender.user_id}: ok"]

    async def follow_ups() -> str | None:
        bodies = [
            m["content"]["body"] for m in await stage.moderator.messages(stage.management_room, limit=50)
            if m.get("sender") == stage.bot_user_id
            and m.get("content", {}).get("body", "").startswith("modbot: actions retried") and event_id in m["content"]["body"]
        ]
        told = "\n".join(bodies)
        return told if all(line in told for line in expected) else None

    await wait_for(follow_ups, timeout=30, description="follow-up notices")
    assert bot.alive()

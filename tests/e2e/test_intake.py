"""The intake against a real Synapse: what happens after downtime does not blind the bot.

Two ways modbot used to stop seeing anything (issue 10, findings 1 and 6): a backlog sent
in one transaction over aiohttp's default 1 MiB body limit (refused, retried for ever,
nothing sent after it), and Synapse restarted on SQLite (its transaction ids start again
from 1, and repeated ids were answered 200 with their events dropped). Each test has a
stage of its own, so that transaction ids and the database start clean.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select

from bot.demo.matrix import MatrixUser
from bot.demo.waiting import wait_for
from bot.record.tables import EventRow, TransactionRow
from bot.cli.scan import add_images
from bot.demo.stage import Stage, build_stage
from botproc import BotProcess, StoreReader
from images import encode, make_photo

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

KNOWN_PNG = encode(make_photo(seed=101), "PNG")
BENIGN_PNG = encode(make_photo(seed=202), "PNG")


@dataclass
class World:
    stage: Stage
    bot: BotProcess
    db: StoreReader

    @property
    def room(self) -> str:
        return self.stage.protected_rooms[0]


@pytest_asyncio.fixture(loop_scope="session")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("intake")
    stage = await build_stage(workdir)
    bot: BotProcess | None = None
    db: StoreReader | None = None
    try:
        known = workdir / "known.png"
        known.write_bytes(KNOWN_PNG)
        add_images([known], stage.config(), "known", None)
        known.unlink()
        stage.write_config(processing={"concurrency": 4, "download_timeout": 20})
        bot = BotProcess.for_stage(stage)
        await bot.start()
        db = StoreReader.for_stage(stage)
        yield World(stage, bot, db)
    finally:
        if bot is not None:
            if bot.proc is not None and bot.alive():
                bot.proc.send_signal(signal.SIGCONT)  # a stopped process would not see SIGTERM
            await bot.stop()
        if db is not None:
            await db.close()
        await stage.stop()


async def redacted(user: MatrixUser, room: str, event_id: str) -> bool:
    return "redacted_because" in (await user.get_event(room, event_id)).get("unsigned", {})


async def assert_acted_on(w: World, event_id: str, mxc: str, timeout: float) -> None:
    """The known image's event is redacted and its media quarantined."""
    await wait_for(lambda: redacted(w.stage.moderator, w.room, event_id), timeout=timeout, description=f"{event_id} redacted")
    assert await w.stage.admin.download_status(mxc) == 404


async def post_known(w: World, user: MatrixUser) -> tuple[str, str]:
    mxc = await user.upload(KNOWN_PNG, "image/png", "known.png")
    return mxc, await user.send_image(w.room, mxc, size=len(KNOWN_PNG))


async def transaction_ids(w: World) -> dict[str, int]:
    async with w.db.engine.connect() as conn:
        rows = await conn.execute(select(TransactionRow.txn_id, TransactionRow.event_count))
        return {txn_id: count for txn_id, count in rows.all()}


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_a_backlog_over_a_megabyte_is_stored_whole_and_the_next_known_image_acted_on(world: World) -> None:
    poster = await world.stage.new_user("backlog", join=world.room)
    offender = await world.stage.new_user("offender", join=world.room)
    benign = await poster.upload(BENIGN_PNG, "image/png", "benign.png")
    assert world.bot.proc is not None
    world.bot.proc.send_signal(signal.SIGSTOP)  # as a busy or swapped-out bot would be
    try:
        # 40 messages of ~60 kB, each referencing media (so each is stored for processing):
        # Synapse gathers what the paused bot has not taken into transactions of up to 100.
        sent = []
        for n in range(40):
            body = f"message {n} " + "x" * 60_000
            html = f'<p>message {n}</p><img src="{benign}" alt="b">'
            sent.append(await poster.send_message(
                world.room, {"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": html},
            ))
        await asyncio.sleep(3)
    finally:
        world.bot.proc.send_signal(signal.SIGCONT)

    async def all_stored() -> bool:
        return all([await world.db.store.load_event(e) is not None for e in sent])

    await wait_for(all_stored, timeout=120, interval=0.5, description="all 40 events stored")
    # The case was exercised: some transaction carried more than 1 MiB (17+ of these events).
    assert max((await transaction_ids(world)).values()) >= 17
    mxc, event_id = await post_known(world, offender)
    await assert_acted_on(world, event_id, mxc, timeout=120)
    assert [a for a in await world.db.store.audit_log(category="intake") if a.outcome == "refused"] == []
    health = await world.bot.health()
    assert health is not None and health["problems"] == [] and health["checks"]["intake"]["recent_errors"] == []


async def test_after_synapse_restarts_its_reused_transaction_ids_bring_new_events(world: World) -> None:
    user = await world.stage.new_user("before", join=world.room)
    for n in range(3):  # a few transactions, so that ids 1, 2, 3... are taken
        await user.send_image(world.room, await user.upload(BENIGN_PNG, "image/png", "b.png"))
        await asyncio.sleep(0.3)
    await wait_for(lambda: len_at_least(transaction_ids(world), 3), timeout=30, description="transactions before restart")
    before = await transaction_ids(world)

    await world.stage.synapse.stop()
    await world.stage.synapse.start()  # SQLite: its appservice transaction ids start again

    offender = await world.stage.new_user("after", join=world.room)
    mxc, event_id = await post_known(world, offender)
    await assert_acted_on(world, event_id, mxc, timeout=60)
    # The known image came in a transaction whose id had been used before the restart.
    async with world.db.engine.connect() as conn:
        txn_id = (await conn.execute(select(EventRow.txn_id).where(EventRow.event_id == event_id))).scalar_one()
    assert txn_id in before
    assert metric(await world.bot.metrics(), 'modbot_transactions_total{outcome="repeated"}') >= 1


async def len_at_least(coro, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await coro) >= n



async def test_a_refused_transaction_fails_health_and_is_audited(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.stage.config_data['appservice']['hs_token']}"}
    url = f"{world.bot.url}/_matrix/app/v1/transactions/hostile-1"
    async with aiohttp.ClientSession() as s, s.put(url, data=b"[" * 100_000, headers=headers) as r:
        assert r.status == 400 and (await r.json())["errcode"] == "M_BAD_JSON"
    async with aiohttp.ClientSession() as s, s.get(f"{world.bot.url}/health") as r:
        assert r.status == 503
        body = await r.json()
    assert body["status"] == "failing" and "nested deeper than 256" in body["problems"][0]
    refusals = [a.message for a in await world.db.store.audit_log(category="intake") if a.outcome == "refused"]
    assert refusals == ["transaction hostile-1 refused (400): JSON nested deeper than 256 levels"]
    assert world.bot.alive()
    # Still seeing: the next known image is acted on.
    offender = await world.stage.new_user("after-hostile", join=world.room)
    mxc, event_id = await post_known(world, offender)
    await assert_acted_on(world, event_id, mxc, timeout=60)

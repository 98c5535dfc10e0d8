"""/health fails when modbot is blind, erring, stalled or losing sandbox workers; /metrics
can require a token and have a listener of its own."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Config, HealthConfig
from bot.demo.waiting import free_port
from bot.health import HealthSnapshot, RestartWindow, evaluate
from bot.intake.monitor import IntakeMonitor
from bot.metrics import Metrics
from bot.probes import HEALTH_READ_COST_FACTOR, HEALTH_READ_MIN_AGE, OperatorEndpoints, Throttled
from bot.record.store import Store

LIMITS = HealthConfig()  # the documented defaults


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snapshot(monitor: IntakeMonitor, clock: Clock, *, pending_age: float | None = None, restarts: int = 0) -> HealthSnapshot:
    return HealthSnapshot(now=clock.now, intake=monitor.state(), oldest_pending_age=pending_age, sandbox_restarts=restarts)


# --- evaluation -----------------------------------------------------------------------------


def test_a_fresh_bot_is_healthy() -> None:
    clock = Clock()
    report = evaluate(snapshot(IntakeMonitor(clock), clock), LIMITS)
    assert report.ok and report.problems == ()
    assert report.checks["intake"]["accepted"] == 0


def test_refusals_with_nothing_accepted_for_longer_than_stall_after_fail() -> None:
    clock = Clock()
    monitor = IntakeMonitor(clock)
    monitor.accepted()
    clock.now += 10
    monitor.refused(403, "hs_token", "5", authenticated=False)  # e.g. a stale registration
    clock.now += LIMITS.stall_after - 1
    monitor.refused(403, "hs_token", "5", authenticated=False)
    assert evaluate(snapshot(monitor, clock), LIMITS).ok
    clock.now += 2
    report = evaluate(snapshot(monitor, clock), LIMITS)
    assert not report.ok and "modbot is blind" in report.problems[0]
    assert report.checks["intake"]["unauthorized"] == 2
    # One accepted transaction ends the stall.
    monitor.accepted()
    assert evaluate(snapshot(monitor, clock), LIMITS).ok


def test_an_error_answered_to_synapse_fails_until_the_window_has_passed() -> None:
    clock = Clock()
    monitor = IntakeMonitor(clock)
    monitor.refused(413, "transaction body larger than 16777216 bytes", "42", authenticated=True)
    monitor.accepted()  # later transactions got through; the refused one was still lost
    report = evaluate(snapshot(monitor, clock), LIMITS)
    assert len(report.problems) == 1 and "latest: 413 transaction body larger" in report.problems[0]
    assert report.checks["intake"]["recent_errors"][0]["txn_id"] == "42"
    clock.now += LIMITS.error_window + 1
    assert evaluate(snapshot(monitor, clock), LIMITS).ok


def test_the_oldest_pending_event_waiting_too_long_fails() -> None:
    clock = Clock()
    monitor = IntakeMonitor(clock)
    assert evaluate(snapshot(monitor, clock, pending_age=LIMITS.max_pending_age), LIMITS).ok
    report = evaluate(snapshot(monitor, clock, pending_age=LIMITS.max_pending_age + 1), LIMITS)
    assert "oldest pending event" in report.problems[0]


def test_too_many_sandbox_restarts_fail() -> None:
    clock = Clock()
    monitor = IntakeMonitor(clock)
    assert evaluate(snapshot(monitor, clock, restarts=LIMITS.max_sandbox_restarts), LIMITS).ok
    report = evaluate(snapshot(monitor, clock, restarts=LIMITS.max_sandbox_restarts + 1), LIMITS)
    assert "hashing sandbox restarted" in report.problems[0]


def test_restarts_are_counted_within_the_window_only() -> None:
    clock, total = Clock(), [2]  # two restarts before the bot started counting
    window = RestartWindow(lambda: total[0], window=600, clock=clock)
    assert window.recent() == 0
    clock.now += 100
    total[0] = 5
    assert window.recent() == 3
    clock.now += 400
    total[0] = 6
    assert window.recent() == 4
    clock.now += 250  # the first three restarts (at +100) are now older than 600 s
    assert window.recent() == 1
    clock.now += 600
    assert window.recent() == 0


def test_the_monitor_remembers_a_bounded_number_of_errors() -> None:
    clock = Clock()
    monitor = IntakeMonitor(clock)
    for n in range(10_000):
        monitor.refused(400, "bad", str(n), authenticated=True)
    assert len(monitor.state().errors) == 50


# --- the endpoints ----------------------------------------------------------------------------


def config(**metrics: object) -> Config:
    return Config.model_validate(
        {
            "homeserver": {"url": "http://127.0.0.1:8008", "domain": "example.org"},
            "appservice": {"as_token": "as-token-for-tests", "hs_token": "hs-token-for-tests"},
            "metrics": metrics,
        }
    )


def endpoints(cfg: Config, store: Store, monitor: IntakeMonitor, restarts: list[int] | None = None) -> OperatorEndpoints:
    counter = restarts or [0]
    return OperatorEndpoints(
        cfg, store, Metrics(), monitor, RestartWindow(lambda: counter[0], cfg.health.sandbox_restart_window),
        started_at=0.0, queue_depth=lambda: 0, protected_rooms=lambda: 2, ready=lambda: True,
    )


async def serve(probes: OperatorEndpoints) -> TestClient:
    app = web.Application()
    probes.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_health_answers_503_with_the_problem_after_a_refused_transaction(store: Store) -> None:
    monitor = IntakeMonitor()
    client = await serve(endpoints(config(), store, monitor))
    try:
        async with client.get("/health") as r:
            body = await r.json()
            assert r.status == 200 and body["status"] == "ok" and body["problems"] == []
            # The fields operators and tests already read are still there.
            assert {"uptime_s", "queue_depth", "events", "protected_rooms"} <= body.keys()
        monitor.refused(400, "JSON nested deeper than 256 levels", "3", authenticated=True)
        async with client.get("/health") as r:
            body = await r.json()
            assert r.status == 503 and body["status"] == "failing"
            assert "nested deeper" in body["problems"][0]
    finally:
        await client.close()


async def test_health_fails_on_an_old_pending_event_and_sandbox_restarts(store: Store) -> None:
    event = {"event_id": "$old", "room_id": "!r:example.org", "sender": "@u:example.org", "type": "m.room.message"}
    old_store = Store(store.engine, clock=lambda: 1_000_000.0)  # received long ago
    await old_store.store_transaction("1", [event], lambda _e: True)
    restarts = [0]
    client = await serve(endpoints(config(), store, IntakeMonitor(), restarts))
    try:
        restarts[0] = 9
        async with client.get("/health") as r:
            body = await r.json()
        assert r.status == 503
        assert any("oldest pending event" in p for p in body["problems"])
        assert any("sandbox restarted 9 times" in p for p in body["problems"])
    finally:
        await client.close()


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", "metrics-token-0123456789"])
async def test_metrics_with_a_token_refuses_requests_without_it(store: Store, header: str | None) -> None:
    client = await serve(endpoints(config(token="metrics-token-0123456789"), store, IntakeMonitor()))
    try:
        async with client.get("/metrics", headers={"Authorization": header} if header else {}) as r:
            assert r.status == 403
        async with client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"}) as r:
            assert r.status == 200 and "modbot_queue_depth" in await r.text()
    finally:
        await client.close()


async def test_metrics_on_a_port_of_its_own_leave_the_appservice_port(store: Store) -> None:
    port = free_port()
    probes = endpoints(config(port=port), store, IntakeMonitor())
    client = await serve(probes)
    await probes.start_metrics_listener()
    try:
        async with client.get("/metrics") as r:
            assert r.status == 404
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200 and "modbot_transactions" in await r.text()
    finally:
        await probes.stop()
        await client.close()


# --- /health's database read, shared ------------------------------------------------------------


class CountingStore:
    """A store whose queue_state counts its calls, takes `cost` seconds of the clock, and
    fails while `failing`."""

    def __init__(self, clock: Clock, cost: float = 0.01) -> None:
        self.clock, self.cost, self.calls, self.failing = clock, cost, 0, False

    async def queue_state(self) -> tuple[dict[str, int], float | None]:
        self.calls += 1
        await asyncio.sleep(0.01)  # others ask meanwhile
        self.clock.now += self.cost
        if self.failing:
            raise RuntimeError("database is locked")
        return {"done": self.calls}, None


def shared_endpoints(store: CountingStore, clock: Clock, monitor: IntakeMonitor | None = None) -> OperatorEndpoints:
    cfg = config()
    return OperatorEndpoints(
        cfg, store, Metrics(), monitor or IntakeMonitor(), RestartWindow(lambda: 0, cfg.health.sandbox_restart_window),  # type: ignore[arg-type]
        started_at=0.0, queue_depth=lambda: 0, protected_rooms=lambda: 2, ready=lambda: True, clock=clock,
    )


async def test_a_flood_of_health_requests_reads_the_database_once_a_second() -> None:
    clock = Clock()
    store = CountingStore(clock)
    monitor = IntakeMonitor()
    client = await serve(shared_endpoints(store, clock, monitor))
    try:
        async def ask() -> tuple[int, dict]:  # type: ignore[type-arg]
            async with client.get("/health") as r:
                return r.status, await r.json()

        answers = await asyncio.gather(*(ask() for _ in range(50)))
        assert store.calls == 1 and all(status == 200 and body["events"] == {"done": 1} for status, body in answers)
        clock.now += HEALTH_READ_MIN_AGE / 2
        monitor.refused(400, "JSON nested deeper than 256 levels", "3", authenticated=True)
        status, body = await ask()
        # The shared read is reused; the judgement of what is not read from the database is not.
        assert store.calls == 1 and status == 503 and "nested deeper" in body["problems"][0]
        clock.now += HEALTH_READ_MIN_AGE
        assert (await ask())[1]["events"] == {"done": 2} and store.calls == 2
    finally:
        await client.close()


async def test_a_slow_read_is_reused_for_twenty_times_what_it_took() -> None:
    clock = Clock()
    store = CountingStore(clock, cost=0.5)  # a scan of millions of events on a slow disk
    shared = Throttled(store.queue_state, min_age=HEALTH_READ_MIN_AGE, factor=HEALTH_READ_COST_FACTOR, clock=clock)
    await shared.get()
    clock.now += 0.5 * HEALTH_READ_COST_FACTOR - 0.1
    await shared.get()
    assert store.calls == 1
    clock.now += 0.2
    await shared.get()
    assert store.calls == 2


async def test_a_failed_read_is_not_kept() -> None:
    clock = Clock()
    store = CountingStore(clock)
    client = await serve(shared_endpoints(store, clock))
    try:
        store.failing = True
        async with client.get("/health") as r:
            assert r.status == 503 and "database unreachable" in (await r.json())["problems"]
        store.failing = False
        async with client.get("/health") as r:  # at once: the failure was not reused
            assert r.status == 200 and (await r.json())["events"] == {"done": 2}
    finally:
        await client.close()

"""The operator's HTTP endpoints: /health (bot/health.py judges) and /metrics.

/health is served on the appservice port (the homeserver's side of the bot). /metrics is
served there too, or on a listener of its own (`metrics.port`), and may require a bearer
token (`metrics.token`), so that it can be exposed to a Prometheus server without
exposing the appservice endpoint.

/health is unauthenticated and on a port the homeserver reaches, so whoever can reach it can
ask as often as they like; what it reads of the database (the events counted by status, the
oldest pending one) is a scan of the events table, on the thread every intake transaction is
committed on: ~7 ms at 100,000 events, 40-50 ms at a million (bench/README.md). The read is
therefore shared (`Throttled`): one at a time, and reused until it is as old as twenty times
what it took, and at least HEALTH_READ_MIN_AGE. However often /health is asked, its reads
take at most a twentieth of that thread; the judgement of the rest (refused transactions,
sandbox restarts) is fresh at every request.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiohttp import web

from .config import Config
from .health import HealthSnapshot, RestartWindow, evaluate
from .intake.monitor import IntakeMonitor
from .metrics import Metrics
from .record.store import Store


T = TypeVar("T")

# /health's database read is reused for at least this long (seconds), and for
# HEALTH_READ_COST_FACTOR times what it took when that is longer.
HEALTH_READ_MIN_AGE = 1.0
HEALTH_READ_COST_FACTOR = 20.0


class Throttled(Generic[T]):
    """An expensive read shared by whoever asks: one at a time (callers that come while it
    runs wait for it), and its value reused until it is `min_age` old, or `factor` times
    the time it took if that is longer. A failed read is not kept: the next caller tries."""

    def __init__(
        self, read: Callable[[], Awaitable[T]], *, min_age: float, factor: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._min_age = min_age
        self._factor = factor
        self._clock = clock
        self._value: tuple[T, float] | None = None  # and when it goes stale
        self._running: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._value is not None and self._clock() < self._value[1]:
            return self._value[0]
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
        # Shielded: a caller that gives up (a probe's timeout) does not cancel the others' read.
        return await asyncio.shield(self._running)

    async def _refresh(self) -> T:
        started = self._clock()
        try:
            value = await self._read()
        finally:
            self._running = None
        done = self._clock()
        self._value = (value, done + max(self._min_age, self._factor * (done - started)))
        return value


class OperatorEndpoints:
    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        monitor: IntakeMonitor,
        sandbox_restarts: RestartWindow,
        *,
        started_at: float,
        queue_depth: Callable[[], int],
        protected_rooms: Callable[[], int],
        ready: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._monitor = monitor
        self._sandbox_restarts = sandbox_restarts
        self._started_at = started_at
        self._queue_depth = queue_depth
        self._protected_rooms = protected_rooms
        self._ready = ready
        self._metrics_runner: web.AppRunner | None = None
        self._queue_state = Throttled(
            store.queue_state, min_age=HEALTH_READ_MIN_AGE, factor=HEALTH_READ_COST_FACTOR, clock=clock
        )

    def add_routes(self, app: web.Application) -> None:
        """/health, and /metrics unless it has a listener of its own."""
        app.router.add_get("/health", self.health)
        if self._config.metrics.enabled and self._config.metrics.port is None:
            app.router.add_get("/metrics", self.metrics)

    async def start_metrics_listener(self) -> None:
        cfg = self._config.metrics
        if not cfg.enabled or cfg.port is None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        self._metrics_runner = web.AppRunner(app)
        await self._metrics_runner.setup()
        await web.TCPSite(self._metrics_runner, cfg.bind_address or "127.0.0.1", cfg.port).start()

    async def stop(self) -> None:
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    async def health(self, _request: web.Request) -> web.Response:
        oldest: float | None = None
        try:
            by_status, oldest = await self._queue_state.get()  # one trip, shared: see the module's docstring
            counts: dict[str, object] = dict(by_status)
            db_ok = True
        except Exception as e:  # health must answer even when the database does not
            counts, db_ok = {"error": str(e)}, False
        report = evaluate(
            HealthSnapshot(
                now=time.monotonic(),
                intake=self._monitor.state(),
                # received_at is wall-clock time, as stored.
                oldest_pending_age=None if oldest is None else max(0.0, time.time() - oldest),
                sandbox_restarts=self._sandbox_restarts.recent(),
            ),
            self._config.health,
        )
        healthy = db_ok and report.ok
        body = {
            "status": "ok" if healthy and self._ready() else "starting" if healthy else "failing",
            "uptime_s": round(time.time() - self._started_at, 1),
            "queue_depth": self._queue_depth(),
            "events": counts,
            "protected_rooms": self._protected_rooms(),
            "problems": [*([] if db_ok else ["database unreachable"]), *report.problems],
            "checks": report.checks,
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        token = self._config.metrics.token
        if token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # Constant time: the comparison must not tell how much of a guess was right.
            if scheme != "Bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return web.json_response({"errcode": "M_FORBIDDEN", "error": "metrics token required"}, status=403)
        self._metrics.queue_depth.set(self._queue_depth())
        return web.Response(body=self._metrics.render(), content_type="text/plain", charset="utf-8")

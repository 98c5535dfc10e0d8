"""modbot as a real process, for the end-to-end tests: start, kill, restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bot.demo.waiting import wait_for
from bot.record.db import create_engine
from bot.record.store import Store
from bot.demo.stage import Stage, build_stage


class BotProcess:
    def __init__(self, config_path: Path, port: int, workdir: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.workdir = workdir  # the process's working directory: nothing but the log may appear here
        self.log_path = workdir.parent / "modbot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_stage(cls, stage: Stage) -> BotProcess:
        """modbot for a stage: its config and port, working in the stage's `botcwd`."""
        return cls(stage.config_path, stage.config_data["appservice"]["port"], stage.workdir / "botcwd")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "-c", str(self.config_path)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        try:
            await wait_for(self._ready, timeout=60, description="modbot to become ready")
        except TimeoutError:
            raise RuntimeError(f"modbot did not start:\n{self.log_tail()}") from None
        await self._settled()

    async def _settled(self, quiet: float = 1.0, timeout: float = 10.0) -> None:
        """Wait until Synapse has replayed what it held back while modbot was down.

        After modbot's start-up ping, Synapse's recoverer sends the backlog and marks the
        appservice up only once it finds nothing left to send; a transaction created in
        between is left unsent until some later push fails (a race in Synapse's
        appservice/scheduler.py, seen here once: a command sent right after start was
        never delivered). People don't post within 100 ms of a restart, tests do: they
        wait until no transaction has arrived for `quiet` seconds.
        """
        deadline = time.monotonic() + timeout
        seen, since = await self.transactions_received(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            await asyncio.sleep(0.1)
            now = await self.transactions_received()
            if now != seen:
                seen, since = now, time.monotonic()

    async def transactions_received(self) -> float:
        """Appservice transactions modbot has answered, from its /metrics."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in (await self.metrics()).splitlines()
            if line.startswith("modbot_transactions_total")
        )

    async def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"modbot exited with {self.proc.returncode}:\n{self.log_tail()}")
        health = await self.health()
        return health is not None and health.get("status") == "ok"

    async def health(self) -> dict[str, Any] | None:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{self.url}/health") as r:
                return await r.json()
        except aiohttp.ClientError:
            return None

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(f"{self.url}/metrics") as r:
            return await r.text()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                await self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class StoreReader:
    """Reads the bot's database from the test process, as an operator would."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.store = Store(self.engine)

    @classmethod
    def for_stage(cls, stage: Stage) -> StoreReader:
        return cls(stage.config_data["database"]["url"])

    async def close(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def staged(workdir: Path, **stage_args: Any) -> AsyncIterator[Stage]:
    """A stage built in `workdir` (`stage_args` are build_stage's keywords), stopped on the way out.

    If the build itself fails there is nothing to stop: build_stage cleans up after itself.
    """
    stage = await build_stage(workdir, **stage_args)
    try:
        yield stage
    finally:
        await stage.stop()


@asynccontextmanager
async def bot_running(stage: Stage, bot: BotProcess | None = None) -> AsyncIterator[tuple[BotProcess, StoreReader]]:
    """modbot started on `stage` (or `bot`, made earlier for a fixture's world) and a reader of its database.

    Write the config before entering: modbot reads it once, at start. On the way out the bot
    is stopped first, then the reader closed. A start that fails part-way still has the
    process stopped (it may be up but not ready); the reader is only closed if it was opened.
    """
    bot = bot if bot is not None else BotProcess.for_stage(stage)
    db: StoreReader | None = None
    try:
        await bot.start()
        db = StoreReader.for_stage(stage)
        yield bot, db
    finally:
        await bot.stop()
        if db is not None:
            await db.close()

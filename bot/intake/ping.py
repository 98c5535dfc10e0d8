"""The appservice ping at start-up: Synapse retries at once the transactions it held back.

Synapse retries a transaction that failed (modbot down, restarting) with a backoff of 2 s up
to 512 s; `POST /_matrix/client/v1/appservice/{id}/ping` makes it retry now. Start-up does
not hang on the ping (a ping Synapse did not answer in a minute held a test's restart, seen
once in CI), but an unanswered ping is sent again in the background, every RETRY_INTERVAL
seconds up to RETRIES times, until one is answered: otherwise what arrived while modbot was
down could wait for Synapse's backoff, minutes after modbot is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("modbot")

TIMEOUT = 10.0  # s a ping may take; start-up goes on without it
RETRY_INTERVAL = 10.0
RETRIES = 6


class Pinger:
    """Pings through `ping` (Homeserver.ping for the registration's id); `errors` are the
    failures it may raise (a ping refused or unanswered is logged, never raised)."""

    def __init__(self, ping: Callable[[], Awaitable[object]], errors: tuple[type[Exception], ...],
                 *, timeout: float = TIMEOUT, interval: float = RETRY_INTERVAL, retries: int = RETRIES) -> None:
        self._ping = ping
        self._errors = errors
        self._timeout, self._interval, self._retries = timeout, interval, retries
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """One ping; when it is not answered, the retries start in the background. Whether
        this one was answered."""
        if await self.once():
            return True
        self._task = asyncio.create_task(self._retry(), name="appservice-ping")
        return False

    async def once(self) -> bool:
        try:
            await asyncio.wait_for(self._ping(), timeout=self._timeout)
            return True
        except (*self._errors, asyncio.TimeoutError) as e:
            log.warning("appservice ping failed (is the registration installed?): %s", str(e) or "no answer in time")
            return False

    async def _retry(self) -> None:
        for _ in range(self._retries):
            await asyncio.sleep(self._interval)
            if await self.once():
                log.info("appservice ping answered: Synapse retries now what it held back")
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

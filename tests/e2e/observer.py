"""A room member who syncs without pause and downloads every media it sees, as clients do.

The end-to-end tests of pre-send checks (test_presend.py, test_federation.py) use it to prove
that nobody received an event, or its media, that modbot refused."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bot.demo.matrix import MatrixUser
from bot.extract import extract_media_refs


class Observer:
    """A member who syncs without pause and downloads every media it sees, as clients do."""

    def __init__(self, user: MatrixUser) -> None:
        self.user = user
        self.events: dict[str, dict[str, Any]] = {}
        self.downloads: dict[str, int] = {}  # mxc -> HTTP status
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        first = await self.user.request("GET", "/_matrix/client/v3/sync", params={"timeout": "0"})
        self._task = asyncio.create_task(self._run(first["next_batch"]))

    async def _run(self, since: str) -> None:
        while True:
            try:
                resp = await self.user.request("GET", "/_matrix/client/v3/sync", params={"since": since, "timeout": "500"})
            except Exception:  # Synapse restarting: try again
                await asyncio.sleep(0.2)
                continue
            since = resp["next_batch"]
            for room in resp.get("rooms", {}).get("join", {}).values():
                for event in room.get("timeline", {}).get("events", []):
                    self.events[event["event_id"]] = event
                    for ref in extract_media_refs(event).refs:
                        if ref.mxc not in self.downloads:
                            self.downloads[ref.mxc] = await self.user.download_status(ref.mxc)

    def carrying(self, mxc: str) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if mxc in str(e.get("content", {}))]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

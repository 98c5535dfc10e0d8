"""Room power levels for the pipeline, fetched on demand and kept for a short while."""

from __future__ import annotations

import time

from .homeserver import Homeserver, RoomPower


class PowerCache:
    """Room power levels, fetched on demand and dropped when the room's levels change."""

    def __init__(self, homeserver: Homeserver, ttl: float = 60.0) -> None:
        self.homeserver = homeserver
        self._ttl = ttl
        self._cache: dict[str, tuple[float, RoomPower]] = {}

    async def get(self, room_id: str) -> RoomPower:
        hit = self._cache.get(room_id)
        if hit and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        power = await self.homeserver.room_power(room_id)
        self._cache[room_id] = (time.monotonic(), power)
        return power

    def invalidate(self, room_id: str) -> None:
        self._cache.pop(room_id, None)

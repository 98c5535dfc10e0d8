"""The homeserver as modbot uses it: client API calls and Synapse's admin API, with retries.

Every call goes through mautrix's HTTPAPI (one HTTP session for the process) as the bot
user. Permission checks are left to the server: we send the request and read the answer.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from mautrix.api import HTTPAPI, Method
from mautrix.errors import MatrixConnectionError, MatrixRequestError

from ..errors import (
    HomeserverError,
    MForbidden,
    MMissingToken,
    MNotFound,
    MUnknownToken,
    MUserInUse,
    matrix_error,
)
from ..model import CREATOR_POWER

log = logging.getLogger("modbot.homeserver")
T = TypeVar("T")

__all__ = ["CREATOR_POWER", "Homeserver", "HomeserverError", "RoomPower", "room_power"]


@dataclass(frozen=True)
class RoomPower:
    """What modbot needs from a room's power levels and create event."""

    users: dict[str, int]
    users_default: int
    ban: int
    redact: int
    kick: int
    creators: frozenset[str]  # room version 12+: unlimited power, cannot be banned

    def of(self, user_id: str) -> int:
        if user_id in self.creators:
            return CREATOR_POWER
        return self.users.get(user_id, self.users_default)


def _q(value: str) -> str:
    return quote(value, safe="")


class Homeserver:
    def __init__(
        self,
        api: HTTPAPI,
        bot_user_id: str,
        *,
        retries: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        self.api = api
        self.bot_user_id = bot_user_id
        self._retries = retries
        self._base_delay = base_delay
        self._max_delay = max_delay

    async def _call(
        self,
        method: Method,
        path: str,
        content: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        return await self._with_retries(
            lambda: self.api.request(method, path, content=content, query_params=query)
        )

    async def _call_as_sender(self, method: Method, path: str, query: dict[str, str]) -> Any:
        """A call without the appservice's `user_id` query parameter (Synapse then takes the
        registration's sender, the bot): for endpoints where `user_id` is a filter."""
        return await self._with_retries(lambda: HTTPAPI.request(self.api, method, path, query_params=query))

    async def probe(self, method: Method, path: str) -> Any:
        """One request, no retries: whether (and how) the homeserver answers a path."""
        try:
            return await self.api.request(method, path)
        except MatrixRequestError as e:
            status = getattr(e, "http_status", 0)
            errcode = getattr(e, "errcode", None)
            raise matrix_error(f"HTTP {status} {errcode or ''}", status=status, errcode=errcode) from e

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry what a homeserver may answer differently in a moment: 429, 5xx, no connection."""
        attempt = 0
        while True:
            try:
                return await call()
            except MatrixRequestError as e:
                status = getattr(e, "http_status", 0)
                errcode = getattr(e, "errcode", None)
                transient = status == 429 or status >= 500
                if not transient or attempt >= self._retries:
                    message = getattr(e, "message", None) or str(e)
                    raise matrix_error(
                        f"HTTP {status} {errcode or ''}: {message}".strip(), status=status, errcode=errcode
                    ) from e
                delay = self._delay(attempt, retry_after_ms=_retry_after_ms(e))
            except (MatrixConnectionError, asyncio.TimeoutError, OSError) as e:
                if attempt >= self._retries:
                    raise HomeserverError(f"homeserver unreachable: {e}") from e
                delay = self._delay(attempt)
            attempt += 1
            log.warning("homeserver call failed, retry %d/%d in %.1fs", attempt, self._retries, delay)
            await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after_ms: int | None = None) -> float:
        if retry_after_ms is not None:
            return min(retry_after_ms / 1000, self._max_delay)
        return min(self._base_delay * 2**attempt, self._max_delay) * random.uniform(0.8, 1.2)

    # --- client API ------------------------------------------------------------------------

    async def versions(self) -> dict[str, Any]:
        return await self._call(Method.GET, "/_matrix/client/versions")

    async def whoami(self) -> str:
        return (await self._call(Method.GET, "/_matrix/client/v3/account/whoami"))["user_id"]

    async def register_bot(self, localpart: str) -> None:
        """Register the bot user through the appservice; fine if it exists already."""
        try:
            await self._call(
                Method.POST,
                "/_matrix/client/v3/register",
                {"type": "m.login.application_service", "username": localpart, "inhibit_login": True},
            )
        except MUserInUse:
            pass

    async def set_displayname(self, name: str) -> None:
        await self._call(
            Method.PUT, f"/_matrix/client/v3/profile/{_q(self.bot_user_id)}/displayname", {"displayname": name}
        )

    async def resolve_room(self, room: str) -> str:
        if room.startswith("!"):
            return room
        answer = await self._call(Method.GET, f"/_matrix/client/v3/directory/room/{_q(room)}")
        return answer["room_id"]

    async def join(self, room: str) -> str:
        return (await self._call(Method.POST, f"/_matrix/client/v3/join/{_q(room)}"))["room_id"]

    async def joined_rooms(self) -> list[str]:
        return (await self._call(Method.GET, "/_matrix/client/v3/joined_rooms"))["joined_rooms"]

    async def state_event(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        return await self._call(
            Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        )

    async def room_state(self, room_id: str) -> list[dict[str, Any]]:
        """Every current state event of a room (a policy room's rules, for one)."""
        return await self._call(Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/state")

    async def put_state(self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]) -> str:
        answer = await self._call(
            Method.PUT, f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}", content
        )
        return answer["event_id"]

    async def state_as_event(self, room_id: str, event_type: str, state_key: str) -> dict[str, Any] | None:
        """The current state event (whole: with its event_id) at a type and key; None if never set."""
        try:
            return await self._call(
                Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}",
                query={"format": "event"},
            )
        except MNotFound:
            return None

    async def room_power(self, room_id: str) -> RoomPower:
        levels = await self.state_event(room_id, "m.room.power_levels")
        # format=event gives the whole create event: since room v11 its sender, not its
        # content, names the creator.
        create = await self._call(
            Method.GET,
            f"/_matrix/client/v3/rooms/{_q(room_id)}/state/m.room.create/",
            query={"format": "event"},
        )
        content = create.get("content", create)
        return room_power(levels, content, creator=create.get("sender") or content.get("creator"))

    async def redact(self, room_id: str, event_id: str, reason: str, txn_id: str) -> str | None:
        # Sent straight to the server (not through intent.redact, whose client-side check
        # uses the wrong power-level key); the txn id makes a retry a no-op on the server.
        answer = await self._call(
            Method.PUT,
            f"/_matrix/client/v3/rooms/{_q(room_id)}/redact/{_q(event_id)}/{_q(txn_id)}",
            {"reason": reason},
        )
        return answer.get("event_id")

    async def ban(self, room_id: str, user_id: str, reason: str) -> None:
        await self._call(
            Method.POST, f"/_matrix/client/v3/rooms/{_q(room_id)}/ban", {"user_id": user_id, "reason": reason}
        )

    async def membership(self, room_id: str, user_id: str) -> str | None:
        try:
            content = await self.state_event(room_id, "m.room.member", user_id)
        except MNotFound:
            return None
        return content.get("membership")

    async def send_notice(self, room_id: str, body: str, html: str, txn_id: str) -> str:
        content = {"msgtype": "m.notice", "body": body, "format": "org.matrix.custom.html", "formatted_body": html}
        answer = await self._call(
            Method.PUT, f"/_matrix/client/v3/rooms/{_q(room_id)}/send/m.room.message/{_q(txn_id)}", content
        )
        return answer["event_id"]

    async def unban(self, room_id: str, user_id: str, reason: str) -> None:
        await self._call(
            Method.POST, f"/_matrix/client/v3/rooms/{_q(room_id)}/unban", {"user_id": user_id, "reason": reason}
        )

    async def kick(self, room_id: str, user_id: str, reason: str) -> None:
        await self._call(
            Method.POST, f"/_matrix/client/v3/rooms/{_q(room_id)}/kick", {"user_id": user_id, "reason": reason}
        )

    async def get_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return await self._call(Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/event/{_q(event_id)}")

    async def joined_members(self, room_id: str) -> set[str]:
        answer = await self._call(Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/joined_members")
        return set((answer.get("joined") or {}).keys())

    async def messages(self, room_id: str, *, limit: int = 100, from_token: str | None = None) -> dict[str, Any]:
        query = {"dir": "b", "limit": str(limit)}
        if from_token:
            query["from"] = from_token
        return await self._call(Method.GET, f"/_matrix/client/v3/rooms/{_q(room_id)}/messages", query=query)

    async def send_message(self, room_id: str, content: dict[str, Any], txn_id: str, event_type: str = "m.room.message") -> str:
        answer = await self._call(
            Method.PUT, f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}", content
        )
        return answer["event_id"]

    async def ping(self, appservice_id: str) -> None:
        await self._call(Method.POST, f"/_matrix/client/v1/appservice/{_q(appservice_id)}/ping", {})

    # --- Synapse admin API -------------------------------------------------------------------

    async def is_server_admin(self) -> bool:
        try:
            answer = await self._call(Method.GET, f"/_synapse/admin/v1/users/{_q(self.bot_user_id)}/admin")
        except (MForbidden, MUnknownToken, MMissingToken):
            return False
        return bool(answer.get("admin"))

    async def quarantine(self, server: str, media_id: str) -> None:
        await self._call(Method.POST, f"/_synapse/admin/v1/media/quarantine/{_q(server)}/{_q(media_id)}", {})

    async def quarantine_user_media(self, user_id: str) -> int:
        answer = await self._call(Method.POST, f"/_synapse/admin/v1/user/{_q(user_id)}/media/quarantine", {})
        return int(answer.get("num_quarantined", 0))

    async def quarantine_room_media(self, room_id: str) -> int:
        answer = await self._call(Method.POST, f"/_synapse/admin/v1/room/{_q(room_id)}/media/quarantine", {})
        return int(answer.get("num_quarantined", 0))

    async def redact_user_events(self, user_id: str, rooms: list[str], reason: str, limit: int | None) -> str:
        """Synapse's admin redact-user API; returns the id of the background job."""
        if not rooms:
            # Synapse reads an empty list as "every room the user is in": never by accident.
            raise ValueError("redact_user_events needs at least one room")
        body: dict[str, Any] = {"rooms": rooms, "reason": reason}
        if limit is not None:
            body["limit"] = limit
        answer = await self._call(Method.POST, f"/_synapse/admin/v1/user/{_q(user_id)}/redact", body)
        return answer["redact_id"]

    async def redact_status(self, redact_id: str) -> dict[str, Any]:
        return await self._call(Method.GET, f"/_synapse/admin/v1/user/redact_status/{_q(redact_id)}")

    async def media_info(self, server: str, media_id: str) -> dict[str, Any] | None:
        """Synapse's record of a file (type, length, sha256, quarantined_by); None if unknown."""
        try:
            answer = await self._call(Method.GET, f"/_synapse/admin/v1/media/{_q(server)}/{_q(media_id)}")
        except MNotFound:
            return None
        return answer.get("media_info")

    async def unquarantine(self, server: str, media_id: str) -> None:
        await self._call(Method.POST, f"/_synapse/admin/v1/media/unquarantine/{_q(server)}/{_q(media_id)}", {})

    async def suspend(self, user_id: str, suspend: bool = True) -> None:
        """Suspend (or unsuspend) a local user: they can read but not send or join (1.122+). Synapse
        1.163 does not check suspension on its media endpoints: bot/act/uploadwatch.py does the rest."""
        await self._call(Method.PUT, f"/_synapse/admin/v1/suspend/{_q(user_id)}", {"suspend": suspend})

    async def is_suspended(self, user_id: str) -> bool:
        """Whether Synapse holds `user_id` suspended now (the admin user API's `suspended`)."""
        answer = await self._call(Method.GET, f"/_synapse/admin/v2/users/{_q(user_id)}")
        return bool(answer.get("suspended"))

    async def user_media(self, user_id: str, *, start: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of a local user's uploads, newest first: the items, and the next page's `from`."""
        query = {"from": str(start), "limit": str(limit), "order_by": "created_ts", "dir": "b"}
        answer = await self._call(Method.GET, f"/_synapse/admin/v1/users/{_q(user_id)}/media", query=query)
        media = [m for m in answer.get("media") or [] if isinstance(m, dict)]
        token = answer.get("next_token")
        return media, token if isinstance(token, int) else None

    async def deactivate(self, user_id: str, erase: bool) -> None:
        """Deactivate a local user (irreversible); `erase` also hides their messages from new joiners."""
        await self._call(Method.POST, f"/_synapse/admin/v1/deactivate/{_q(user_id)}", {"erase": erase})

    async def user_joined_rooms(self, user_id: str) -> list[str]:
        answer = await self._call(Method.GET, f"/_synapse/admin/v1/users/{_q(user_id)}/joined_rooms")
        return [r for r in answer.get("joined_rooms") or [] if isinstance(r, str)]

    async def block_room(self, room_id: str, block: bool = True) -> None:
        """Block (or unblock) a room: nobody on this server may join it; nothing is deleted."""
        await self._call(Method.PUT, f"/_synapse/admin/v1/rooms/{_q(room_id)}/block", {"block": block})

    async def delete_room(self, room_id: str, *, block: bool, purge: bool, message: str | None = None) -> str:
        """Take a room down in the background (local users are made to leave); the job's id."""
        body: dict[str, Any] = {"block": block, "purge": purge}
        if message:
            body["message"] = message
        answer = await self._call(Method.DELETE, f"/_synapse/admin/v2/rooms/{_q(room_id)}", body)
        return str(answer.get("delete_id", ""))

    async def event_reports(self, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        """Users' reports of events, newest first from offset `start`."""
        query = {"from": str(start), "limit": str(limit), "dir": "b"}
        # `user_id` filters event reports by reporter: it must not be the appservice's.
        return await self._call_as_sender(Method.GET, "/_synapse/admin/v1/event_reports", query)

    async def user_reports(self, *, start: int = 0, limit: int = 100) -> dict[str, Any]:
        """Users' reports of users, newest first (Synapse 1.152+; older ones answer 404)."""
        query = {"from": str(start), "limit": str(limit), "dir": "b"}
        return await self._call_as_sender(Method.GET, "/_synapse/admin/v1/user_reports", query)

    async def fetch_event(self, event_id: str) -> dict[str, Any]:
        """Any event this server has, by id (admin API)."""
        answer = await self._call(Method.GET, f"/_synapse/admin/v1/fetch_event/{_q(event_id)}")
        return answer.get("event", answer)


def room_power(levels: dict[str, Any], create: dict[str, Any], creator: str | None) -> RoomPower:
    def level(value: Any, default: int) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            return default

    users = {u: level(p, 0) for u, p in (levels.get("users") or {}).items()}
    creators: set[str] = set()
    if _creators_have_infinite_power(str(create.get("room_version", "1"))):
        if creator:
            creators.add(creator)
        creators.update(u for u in create.get("additional_creators") or [] if isinstance(u, str))
    return RoomPower(
        users=users,
        users_default=level(levels.get("users_default"), 0),
        ban=level(levels.get("ban"), 50),
        redact=level(levels.get("redact"), 50),
        kick=level(levels.get("kick"), 50),
        creators=frozenset(creators),
    )


def _creators_have_infinite_power(room_version: str) -> bool:
    try:
        return int(room_version) >= 12
    except ValueError:
        return "hydra" in room_version


def _retry_after_ms(e: MatrixRequestError) -> int | None:
    value = getattr(e, "retry_after_ms", None)
    return value if isinstance(value, int) else None
